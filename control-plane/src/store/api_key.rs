//! Gateway API keys. Only the SHA-256 of a secret is stored; revoked keys stay for the record.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{StoreError, audit, principal};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub principal_id: Uuid,
    pub principal_name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key to store; the secret itself never reaches the store.
#[derive(Debug)]
pub struct NewApiKey<'a> {
    /// Principal id, email or name.
    pub principal: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_sha256: [u8; 32],
    pub expires_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT k.id, k.name, k.principal_id, p.name AS principal_name, k.prefix, \
     k.created_at, k.expires_at, k.revoked_at FROM api_keys k JOIN principals p ON p.id = k.principal_id";

pub async fn create(
    pool: &PgPool,
    org_id: Uuid,
    new: &NewApiKey<'_>,
) -> Result<ApiKeyRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let principal_id = principal::resolve(&mut tx, org_id, new.principal).await?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO api_keys (id, principal_id, name, prefix, secret_sha256, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(principal_id)
    .bind(new.name)
    .bind(new.prefix)
    .bind(new.secret_sha256.as_slice())
    .bind(new.expires_at)
    .execute(&mut *tx)
    .await?;
    let row = get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

/// Keys, oldest first, optionally of one principal (id, email or name).
pub async fn list(
    pool: &PgPool,
    org_id: Uuid,
    principal: Option<&str>,
    include_revoked: bool,
) -> Result<Vec<ApiKeyRow>, StoreError> {
    let mut conn = pool.acquire().await?;
    let principal_id = match principal {
        Some(p) => Some(principal::resolve(&mut conn, org_id, p).await?),
        None => None,
    };
    let sql = format!(
        "{SELECT} WHERE p.org_id = $1 AND ($2::uuid IS NULL OR k.principal_id = $2) \
         AND ($3 OR k.revoked_at IS NULL) ORDER BY k.created_at, k.id"
    );
    Ok(sqlx::query_as(&sql)
        .bind(org_id)
        .bind(principal_id)
        .bind(include_revoked)
        .fetch_all(&mut *conn)
        .await?)
}

/// Revokes a key (idempotent: a revoked key keeps its first revocation time).
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<ApiKeyRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let updated =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    let row = find(&mut tx, id).await?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("API key `{id}` not found")))?;
    if updated == 0 {
        // Nothing changed: roll back so the policy version is not bumped for nothing.
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(row)
}

async fn get(conn: &mut PgConnection, id: Uuid) -> Result<ApiKeyRow, StoreError> {
    find(conn, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("API key `{id}` not found")))
}

async fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<ApiKeyRow>, StoreError> {
    let sql = format!("{SELECT} WHERE k.id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?)
}
