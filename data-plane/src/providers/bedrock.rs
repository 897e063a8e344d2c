//! Amazon Bedrock: InvokeModel / InvokeModelWithResponseStream / CountTokens on
//! `bedrock-runtime` (the AWS event stream is translated back into Anthropic SSE), and the
//! newer Messages endpoint on `bedrock-mantle` (an Anthropic-shaped upstream with SigV4).
//!
//! - [`body`]: the InvokeModel body dialect (no `model`/`stream`/`tags`, `anthropic_version`
//!   from the provider, `anthropic_beta` moved from the header into the body).
//! - [`sigv4`]: request signing with `aws-sigv4`.
//! - [`eventstream`]: AWS event stream → Anthropic SSE, CRC-checked.
//! - [`errors`]: Bedrock's `x-amzn-ErrorType` answers and exception frames → Anthropic errors.

mod body;
mod errors;
mod eventstream;
mod sigv4;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use tollgate_policy::{BedrockApi, BedrockAuth, BedrockProvider};

use super::secret::expose;
use super::{Decode, Endpoint, Outbound, PrepareError, Prepared, Secrets, UpstreamFailure};
use crate::meter::UpstreamBody;
use crate::upstream::headers::{ANTHROPIC_BETA, cloud_betas, forwarded_headers, sensitive_value};

use sigv4::AwsCredentials;

const X_AMZN_BEDROCK_ACCEPT: HeaderName = HeaderName::from_static("x-amzn-bedrock-accept");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The InvokeModel operation a request maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Invoke,
    InvokeStream,
    CountTokens,
}

impl Operation {
    fn for_request(out: &Outbound<'_>) -> Operation {
        match out.endpoint {
            Endpoint::CountTokens => Operation::CountTokens,
            Endpoint::Messages if out.fields.stream => Operation::InvokeStream,
            Endpoint::Messages => Operation::Invoke,
        }
    }

    fn path_suffix(self) -> &'static str {
        match self {
            Operation::Invoke => "invoke",
            Operation::InvokeStream => "invoke-with-response-stream",
            Operation::CountTokens => "count-tokens",
        }
    }

    fn decode(self) -> Decode {
        match self {
            Operation::Invoke => Decode::Passthrough,
            Operation::InvokeStream => Decode::BedrockEventStream,
            Operation::CountTokens => Decode::BedrockCountTokens,
        }
    }
}

/// Builds an InvokeModel / InvokeModelWithResponseStream / CountTokens request (or a
/// bedrock-mantle Messages request), signed with SigV4 or carrying the Bedrock API key.
pub(crate) fn prepare(
    provider: &BedrockProvider,
    out: &Outbound<'_>,
    secrets: &Secrets,
    now: SystemTime,
) -> Result<Prepared, PrepareError> {
    let (url, mut headers, body, decode) = match provider.api {
        BedrockApi::Invoke => invoke_request(provider, out)?,
        BedrockApi::Messages => mantle_request(provider, out)?,
    };
    authenticate(provider, secrets, &url, &mut headers, &body, now)?;
    Ok(Prepared {
        request: super::anthropic::post(&url, headers, body)?,
        decode,
    })
}

type Parts = (String, HeaderMap, Bytes, Decode);

