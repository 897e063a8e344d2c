//! OAuth endpoints: RFC 8414 metadata, RFC 8628 device authorization, the token endpoint
//! (device code and refresh grants) and RFC 7009 revocation. Errors are
//! `{"error", "error_description"}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::json;
use tracing::error;

use super::{AppState, form};
use crate::identity::{OAuthError, TokenSet};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub(super) async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = state.base_url(&headers);
    no_store(Json(json!({
        "issuer": base,
        "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
        "token_endpoint": format!("{base}/oauth/token"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "grant_types_supported": [DEVICE_GRANT, "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
    })))
}

/// `surface=claude_code` is expected but not required; every parameter is ignored.
pub(super) async fn device_authorization(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    let base = state.base_url(&headers);
    match state.identity.authorize_device().await {
        Ok(auth) => no_store(Json(json!({
            "device_code": auth.device_code.expose_secret(),
            "user_code": auth.user_code,
            "verification_uri": format!("{base}/device"),
            "verification_uri_complete": format!("{base}/device?user_code={}", auth.user_code),
            "expires_in": auth.expires_in,
            "interval": auth.interval,
        }))),
        Err(err) => oauth_error(StatusCode::OK, OAuthError::Internal(err)),
    }
}

pub(super) async fn token(State(state): State<AppState>, body: Bytes) -> Response {
    let fields = form(&body);
    match fields.get("grant_type").map(String::as_str) {
        Some(DEVICE_GRANT) => {
            let Some(code) = fields.get("device_code").filter(|c| !c.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    OAuthError::InvalidRequest("device_code is required"),
                );
            };
            tokens(
                state.identity.poll_device(code).await,
                StatusCode::BAD_REQUEST,
            )
        }
        Some("refresh_token") => {
            let Some(refresh) = fields.get("refresh_token").filter(|c| !c.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    OAuthError::InvalidRequest("refresh_token is required"),
                );
            };
            // `invalid_grant` on refresh is a 401: it sends Claude Code back to /login.
            tokens(
                state.identity.refresh(refresh).await,
                StatusCode::UNAUTHORIZED,
            )
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, OAuthError::UnsupportedGrantType),
    }
}

/// RFC 7009: 200 whether or not the token was known.
pub(super) async fn revoke(State(state): State<AppState>, body: Bytes) -> Response {
    let fields = form(&body);
    let Some(token) = fields.get("token").filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            OAuthError::InvalidRequest("token is required"),
        );
    };
    match state.identity.revoke_token(token).await {
        Ok(()) => no_store(StatusCode::OK),
        Err(err) => oauth_error(StatusCode::OK, OAuthError::Internal(err)),
    }
}

fn tokens(result: Result<TokenSet, OAuthError>, invalid_grant_status: StatusCode) -> Response {
    match result {
        Ok(set) => no_store(Json(json!({
            "access_token": set.access_token.expose_secret(),
            "token_type": "Bearer",
            "expires_in": set.expires_in,
            "refresh_token": set.refresh_token.expose_secret(),
            "email": set.email,
        }))),
        Err(err @ OAuthError::InvalidGrant(_)) => oauth_error(invalid_grant_status, err),
        Err(err) => oauth_error(StatusCode::BAD_REQUEST, err),
    }
}

/// An OAuth error body; server-side failures are logged and answered generically (500/503),
/// whatever `status` the caller suggested.
fn oauth_error(status: StatusCode, err: OAuthError) -> Response {
    let status = match &err {
        OAuthError::Internal(source) => {
            error!(error = %crate::error_report::Report(source), "identity request failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        OAuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => status,
    };
    let mut response = (
        status,
        Json(json!({"error": err.code(), "error_description": err.to_string()})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
