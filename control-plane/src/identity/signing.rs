//! Signing keys: generated at first start, private halves encrypted at rest, rotated with an
//! overlap during which the previous public key stays published.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use sqlx::{PgConnection, PgPool};

use super::{IdentityError, SecretsKey, token};
use crate::store::audit;
use crate::store::identity::{self as store, signing_key};

const PURPOSE: &str = "tollgate signing key";
/// Extra publication time after the last token a retired key signed expires (clock skew).
const OVERLAP_MARGIN: Duration = Duration::from_secs(120);

/// Generates the first key when none is active (replicas starting together agree), and checks
/// that the active key opens with `secrets`. When it does not: with `replace_unreadable`
/// (an in-memory secrets key, so nothing else could read it either) the key is rotated out,
/// else start-up fails rather than failing every sign-in later. Audited as `system:startup`.
pub async fn ensure_key(
    pool: &PgPool,
    secrets: &SecretsKey,
    replace_unreadable: bool,
    token_ttl: Duration,
) -> Result<(), IdentityError> {
    let mut tx = audit::begin(pool).await?;
    audit::set_actor(&mut tx, "system:startup").await?;
    store::lock_signing_keys(&mut tx).await?;
    match signing_key::current_in(&mut tx).await? {
        None => {
            insert_new(&mut tx, secrets).await?;
        }
        Some(row) if secrets.open(PURPOSE, &row.private_key_enc).is_err() => {
            if !replace_unreadable {
                return Err(IdentityError::Secrets(super::SecretsError::Decrypt));
            }
            let overlap = chrono::Duration::from_std(token_ttl + OVERLAP_MARGIN)
                .unwrap_or_else(|_| chrono::Duration::hours(2));
            signing_key::retire_active(&mut tx, chrono::Utc::now() + overlap).await?;
            insert_new(&mut tx, secrets).await?;
            tracing::warn!("the signing key was sealed with another secrets key; rotated it");
        }
        Some(_) => {}
    }
    tx.commit().await?;
    Ok(())
}

/// Retires the active key (published for another token lifetime) and activates a new one.
/// Audited as the admin of the current call, else as `system:key-rotation`.
pub async fn rotate(
    pool: &PgPool,
    secrets: &SecretsKey,
    token_ttl: Duration,
) -> Result<String, IdentityError> {
    let overlap = chrono::Duration::from_std(token_ttl + OVERLAP_MARGIN)
        .unwrap_or_else(|_| chrono::Duration::hours(2));
    let mut tx = audit::begin(pool).await?;
    if audit::current_actor().is_none() {
        audit::set_actor(&mut tx, "system:key-rotation").await?;
    }
    store::lock_signing_keys(&mut tx).await?;
    signing_key::retire_active(&mut tx, chrono::Utc::now() + overlap).await?;
    let kid = insert_new(&mut tx, secrets).await?;
    tx.commit().await?;
    Ok(kid)
}

async fn insert_new(
    conn: &mut PgConnection,
    secrets: &SecretsKey,
) -> Result<String, IdentityError> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key().to_bytes();
    let kid = token::kid_for(&public);
    let sealed = secrets.seal(PURPOSE, &seed);
    seed.fill(0);
    signing_key::insert(conn, &kid, &public, &sealed).await?;
    Ok(kid)
}

/// The key that signs new tokens, decrypted, with its id.
pub async fn current(
    conn: &mut PgConnection,
    secrets: &SecretsKey,
) -> Result<(String, SigningKey), IdentityError> {
    let row = signing_key::current_in(conn)
        .await?
        .ok_or(IdentityError::NoSigningKey)?;
    let seed = secrets.open(PURPOSE, &row.private_key_enc)?;
    let seed: [u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| IdentityError::BadSigningKey)?;
    Ok((row.kid, SigningKey::from_bytes(&seed)))
}

/// Whether `jwt` carries a valid signature by a published key (claims are not checked).
pub async fn signature_is_valid(conn: &mut PgConnection, jwt: &str) -> Result<bool, IdentityError> {
    let Some((signed, signature)) = jwt.rsplit_once('.') else {
        return Ok(false);
    };
    let Some(kid) = header_kid(signed) else {
        return Ok(false);
    };
    let keys = signing_key::published(conn).await?;
    let Some((_, public)) = keys.iter().find(|(k, _)| *k == kid) else {
        return Ok(false);
    };
    let Ok(public) = <[u8; 32]>::try_from(public.as_slice()) else {
        return Ok(false);
    };
    let (Ok(key), Ok(sig)) = (
        VerifyingKey::from_bytes(&public),
        URL_SAFE_NO_PAD.decode(signature),
    ) else {
        return Ok(false);
    };
    let Ok(sig) = Signature::from_slice(&sig) else {
        return Ok(false);
    };
    Ok(key.verify(signed.as_bytes(), &sig).is_ok())
}

fn header_kid(signed: &str) -> Option<String> {
    let header = signed.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    if value.get("alg")?.as_str()? != "EdDSA" {
        return None;
    }
    value.get("kid")?.as_str().map(str::to_owned)
}
