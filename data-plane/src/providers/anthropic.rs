//! Anthropic Messages API upstreams: pass-through.
//!
//! The body goes upstream byte for byte (only the model string is replaced when the route
//! names a different upstream model); headers follow the hygiene rules in
//! [`crate::upstream::headers`]. Anthropic's own 400/413 errors reach the client verbatim
//! (its recovery keys on their messages); anything else becomes a generic error of the
//! same kind, so provider details never leak. Foundry and bedrock-mantle reuse these pieces.

use std::borrow::Cow;

use bytes::Bytes;
#[cfg(test)]
use http::header::RETRY_AFTER;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use serde::Deserialize;
use tollgate_policy::{AnthropicProvider, Usage};

use super::secret::expose;
use super::{
    Decode, ErrorReply, Outbound, PrepareError, Prepared, Secrets, UpstreamFailure,
    is_retryable_status, retry_hints,
};
use crate::error::{ApiError, ErrorCode};
use crate::meter::JsonUsageCollector;
use crate::request::splice_model;
use crate::upstream::headers::{client_response_headers, upstream_request_headers};

/// The request body with the model the target expects (every other byte unchanged).
pub(crate) fn body_for(out: &Outbound<'_>) -> Result<Bytes, PrepareError> {
    if out.upstream_model == out.fields.model {
        return Ok(out.body.clone());
    }
    splice_model(out.body, out.fields.model_span.clone(), out.upstream_model)
        .ok_or_else(|| PrepareError::Config("request body cannot be rewritten".into()))
}

/// A POST of `body` to `url` with `headers`.
pub(crate) fn post(
    url: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, PrepareError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| PrepareError::Config("provider URL is invalid".into()))?;
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

pub(crate) fn prepare(
    provider: &AnthropicProvider,
    out: &Outbound<'_>,
    secrets: &Secrets,
) -> Result<Prepared, PrepareError> {
    let key = secrets.resolve(&provider.api_key)?;
    let headers = upstream_request_headers(out.headers, expose(&key), out.identity_encoding)
        .map_err(|_| PrepareError::Config("provider credential is not a valid header".into()))?;
    let url = format!("{}{}", provider.base_url, out.endpoint.path());
    Ok(Prepared {
        request: post(&url, headers, body_for(out)?)?,
        decode: Decode::Passthrough,
    })
}

/// Maps an Anthropic-shaped provider's error (Anthropic, Foundry, bedrock-mantle): 400 and
/// 413 in Anthropic's envelope verbatim (Claude Code's recovery reads them), everything else
/// a generic error of the same kind, so provider details (organisation ids in rate-limit
/// messages, credential problems) never leak. 401/403 are the gateway's credential problem
/// and become 502.
pub(crate) fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamFailure {
    let (retryable, retry_after) = retry_hints(is_retryable_status(status), headers);
    let verbatim = matches!(status.as_u16(), 400 | 413) && is_anthropic_error(body);
    let (reply, usage) = if verbatim {
        let mut collector = JsonUsageCollector::new();
        collector.feed(body);
        let reply = ErrorReply::Verbatim {
            status,
            headers: client_response_headers(headers),
            body: Bytes::copy_from_slice(body),
        };
        (reply, collector.finish().usage)
    } else {
        let mut error = generic_error(status);
        error.retry_after = retry_after;
        (ErrorReply::Api(error), Usage::default())
    };
    UpstreamFailure {
        reply,
        retryable,
        retry_after,
        reason: format!("status {}", status.as_u16()),
        usage,
    }
}

/// A generic error of the kind `status` stands for.
pub(crate) fn generic_error(status: StatusCode) -> ApiError {
    let code = ErrorCode::for_upstream_status(status);
    let message = match code {
        ErrorCode::RateLimited => "upstream provider rate limit reached; retry later",
        ErrorCode::Overloaded => "upstream provider is overloaded",
        ErrorCode::GatewayTimeout => "upstream provider timed out",
        ErrorCode::BadGateway if matches!(status.as_u16(), 401 | 403) => {
            "upstream provider rejected the gateway's credentials"
        }
        ErrorCode::BadGateway => "upstream provider error",
        ErrorCode::NotFound => "upstream provider does not know this model",
        ErrorCode::RequestTooLarge => "request too large for the upstream provider",
        _ => "upstream provider rejected the request",
    };
    ApiError::new(code, message)
}

/// `{"type":"error","error":{"type":…,"message":…}}`
pub(crate) fn is_anthropic_error(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Inner<'a> {
        #[serde(rename = "type", borrow)]
        _kind: Cow<'a, str>,
        #[serde(rename = "message", borrow)]
        _message: Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(rename = "error", borrow)]
        _error: Inner<'a>,
    }
    serde_json::from_slice::<Envelope<'_>>(body).is_ok_and(|e| e.kind == "error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_anthropic_error_envelopes() {
        assert!(is_anthropic_error(
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"},"request_id":"req_1"}"#
        ));
        assert!(!is_anthropic_error(
            br#"{"type":"error","error":{"type":"x"}}"#
        ));
        assert!(!is_anthropic_error(br#"{"error":"bad"}"#));
        assert!(!is_anthropic_error(b"<html>"));
    }

    #[test]
    fn size_and_validation_errors_pass_verbatim_others_become_generic() {
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#;
        let f = map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
        assert!(matches!(f.reply, ErrorReply::Verbatim { .. }));
        assert!(!f.retryable);

        let limited = br#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization (1234-abcd)"}}"#;
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        let f = map_error(StatusCode::TOO_MANY_REQUESTS, &headers, limited);
        let ErrorReply::Api(e) = &f.reply else {
            panic!("expected a generic error")
        };
        assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(7)));
        assert!(!e.message.contains("organization"));
        assert!(f.retryable);
        assert_eq!(f.retry_after, Some(7));

        let f = map_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b"{}");
        assert_eq!(f.reply.status(), StatusCode::BAD_GATEWAY);
        assert!(!f.retryable);
    }
}
