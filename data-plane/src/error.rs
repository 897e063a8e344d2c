//! The one error-code table: every error a client sees is an [`ErrorCode`] with a message.
//!
//! Each code maps once to an HTTP status and an Anthropic `error.type`, and errors are
//! rendered in Anthropic's envelope `{"type":"error","error":{"type":…,"message":…}}`.
//! Messages are written for the person at the client: they never carry internal details
//! (hostnames, provider ids, upstream error text that is not Anthropic's own).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::budget::HeaderList;
use crate::budget::{CapReached, fetch_error_headers};
use crate::gateway::{ResponseBody, full_body};
use crate::rate_limit::{
    RateLimited, UNAVAILABLE_MESSAGE, limited_headers, limited_message, unavailable_headers,
};

/// How long a client is told to wait when the spend cap cannot be checked.
const SPEND_UNAVAILABLE_RETRY_AFTER_S: u64 = 60;
/// How long a client is told to wait when its rate limits cannot be checked.
const RATE_LIMITS_UNAVAILABLE_RETRY_AFTER_S: u64 = 5;

const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// What went wrong, as far as the client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed body, missing field, model not available.
    InvalidRequest,
    /// Missing, unknown, expired or revoked credential.
    Unauthenticated,
    PermissionDenied,
    NotFound,
    MethodNotAllowed,
    RequestTooLarge,
    RateLimited,
    /// A spend cap is reached, or cannot be checked and the gateway fails closed.
    BudgetExceeded,
    /// The route's provider cannot answer this endpoint.
    NotSupported,
    Overloaded,
    /// The gateway cannot serve yet (no policy snapshot).
    Unavailable,
    /// The provider could not be reached or answered with a server error.
    BadGateway,
    /// The provider did not answer in time.
    GatewayTimeout,
    Internal,
}

impl ErrorCode {
    /// The HTTP status for this code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited | ErrorCode::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::NotSupported => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::Overloaded => overloaded_status(),
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorCode::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Anthropic's `error.type` for this code.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::MethodNotAllowed => "invalid_request_error",
            ErrorCode::Unauthenticated => "authentication_error",
            ErrorCode::PermissionDenied => "permission_error",
            ErrorCode::NotFound => "not_found_error",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::RateLimited => "rate_limit_error",
            ErrorCode::BudgetExceeded => "billing_error",
            ErrorCode::NotSupported => "not_supported",
            ErrorCode::Overloaded => "overloaded_error",
            // Anthropic's type for 504.
            ErrorCode::GatewayTimeout => "timeout_error",
            ErrorCode::Unavailable | ErrorCode::BadGateway | ErrorCode::Internal => "api_error",
        }
    }

    /// Whether clients should be told not to retry (`x-should-retry: false`).
    pub fn never_retry(self) -> bool {
        matches!(self, ErrorCode::NotSupported | ErrorCode::BudgetExceeded)
    }

    /// The code for an upstream error status whose body we do not pass through.
    pub fn for_upstream_status(status: StatusCode) -> ErrorCode {
        match status.as_u16() {
            400 | 422 => ErrorCode::InvalidRequest,
            404 => ErrorCode::NotFound,
            413 => ErrorCode::RequestTooLarge,
            429 => ErrorCode::RateLimited,
            529 => ErrorCode::Overloaded,
            504 => ErrorCode::GatewayTimeout,
            // 401/403 from the provider mean the gateway's own credential is refused:
            // a gateway problem, not the caller's.
            _ => ErrorCode::BadGateway,
        }
    }
}

/// A rate-limit refusal's extra headers: `retry-after` and `x-should-retry` are left to
/// the error's fields (so each is sent once, consistently); `retry-after-ms` is added when
/// missing.
fn retry_headers(headers: HeaderList, retry_after_ms: u64) -> HeaderList {
    let mut headers: HeaderList = headers
        .into_iter()
        .filter(|(name, _)| *name != RETRY_AFTER && *name != X_SHOULD_RETRY)
        .collect();
    if !headers.iter().any(|(name, _)| *name == RETRY_AFTER_MS) {
        headers.push((RETRY_AFTER_MS, HeaderValue::from(retry_after_ms)));
    }
    headers
}

