//! Providers: where requests are sent. The upstream credential is write-only.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{StoreError, parse_uuid};

/// A provider as admins see it (without its credential).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderRow {
    pub id: Uuid,
    pub name: String,
    /// `demo` or `anthropic` (enforced by the schema).
    pub kind: String,
    pub base_url: String,
    pub has_api_key: bool,
    pub created_at: DateTime<Utc>,
}

/// A provider to create; inputs are validated by the caller.
#[derive(Debug)]
pub struct NewProvider<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub base_url: &'a str,
    pub api_key: &'a str,
}

const COLUMNS: &str = "id, name, kind, base_url, api_key <> '' AS has_api_key, created_at";

pub async fn create(pool: &PgPool, new: &NewProvider<'_>) -> Result<ProviderRow, StoreError> {
    let sql = format!(
        "INSERT INTO providers (id, name, kind, base_url, api_key) VALUES ($1, $2, $3, $4, $5) \
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(Uuid::now_v7())
        .bind(new.name)
        .bind(new.kind)
        .bind(new.base_url)
        .bind(new.api_key)
        .fetch_one(pool)
        .await?)
}

pub async fn list(pool: &PgPool) -> Result<Vec<ProviderRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM providers ORDER BY name");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// Deletes a provider by name or id. A provider still used by a route cannot be deleted.
pub async fn delete(pool: &PgPool, provider: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let id = resolve(&mut tx, provider)
        .await?
        .ok_or_else(|| not_found(provider))?;
    sqlx::query("DELETE FROM providers WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The id of the provider with this id or name, preferring an id match.
pub async fn resolve(conn: &mut PgConnection, provider: &str) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM providers WHERE name = $1 OR id IS NOT DISTINCT FROM $2 \
         ORDER BY (id IS NOT DISTINCT FROM $2) DESC LIMIT 1",
    )
    .bind(provider)
    .bind(parse_uuid(provider))
    .fetch_optional(conn)
    .await?)
}

pub fn not_found(provider: &str) -> StoreError {
    StoreError::NotFound(format!("provider `{provider}` not found"))
}
