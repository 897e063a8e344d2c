//! Microsoft Foundry (Azure): Claude behind the Anthropic Messages API shape.
//!
//! Requests go to `{base_url}/v1/messages` (or `/v1/messages/count_tokens`) with the body
//! byte for byte except `model`, which becomes the deployment name (the target's upstream
//! model). Credentials: an API key, sent as both `api-key` and `x-api-key` like Anthropic's
//! SDK does, or an Entra ID access token as `Authorization: Bearer`. Answers are Anthropic
//! JSON / SSE; errors go through [`super::anthropic::map_error`] (Azure-shaped errors such as
//! `{"error":{"code":"DeploymentNotFound",…}}` become generic errors of the status's kind).

use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use tollgate_policy::{FoundryAuth, FoundryProvider};

use super::anthropic::{body_for, post};
use super::secret::expose;
use super::{Decode, Outbound, PrepareError, Prepared, Secrets};
use crate::upstream::headers::{forwarded_headers, sensitive_value};

const API_KEY: HeaderName = HeaderName::from_static("api-key");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Builds a request to `{base}/v1/messages` (or count_tokens) with the deployment name as
/// `model` and `api-key`/`x-api-key` or an Entra bearer.
pub(crate) fn prepare(
    provider: &FoundryProvider,
    out: &Outbound<'_>,
    secrets: &Secrets,
) -> Result<Prepared, PrepareError> {
    let mut headers = forwarded_headers(out.headers, out.identity_encoding);
    add_credential(&mut headers, &provider.auth, secrets)?;
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let url = format!("{}{}", provider.base_url, out.endpoint.path());
    Ok(Prepared {
        request: post(&url, headers, body_for(out)?)?,
        decode: Decode::Passthrough,
    })
}

fn add_credential(
    headers: &mut HeaderMap,
    auth: &FoundryAuth,
    secrets: &Secrets,
) -> Result<(), PrepareError> {
    let invalid = |_| PrepareError::Config("provider credential is not a valid header".into());
    match auth {
        FoundryAuth::ApiKey(source) => {
            let key = secrets.resolve(source)?;
            let value = sensitive_value(expose(&key)).map_err(invalid)?;
            headers.insert(API_KEY, value.clone());
            headers.insert(X_API_KEY, value);
        }
        FoundryAuth::Bearer(source) => {
            let token = secrets.resolve(source)?;
            let value = sensitive_value(&format!("Bearer {}", expose(&token))).map_err(invalid)?;
            headers.insert(AUTHORIZATION, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
