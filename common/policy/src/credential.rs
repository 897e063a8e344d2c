//! Callers and their credentials.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::access::ModelAccess;

/// Who a credential acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
        }
    }
}

/// A user or service account, as the snapshot knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub kind: PrincipalKind,
    pub name: String,
    /// Empty for service accounts.
    pub email: String,
}

/// An active API key with everything the request path needs precomputed.
#[derive(Debug)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub principal: Arc<Principal>,
    pub group_ids: Vec<String>,
    /// Unix seconds; `None` = never expires.
    pub expires_at_unix_s: Option<i64>,
    /// The union of the key's groups' model access.
    pub access: ModelAccess,
}

impl ApiKey {
    pub fn is_expired(&self, now_unix_s: i64) -> bool {
        self.expires_at_unix_s.is_some_and(|exp| now_unix_s >= exp)
    }
}

/// Why a presented credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credential: send an API key in `x-api-key` or `authorization: Bearer`")]
    Missing,
    #[error("invalid API key")]
    Unknown,
    #[error("API key has expired")]
    Expired,
    #[error("invalid access token")]
    InvalidToken,
    #[error("access token has expired; sign in again")]
    TokenExpired,
    #[error("session has been revoked; sign in again")]
    Revoked,
    #[error("user is disabled; ask your administrator")]
    Disabled,
}

impl AuthError {
    /// Whether retrying with the same credential can never succeed (the client is told
    /// not to retry: `x-should-retry: false`).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            AuthError::Expired | AuthError::TokenExpired | AuthError::Revoked | AuthError::Disabled
        )
    }
}

/// SHA-256 of a presented secret; the only form in which keys are stored and compared.
pub fn secret_sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}