/// Anthropic's non-standard "overloaded" status.
fn overloaded_status() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// An error on its way to becoming a client response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// Overrides the code's default for `x-should-retry`.
    pub should_retry: Option<bool>,
    /// Seconds, sent as `retry-after`.
    pub retry_after: Option<u64>,
    /// Further response headers (Claude Code's spend headers on a refusal).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            code,
            message: message.into(),
            should_retry: code.never_retry().then_some(false),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// `429 billing_error`: a spend cap is reached. Says which cap, how much and when it
    /// resets; carries the §D headers; never retried.
    pub(crate) fn spend_cap_reached(cap: &CapReached) -> Self {
        ApiError {
            retry_after: Some(cap.retry_after_s()),
            headers: cap.headers(),
            ..ApiError::new(ErrorCode::BudgetExceeded, cap.message()).no_retry()
        }
    }

    /// `429 billing_error` with `fetch_error`: the control plane cannot be asked, the
    /// leases are used up and the outage mode is `closed`.
    pub(crate) fn spend_unavailable() -> Self {
        ApiError {
            retry_after: Some(SPEND_UNAVAILABLE_RETRY_AFTER_S),
            headers: fetch_error_headers(),
            ..ApiError::new(
                ErrorCode::BudgetExceeded,
                "Tollgate cannot check your spend cap right now (control plane unreachable); \
                 try again in a minute.",
            )
            .no_retry()
        }
    }

    /// `429 rate_limit_error`: the limit `label` names (e.g. "group eng (per member)")
    /// cannot fit the request now. Carries `retry-after` (whole seconds, at least 1),
    /// `retry-after-ms` and the `anthropic-ratelimit-*` headers; retried unless the request
    /// can never fit the limit.
    pub(crate) fn rate_limited(limited: &RateLimited, label: &str, now_unix_ms: i64) -> Self {
        // 0 = unknown (a concurrency slot frees when a request ends): a second.
        let retry_after_ms = match limited.retry_after_ms {
            0 => 1000,
            ms => ms,
        };
        ApiError {
            code: ErrorCode::RateLimited,
            message: limited_message(limited, label).into(),
            should_retry: Some(!limited.never_fits),
            retry_after: Some(retry_after_ms.div_ceil(1000).max(1)),
            headers: retry_headers(limited_headers(limited, now_unix_ms), retry_after_ms),
        }
    }

    /// `429 rate_limit_error`: the control plane cannot be asked about the caller's rate
    /// limits and the outage mode is `closed` (or it refused the lease). Retried shortly.
    pub(crate) fn rate_limits_unavailable() -> Self {
        ApiError {
            should_retry: Some(true),
            retry_after: Some(RATE_LIMITS_UNAVAILABLE_RETRY_AFTER_S),
            headers: retry_headers(
                unavailable_headers(),
                RATE_LIMITS_UNAVAILABLE_RETRY_AFTER_S * 1000,
            ),
            ..ApiError::new(ErrorCode::RateLimited, UNAVAILABLE_MESSAGE)
        }
    }

    /// Marks the error as one the client must not retry.
    pub fn no_retry(mut self) -> Self {
        self.should_retry = Some(false);
        self
    }

    pub fn not_ready() -> Self {
        ApiError::new(
            ErrorCode::Unavailable,
            "gateway not ready: no policy snapshot yet",
        )
    }

    pub fn upstream_unreachable() -> Self {
        ApiError::new(ErrorCode::BadGateway, "upstream provider unreachable")
    }

    /// The envelope body: `{"type":"error","error":{"type":…,"message":…}}`.
    pub fn envelope(&self) -> Bytes {
        #[derive(Serialize)]
        struct Inner<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Envelope<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            error: Inner<'a>,
        }
        let envelope = Envelope {
            kind: "error",
            error: Inner {
                kind: self.code.error_type(),
                message: &self.message,
            },
        };
        // Serialising two string fields cannot fail; fall back to a fixed body regardless.
        serde_json::to_vec(&envelope).map_or_else(
            |_| {
                Bytes::from_static(
                    br#"{"type":"error","error":{"type":"api_error","message":"internal error"}}"#,
                )
            },
            Bytes::from,
        )
    }

    /// The full HTTP response (without `request-id`, which the gateway stamps on every response).
    pub fn into_response(self) -> Response<ResponseBody> {
        let mut response = Response::new(full_body(self.envelope()));
        *response.status_mut() = self.code.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        // The fields win over any extra header of the same name, so each is sent once.
        if let Some(retry) = self.should_retry {
            let value = if retry { "true" } else { "false" };
            headers.insert(X_SHOULD_RETRY, HeaderValue::from_static(value));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests;
