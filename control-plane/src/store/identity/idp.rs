//! The IdP configuration, group mappings, org default groups and signed-in users.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::store::{StoreError, audit};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdpConfigRow {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret_enc: Option<Vec<u8>>,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub email_claim: String,
    pub allowed_email_domains: Vec<String>,
    pub clock_skew_secs: i32,
    pub updated_at: DateTime<Utc>,
}

pub async fn get(pool: &PgPool) -> Result<Option<IdpConfigRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT issuer_url, client_id, client_secret_enc, scopes, groups_claim, email_claim, \
         allowed_email_domains, clock_skew_secs, updated_at FROM idp_config WHERE singleton",
    )
    .fetch_optional(pool)
    .await?)
}

/// Replaces the configuration; `client_secret_enc: None` keeps the stored secret.
pub async fn set(pool: &PgPool, row: &IdpConfigRow) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    sqlx::query(
        "INSERT INTO idp_config (singleton, issuer_url, client_id, client_secret_enc, scopes, \
         groups_claim, email_claim, allowed_email_domains, clock_skew_secs, updated_at) \
         VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8, now()) \
         ON CONFLICT (singleton) DO UPDATE SET issuer_url = $1, client_id = $2, \
         client_secret_enc = COALESCE($3, idp_config.client_secret_enc), scopes = $4, \
         groups_claim = $5, email_claim = $6, allowed_email_domains = $7, \
         clock_skew_secs = $8, updated_at = now()",
    )
    .bind(&row.issuer_url)
    .bind(&row.client_id)
    .bind(&row.client_secret_enc)
    .bind(&row.scopes)
    .bind(&row.groups_claim)
    .bind(&row.email_claim)
    .bind(&row.allowed_email_domains)
    .bind(row.clock_skew_secs)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Tollgate group names for a user's IdP groups; the org default groups when none maps.
pub async fn map_groups(
    conn: &mut PgConnection,
    idp_groups: &[String],
) -> Result<Vec<String>, StoreError> {
    let mapped: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT g.name FROM idp_group_mappings m JOIN groups g ON g.id = m.group_id \
         WHERE m.idp_group = ANY($1) ORDER BY g.name",
    )
    .bind(idp_groups)
    .fetch_all(&mut *conn)
    .await?;
    if !mapped.is_empty() {
        return Ok(mapped);
    }
    Ok(sqlx::query_scalar(
        "SELECT g.name FROM org_default_groups d JOIN groups g ON g.id = d.group_id ORDER BY g.name",
    )
    .fetch_all(conn)
    .await?)
}

/// Group mappings as (IdP group, Tollgate group id, Tollgate group name).
pub async fn list_mappings(pool: &PgPool) -> Result<Vec<(String, Uuid, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT m.idp_group, g.id, g.name FROM idp_group_mappings m \
         JOIN groups g ON g.id = m.group_id ORDER BY m.idp_group, g.name",
    )
    .fetch_all(pool)
    .await?)
}

/// Replaces the Tollgate groups an IdP group maps to (empty deletes the mapping).
pub async fn set_mapping(
    pool: &PgPool,
    idp_group: &str,
    group_ids: &[Uuid],
) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    sqlx::query("DELETE FROM idp_group_mappings WHERE idp_group = $1")
        .bind(idp_group)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO idp_group_mappings (idp_group, group_id) SELECT $1, unnest($2::uuid[])",
    )
    .bind(idp_group)
    .bind(group_ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn set_default_groups(pool: &PgPool, group_ids: &[Uuid]) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    sqlx::query("DELETE FROM org_default_groups")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO org_default_groups (group_id) SELECT unnest($1::uuid[])")
        .bind(group_ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn default_groups(conn: &mut PgConnection) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT g.id, g.name FROM org_default_groups d JOIN groups g ON g.id = d.group_id \
         ORDER BY g.name",
    )
    .fetch_all(conn)
    .await?)
}

/// Creates or updates the user principal of an IdP subject (adopting an admin-created user
/// with the same email) and records the sign-in; its id and `disabled` flag.
pub async fn upsert_user(
    conn: &mut PgConnection,
    org_id: Uuid,
    subject: &str,
    email: &str,
    name: &str,
) -> Result<(Uuid, bool), StoreError> {
    let found: Option<(Uuid, bool)> = sqlx::query_as(
        "UPDATE principals SET idp_subject = $2, email = $3, name = $4, last_sign_in_at = now() \
         WHERE id = (SELECT id FROM principals WHERE org_id = $1 AND kind = 'user' \
           AND (idp_subject = $2 OR (idp_subject IS NULL AND lower(email) = lower($3))) \
           ORDER BY (idp_subject = $2) DESC NULLS LAST LIMIT 1) \
         RETURNING id, disabled",
    )
    .bind(org_id)
    .bind(subject)
    .bind(email)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(found) = found {
        return Ok(found);
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO principals (id, org_id, kind, name, email, idp_subject, last_sign_in_at) \
         VALUES ($1, $2, 'user', $3, $4, $5, now())",
    )
    .bind(id)
    .bind(org_id)
    .bind(name)
    .bind(email)
    .bind(subject)
    .execute(conn)
    .await?;
    Ok((id, false))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub disabled: bool,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub async fn list_users(pool: &PgPool) -> Result<Vec<UserRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, name, email, disabled, last_sign_in_at, created_at FROM principals \
         WHERE kind = 'user' ORDER BY email NULLS LAST, id",
    )
    .fetch_all(pool)
    .await?)
}

/// Sets a user's `disabled` flag; whether the user exists.
pub async fn set_disabled(
    conn: &mut PgConnection,
    id: Uuid,
    disabled: bool,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE principals SET disabled = $2 WHERE id = $1 AND kind = 'user' AND disabled <> $2",
    )
    .bind(id)
    .bind(disabled)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0
        || sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM principals WHERE id = $1 AND kind = 'user')",
        )
        .bind(id)
        .fetch_one(conn)
        .await?)
}

/// Disabled users (for the snapshot).
pub async fn disabled_users(conn: &mut PgConnection) -> Result<Vec<Uuid>, StoreError> {
    Ok(
        sqlx::query_scalar(
            "SELECT id FROM principals WHERE kind = 'user' AND disabled ORDER BY id",
        )
        .fetch_all(conn)
        .await?,
    )
}
