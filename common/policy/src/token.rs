//! Gateway access tokens: EdDSA JWTs the control plane signs and data planes verify
//! locally with the snapshot's public keys.

use std::collections::{HashMap, HashSet};
use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::credential::AuthError;

/// Clock skew tolerated on `exp` and `iat`, in seconds.
pub const TOKEN_LEEWAY_S: i64 = 60;

/// The claims of a gateway access token that verification needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenClaims {
    pub sub: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub name: String,
    /// Tollgate group names.
    #[serde(default)]
    pub groups: Vec<String>,
    pub sid: String,
    pub exp: i64,
    #[serde(default)]
    pub iat: Option<i64>,
}

/// Verifies tokens: keys by `kid`, expected `iss`/`aud`, revoked sessions, disabled users.
pub(crate) struct TokenVerifier {
    pub issuer: String,
    pub audience: String,
    pub keys: HashMap<String, DecodingKey>,
    pub revoked_sessions: HashSet<String>,
    pub disabled_principals: HashSet<String>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kids", &kids)
            .field("revoked_sessions", &self.revoked_sessions.len())
            .field("disabled_principals", &self.disabled_principals.len())
            .finish()
    }
}

/// Whether a presented secret is shaped like a JWT (three base64url segments).
pub(crate) fn looks_like_jwt(secret: &str) -> bool {
    secret.split('.').count() == 3
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl TokenVerifier {
    /// Checks signature, algorithm, `iss`, `aud`, `exp`, `iat`, `sid` and `sub`.
    pub(crate) fn verify(&self, token: &str, now_unix_s: i64) -> Result<TokenClaims, AuthError> {
        if self.keys.is_empty() {
            return Err(AuthError::InvalidToken);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::InvalidToken);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(AuthError::InvalidToken)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked below against the caller's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<TokenClaims>(token, key, &validation)
            .map_err(|_| AuthError::InvalidToken)?;
        let claims = data.claims;
        if now_unix_s >= claims.exp.saturating_add(TOKEN_LEEWAY_S) {
            return Err(AuthError::TokenExpired);
        }
        if claims
            .iat
            .is_some_and(|iat| iat > now_unix_s.saturating_add(TOKEN_LEEWAY_S))
        {
            return Err(AuthError::InvalidToken);
        }
        if claims.sub.is_empty() || claims.sid.is_empty() {
            return Err(AuthError::InvalidToken);
        }
        if self.revoked_sessions.contains(&claims.sid) {
            return Err(AuthError::Revoked);
        }
        if self.disabled_principals.contains(&claims.sub) {
            return Err(AuthError::Disabled);
        }
        Ok(claims)
    }
}

#[cfg(test)]
pub(crate) mod tests;
