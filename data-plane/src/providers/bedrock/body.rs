//! InvokeModel's body dialect.
//!
//! The Anthropic body with `model` and `stream` removed (the path and the operation say
//! them; Bedrock refuses them as extraneous keys), `tags` removed (refused too),
//! `anthropic_version` set to the provider's dialect value (never the client's
//! `anthropic-version` header) and the `anthropic-beta` header moved into the body as the
//! `anthropic_beta` array, without the `request-tags` betas Bedrock rejects. Every other
//! member keeps its exact bytes (the `system` array must arrive byte-identical).

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::PrepareError;
use crate::request::edit::{TopLevel, raw_string, raw_string_array};
use crate::upstream::headers::cloud_betas;

/// Betas Bedrock and Vertex reject.
const REQUEST_TAGS_BETA: &str = "request-tags";

fn not_an_object() -> PrepareError {
    PrepareError::Config("request body is not a JSON object".into())
}

/// The InvokeModel body for the client's Messages body. `count_tokens`: the body is for
/// CountTokens, which validates it as an InvokeModel body, so a missing `max_tokens`
/// (count_tokens requests carry none) is filled in.
pub(super) fn invoke_body(
    body: &[u8],
    headers: &HeaderMap,
    anthropic_version: &str,
    count_tokens: bool,
) -> Result<Bytes, PrepareError> {
    let mut top = TopLevel::parse(body).map_err(|_| not_an_object())?;
    top.remove("model").remove("stream").remove("tags");

    let mut added: Vec<(&str, Box<RawValue>)> = Vec::with_capacity(3);
    added.push(("anthropic_version", raw_string(anthropic_version)));

    let header_betas = cloud_betas(headers);
    let client_betas = top
        .get("anthropic_beta")
        .map(|raw| serde_json::from_str::<Vec<Cow<'_, str>>>(raw.get()));
    match client_betas {
        Some(Ok(client)) => {
            top.remove("anthropic_beta");
            let merged = merge_betas(client.iter().map(AsRef::as_ref), header_betas);
            if !merged.is_empty() {
                added.push(("anthropic_beta", raw_string_array(merged)));
            }
        }
        // Not an array of strings: Bedrock will say so, unless the header gives betas (an
        // added member replaces the client's).
        Some(Err(_)) | None => {
            let merged = merge_betas(std::iter::empty(), header_betas);
            if !merged.is_empty() {
                added.push(("anthropic_beta", raw_string_array(merged)));
            }
        }
    }

    if count_tokens && top.get("max_tokens").is_none() {
        added.push(("max_tokens", count_tokens_max_tokens(&top)?));
    }

    let added: Vec<(&str, &RawValue)> = added.iter().map(|(k, v)| (*k, &**v)).collect();
    Ok(top.to_bytes(&added))
}

/// Client body betas first, then header betas; duplicates and `request-tags-*` dropped.
fn merge_betas<'a>(client: impl Iterator<Item = &'a str>, header: Vec<&'a str>) -> Vec<&'a str> {
    let mut merged: Vec<&str> = Vec::new();
    for beta in client.map(str::trim).chain(header) {
        if beta.is_empty() || beta.starts_with(REQUEST_TAGS_BETA) || merged.contains(&beta) {
            continue;
        }
        merged.push(beta);
    }
    merged
}

/// `max_tokens` for a CountTokens body: just above the thinking budget when there is one
/// (Bedrock requires `max_tokens` > `budget_tokens`), else 1. It does not change the count.
fn count_tokens_max_tokens(top: &TopLevel<'_>) -> Result<Box<RawValue>, PrepareError> {
    #[derive(Deserialize)]
    struct Thinking {
        budget_tokens: Option<u64>,
    }
    let budget = top
        .get("thinking")
        .and_then(|raw| serde_json::from_str::<Thinking>(raw.get()).ok())
        .and_then(|t| t.budget_tokens);
    let max_tokens = budget.map_or(1, |b| b.saturating_add(1));
    RawValue::from_string(max_tokens.to_string()).map_err(|_| not_an_object())
}

/// CountTokens' body: `{"input":{"invokeModel":{"body":"<base64 of the InvokeModel body>"}}}`.
pub(super) fn count_tokens_body(invoke_body: &[u8]) -> Bytes {
    let encoded = base64::engine::general_purpose::STANDARD.encode(invoke_body);
    // Base64 text needs no JSON escaping.
    Bytes::from(format!(
        "{{\"input\":{{\"invokeModel\":{{\"body\":\"{encoded}\"}}}}}}"
    ))
}

/// The body without a top-level `tags` member (unchanged when it has none).
pub(super) fn without_tags(body: Bytes) -> Result<Bytes, PrepareError> {
    let edited = {
        let mut top = TopLevel::parse(&body).map_err(|_| not_an_object())?;
        if top.get("tags").is_some() {
            top.remove("tags");
            Some(top.to_bytes(&[]))
        } else {
            None
        }
    };
    Ok(edited.unwrap_or(body))
}
