//! Admin keys: only their SHA-256 is stored.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::StoreError;

/// Whether any admin key is still usable.
pub async fn any_active(conn: &mut PgConnection) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM admin_keys WHERE revoked_at IS NULL)")
            .fetch_one(conn)
            .await?,
    )
}

/// Stores a new admin key by its hash.
pub async fn insert(
    conn: &mut PgConnection,
    name: &str,
    secret_sha256: &[u8; 32],
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO admin_keys (id, name, secret_sha256) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(name)
        .bind(secret_sha256.as_slice())
        .execute(conn)
        .await?;
    Ok(id)
}

/// The name of the unrevoked admin key a presented secret's hash belongs to, if any. Checked
/// on every admin call (one indexed lookup), so a revocation takes effect immediately.
pub async fn active_name(
    pool: &PgPool,
    secret_sha256: &[u8; 32],
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM admin_keys WHERE secret_sha256 = $1 AND revoked_at IS NULL LIMIT 1",
    )
    .bind(secret_sha256.as_slice())
    .fetch_optional(pool)
    .await?)
}
