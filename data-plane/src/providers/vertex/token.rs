//! OAuth2 access tokens for a Google service account: the JWT-bearer exchange (RFC 7523).
//!
//! The key file's `client_email` signs (RS256, `kid` = `private_key_id`) a one-hour
//! assertion for the `cloud-platform` scope, which the token endpoint (`token_uri`: the
//! provider's override, else the key file's, else Google's) trades for an access token.
//! Tokens are cached per provider and key, refreshed when less than five minutes (or a tenth
//! of their lifetime, whichever is less) remain, and exchanged by one request at a time per
//! key: concurrent requests wait for that exchange instead of starting their own.
//!
//! Nothing here logs or formats a key, an assertion or a token; failures say what went wrong
//! in the gateway's words (plus the OAuth `error` code), never the endpoint's body.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method, Request};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::super::PrepareError;
use super::super::secret::expose;
use crate::upstream::{UpstreamClient, UpstreamError};

/// Where Google's service-account keys exchange assertions, and the assertion's audience.
pub(super) const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The scope Vertex AI needs.
pub(super) const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, form-encoded.
const GRANT_TYPE_FORM: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
/// Google accepts assertions of at most one hour.
const ASSERTION_LIFETIME_S: u64 = 3600;
/// Bound on the whole exchange (response headers, then body).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A token endpoint answer larger than this is not read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Refresh when less than this remains (or a tenth of the lifetime, whichever is less).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// After a failed exchange, requests get its answer (or the still-valid token) for this
/// long before another exchange is tried.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// Lifetime assumed when the endpoint does not say (`expires_in` missing).
const DEFAULT_LIFETIME_S: u64 = 300;
/// Longest lifetime believed (Google issues one hour).
const MAX_LIFETIME_S: u64 = 24 * 3600;

/// Cached OAuth2 access tokens per provider (service-account JWT-bearer exchange).
#[derive(Default)]
pub(crate) struct TokenCache {
    /// Per provider id: the slot of the key it uses now (a new key replaces the slot).
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let providers = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("TokenCache")
            .field("providers", &providers)
            .finish_non_exhaustive()
    }
}

/// Which key (and endpoint) a cached token belongs to.
#[derive(Clone, PartialEq, Eq)]
struct Fingerprint {
    client_email: String,
    private_key_id: String,
    /// A hash of the key text, so a key replaced under the same id is noticed.
    key_hash: u64,
    token_uri: String,
}

struct Slot {
    fingerprint: Fingerprint,
    state: Mutex<State>,
    /// Held during an exchange: the single flight.
    exchange: tokio::sync::Mutex<()>,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// Exchanges started; a waiter that sees it move knows one ran on its behalf.
    exchanges: u64,
    /// Why the last exchange failed, and when (cleared by a success).
    failure: Option<(Failure, SystemTime)>,
}

impl State {
    fn fresh(&self, now: SystemTime) -> Option<SecretString> {
        self.token
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// A token that has not expired yet (it may be due for a refresh).
    fn valid(&self, now: SystemTime) -> Option<SecretString> {
        self.token
            .as_ref()
            .filter(|c| now < c.expires_at)
            .map(|c| c.token.clone())
    }

    /// The last failure if it happened less than [`FAILURE_BACKOFF`] ago.
    fn recent_failure(&self, now: SystemTime) -> Option<Failure> {
        let (failure, at) = self.failure.as_ref()?;
        let recent = now
            .duration_since(*at)
            .map_or(true, |age| age < FAILURE_BACKOFF);
        recent.then(|| failure.clone())
    }

    /// After a failure: the still-valid token, else the failure.
    fn valid_or(&self, now: SystemTime, failure: Failure) -> Result<SecretString, PrepareError> {
        self.valid(now).ok_or_else(|| failure.into())
    }
}

struct Cached {
    token: SecretString,
    refresh_at: SystemTime,
    expires_at: SystemTime,
}

#[derive(Clone)]
enum Failure {
    /// The key cannot sign: configuration.
    Config(String),
    /// The exchange failed: may work later.
    Token(String),
}

impl From<Failure> for PrepareError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Config(m) => PrepareError::Config(m),
            Failure::Token(m) => PrepareError::Token(m),
        }
    }
}

