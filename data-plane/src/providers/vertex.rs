//! Google Vertex AI (Anthropic publisher models).
//!
//! Requests go to `…/publishers/anthropic/models/{model}:rawPredict` (JSON) or
//! `:streamRawPredict` (SSE, `"stream": true` kept in the body), count tokens to
//! `…/models/count-tokens:rawPredict` with the model in the body. The body loses `model`
//! (except for count tokens) and the top-level `tags` Vertex rejects, and gets the provider's
//! `anthropic_version` dialect (never the client's header value); every other byte is kept.
//! `anthropic-beta` stays a header, without the `request-tags-…` beta. Credentials are an
//! OAuth2 bearer: a static token, or one from the service-account JWT-bearer exchange
//! ([`token`]), cached and refreshed before it expires.
//!
//! Errors come in two shapes: Google's `{"error":{"code","message","status"}}` (auth, quota,
//! routing; sometimes wrapped in a JSON array) — mapped by `status` and never relayed unless
//! the message is safe (they name projects) — and Anthropic's own, handled like Anthropic's.

mod token;

use std::borrow::Cow;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use tollgate_policy::{Usage, VertexAuth, VertexProvider};

use super::anthropic::{self, generic_error, is_anthropic_error, post};
use super::errors::{is_prompt_too_long, prompt_too_long_message, safe_message};
use super::secret::expose;
use super::{
    Decode, Endpoint, ErrorReply, Outbound, PrepareError, Prepared, ProviderRuntime,
    UpstreamFailure, retry_hints,
};
use crate::error::{ApiError, ErrorCode};
use crate::request::edit::{TopLevel, raw_string};
use crate::upstream::UpstreamClient;
use crate::upstream::headers::{ANTHROPIC_BETA, cloud_betas, forwarded_headers, sensitive_value};

pub(crate) use token::TokenCache;

/// Builds a rawPredict / streamRawPredict / count-tokens request with a bearer token.
pub(crate) async fn prepare(
    provider: &VertexProvider,
    provider_id: &str,
    out: &Outbound<'_>,
    runtime: &ProviderRuntime,
    client: &UpstreamClient,
    now: SystemTime,
) -> Result<Prepared, PrepareError> {
    // Everything that cannot fail on the network first: no token exchange for a request
    // that cannot be sent anyway.
    let url = url(provider, out)?;
    let body = body(provider, out)?;
    let token = access_token(provider, provider_id, runtime, client, now).await?;
    let headers = headers(out.headers, out.identity_encoding, &token)?;
    Ok(Prepared {
        request: post(&url, headers, body)?,
        decode: Decode::Passthrough,
    })
}

async fn access_token(
    provider: &VertexProvider,
    provider_id: &str,
    runtime: &ProviderRuntime,
    client: &UpstreamClient,
    now: SystemTime,
) -> Result<SecretString, PrepareError> {
    match &provider.auth {
        // File references are re-read by `Secrets` when the file changes (an external
        // refresher rewrites it).
        VertexAuth::Token(source) => Ok(runtime.secrets.resolve(source)?),
        VertexAuth::ServiceAccount {
            key_json,
            token_uri,
        } => {
            let key = runtime.secrets.resolve(key_json)?;
            runtime
                .vertex_tokens
                .token(provider_id, &key, token_uri.as_deref(), client, now)
                .await
        }
    }
}

/// The publisher-model URL for this endpoint.
fn url(provider: &VertexProvider, out: &Outbound<'_>) -> Result<String, PrepareError> {
    if out.upstream_model.is_empty() {
        return Err(PrepareError::Config("vertex target has no model id".into()));
    }
    let base = format!(
        "{}/v1/projects/{}/locations/{}/publishers/anthropic/models",
        provider.base_url, provider.project_id, provider.region
    );
    Ok(match out.endpoint {
        Endpoint::CountTokens => format!("{base}/count-tokens:rawPredict"),
        Endpoint::Messages => {
            let method = if out.fields.stream {
                "streamRawPredict"
            } else {
                "rawPredict"
            };
            format!("{base}/{}:{method}", escape_segment(out.upstream_model))
        }
    })
}

/// Percent-encodes a path segment: letters, digits, `-._~` and `@` (version suffixes such
/// as `claude-sonnet-4-5@20250929`) stay; everything else (`;`, `/`, `:`, `%`, …) is escaped.
fn escape_segment(segment: &str) -> Cow<'_, str> {
    let keep = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@');
    if segment.bytes().all(keep) {
        return Cow::Borrowed(segment);
    }
    let mut out = String::with_capacity(segment.len() + 8);
    for b in segment.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// The Vertex body: `model` removed (count tokens: replaced by the upstream model), `tags`
