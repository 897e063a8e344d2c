//! Header hygiene between the client and the provider (protocol summary §E).
//!
//! Requests: an allowlist. Only `content-type`, `accept`, `accept-encoding`,
//! `anthropic-version`, `anthropic-beta`, `user-agent` and `x-stainless-*` go upstream, so the
//! client's credentials (`authorization`, `x-api-key`), `x-app`, `x-claude-code-*`,
//! `anthropic-dangerous-direct-browser-access` and hop-by-hop headers never do; the
//! provider credential is added. Responses: hop-by-hop headers and the provider's
//! `anthropic-ratelimit-*` are dropped, and so are headers naming the provider account
//! (`anthropic-organization-id`) or setting its cookies; its `request-id` becomes
//! `upstream-request-id`.

use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, CONNECTION, HeaderName, HeaderValue};

/// The provider's request id, renamed so ours can be `request-id`.
pub const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("upstream-request-id");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Whether a client request header is forwarded to the provider.
pub fn is_forwarded(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-type"
            | "accept"
            | "accept-encoding"
            | "anthropic-version"
            | "anthropic-beta"
            | "user-agent"
    ) || name.as_str().starts_with("x-stainless-")
}

/// The provider credential is not a valid header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("provider credential is not a valid header value")]
pub struct InvalidCredential;

/// The headers sent upstream for a client request, before the provider credential.
///
/// With `identity_encoding`, `accept-encoding` is replaced by `identity`: the meter must read
/// the provider's usage report, which it cannot do inside a compressed body.
pub fn forwarded_headers(client: &HeaderMap, identity_encoding: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(16);
    for (name, value) in client {
        if is_forwarded(name) {
            out.append(name.clone(), value.clone());
        }
    }
    if identity_encoding && out.contains_key(ACCEPT_ENCODING) {
        out.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
    out
}

/// The headers sent upstream for a client request, with the provider's API key as
/// `x-api-key`.
pub fn upstream_request_headers(
    client: &HeaderMap,
    provider_api_key: &str,
    identity_encoding: bool,
) -> Result<HeaderMap, InvalidCredential> {
    let mut out = forwarded_headers(client, identity_encoding);
    out.insert(X_API_KEY, sensitive_value(provider_api_key)?);
    Ok(out)
}

/// A credential as a header value, marked sensitive (hyper never logs or indexes it).
pub fn sensitive_value(credential: &str) -> Result<HeaderValue, InvalidCredential> {
    let mut value = HeaderValue::from_str(credential).map_err(|_| InvalidCredential)?;
    value.set_sensitive(true);
    Ok(value)
}

/// The client's `anthropic-beta` values, split on `,` and trimmed, without the
/// `request-tags-*` betas that Bedrock and Vertex reject.
pub fn cloud_betas(client: &HeaderMap) -> Vec<&str> {
    client
        .get_all(ANTHROPIC_BETA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty() && !b.starts_with("request-tags"))
        .collect()
}

pub const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Headers that identify the provider account or set provider cookies.
fn is_provider_private(name: &str) -> bool {
    matches!(name, "anthropic-organization-id" | "set-cookie")
}

/// The provider's response headers as the client gets them (our `request-id` is added by
/// the gateway on every response).
pub fn client_response_headers(upstream: &HeaderMap) -> HeaderMap {
    let listed_in_connection = |name: &str| {
        upstream.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(name)))
        })
    };
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        let n = name.as_str();
        if is_hop_by_hop(n)
            || n.starts_with("anthropic-ratelimit-")
            || is_provider_private(n)
            || listed_in_connection(n)
        {
            continue;
        }
        if name == REQUEST_ID {
            out.append(UPSTREAM_REQUEST_ID, value.clone());
        } else {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
