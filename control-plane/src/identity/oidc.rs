//! The OIDC relying party (authorization code + PKCE + `state` + `nonce`) against the
//! company IdP, built on `openidconnect`: discovery, ID token validation (signature against
//! the IdP's JWKS, `iss`, `aud`/`azp`, `exp`, `iat`, `nonce`; `alg: none` and key-type
//! confusion are refused by the library), and the re-check a refresh makes.
//!
//! Provider metadata and JWKS are cached; an ID token signed by an unknown key triggers one
//! rediscovery, at most every [`REDISCOVERY_MIN_INTERVAL`].

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

mod claims;

pub use claims::{claim, groups_of, user_from_claims};

use super::SecretsKey;
use crate::store::identity::idp::IdpConfigRow;

/// Minimum time between two rediscoveries triggered by unknown signing keys.
pub const REDISCOVERY_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Cached provider metadata is refreshed after this long anyway.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);
/// Associated data of the encrypted client secret.
pub const CLIENT_SECRET_PURPOSE: &str = "tollgate idp client secret";

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why the IdP round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot discover the identity provider: {0}")]
    Discovery(String),
    #[error("the identity provider configuration is invalid: {0}")]
    Config(String),
    #[error("the identity provider refused the code exchange: {0}")]
    Exchange(String),
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    #[error("the ID token is invalid: {0}")]
    InvalidIdToken(String),
    #[error("the ID token has no usable `{0}` claim")]
    MissingClaim(String),
    #[error("the email domain is not allowed")]
    DomainNotAllowed,
    #[error("cannot decrypt the client secret")]
    Secret,
}

/// Why a refresh-time re-check did not vouch for the user.
#[derive(Debug, thiserror::Error)]
pub enum RecheckError {
    /// The IdP answered: the user is gone, disabled, or its grant was revoked.
    #[error("{0}")]
    Rejected(String),
    /// The IdP could not be reached or answered nonsense; retry later.
    #[error("{0}")]
    Unavailable(String),
}

/// Tokens the IdP granted, kept (encrypted) with the session for re-checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdpTokens {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
}

/// A user the IdP vouched for.
#[derive(Debug, Clone)]
pub struct SignedInUser {
    pub subject: String,
    pub email: String,
    pub name: String,
    /// Raw group values of the configured groups claim.
    pub idp_groups: Vec<String>,
    pub idp_tokens: Option<IdpTokens>,
}

/// An authorization request to send the browser to, with what the callback needs.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    pub state: SecretString,
    pub pkce_verifier: SecretString,
    pub nonce: SecretString,
}

struct Cached {
    issuer: String,
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

/// The relying party (one per control plane; caches discovery).
pub struct RelyingParty {
    http: openidconnect::reqwest::Client,
    cache: Mutex<Option<Cached>>,
}

impl Default for RelyingParty {
    fn default() -> Self {
        Self::new()
    }
}

impl RelyingParty {
    pub fn new() -> RelyingParty {
        let http = openidconnect::reqwest::Client::builder()
            // Following redirects would expose the token endpoint to SSRF.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        RelyingParty {
            http,
            cache: Mutex::new(None),
        }
    }

