//! Providers: where an authorized request is answered.
//!
//! Each provider kind is an adapter with three duties, called by the router
//! ([`crate::routing`]) once per attempt:
//! - `prepare`: turn the client's request into the provider's ([`Outbound`] → [`Prepared`]):
//!   URL, body dialect, headers, credential or signature;
//! - decode a successful answer into what an Anthropic client expects ([`Decode`]);
//! - map an error answer to the Anthropic envelope ([`UpstreamFailure`]), saying whether
//!   another target may succeed.
//!
//! The router owns failover, breakers, timeouts and metering; adapters never meter.

pub(crate) mod anthropic;
pub(crate) mod bedrock;
pub(crate) mod demo;
pub(crate) mod errors;
pub(crate) mod foundry;
pub(crate) mod secret;
pub(crate) mod vertex;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, RETRY_AFTER};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::time::SystemTime;

use tollgate_policy::{Provider, ProviderKind, Usage};

use crate::error::ApiError;
use crate::gateway::ResponseBody;
use crate::meter::{DrainPolicy, Meter, MeteredBody, UpstreamBody};
use crate::request::RequestFields;
use crate::upstream::UpstreamClient;
use crate::usage::PendingUsage;

pub use secret::CredentialReferences;
pub(crate) use secret::{SecretError, Secrets};

/// The Messages API endpoints a provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Messages,
    CountTokens,
}

impl Endpoint {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
        }
    }

    /// The name in usage records.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
        }
    }
}

/// One attempt's input: the client's request and the target's upstream model.
pub(crate) struct Outbound<'a> {
    pub endpoint: Endpoint,
    /// The client's request headers (hygiene is the adapter's job, see
    /// [`crate::upstream::headers`]).
    pub headers: &'a HeaderMap,
    /// The client's body, byte for byte.
    pub body: &'a Bytes,
    pub fields: &'a RequestFields<'a>,
    /// The model id the provider expects (Bedrock id or inference profile, Vertex id, Foundry
    /// deployment name, …).
    pub upstream_model: &'a str,
    /// Ask for an uncompressed answer: the meter must read the provider's usage report.
    pub identity_encoding: bool,
}

/// How a successful (2xx) answer becomes what the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decode {
    /// Already Anthropic-shaped (JSON or SSE): passed through.
    Passthrough,
    /// Bedrock InvokeModelWithResponseStream: AWS event stream → Anthropic SSE.
    BedrockEventStream,
    /// Bedrock CountTokens: `{"inputTokens": n}` → `{"input_tokens": n}`.
    BedrockCountTokens,
}

/// The request to send for one attempt.
pub(crate) struct Prepared {
    pub request: Request<Full<Bytes>>,
    pub decode: Decode,
}

/// Why a request could not be prepared for a target. Never a client mistake: the client's
/// body was validated before; this is configuration or credentials.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    #[error("provider credential unavailable: {0}")]
    Credential(#[from] SecretError),
    #[error("provider configuration is unusable: {0}")]
    Config(String),
    /// Getting a token failed (Vertex service-account exchange, …); may work on retry.
    #[error("provider token exchange failed: {0}")]
    Token(String),
}

/// What the client gets when this is the last attempt.
#[derive(Debug)]
pub(crate) enum ErrorReply {
    /// The provider's own Anthropic-shaped error, relayed as is (size and validation
    /// messages Claude Code's recovery reads).
    Verbatim {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// A gateway error in the Anthropic envelope (generic wording, same error type).
    Api(ApiError),
}

#[cfg(test)]
impl ErrorReply {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ErrorReply::Verbatim { status, .. } => *status,
            ErrorReply::Api(e) => e.code.status(),
        }
    }
}

/// An error answer from a provider, mapped.
#[derive(Debug)]
pub(crate) struct UpstreamFailure {
    pub reply: ErrorReply,
    /// Another target may succeed: 429, 500, 502, 503, 504, 529 (or the provider's
    /// equivalent), unless the provider said `x-should-retry: false`.
    pub retryable: bool,
    /// Seconds the provider asked callers to wait (`retry-after`): the target cools down.
    pub retry_after: Option<u64>,
    /// Short reason for logs and breaker reports, never provider text: `status 529`,
    /// `ThrottlingException`, …
    pub reason: String,
    /// Usage the error body reported (normally none).
    pub usage: Usage,
}

