//! Bedrock errors → Anthropic errors (providers-wire §2.5, §2.6).
//!
//! Before the stream: an HTTP status, `x-amzn-ErrorType: Code:namespace` (or `__type` /
//! `code` in the body) and `{"message": …}`. In the stream: exception frames
//! (`:exception-type`, JSON payload) and error frames (`:error-code`). Both map through
//! [`Exception`]; provider text reaches the client only for validation errors and only when
//! [`safe_message`] lets it (account ids, ARNs never do).

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use serde::Deserialize;
use tollgate_policy::Usage;

use super::super::errors::{is_prompt_too_long, prompt_too_long_message, safe_message};
use super::super::{ErrorReply, UpstreamFailure, anthropic, is_retryable_status, retry_hints};
use crate::error::{ApiError, ErrorCode};

const X_AMZN_ERRORTYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

const RATE_LIMITED: &str = "upstream provider rate limit reached; retry later";
const OVERLOADED: &str = "upstream provider is overloaded";
const REJECTED: &str = "upstream provider rejected the request";
const TIMED_OUT: &str = "upstream provider timed out";
const PROVIDER_ERROR: &str = "upstream provider error";
const BAD_CREDENTIALS: &str = "upstream provider rejected the gateway's credentials";
const UNKNOWN_MODEL: &str = "upstream provider does not know this model";
const TOO_LARGE: &str = "request too large for the upstream provider";

/// The Bedrock exceptions (service model names; event-stream names start lower-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exception {
    Validation,
    ServiceQuotaExceeded,
    AccessDenied,
    /// InvalidSignature, UnrecognizedClient, ExpiredToken, …: the gateway's credential.
    Credentials,
    ResourceNotFound,
    ModelTimeout,
    ModelError,
    ModelStreamError,
    Throttling,
    ModelNotReady,
    InternalServer,
    ServiceUnavailable,
    Other,
}

impl Exception {
    pub(super) fn from_name(name: &str) -> Exception {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("ValidationException") {
            Exception::Validation
        } else if is("ServiceQuotaExceededException") {
            Exception::ServiceQuotaExceeded
        } else if is("AccessDeniedException") {
            Exception::AccessDenied
        } else if is("InvalidSignatureException")
            || is("UnrecognizedClientException")
            || is("ExpiredTokenException")
            || is("IncompleteSignatureException")
            || is("MissingAuthenticationTokenException")
            || is("InvalidClientTokenId")
            || is("UnauthorizedException")
        {
            Exception::Credentials
        } else if is("ResourceNotFoundException") {
            Exception::ResourceNotFound
        } else if is("ModelTimeoutException") {
            Exception::ModelTimeout
        } else if is("ModelErrorException") {
            Exception::ModelError
        } else if is("ModelStreamErrorException") {
            Exception::ModelStreamError
        } else if is("ThrottlingException") || is("TooManyRequestsException") {
            Exception::Throttling
        } else if is("ModelNotReadyException") {
            Exception::ModelNotReady
        } else if is("InternalServerException") || is("InternalFailure") {
            Exception::InternalServer
        } else if is("ServiceUnavailableException") || is("ServiceUnavailable") {
            Exception::ServiceUnavailable
        } else {
            Exception::Other
        }
    }

    /// The client's error for this exception; `original_status` is the model's own status
    /// (`originalStatusCode` of ModelStream/ModelError exceptions).
    fn code(self, original_status: Option<u16>, status: StatusCode) -> ErrorCode {
        match self {
            Exception::Validation => ErrorCode::InvalidRequest,
            Exception::ServiceQuotaExceeded | Exception::Throttling => ErrorCode::RateLimited,
            Exception::AccessDenied | Exception::Credentials => ErrorCode::BadGateway,
            Exception::ResourceNotFound => ErrorCode::NotFound,
            Exception::ModelTimeout => ErrorCode::GatewayTimeout,
            Exception::ModelNotReady | Exception::ServiceUnavailable => ErrorCode::Overloaded,
            Exception::ModelError | Exception::ModelStreamError => match original_status {
                Some(529) => ErrorCode::Overloaded,
                Some(429) => ErrorCode::RateLimited,
                _ => ErrorCode::Internal,
            },
            Exception::InternalServer => ErrorCode::Internal,
            Exception::Other => ErrorCode::for_upstream_status(status),
        }
    }

    /// Whether another target may succeed, before `x-should-retry` has its say.
    fn retryable(self, original_status: Option<u16>, status: StatusCode) -> bool {
        match self {
            Exception::Throttling
            | Exception::ServiceQuotaExceeded
            | Exception::ModelNotReady
            | Exception::ServiceUnavailable
            | Exception::InternalServer
            | Exception::ModelTimeout
            | Exception::ModelStreamError => true,
            Exception::ModelError => original_status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .is_some_and(is_retryable_status),
            Exception::Validation
            | Exception::AccessDenied
            | Exception::Credentials
            | Exception::ResourceNotFound => false,
            Exception::Other => is_retryable_status(status),
        }
    }
}

/// The fields Bedrock error bodies and exception payloads carry.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody<'a> {
    #[serde(borrow, default, alias = "Message")]
    pub message: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "__type")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub code: Option<Cow<'a, str>>,
    #[serde(default, rename = "originalStatusCode")]
    pub original_status_code: Option<u16>,
}

