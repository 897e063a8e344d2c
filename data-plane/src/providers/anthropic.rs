//! Anthropic Messages API upstreams: pass-through.
//!
//! The body goes upstream byte for byte (only the model string is replaced when the route
//! names a different upstream model); headers follow the hygiene rules in
//! [`crate::upstream::headers`]. Anthropic's own 4xx errors reach the client verbatim
//! (its recovery keys on their messages); anything else becomes a generic error of the
//! same kind, so provider details never leak.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tollgate_policy::Usage;

use super::ProviderCall;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::{Gateway, ResponseBody, full_body};
use crate::meter::{DrainPolicy, JsonUsageCollector};
use crate::request::{read_body, splice_model};
use crate::upstream::headers::{client_response_headers, upstream_request_headers};
use crate::upstream::{UpstreamClient, UpstreamError};
use crate::usage::{Outcome, PendingUsage};

/// Upstream error bodies are read whole up to this size.
const ERROR_BODY_MAX: usize = 1 << 20;

pub(crate) async fn forward(
    gateway: &Gateway,
    mut call: ProviderCall<'_>,
    base_url: &str,
    api_key: &SecretString,
) -> Result<Response<ResponseBody>, ApiError> {
    let pending = call.pending.take();
    let request = match build_request(&call, base_url, api_key, pending.is_some()) {
        Ok(request) => request,
        Err(error) => return Err(fail(pending, error, Outcome::UpstreamError)),
    };
    let exchange = Exchange {
        upstream: gateway.upstream.clone(),
        drain: gateway.drain.clone(),
        request_id: call.request_id.to_owned(),
        provider_id: call.target.provider.id.clone(),
    };
    let Some(pending) = pending else {
        return exchange.run(request, None).await;
    };
    // A metered exchange runs on its own (tracked) task: if the client leaves before the
    // answer starts, the upstream call is not cancelled with it, and the answer — which the
    // provider bills — is still read and metered (see `meter::body`).
    let task = gateway
        .drain
        .tracker
        .spawn(exchange.run(request, Some(pending)));
    task.await
        .unwrap_or_else(|_| Err(ApiError::new(ErrorCode::Internal, "internal error")))
}

/// One request/response with the provider, owning everything it needs.
struct Exchange {
    upstream: UpstreamClient,
    drain: DrainPolicy,
    request_id: String,
    provider_id: String,
}

impl Exchange {
    async fn run(
        self,
        request: Request<Full<Bytes>>,
        pending: Option<PendingUsage>,
    ) -> Result<Response<ResponseBody>, ApiError> {
        let stopping = self.drain.stopping();
        let sent = tokio::select! {
            sent = self.upstream.send(request) => sent,
            () = stopping => {
                let error = ApiError::new(ErrorCode::Unavailable, "gateway is shutting down");
                return Err(fail(pending, error, Outcome::Truncated));
            }
        };
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(
                    request_id = self.request_id,
                    provider_id = self.provider_id,
                    %error,
                    "upstream request failed"
                );
                let api_error = match error {
                    UpstreamError::Timeout(_) => ApiError::new(
                        ErrorCode::GatewayTimeout,
                        "upstream provider did not respond in time",
                    ),
                    UpstreamError::Request(_) => ApiError::upstream_unreachable(),
                };
                return Err(fail(pending, api_error, Outcome::UpstreamError));
            }
        };
        let (parts, body) = response.into_parts();
        let headers = client_response_headers(&parts.headers);
        if parts.status.is_client_error() || parts.status.is_server_error() {
            return Ok(self.relay_error(parts.status, headers, body, pending).await);
        }
        let body = body.map_err(Into::into).boxed_unsync();
        Ok(super::respond(
            &self.drain,
            parts.status,
            headers,
            body,
            pending,
        ))
    }

    /// An upstream error response: Anthropic's own 4xx envelope verbatim, otherwise a
    /// generic error of the same kind. Credential refusals (401/403) are the gateway's
    /// problem, not the caller's, and become 502.
    async fn relay_error(
        &self,
        status: StatusCode,
        headers: HeaderMap,
        body: Incoming,
        pending: Option<PendingUsage>,
    ) -> Response<ResponseBody> {
        let read = read_body(body, ERROR_BODY_MAX);
        let bytes = tokio::time::timeout(self.upstream.first_byte_timeout(), read)
            .await
            .ok()
            .and_then(Result::ok);
        let verbatim = status.is_client_error()
            && !matches!(status.as_u16(), 401 | 403)
            && bytes.as_deref().is_some_and(is_anthropic_error);
        let (response, usage) = match bytes {
            Some(bytes) if verbatim => {
                let mut collector = JsonUsageCollector::new();
                collector.feed(&bytes);
                let mut response = Response::new(full_body(bytes));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                (response, collector.finish().usage)
            }
            _ => {
                tracing::warn!(
                    request_id = self.request_id,
                    provider_id = self.provider_id,
                    status = status.as_u16(),
                    "upstream error replaced by a generic one"
                );
                let response = generic_error(status, &headers).into_response();
                (response, Usage::default())
            }
        };
        if let Some(mut pending) = pending {
            pending.set_status(response.status().as_u16());
            pending.finish(&usage, Outcome::UpstreamError);
        }
        response
    }
}

fn build_request(
    call: &ProviderCall<'_>,
    base_url: &str,
    api_key: &SecretString,
    metered: bool,
) -> Result<Request<Full<Bytes>>, ApiError> {
    let misconfigured =
        || ApiError::new(ErrorCode::BadGateway, "upstream provider is misconfigured");
    let body = if call.target.upstream_model == call.fields.model {
        call.body.clone()
    } else {
        splice_model(
            call.body,
            call.fields.model_span.clone(),
            &call.target.upstream_model,
        )
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "internal error"))?
    };
    let uri: Uri = format!("{base_url}{}", call.endpoint.path())
        .parse()
        .map_err(|_| misconfigured())?;
    let headers = upstream_request_headers(call.headers, api_key.expose_secret(), metered)
        .map_err(|_| misconfigured())?;
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Records a failed metered call (no tokens) and passes the error on.
fn fail(pending: Option<PendingUsage>, error: ApiError, outcome: Outcome) -> ApiError {
    if let Some(mut pending) = pending {
        pending.set_status(error.code.status().as_u16());
        pending.finish(&Usage::default(), outcome);
    }
    error
}

fn generic_error(status: StatusCode, headers: &HeaderMap) -> ApiError {
    let code = ErrorCode::for_upstream_status(status);
    let message = match code {
        ErrorCode::RateLimited => "upstream provider rate limit reached; retry later",
        ErrorCode::Overloaded => "upstream provider is overloaded",
        ErrorCode::GatewayTimeout => "upstream provider timed out",
        ErrorCode::BadGateway if matches!(status.as_u16(), 401 | 403) => {
            "upstream provider rejected the gateway's credentials"
        }
        ErrorCode::BadGateway => "upstream provider error",
        _ => "upstream provider rejected the request",
    };
    let mut error = ApiError::new(code, message);
    error.retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    error
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
    fn generic_errors_keep_the_kind_and_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        let e = generic_error(StatusCode::TOO_MANY_REQUESTS, &headers);
        assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(7)));
        let e = generic_error(StatusCode::UNAUTHORIZED, &HeaderMap::new());
        assert_eq!(e.code.status(), StatusCode::BAD_GATEWAY);
        assert!(!e.message.contains("401"));
    }
}
