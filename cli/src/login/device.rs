//! The OAuth client side: metadata discovery, device authorization, token polling, refresh and
//! revocation, against the gateway's base URL.

use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::LoginError;
use super::credentials::Credentials;

/// Refresh the access token when fewer than this many seconds remain.
pub const REFRESH_MARGIN_S: i64 = 300;
/// Added to the polling interval on `slow_down` (RFC 8628 §3.5).
const SLOW_DOWN_S: u64 = 5;

/// The endpoints this client uses, from the gateway's RFC 8414 metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub base_url: String,
    pub device_authorization_endpoint: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct RawMetadata {
    device_authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

/// A pending device authorization (RFC 8628 §3.2).
#[derive(Debug, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: SecretString,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default = "default_interval")]
    pub interval: u64,
    #[serde(default)]
    pub login_notice: Option<String>,
}

fn default_interval() -> u64 {
    5
}

/// A token response.
#[derive(Debug, Deserialize)]
pub struct TokenSet {
    pub access_token: SecretString,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// Reads `{gateway}/.well-known/oauth-authorization-server`. Endpoints that are missing, not
/// absolute or not on the gateway's origin fall back to `/oauth/device_authorization` and
/// `/oauth/token`, as Claude Code does.
pub async fn discover(http: &reqwest::Client, gateway: &str) -> Result<Metadata, LoginError> {
    let base = gateway.trim_end_matches('/').to_owned();
    let base_url = parse_secure(&base)?;
    let url = format!("{base}/.well-known/oauth-authorization-server");
    let resp = send(&url, http.get(&url)).await?;
    let raw: RawMetadata = json_of(&url, resp).await?;
    let same_origin = |e: Option<String>| {
        e.filter(|e| Url::parse(e).is_ok_and(|u| u.origin() == base_url.origin()))
    };
    Ok(Metadata {
        device_authorization_endpoint: same_origin(raw.device_authorization_endpoint)
            .unwrap_or_else(|| format!("{base}/oauth/device_authorization")),
        token_endpoint: same_origin(raw.token_endpoint)
            .unwrap_or_else(|| format!("{base}/oauth/token")),
        revocation_endpoint: same_origin(raw.revocation_endpoint),
        base_url: base,
    })
}

/// `POST device_authorization_endpoint` with `surface=claude_code`.
pub async fn start_device_authorization(
    http: &reqwest::Client,
    meta: &Metadata,
) -> Result<DeviceAuthorization, LoginError> {
    let url = &meta.device_authorization_endpoint;
    let resp = send(url, http.post(url).form(&[("surface", "claude_code")])).await?;
    json_of(url, resp).await
}

/// Polls the token endpoint until the code is approved, denied or expired, waiting `interval`
/// seconds between polls and five more after each `slow_down`.
pub async fn poll_for_token(
    http: &reqwest::Client,
    meta: &Metadata,
    auth: &DeviceAuthorization,
) -> Result<TokenSet, LoginError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(auth.expires_in);
    let mut interval = auth.interval.max(1);
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if tokio::time::Instant::now() > deadline {
            return Err(LoginError::Expired);
        }
        let url = &meta.token_endpoint;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", auth.device_code.expose_secret()),
        ];
        let resp = send(url, http.post(url).form(&form)).await?;
        if resp.status().is_success() {
            return json_of(url, resp).await;
        }
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<OAuthError>(&body).map(|e| e.error) {
            Ok(e) if e == "authorization_pending" => {}
            Ok(e) if e == "slow_down" => interval += SLOW_DOWN_S,
            Ok(e) if e == "access_denied" => return Err(LoginError::AccessDenied),
            Ok(e) if e == "expired_token" => return Err(LoginError::Expired),
            _ => {
                return Err(LoginError::Unexpected {
                    url: url.clone(),
                    status,
                    body,
                });
            }
        }
    }
}