/// `bedrock-runtime`: model id in the path, Bedrock's body dialect.
fn invoke_request(provider: &BedrockProvider, out: &Outbound<'_>) -> Result<Parts, PrepareError> {
    let operation = Operation::for_request(out);
    let model = model_path_segment(out.upstream_model)?;
    let url = format!(
        "{}/model/{model}/{}",
        provider.base_url,
        operation.path_suffix()
    );
    let invoke = body::invoke_body(
        out.body,
        out.headers,
        &provider.anthropic_version,
        operation == Operation::CountTokens,
    )?;
    let body = match operation {
        Operation::CountTokens => body::count_tokens_body(&invoke),
        Operation::Invoke | Operation::InvokeStream => invoke,
    };

    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(CONTENT_TYPE, APPLICATION_JSON);
    match operation {
        Operation::InvokeStream => {
            headers.insert(X_AMZN_BEDROCK_ACCEPT, APPLICATION_JSON);
        }
        Operation::Invoke | Operation::CountTokens => {
            headers.insert(ACCEPT, APPLICATION_JSON);
        }
    }
    // The event stream and the token count are decoded here, so they must arrive
    // uncompressed; a plain invoke answer is passed through as the client accepts it.
    let client_encoding = out
        .headers
        .get(ACCEPT_ENCODING)
        .filter(|v| v.to_str().is_ok());
    match (operation, client_encoding) {
        (Operation::Invoke, Some(encoding)) if !out.identity_encoding => {
            headers.insert(ACCEPT_ENCODING, encoding.clone());
        }
        _ => {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
    }
    if let Some(agent) = out.headers.get(USER_AGENT).filter(|v| v.to_str().is_ok()) {
        headers.insert(USER_AGENT, agent.clone());
    }
    Ok((url, headers, body, operation.decode()))
}

/// `bedrock-mantle`: the Anthropic Messages API (model in the body, SSE answers) without
/// the request-tags feature Bedrock rejects.
fn mantle_request(provider: &BedrockProvider, out: &Outbound<'_>) -> Result<Parts, PrepareError> {
    let url = format!("{}{}", provider.base_url, out.endpoint.path());
    let body = body::without_tags(super::anthropic::body_for(out)?)?;
    let mut headers = forwarded_headers(out.headers, out.identity_encoding);
    headers.entry(CONTENT_TYPE).or_insert(APPLICATION_JSON);
    headers.remove(ANTHROPIC_BETA);
    let betas = cloud_betas(out.headers);
    if !betas.is_empty() {
        let joined = HeaderValue::from_str(&betas.join(","))
            .map_err(|_| PrepareError::Config("anthropic-beta cannot be rebuilt".into()))?;
        headers.insert(ANTHROPIC_BETA, joined);
    }
    // Header values that are not visible ASCII cannot be signed; they are not needed.
    let unsignable: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, v)| v.to_str().is_err())
        .map(|(k, _)| k.clone())
        .collect();
    for name in unsignable {
        headers.remove(name);
    }
    Ok((url, headers, body, Decode::Passthrough))
}

/// The model id as one percent-encoded path segment: every byte but RFC 3986's unreserved
/// characters is encoded (as botocore does: `:` → `%3A`, an ARN's `/` → `%2F`).
fn model_path_segment(model: &str) -> Result<String, PrepareError> {
    if model.is_empty() || model == "." || model == ".." {
        return Err(PrepareError::Config(
            "the route's upstream model is not a Bedrock model id".into(),
        ));
    }
    let mut out = String::with_capacity(model.len() + 8);
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Adds the credential: a SigV4 signature over the exact URL, headers and body sent, or the
/// Bedrock API key as a bearer token.
fn authenticate(
    provider: &BedrockProvider,
    secrets: &Secrets,
    url: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), PrepareError> {
    match &provider.auth {
        BedrockAuth::SigV4 {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            let credentials = AwsCredentials {
                access_key_id: secrets.resolve(access_key_id)?,
                secret_access_key: secrets.resolve(secret_access_key)?,
                session_token: session_token
                    .as_ref()
                    .map(|t| secrets.resolve(t))
                    .transpose()?,
            };
            let scope = sigv4::Scope {
                region: &provider.region,
                service: provider.api.signing_service(),
                time: now,
            };
            sigv4::sign("POST", url, headers, body, &credentials, &scope)
                .map(|_signature| ())
                .map_err(|e| PrepareError::Config(e.to_string()))
        }
        BedrockAuth::ApiKey(key) => {
            let key: SecretString = secrets.resolve(key)?;
            let value = sensitive_value(&format!("Bearer {}", expose(&key))).map_err(|_| {
                PrepareError::Config("provider credential is not a valid header".into())
            })?;
            headers.insert(AUTHORIZATION, value);
            Ok(())
        }
    }
}

/// AWS event stream → Anthropic SSE.
pub(crate) fn decode_event_stream(body: UpstreamBody) -> UpstreamBody {
    eventstream::EventStreamToSse::boxed(body)
}

/// `{"inputTokens": n}` → `{"input_tokens": n}`; `None` if the body is not that shape.
pub(crate) fn decode_count_tokens(body: &[u8]) -> Option<Bytes> {
    #[derive(Deserialize)]
    struct CountTokens {
        #[serde(rename = "inputTokens")]
        input_tokens: u64,
    }
    let count: CountTokens = serde_json::from_slice(body).ok()?;
    Some(Bytes::from(format!(
        "{{\"input_tokens\":{}}}",
        count.input_tokens
    )))
}

/// Maps a Bedrock error answer (`x-amzn-ErrorType` + `{"message"}`).
pub(crate) fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamFailure {
    errors::map_error(status, headers, body)
}