/// Statuses after which another target may succeed.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504 | 529)
}

const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// Retry hints from an upstream error's headers: `(retryable, retry_after_s)`.
/// `retryable` is `status_retryable` unless `x-should-retry` says otherwise.
pub(crate) fn retry_hints(status_retryable: bool, headers: &HeaderMap) -> (bool, Option<u64>) {
    let should_retry = headers
        .get(X_SHOULD_RETRY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let retryable = match should_retry {
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        _ => status_retryable,
    };
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    (retryable, retry_after)
}

/// State adapters share across requests: credential resolution and token caches.
#[derive(Debug)]
#[cfg_attr(test, derive(Default))]
pub(crate) struct ProviderRuntime {
    pub secrets: Secrets,
    pub vertex_tokens: vertex::TokenCache,
}

impl ProviderRuntime {
    pub(crate) fn new(references: CredentialReferences) -> Self {
        ProviderRuntime {
            secrets: Secrets::new(references),
            vertex_tokens: vertex::TokenCache::default(),
        }
    }
}

/// Builds the request for one attempt at `provider`.
pub(crate) async fn prepare(
    provider: &Provider,
    out: &Outbound<'_>,
    runtime: &ProviderRuntime,
    client: &UpstreamClient,
) -> Result<Prepared, PrepareError> {
    match &provider.kind {
        // The demo provider answers in process; the router never prepares it.
        ProviderKind::Demo => Err(PrepareError::Config("demo provider has no upstream".into())),
        ProviderKind::Anthropic(p) => anthropic::prepare(p, out, &runtime.secrets),
        ProviderKind::Bedrock(p) => bedrock::prepare(p, out, &runtime.secrets, SystemTime::now()),
        ProviderKind::Vertex(p) => {
            vertex::prepare(p, &provider.id, out, runtime, client, SystemTime::now()).await
        }
        ProviderKind::Foundry(p) => foundry::prepare(p, out, &runtime.secrets),
    }
}

/// Maps an error answer (status ≥ 400) from `provider`; `body` is the start of the error
/// body (bounded).
pub(crate) fn map_error(
    provider: &Provider,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> UpstreamFailure {
    match &provider.kind {
        ProviderKind::Bedrock(p) if p.api == tollgate_policy::BedrockApi::Invoke => {
            bedrock::map_error(status, headers, body)
        }
        ProviderKind::Vertex(_) => vertex::map_error(status, headers, body),
        _ => anthropic::map_error(status, headers, body),
    }
}

/// A 2xx answer's body as the client gets it.
pub(crate) fn decode(decode: Decode, body: UpstreamBody) -> UpstreamBody {
    match decode {
        Decode::Passthrough | Decode::BedrockCountTokens => body,
        Decode::BedrockEventStream => bedrock::decode_event_stream(body),
    }
}

/// A successful provider response: metered if the call is.
pub(crate) fn respond(
    drain: &DrainPolicy,
    status: StatusCode,
    headers: HeaderMap,
    body: UpstreamBody,
    pending: Option<PendingUsage>,
) -> Response<ResponseBody> {
    let body = match pending {
        Some(mut pending) => {
            pending.set_status(status.as_u16());
            let meter = Meter::for_content_type(headers.get(CONTENT_TYPE));
            MeteredBody::new(body, meter, pending, drain.clone()).boxed_unsync()
        }
        None => body,
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_hints_honour_x_should_retry_and_retry_after() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_hints(true, &h), (true, None));
        h.insert(X_SHOULD_RETRY, "false".parse().unwrap());
        h.insert(RETRY_AFTER, " 12 ".parse().unwrap());
        assert_eq!(retry_hints(true, &h), (false, Some(12)));
        h.insert(X_SHOULD_RETRY, "true".parse().unwrap());
        assert_eq!(retry_hints(false, &h), (true, Some(12)));
    }

    #[test]
    fn retryable_statuses_are_the_documented_set() {
        for s in [429, 500, 502, 503, 504, 529] {
            assert!(is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 408, 413, 424, 501] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }
}
