//! Identity state: signing keys, the IdP configuration and group mappings, device codes,
//! pending IdP logins, sessions and refresh tokens. Everything a replica needs for any step of
//! a sign-in lives here, so any replica can serve any step.

pub(crate) mod device_code;
pub(crate) mod idp;
pub(crate) mod session;
pub(crate) mod signing_key;

use sqlx::PgConnection;

use super::{StoreError, audit};

/// Serialises first-start key generation and rotations across replicas (transaction scoped).
pub async fn lock_signing_keys(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(7261626901)")
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the `iss`/`aud` this control plane signs tokens with (a no-op when unchanged, so
/// restarts do not bump the policy version). Run at start: audited as `system:startup`.
pub async fn set_token_settings(
    pool: &sqlx::PgPool,
    issuer: &str,
    audience: &str,
) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    audit::set_actor(&mut tx, "system:startup").await?;
    sqlx::query(
        "INSERT INTO token_settings (singleton, issuer, audience) VALUES (true, $1, $2) \
         ON CONFLICT (singleton) DO UPDATE SET issuer = $1, audience = $2 \
         WHERE token_settings.issuer <> $1 OR token_settings.audience <> $2",
    )
    .bind(issuer)
    .bind(audience)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
