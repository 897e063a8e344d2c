//! Device codes (RFC 8628), their confirmation forms (CSRF tokens) and the browser logins in
//! flight at the IdP. Codes, CSRF tokens and `state` values are stored as SHA-256 only.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::store::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceCodeRow {
    pub id: Uuid,
    pub user_code: String,
    /// `pending`, `approved`, `denied` or `consumed`.
    pub status: String,
    pub interval_secs: i32,
    pub expires_at: DateTime<Utc>,
    pub last_polled_at: Option<DateTime<Utc>>,
    pub session_id: Option<Uuid>,
    /// Database time of the read, so expiry and polling speed use one clock.
    pub now: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, user_code, status, interval_secs, expires_at, last_polled_at, session_id, now() AS now";

pub async fn insert(
    pool: &PgPool,
    device_code_sha256: &[u8; 32],
    user_code: &str,
    interval_secs: i32,
    lifetime_secs: i64,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO device_codes (id, device_code_sha256, user_code, interval_secs, expires_at) \
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
    )
    .bind(id)
    .bind(device_code_sha256.as_slice())
    .bind(user_code)
    .bind(interval_secs)
    .bind(lifetime_secs as f64)
    .execute(pool)
    .await?;
    Ok(id)
}

/// Deletes device codes (with their confirmation forms and logins in flight) expired for a
/// day; run now and then, from any replica.
pub async fn delete_stale(pool: &PgPool) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM device_codes WHERE id IN (SELECT id FROM device_codes \
         WHERE expires_at < now() - interval '1 day' LIMIT 1000)",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// The code with this hash, locked for the rest of the transaction.
pub async fn lock_by_hash(
    conn: &mut PgConnection,
    device_code_sha256: &[u8; 32],
) -> Result<Option<DeviceCodeRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM device_codes WHERE device_code_sha256 = $1 FOR UPDATE"
    ))
    .bind(device_code_sha256.as_slice())
    .fetch_optional(conn)
    .await?)
}

pub async fn lock_by_id(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<DeviceCodeRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM device_codes WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// A pending, unexpired code by its user code.
pub async fn pending_by_user_code(
    pool: &PgPool,
    user_code: &str,
) -> Result<Option<DeviceCodeRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM device_codes \
         WHERE user_code = $1 AND status = 'pending' AND expires_at > now()"
    ))
    .bind(user_code)
    .fetch_optional(pool)
    .await?)
}

pub async fn mark_polled(conn: &mut PgConnection, id: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE device_codes SET last_polled_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    session_id: Option<Uuid>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE device_codes SET status = $2, session_id = COALESCE($3, session_id) WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(session_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_confirmation(
    pool: &PgPool,
    csrf_sha256: &[u8; 32],
    device_code_id: Uuid,
    lifetime_secs: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO device_confirmations (csrf_sha256, device_code_id, expires_at) \
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(csrf_sha256.as_slice())
    .bind(device_code_id)
    .bind(lifetime_secs as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Consumes a confirmation form's CSRF token; the device code it was issued for.
pub async fn take_confirmation(
    pool: &PgPool,
    csrf_sha256: &[u8; 32],
) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "DELETE FROM device_confirmations WHERE csrf_sha256 = $1 AND expires_at > now() \
         RETURNING device_code_id",
    )
    .bind(csrf_sha256.as_slice())
    .fetch_optional(pool)
    .await?)
}

pub async fn insert_login(
    pool: &PgPool,
    state_sha256: &[u8; 32],
    device_code_id: Uuid,
    pkce_verifier: &str,
    nonce: &str,
    lifetime_secs: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO oidc_logins (state_sha256, device_code_id, pkce_verifier, nonce, expires_at) \
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
    )
    .bind(state_sha256.as_slice())
    .bind(device_code_id)
    .bind(pkce_verifier)
    .bind(nonce)
    .bind(lifetime_secs as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// A login in flight: its device code, PKCE verifier and nonce.
#[derive(Debug, sqlx::FromRow)]
pub struct LoginRow {
    pub device_code_id: Uuid,
    pub pkce_verifier: String,
    pub nonce: String,
}

/// Consumes the login a `state` value names (single use).
pub async fn take_login(
    pool: &PgPool,
    state_sha256: &[u8; 32],
) -> Result<Option<LoginRow>, StoreError> {
    Ok(sqlx::query_as(
        "DELETE FROM oidc_logins WHERE state_sha256 = $1 AND expires_at > now() \
         RETURNING device_code_id, pkce_verifier, nonce",
    )
    .bind(state_sha256.as_slice())
    .fetch_optional(pool)
    .await?)
}

/// Counts a verification-page hit from `ip` in the current minute; the count so far.
pub async fn hit(pool: &PgPool, ip: &str) -> Result<i32, StoreError> {
    let hits = sqlx::query_scalar(
        "INSERT INTO verification_hits (ip, window_start, hits) \
         VALUES ($1, date_trunc('minute', now()), 1) \
         ON CONFLICT (ip, window_start) DO UPDATE SET hits = verification_hits.hits + 1 \
         RETURNING hits",
    )
    .bind(ip)
    .fetch_one(pool)
    .await?;
    // Old windows are useless; dropping a few on each hit keeps the table small.
    sqlx::query(
        "DELETE FROM verification_hits WHERE ctid IN (SELECT ctid FROM verification_hits \
         WHERE window_start < now() - interval '2 minutes' LIMIT 100)",
    )
    .execute(pool)
    .await?;
    Ok(hits)
}