/// The service-account key file fields the exchange uses.
#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

struct ServiceAccount {
    client_email: String,
    private_key_id: String,
    private_key: SecretString,
    token_uri: String,
}

impl ServiceAccount {
    fn parse(key_json: &str, token_uri: Option<&str>) -> Result<ServiceAccount, PrepareError> {
        // serde's message could quote the file: not shown.
        let file: KeyFile = serde_json::from_str(key_json).map_err(|_| {
            PrepareError::Config(
                "vertex service_account_json is not a service-account key file \
                 (client_email and private_key are required)"
                    .into(),
            )
        })?;
        let KeyFile {
            client_email,
            private_key,
            private_key_id,
            token_uri: file_token_uri,
        } = file;
        let private_key = SecretString::from(private_key);
        if client_email.is_empty() || expose(&private_key).trim().is_empty() {
            return Err(PrepareError::Config(
                "vertex service-account key has no client_email or private_key".into(),
            ));
        }
        let token_uri = token_uri
            .map(str::to_owned)
            .or(file_token_uri.filter(|u| !u.is_empty()))
            .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned());
        Ok(ServiceAccount {
            client_email,
            private_key_id: private_key_id.unwrap_or_default(),
            private_key,
            token_uri,
        })
    }

    fn fingerprint(&self) -> Fingerprint {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        expose(&self.private_key).hash(&mut hasher);
        Fingerprint {
            client_email: self.client_email.clone(),
            private_key_id: self.private_key_id.clone(),
            key_hash: hasher.finish(),
            token_uri: self.token_uri.clone(),
        }
    }

    /// The signed JWT-bearer assertion, valid for an hour from `now`.
    fn assertion(&self, now: SystemTime) -> Result<String, Failure> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
        }
        let unusable = || {
            Failure::Config("vertex service-account private_key is not an RSA private key".into())
        };
        // PKCS#8 (`PRIVATE KEY`, as Google issues them) or PKCS#1 (`RSA PRIVATE KEY`).
        let key = EncodingKey::from_rsa_pem(expose(&self.private_key).as_bytes())
            .map_err(|_| unusable())?;
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".to_owned());
        header.kid = (!self.private_key_id.is_empty()).then(|| self.private_key_id.clone());
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &self.client_email,
            scope: CLOUD_PLATFORM_SCOPE,
            aud: GOOGLE_TOKEN_URI,
            iat,
            exp: iat + ASSERTION_LIFETIME_S,
        };
        jsonwebtoken::encode(&header, &claims, &key).map_err(|_| unusable())
    }
}

