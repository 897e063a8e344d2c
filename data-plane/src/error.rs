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

use crate::budget::{CapReached, fetch_error_headers};
use crate::gateway::{ResponseBody, full_body};

/// How long a client is told to wait when the spend cap cannot be checked.
const SPEND_UNAVAILABLE_RETRY_AFTER_S: u64 = 60;

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
        if let Some(retry) = self.should_retry {
            let value = if retry { "true" } else { "false" };
            headers.insert("x-should-retry", HeaderValue::from_static(value));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests;
