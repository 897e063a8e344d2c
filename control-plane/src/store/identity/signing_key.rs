//! Ed25519 signing keys (private parts encrypted by the caller).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::store::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub private_key_enc: Vec<u8>,
}

/// The key that signs new tokens: the newest unretired one.
pub async fn current_in(conn: &mut PgConnection) -> Result<Option<SigningKeyRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT kid, private_key_enc FROM signing_keys WHERE retired_at IS NULL \
         ORDER BY created_at DESC, kid LIMIT 1",
    )
    .fetch_optional(conn)
    .await?)
}

pub async fn insert(
    conn: &mut PgConnection,
    kid: &str,
    public_key: &[u8],
    private_key_enc: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, public_key, private_key_enc) VALUES ($1, 'EdDSA', $2, $3)",
    )
    .bind(kid)
    .bind(public_key)
    .bind(private_key_enc)
    .execute(conn)
    .await?;
    Ok(())
}

/// Retires every active key; each stays published until `publish_until`.
pub async fn retire_active(
    conn: &mut PgConnection,
    publish_until: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE signing_keys SET retired_at = now(), publish_until = $1 \
         WHERE retired_at IS NULL RETURNING kid",
    )
    .bind(publish_until)
    .fetch_all(conn)
    .await?)
}

/// Public keys data planes must accept: active keys and retired ones inside their overlap.
pub async fn published(conn: &mut PgConnection) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT kid, public_key FROM signing_keys \
         WHERE retired_at IS NULL OR publish_until > now() ORDER BY created_at, kid",
    )
    .fetch_all(conn)
    .await?)
}