impl<'a> ErrorBody<'a> {
    pub(super) fn parse(body: &'a [u8]) -> ErrorBody<'a> {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// `ThrottlingException:http://internal.amazon.com/…` → `ThrottlingException`;
/// `com.amazon.coral.validate#ValidationException` → `ValidationException`.
fn exception_name(raw: &str) -> &str {
    let before_colon = raw.split(':').next().unwrap_or(raw);
    before_colon
        .rsplit('#')
        .next()
        .unwrap_or(before_colon)
        .trim()
}

/// A name fit for logs: letters and digits only, bounded.
fn reason_name(name: &str) -> Option<String> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| name.to_owned())
}

/// The client's message for a validation error: Claude Code's "prompt is too long" wording
/// for context overflow, the provider's text when it names nothing private, else generic.
fn validation_message(message: Option<&str>) -> Cow<'static, str> {
    match message {
        Some(m) if is_prompt_too_long(m) => Cow::Owned(prompt_too_long_message(m)),
        Some(m) => safe_message(m).map_or(Cow::Borrowed(REJECTED), |m| Cow::Owned(m.to_owned())),
        None => Cow::Borrowed(REJECTED),
    }
}

/// Generic wording for an error code.
fn generic_message(code: ErrorCode, exception: Exception) -> &'static str {
    match (code, exception) {
        (_, Exception::AccessDenied | Exception::Credentials) => BAD_CREDENTIALS,
        (ErrorCode::RateLimited, _) => RATE_LIMITED,
        (ErrorCode::Overloaded, _) => OVERLOADED,
        (ErrorCode::GatewayTimeout, _) => TIMED_OUT,
        (ErrorCode::NotFound, _) => UNKNOWN_MODEL,
        (ErrorCode::RequestTooLarge, _) => TOO_LARGE,
        (ErrorCode::InvalidRequest, _) => REJECTED,
        _ => PROVIDER_ERROR,
    }
}

/// Maps a Bedrock error answer (status ≥ 400 before any stream).
pub(super) fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamFailure {
    let parsed = ErrorBody::parse(body);
    let header_code = headers
        .get(X_AMZN_ERRORTYPE)
        .and_then(|v| v.to_str().ok())
        .map(exception_name)
        .filter(|n| !n.is_empty());
    let body_code = parsed
        .kind
        .as_deref()
        .or(parsed.code.as_deref())
        .map(exception_name)
        .filter(|n| !n.is_empty());
    let Some(name) = header_code.or(body_code) else {
        // Not a Bedrock error document: a proxy's page, or an Anthropic-shaped error
        // (relayed verbatim for 400/413 as for any Anthropic upstream).
        return anthropic::map_error(status, headers, body);
    };
    let exception = Exception::from_name(name);
    let original = parsed.original_status_code;

    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorCode::RequestTooLarge
    } else {
        exception.code(original, status)
    };
    let mut error = if code == ErrorCode::InvalidRequest {
        ApiError::new(code, validation_message(parsed.message.as_deref()))
    } else if exception == Exception::Other && code != ErrorCode::RequestTooLarge {
        anthropic::generic_error(status)
    } else {
        ApiError::new(code, generic_message(code, exception))
    };
    let status_retryable = is_retryable_status(status) || exception.retryable(original, status);
    let status_retryable = status_retryable && code != ErrorCode::InvalidRequest;
    let (retryable, retry_after) = retry_hints(status_retryable, headers);

    if matches!(code, ErrorCode::RateLimited | ErrorCode::Overloaded) {
        error.retry_after = retry_after;
    }
    UpstreamFailure {
        reply: ErrorReply::Api(error),
        retryable,
        retry_after,
        reason: reason_name(name).unwrap_or_else(|| format!("status {}", status.as_u16())),
        usage: Usage::default(),
    }
}

/// An exception or error frame in the stream, as an Anthropic `(error.type, message)`.
pub(super) fn stream_error(name: &str, payload: &[u8]) -> (&'static str, Cow<'static, str>) {
    let parsed = ErrorBody::parse(payload);
    let exception = Exception::from_name(exception_name(name));
    let error_type = match exception {
        Exception::Validation => "invalid_request_error",
        Exception::Throttling | Exception::ServiceQuotaExceeded => "rate_limit_error",
        Exception::ServiceUnavailable | Exception::ModelNotReady => "overloaded_error",
        Exception::ModelTimeout => "timeout_error",
        Exception::ModelStreamError | Exception::ModelError => match parsed.original_status_code {
            Some(529) => "overloaded_error",
            Some(429) => "rate_limit_error",
            _ => "api_error",
        },
        Exception::AccessDenied
        | Exception::Credentials
        | Exception::ResourceNotFound
        | Exception::InternalServer
        | Exception::Other => "api_error",
    };
    let message = match error_type {
        "invalid_request_error" => validation_message(parsed.message.as_deref()),
        "rate_limit_error" => Cow::Borrowed(RATE_LIMITED),
        "overloaded_error" => Cow::Borrowed(OVERLOADED),
        "timeout_error" => Cow::Borrowed(TIMED_OUT),
        _ => Cow::Borrowed(PROVIDER_ERROR),
    };
    (error_type, message)
}

/// The SSE `error` event for a stream that could not be decoded.
pub(super) fn corrupted_stream_event() -> Bytes {
    crate::relay::sse_error_event("api_error", "upstream stream was corrupted")
}

/// The SSE `error` event for a stream that ended inside a message.
pub(super) fn truncated_stream_event() -> Bytes {
    crate::relay::sse_error_event(
        "api_error",
        "upstream stream ended in the middle of an event",
    )
}
