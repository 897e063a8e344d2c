//! Sessions (one per device-flow sign-in) and their refresh tokens (SHA-256 only).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::store::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub principal_id: Uuid,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    pub idp_tokens_enc: Option<Vec<u8>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The principal's `disabled` flag.
    pub disabled: bool,
}

/// A session as the admin API lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionInfoRow {
    pub id: Uuid,
    pub principal_id: Uuid,
    pub email: String,
    pub groups: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_refreshed_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

pub struct NewSession<'a> {
    pub principal_id: Uuid,
    pub email: &'a str,
    pub name: &'a str,
    pub groups: &'a [String],
    pub idp_tokens_enc: Option<&'a [u8]>,
}

pub async fn insert(conn: &mut PgConnection, new: NewSession<'_>) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sessions (id, principal_id, email, name, groups, idp_tokens_enc) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(new.principal_id)
    .bind(new.email)
    .bind(new.name)
    .bind(new.groups)
    .bind(new.idp_tokens_enc)
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<SessionRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT s.id, s.principal_id, s.email, s.name, s.groups, s.idp_tokens_enc, s.revoked_at, \
         p.disabled FROM sessions s JOIN principals p ON p.id = s.principal_id WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Records that an access token expiring at `exp` was issued for the session.
pub async fn issued(
    conn: &mut PgConnection,
    id: Uuid,
    exp: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sessions SET tokens_expire_at = GREATEST(tokens_expire_at, $2), \
         last_refreshed_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(exp)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores what a refresh learnt from the IdP.
pub async fn refreshed(
    conn: &mut PgConnection,
    id: Uuid,
    email: &str,
    name: &str,
    groups: &[String],
    idp_tokens_enc: Option<&[u8]>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sessions SET email = $2, name = $3, groups = $4, \
         idp_tokens_enc = COALESCE($5, idp_tokens_enc) WHERE id = $1",
    )
    .bind(id)
    .bind(email)
    .bind(name)
    .bind(groups)
    .bind(idp_tokens_enc)
    .execute(conn)
    .await?;
    Ok(())
}

/// Revokes a session (no-op when already revoked); whether it exists.
pub async fn revoke(conn: &mut PgConnection, id: Uuid, reason: &str) -> Result<bool, StoreError> {
    let found: Option<Uuid> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, now()), \
         revoked_reason = COALESCE(revoked_reason, $2) WHERE id = $1 RETURNING id",
    )
    .bind(id)
    .bind(reason)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Revokes every live session of a principal.
pub async fn revoke_all_of(
    conn: &mut PgConnection,
    principal_id: Uuid,
    reason: &str,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 \
         WHERE principal_id = $1 AND revoked_at IS NULL",
    )
    .bind(principal_id)
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected())
}

pub async fn insert_refresh_token(
    conn: &mut PgConnection,
    token_sha256: &[u8; 32],
    session_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO refresh_tokens (token_sha256, session_id) VALUES ($1, $2)")
        .bind(token_sha256.as_slice())
        .bind(session_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// How long an unused refresh token stays valid (every refresh issues a new one, so this is
/// the session's idle timeout).
pub const REFRESH_TOKEN_IDLE_DAYS: i32 = 30;

/// The session of a refresh token and whether the token was already used; row locked.
/// Tokens idle for longer than [`REFRESH_TOKEN_IDLE_DAYS`] are unknown.
pub async fn lock_refresh_token(
    conn: &mut PgConnection,
    token_sha256: &[u8; 32],
) -> Result<Option<(Uuid, bool)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT session_id, used_at IS NOT NULL FROM refresh_tokens WHERE token_sha256 = $1 \
         AND created_at > now() - make_interval(days => $2) FOR UPDATE",
    )
    .bind(token_sha256.as_slice())
    .bind(REFRESH_TOKEN_IDLE_DAYS)
    .fetch_optional(conn)
    .await?)
}

pub async fn use_refresh_token(
    conn: &mut PgConnection,
    token_sha256: &[u8; 32],
) -> Result<(), StoreError> {
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_sha256 = $1")
        .bind(token_sha256.as_slice())
        .execute(conn)
        .await?;
    Ok(())
}

/// Sessions, newest first, optionally of one principal.
pub async fn list(
    pool: &PgPool,
    principal_id: Option<Uuid>,
    include_revoked: bool,
) -> Result<Vec<SessionInfoRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, principal_id, email, groups, created_at, last_refreshed_at, revoked_at, \
         revoked_reason FROM sessions \
         WHERE ($1::uuid IS NULL OR principal_id = $1) AND ($2 OR revoked_at IS NULL) \
         ORDER BY created_at DESC LIMIT 1000",
    )
    .bind(principal_id)
    .bind(include_revoked)
    .fetch_all(pool)
    .await?)
}

/// Revoked sessions whose access tokens may still be unexpired (for the snapshot).
pub async fn revoked_live(conn: &mut PgConnection) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM sessions WHERE revoked_at IS NOT NULL AND tokens_expire_at > now() \
         ORDER BY id",
    )
    .fetch_all(conn)
    .await?)
}