/// `POST token_endpoint` with `grant_type=refresh_token`. `400`/`401 invalid_grant` means the
/// session is over (revoked, or the user was removed at the IdP).
pub async fn refresh(
    http: &reqwest::Client,
    token_endpoint: &str,
    refresh_token: &SecretString,
) -> Result<TokenSet, LoginError> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose_secret()),
    ];
    let resp = send(token_endpoint, http.post(token_endpoint).form(&form)).await?;
    if resp.status().is_success() {
        return json_of(token_endpoint, resp).await;
    }
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<OAuthError>(&body) {
        Ok(e) if e.error == "invalid_grant" => Err(LoginError::SignedOut { reason: e.error }),
        _ => Err(LoginError::Unexpected {
            url: token_endpoint.to_owned(),
            status,
            body,
        }),
    }
}

/// RFC 7009 revocation of one token (no client authentication).
pub async fn revoke(
    http: &reqwest::Client,
    revocation_endpoint: &str,
    token: &SecretString,
    hint: &str,
) -> Result<(), LoginError> {
    let form = [("token", token.expose_secret()), ("token_type_hint", hint)];
    let resp = send(
        revocation_endpoint,
        http.post(revocation_endpoint).form(&form),
    )
    .await?;
    if resp.status().is_success() {
        return Ok(());
    }
    Err(LoginError::Unexpected {
        url: revocation_endpoint.to_owned(),
        status: resp.status().as_u16(),
        body: resp.text().await.unwrap_or_default(),
    })
}

/// A valid access token from the credentials at `path`, refreshed (and saved) when fewer than
/// five minutes remain at `now_unix_s`. Refreshing holds an exclusive lock beside the file, so
/// concurrent `tollgate token` runs (several Claude Code sessions) refresh once: a refresh
/// token presented twice would end the session.
pub async fn current_token(
    http: &reqwest::Client,
    path: &Path,
    now_unix_s: i64,
) -> Result<SecretString, LoginError> {
    let creds = Credentials::load(path)?;
    if creds.expires_at_unix_s - now_unix_s > REFRESH_MARGIN_S {
        return Ok(creds.access_token);
    }
    let _lock = Credentials::lock(path)?;
    // Another run may have refreshed while this one waited for the lock.
    let mut creds = Credentials::load(path)?;
    if creds.expires_at_unix_s - now_unix_s > REFRESH_MARGIN_S {
        return Ok(creds.access_token);
    }
    let Some(refresh_token) = creds.refresh_token.clone() else {
        if creds.expires_at_unix_s > now_unix_s {
            return Ok(creds.access_token);
        }
        return Err(LoginError::SignedOut {
            reason: "the access token expired and there is no refresh token".into(),
        });
    };
    let set = refresh(http, &creds.token_endpoint, &refresh_token).await?;
    creds.update(set, now_unix_s);
    creds.save(path)?;
    Ok(creds.access_token)
}

/// Parses `url`, requiring https except to loopback.
fn parse_secure(url: &str) -> Result<Url, LoginError> {
    let insecure = || LoginError::Insecure {
        url: url.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|_| insecure())?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(insecure()),
    }
}

async fn send(url: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response, LoginError> {
    req.header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|source| LoginError::Unreachable {
            url: url.to_owned(),
            source,
        })
}

async fn json_of<T: serde::de::DeserializeOwned>(
    url: &str,
    resp: reqwest::Response,
) -> Result<T, LoginError> {
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .map_err(|source| LoginError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    if !(200..300).contains(&status) {
        return Err(LoginError::Unexpected {
            url: url.to_owned(),
            status,
            body,
        });
    }
    serde_json::from_str(&body).map_err(|e| LoginError::Unexpected {
        url: url.to_owned(),
        status,
        body: format!("not the expected JSON ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_allowed_only_to_loopback() {
        assert!(parse_secure("http://127.0.0.1:8080").is_ok());
        assert!(parse_secure("http://localhost:8080").is_ok());
        assert!(parse_secure("http://[::1]:8080").is_ok());
        assert!(parse_secure("https://gateway.example.com").is_ok());
        assert!(matches!(
            parse_secure("http://gateway.example.com"),
            Err(LoginError::Insecure { .. })
        ));
    }
}