impl TokenCache {
    /// An access token for the service account in `key_json`: cached, or from an exchange.
    pub(crate) async fn token(
        &self,
        provider_id: &str,
        key_json: &SecretString,
        token_uri: Option<&str>,
        client: &UpstreamClient,
        now: SystemTime,
    ) -> Result<SecretString, PrepareError> {
        let account = ServiceAccount::parse(expose(key_json), token_uri)?;
        let slot = self.slot(provider_id, account.fingerprint());
        let seen = {
            let state = slot.state();
            if let Some(token) = state.fresh(now) {
                return Ok(token);
            }
            // Recently failed: no new attempt yet (the endpoint is down or refusing).
            if let Some(failure) = state.recent_failure(now) {
                return state.valid_or(now, failure);
            }
            state.exchanges
        };
        let _flight = match slot.exchange.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Another request is refreshing: use the current token while it lasts,
                // else wait for that exchange.
                if let Some(token) = slot.state().valid(now) {
                    return Ok(token);
                }
                slot.exchange.lock().await
            }
        };
        {
            let mut state = slot.state();
            if let Some(token) = state.fresh(now) {
                return Ok(token);
            }
            // An exchange ran while this request waited and failed: share its answer.
            if let Some(failure) = state.recent_failure(now) {
                return state.valid_or(now, failure);
            }
            if state.exchanges != seen
                && let Some((failure, _)) = state.failure.clone()
            {
                return state.valid_or(now, failure);
            }
            state.exchanges += 1;
        }
        let result = exchange(&account, client, now).await;
        let mut state = slot.state();
        match result {
            Ok(fresh) => {
                let token = fresh.token.clone();
                state.token = Some(fresh);
                state.failure = None;
                Ok(token)
            }
            Err(failure) => {
                tracing::warn!(reason = %failure_text(&failure), "vertex token exchange failed");
                state.failure = Some((failure.clone(), now));
                // A token that has not expired yet still works.
                state.valid_or(now, failure)
            }
        }
    }

    /// The provider's slot for this key (a different key gets a new slot).
    fn slot(&self, provider_id: &str, fingerprint: Fingerprint) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(provider_id)
            && slot.fingerprint == fingerprint
        {
            return slot.clone();
        }
        let slot = Arc::new(Slot {
            fingerprint,
            state: Mutex::new(State::default()),
            exchange: tokio::sync::Mutex::new(()),
        });
        slots.insert(provider_id.to_owned(), slot.clone());
        slot
    }
}

fn failure_text(f: &Failure) -> &str {
    match f {
        Failure::Config(m) | Failure::Token(m) => m,
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// One JWT-bearer exchange.
async fn exchange(
    account: &ServiceAccount,
    client: &UpstreamClient,
    now: SystemTime,
) -> Result<Cached, Failure> {
    let assertion = account.assertion(now)?;
    let form = SecretString::from(format!("{GRANT_TYPE_FORM}&assertion={assertion}"));
    drop(assertion);
    let request = Request::builder()
        .method(Method::POST)
        .uri(account.token_uri.as_str())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(Full::new(Bytes::copy_from_slice(
            form.expose_secret().as_bytes(),
        )))
        .map_err(|_| Failure::Config("vertex token_uri is not a valid URL".into()))?;
    let response = client
        .send_with(request, None, EXCHANGE_TIMEOUT)
        .await
        .map_err(|e| {
            Failure::Token(match e {
                UpstreamError::Timeout(_) => "token endpoint did not answer in time".into(),
                UpstreamError::Request(_) => "token endpoint unreachable".into(),
            })
        })?;
    let status = response.status();
    let body = tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        crate::request::read_body(response.into_body(), MAX_RESPONSE),
    )
    .await
    .map_err(|_| Failure::Token("token endpoint answer timed out".into()))?
    .map_err(|_| Failure::Token("token endpoint answer could not be read".into()))?;
    if !status.is_success() {
        let code = serde_json::from_slice::<OAuthError>(&body)
            .ok()
            .map(|e| e.error)
            .filter(|c| is_oauth_code(c));
        return Err(Failure::Token(match code {
            Some(code) => format!("token endpoint answered {} ({code})", status.as_u16()),
            None => format!("token endpoint answered {}", status.as_u16()),
        }));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|_| Failure::Token("token endpoint answer has no access_token".into()))?;
    let token = SecretString::from(answer.access_token);
    if expose(&token).is_empty() {
        return Err(Failure::Token(
            "token endpoint answered an empty token".into(),
        ));
    }
    if let Some(kind) = &answer.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(Failure::Token(
            "token endpoint answered a token that is not a bearer token".into(),
        ));
    }
    let lifetime = Duration::from_secs(
        answer
            .expires_in
            .unwrap_or(DEFAULT_LIFETIME_S)
            .min(MAX_LIFETIME_S),
    );
    let margin = REFRESH_MARGIN.min(lifetime / 10);
    Ok(Cached {
        token,
        refresh_at: now + (lifetime - margin),
        expires_at: now + lifetime,
    })
}

/// An RFC 6749 error code (`invalid_grant`, …): short, lower-case letters, digits and `_`.
fn is_oauth_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