    async fn metadata(&self, issuer: &str, force: bool) -> Result<CoreProviderMetadata, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| c.issuer == issuer) {
            let age = c.fetched.elapsed();
            if age < METADATA_MAX_AGE && (!force || age < REDISCOVERY_MIN_INTERVAL) {
                return Ok(c.metadata.clone());
            }
        }
        let issuer_url =
            IssuerUrl::new(issuer.to_owned()).map_err(|e| OidcError::Config(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
        *cache = Some(Cached {
            issuer: issuer.to_owned(),
            metadata: metadata.clone(),
            fetched: Instant::now(),
        });
        Ok(metadata)
    }

    fn client(
        metadata: CoreProviderMetadata,
        config: &IdpConfigRow,
        secrets: &SecretsKey,
        redirect_uri: Option<&str>,
    ) -> Result<Client, OidcError> {
        let secret = config
            .client_secret_enc
            .as_ref()
            .map(|sealed| {
                secrets
                    .open(CLIENT_SECRET_PURPOSE, sealed)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(OidcError::Secret)
            })
            .transpose()?;
        let mut client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            secret.map(ClientSecret::new),
        );
        if let Some(uri) = redirect_uri {
            client = client.set_redirect_uri(
                RedirectUrl::new(uri.to_owned()).map_err(|e| OidcError::Config(e.to_string()))?,
            );
        }
        Ok(client)
    }

    /// Builds the IdP authorization URL (fresh PKCE verifier, `state` and `nonce`).
    pub async fn authorize(
        &self,
        config: &IdpConfigRow,
        secrets: &SecretsKey,
        redirect_uri: &str,
    ) -> Result<Authorization, OidcError> {
        let metadata = self.metadata(&config.issuer_url, false).await?;
        let client = Self::client(metadata, config, secrets, Some(redirect_uri))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in config.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Authorization {
            url: url.to_string(),
            state: SecretString::from(state.secret().clone()),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
            nonce: SecretString::from(nonce.secret().clone()),
        })
    }

    /// Exchanges the authorization code (with the PKCE verifier) and validates the ID token.
    pub async fn complete(
        &self,
        config: &IdpConfigRow,
        secrets: &SecretsKey,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<SignedInUser, OidcError> {
        let metadata = self.metadata(&config.issuer_url, false).await?;
        let client = Self::client(metadata, config, secrets, Some(redirect_uri))?;
        let response: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(nonce.to_owned());
        let skew = clock_skew(config);
        let first = {
            let verifier = verifier(&client, skew);
            id_token.claims(&verifier, &nonce).map(drop)
        };
        match first {
            Ok(()) => {}
            // Possibly a key the cached JWKS does not know yet: rediscover (rate-limited), retry.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let metadata = self.metadata(&config.issuer_url, true).await?;
                let client = Self::client(metadata, config, secrets, None)?;
                let verifier = verifier(&client, skew);
                id_token
                    .claims(&verifier, &nonce)
                    .map_err(|e| OidcError::InvalidIdToken(error_chain(&e)))?;
            }
            Err(e) => return Err(OidcError::InvalidIdToken(error_chain(&e))),
        }
        let payload = raw_payload(id_token)?;
        let user = user_from_claims(config, &payload, None)?;
        Ok(SignedInUser {
            idp_tokens: Some(tokens_of(&response, None)),
            ..user
        })
    }

    /// Re-checks a signed-in user at the IdP: its refresh token when one was granted, else
    /// userinfo with its access token. Returns the user as the IdP sees it now.
    pub async fn recheck(
        &self,
        config: &IdpConfigRow,
        secrets: &SecretsKey,
        tokens: &IdpTokens,
    ) -> Result<SignedInUser, RecheckError> {
        let unavailable = |e: OidcError| RecheckError::Unavailable(e.to_string());
        let metadata = self
            .metadata(&config.issuer_url, false)
            .await
            .map_err(unavailable)?;
        let userinfo = metadata.userinfo_endpoint().map(|u| u.url().to_string());
        let client = Self::client(metadata, config, secrets, None).map_err(unavailable)?;
        let mut tokens = tokens.clone();
        let mut payload = None;
        if let Some(refresh) = tokens.refresh_token.clone() {
            let refresh = RefreshToken::new(refresh);
            let request = client
                .exchange_refresh_token(&refresh)
                .map_err(|e| RecheckError::Unavailable(e.to_string()))?;
            let response: CoreTokenResponse = match request.request_async(&self.http).await {
                Ok(r) => r,
                Err(openidconnect::RequestTokenError::ServerResponse(e)) => {
                    return Err(RecheckError::Rejected(e.to_string()));
                }
                Err(e) => return Err(RecheckError::Unavailable(error_chain(&e))),
            };
            if let Some(id_token) = response.id_token() {
                let verifier = verifier(&client, clock_skew(config));
                id_token
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map_err(|e| RecheckError::Rejected(error_chain(&e)))?;
                payload =
                    Some(raw_payload(id_token).map_err(|e| RecheckError::Rejected(e.to_string()))?);
            }
            tokens = tokens_of(&response, tokens.refresh_token.take());
        }
        // Groups come from the ID token when the refresh returned one, else from userinfo.
        let payload = match payload {
            Some(p) => p,
            None => {
                let access = tokens.access_token.clone().ok_or_else(|| {
                    RecheckError::Rejected("no IdP access token to check".to_owned())
                })?;
                let url = userinfo.ok_or_else(|| {
                    RecheckError::Rejected("the IdP has no userinfo endpoint".to_owned())
                })?;
                self.userinfo(&url, &access).await?
            }
        };
        let user = user_from_claims(config, &payload, None)
            .map_err(|e| RecheckError::Rejected(e.to_string()))?;
        Ok(SignedInUser {
            idp_tokens: Some(tokens),
            ..user
        })
    }

    async fn userinfo(
        &self,
        url: &str,
        access_token: &str,
    ) -> Result<serde_json::Value, RecheckError> {
        let response = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| RecheckError::Unavailable(error_chain(&e)))?;
        let status = response.status();
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(RecheckError::Rejected(format!(
                "userinfo answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(RecheckError::Unavailable(format!(
                "userinfo answered {status}"
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| RecheckError::Unavailable(error_chain(&e)))?;
        serde_json::from_slice(&body).map_err(|_| {
            RecheckError::Unavailable(
                "userinfo is not JSON (signed userinfo is not supported)".to_owned(),
            )
        })
    }
}

fn tokens_of(response: &CoreTokenResponse, previous_refresh: Option<String>) -> IdpTokens {
    IdpTokens {
        access_token: Some(response.access_token().secret().clone()),
        refresh_token: response
            .refresh_token()
            .map(|t| t.secret().clone())
            .or(previous_refresh),
    }
}

/// The JSON payload of an ID token whose signature and claims were already verified.
fn raw_payload(id_token: &CoreIdToken) -> Result<serde_json::Value, OidcError> {
    let jwt = id_token.to_string();
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::InvalidIdToken("not a compact JWS".to_owned()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| OidcError::InvalidIdToken("payload is not base64url".to_owned()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| OidcError::InvalidIdToken("payload is not JSON".to_owned()))
}

/// The library's ID token verifier with clock skew: `exp` is checked against now − skew, and an
/// `iat` more than skew in the future is refused.
fn verifier(client: &Client, skew: Duration) -> openidconnect::core::CoreIdTokenVerifier<'_> {
    let skew = chrono::Duration::from_std(skew).unwrap_or_else(|_| chrono::Duration::seconds(60));
    client
        .id_token_verifier()
        .set_time_fn(move || chrono::Utc::now() - skew)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > chrono::Utc::now() + skew {
                Err("the ID token was issued in the future".to_owned())
            } else {
                Ok(())
            }
        })
}

fn clock_skew(config: &IdpConfigRow) -> Duration {
    Duration::from_secs(u64::try_from(config.clock_skew_secs).unwrap_or(60))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
