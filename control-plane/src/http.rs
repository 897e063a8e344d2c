//! The control plane's HTTP listener: the OAuth device-flow endpoints Claude Code talks to
//! (`/.well-known/oauth-authorization-server`, `/oauth/*`), the verification page (`/device`)
//! and the IdP redirect (`/oauth/callback`). Data planes forward these paths unchanged, adding
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-For`, so developers use one base
//! URL.

mod oauth;
mod page;

use std::net::SocketAddr;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::identity::Identity;

/// Shared state of every handler.
#[derive(Clone)]
struct AppState {
    identity: Identity,
    /// The gateway's external base URL, when configured.
    public_url: Option<String>,
}

impl AppState {
    /// The absolute base URL clients reach the gateway at: the configured public URL, else the
    /// forwarded (or direct) scheme and host of this request.
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let proto = header("x-forwarded-proto")
            .filter(|p| *p == "http" || *p == "https")
            .unwrap_or("http");
        let host = header("x-forwarded-host")
            .or_else(|| header("host"))
            .filter(|h| {
                h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            })
            .unwrap_or("localhost");
        format!("{proto}://{host}")
    }
}

/// The client's IP: the last `X-Forwarded-For` entry (added by the data plane, which is the
/// only peer this listener should have), else the peer address.
fn client_ip(headers: &HeaderMap, peer: SocketAddr) -> String {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty())
        .map_or_else(|| peer.ip().to_string(), str::to_owned)
}

fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        .route(
            "/oauth/device_authorization",
            post(oauth::device_authorization),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/oauth/callback", get(page::callback))
        .route("/device", get(page::show).post(page::confirm))
        .with_state(state)
}

/// Serves the identity endpoints on `listener` until `stop` is cancelled.
pub(crate) fn spawn_http_server(
    listener: TcpListener,
    identity: Identity,
    public_url: Option<String>,
    stop: CancellationToken,
) -> JoinHandle<Result<(), std::io::Error>> {
    let app = router(AppState {
        identity,
        public_url,
    });
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    })
}

/// Parses an `application/x-www-form-urlencoded` body (whatever the content type says);
/// the first value of each name wins, unknown names are kept and ignored by callers.
fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        fields
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_is_the_last_forwarded_entry() {
        let peer: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(client_ip(&headers, peer), "10.0.0.1");
        headers.insert("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        assert_eq!(client_ip(&headers, peer), "2.2.2.2");
    }
}
