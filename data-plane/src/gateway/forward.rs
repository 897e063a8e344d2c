//! OAuth and device-flow paths, forwarded to the control plane's HTTP listener so
//! developers use one base URL (the data plane's).

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

use super::{ClientAddr, Gateway, ResponseBody};
use crate::error::{ApiError, ErrorCode};
use crate::request::{BodyError, check_declared_length, read_body};
use crate::sign_in_limit::RetryAfter;
use crate::upstream::headers::is_hop_by_hop;

/// OAuth forms and the verification page are small.
const MAX_FORWARD_BYTES: usize = 64 * 1024;

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The paths the control plane serves: authorization-server metadata, everything under
/// `/oauth/`, and the device verification page.
pub(super) fn is_control_plane_path(path: &str) -> bool {
    path == "/.well-known/oauth-authorization-server"
        || path.starts_with("/oauth/")
        || path == "/device"
        || path.starts_with("/device/")
}

pub(super) async fn forward<B>(
    gateway: &Gateway,
    request: Request<B>,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(base) = gateway.side.control_plane_http_url.as_deref() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "sign-in is not enabled on this gateway",
        ));
    };
    if let Some(ClientAddr(peer)) = request.extensions().get::<ClientAddr>() {
        gateway
            .sign_in_limit
            .check(peer.ip())
            .map_err(|RetryAfter(secs)| {
                tracing::debug!(client = %peer.ip(), "sign-in rate limit reached");
                ApiError {
                    retry_after: Some(secs),
                    ..ApiError::new(
                        ErrorCode::RateLimited,
                        "too many sign-in requests from this address; retry later",
                    )
                }
            })?;
    }
    let (parts, body) = request.into_parts();
    check_declared_length(&parts.headers, MAX_FORWARD_BYTES).map_err(body_error)?;
    let body = read_body(body, MAX_FORWARD_BYTES)
        .await
        .map_err(body_error)?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let mut builder = Request::builder().method(parts.method.clone()).uri(&url);
    if let Some(headers) = builder.headers_mut() {
        for (name, value) in &parts.headers {
            if is_hop_by_hop(name.as_str())
                || name == HOST
                || name == CONTENT_LENGTH
                || name == X_FORWARDED_HOST
                || name == X_FORWARDED_FOR
                || name == X_FORWARDED_PROTO
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        // A proxy in front of the data plane (TLS termination) tells the scheme.
        let proto = parts
            .headers
            .get(X_FORWARDED_PROTO)
            .cloned()
            .unwrap_or(HeaderValue::from_static("http"));
        headers.insert(X_FORWARDED_PROTO, proto);
        let host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        if let Some(host) = host {
            headers.insert(X_FORWARDED_HOST, host);
        }
        let peer = parts
            .extensions
            .get::<ClientAddr>()
            .map(|a| a.0.ip().to_string());
        let prior = parts
            .headers
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let chain = match (prior, peer) {
            (Some(prior), Some(peer)) => Some(format!("{prior}, {peer}")),
            (Some(only), None) | (None, Some(only)) => Some(only),
            (None, None) => None,
        };
        if let Some(value) = chain.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    let outbound = builder
        .body(Full::new(body))
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "invalid request"))?;
    let response = gateway.side.client.send(outbound).await.map_err(|error| {
        tracing::warn!(%error, "control plane HTTP listener unreachable");
        ApiError::new(
            ErrorCode::BadGateway,
            "sign-in service unavailable; retry shortly",
        )
    })?;
    let (mut parts, body) = response.into_parts();
    let hop: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|n| is_hop_by_hop(n.as_str()))
        .cloned()
        .collect();
    for name in hop {
        parts.headers.remove(name);
    }
    let body = body.map_err(Into::into).boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

fn body_error(error: BodyError) -> ApiError {
    match error {
        BodyError::TooLarge { .. } => ApiError::new(ErrorCode::RequestTooLarge, error.to_string()),
        BodyError::Read(_) => ApiError::new(ErrorCode::InvalidRequest, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_control_plane_paths() {
        for path in [
            "/.well-known/oauth-authorization-server",
            "/oauth/token",
            "/oauth/device_authorization",
            "/oauth/revoke",
            "/oauth/callback",
            "/device",
        ] {
            assert!(is_control_plane_path(path), "{path}");
        }
        for path in ["/v1/messages", "/oauth", "/devices", "/api/oauth/usage"] {
            assert!(!is_control_plane_path(path), "{path}");
        }
    }
}
