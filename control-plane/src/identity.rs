//! Identity: the device flow Claude Code signs in with (RFC 8628), the company IdP round trip
//! (an OIDC relying party), sessions, gateway access tokens (EdDSA JWTs) and opaque refresh
//! tokens rotated on every use with reuse detection.
//!
//! All state lives in Postgres, so any replica serves any step. [`Identity`] is the domain API
//! the HTTP layer ([`crate::http`]) and the admin service call; it never builds HTTP responses.

mod device;
mod login;
pub mod oidc;
pub(crate) mod secrets;
mod session;
mod signing;
mod token;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

pub use device::{DeviceAuthorization, PendingDevice, normalize_user_code};
pub use login::{LoginOutcome, VERIFICATION_HITS_PER_MINUTE};
pub use oidc::{IdpTokens, SignedInUser};
pub use secrets::{SecretsError, SecretsKey};
pub use token::AccessClaims;

use crate::store::StoreError;

/// Default lifetime of a gateway access token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The `aud` of every gateway access token.
pub const TOKEN_AUDIENCE: &str = "tollgate";
/// The `iss` when no public URL is configured.
pub const DEFAULT_TOKEN_ISSUER: &str = "tollgate";
/// Prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "tgr_";
/// Prefix of device codes.
pub const DEVICE_CODE_PREFIX: &str = "tgd_";

/// An OAuth error answered as `{"error", "error_description"}`.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("the user has not finished signing in yet")]
    AuthorizationPending,
    #[error("polling too fast; slow down")]
    SlowDown,
    #[error("the sign-in was denied")]
    AccessDenied,
    #[error("the device code expired; start again")]
    ExpiredToken,
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    #[error("the identity provider is unavailable; retry later")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] IdentityError),
}

impl OAuthError {
    /// The RFC 6749 / RFC 8628 error code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::AuthorizationPending => "authorization_pending",
            OAuthError::SlowDown => "slow_down",
            OAuthError::AccessDenied => "access_denied",
            OAuthError::ExpiredToken => "expired_token",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::Unavailable => "temporarily_unavailable",
            OAuthError::Internal(_) => "server_error",
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(err: StoreError) -> Self {
        OAuthError::Internal(IdentityError::Store(err))
    }
}

impl From<IdentityError> for OAuthError {
    fn from(err: IdentityError) -> Self {
        OAuthError::Internal(err)
    }
}

/// Internal failures of the identity domain.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("database error")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("no signing key exists")]
    NoSigningKey,
    #[error("a stored signing key is malformed")]
    BadSigningKey,
    #[error("cannot encode a token")]
    Encode(#[from] serde_json::Error),
    #[error("no identity provider is configured")]
    NoIdp,
    #[error(transparent)]
    Oidc(#[from] oidc::OidcError),
}

impl From<sqlx::Error> for IdentityError {
    fn from(err: sqlx::Error) -> Self {
        IdentityError::Store(err.into())
    }
}

/// A token set answered by the token endpoint.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub expires_in: i64,
    pub refresh_token: SecretString,
    pub email: String,
}

/// Settings of the identity domain.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub issuer: String,
    pub audience: String,
    pub token_ttl: Duration,
}

/// The identity domain of one organisation (cheap to clone).
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    org_id: Uuid,
    secrets: SecretsKey,
    settings: IdentitySettings,
    rp: oidc::RelyingParty,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Ensures a signing key exists (generated at first start) and opens with `secrets`, and
    /// builds the domain. `ephemeral_secrets`: the key lives in memory only, so a stored
    /// signing key it cannot open is replaced instead of failing.
    pub async fn start(
        pool: PgPool,
        org_id: Uuid,
        secrets: SecretsKey,
        ephemeral_secrets: bool,
        settings: IdentitySettings,
    ) -> Result<Identity, IdentityError> {
        signing::ensure_key(&pool, &secrets, ephemeral_secrets, settings.token_ttl).await?;
        Ok(Identity {
            inner: Arc::new(Inner {
                pool,
                org_id,
                secrets,
                settings,
                rp: oidc::RelyingParty::new(),
            }),
        })
    }

    pub fn settings(&self) -> &IdentitySettings {
        &self.inner.settings
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub(crate) fn secrets(&self) -> &SecretsKey {
        &self.inner.secrets
    }

    /// Retires the current signing key (still published until tokens it signed expire) and
    /// starts signing with a new one; the new key id.
    pub async fn rotate_signing_key(&self) -> Result<String, IdentityError> {
        signing::rotate(
            &self.inner.pool,
            &self.inner.secrets,
            self.inner.settings.token_ttl,
        )
        .await
    }
}