/// removed, `anthropic_version` set to the provider's dialect; other members byte-identical.
fn body(provider: &VertexProvider, out: &Outbound<'_>) -> Result<Bytes, PrepareError> {
    let unusable = |_| PrepareError::Config("request body cannot be rewritten".into());
    let version = raw_string(&provider.anthropic_version);
    match out.endpoint {
        Endpoint::Messages => {
            let mut top = TopLevel::parse(out.body).map_err(unusable)?;
            top.remove("model").remove("tags");
            Ok(top.to_bytes(&[("anthropic_version", &version)]))
        }
        Endpoint::CountTokens => {
            let with_model = anthropic::body_for(out)?;
            let mut top = TopLevel::parse(&with_model).map_err(unusable)?;
            top.remove("tags");
            Ok(top.to_bytes(&[("anthropic_version", &version)]))
        }
    }
}

/// Forwarded client headers, `anthropic-beta` without the betas Vertex rejects, the bearer
/// token and a JSON content type.
fn headers(
    client: &HeaderMap,
    identity_encoding: bool,
    token: &SecretString,
) -> Result<HeaderMap, PrepareError> {
    let mut headers = forwarded_headers(client, identity_encoding);
    headers.remove(ANTHROPIC_BETA);
    let betas = cloud_betas(client);
    if !betas.is_empty() {
        // Made of pieces of valid header values joined by `,`: always valid.
        if let Ok(value) = HeaderValue::from_str(&betas.join(",")) {
            headers.insert(ANTHROPIC_BETA, value);
        }
    }
    let bearer = sensitive_value(&format!("Bearer {}", expose(token)))
        .map_err(|_| PrepareError::Config("vertex access token is not a valid header".into()))?;
    headers.insert(AUTHORIZATION, bearer);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(headers)
}

/// Google's error envelope.
#[derive(Deserialize)]
struct GoogleError<'a> {
    #[serde(borrow)]
    error: GoogleStatus<'a>,
}

#[derive(Deserialize)]
struct GoogleStatus<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
}

/// `{"error":{…}}` or `[{"error":{…}}, …]` (streamRawPredict): the status and message.
fn google_error(body: &[u8]) -> Option<(String, String)> {
    // Branch on the first byte: serde would also read a struct from an array.
    let parsed = if body.trim_ascii_start().starts_with(b"[") {
        serde_json::from_slice::<Vec<GoogleError<'_>>>(body)
            .ok()?
            .into_iter()
            .next()?
    } else {
        serde_json::from_slice::<GoogleError<'_>>(body).ok()?
    };
    let status = parsed.error.status?;
    let message = parsed.error.message.unwrap_or_default();
    Some((status.into_owned(), message.into_owned()))
}

/// A Google status name for logs: upper-case letters and `_` only.
fn status_name(status: &str) -> &str {
    let plain = !status.is_empty()
        && status.len() <= 40
        && status.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    if plain { status } else { "UNKNOWN" }
}

/// Maps a Vertex error answer (Google `{"error":{…}}`, possibly in an array, or Anthropic's).
pub(crate) fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamFailure {
    if is_anthropic_error(body) {
        return anthropic::map_error(status, headers, body);
    }
    let Some((google_status, message)) = google_error(body) else {
        return anthropic::map_error(status, headers, body);
    };
    let name = status_name(&google_status);
    let (error, status_retryable) = match name {
        "RESOURCE_EXHAUSTED" => (generic_error(StatusCode::TOO_MANY_REQUESTS), true),
        "UNAVAILABLE" => (ApiError::new(ErrorCode::Overloaded, OVERLOADED), true),
        "UNAUTHENTICATED" | "PERMISSION_DENIED" => (generic_error(StatusCode::UNAUTHORIZED), false),
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            (invalid_request(status, &message), false)
        }
        "NOT_FOUND" => (generic_error(StatusCode::NOT_FOUND), false),
        "DEADLINE_EXCEEDED" => (generic_error(StatusCode::GATEWAY_TIMEOUT), true),
        "INTERNAL" | "UNKNOWN" | "ABORTED" => (generic_error(StatusCode::BAD_GATEWAY), true),
        _ => (generic_error(status), super::is_retryable_status(status)),
    };
    let (retryable, retry_after) = retry_hints(status_retryable, headers);
    let mut error = error;
    error.retry_after = retry_after;
    UpstreamFailure {
        reply: ErrorReply::Api(error),
        retryable,
        retry_after,
        reason: format!("status {} {name}", status.as_u16()),
        usage: Usage::default(),
    }
}

const OVERLOADED: &str = "upstream provider is overloaded";

/// A validation error: size errors in the wording Claude Code recovers from, other messages
/// only when they cannot name the project.
fn invalid_request(status: StatusCode, message: &str) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return generic_error(status);
    }
    if is_prompt_too_long(message) {
        return ApiError::new(ErrorCode::InvalidRequest, prompt_too_long_message(message));
    }
    // Google's validation messages often say which project is not allowed to do what.
    let relayable = safe_message(message)
        .filter(|m| !m.to_ascii_lowercase().contains("project"))
        .map(str::to_owned);
    match relayable {
        Some(m) => ApiError::new(ErrorCode::InvalidRequest, m),
        None => generic_error(StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests;
