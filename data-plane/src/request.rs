//! The client's request body: bounded reading and the few fields the gateway needs.
//!
//! The body is forwarded byte for byte; the gateway only looks at `model`, `stream` and
//! `max_tokens`. [`extract_fields`] validates the whole document (so malformed JSON is
//! refused here rather than by the provider) but allocates nothing for the fields it skips,
//! and remembers where the model string sits so it can be replaced in place.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The fields the gateway reads from a Messages API request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFields<'a> {
    /// The client-facing model id (unescaped).
    pub model: Cow<'a, str>,
    /// Byte range of the model's JSON string literal, quotes included, in the body.
    pub model_span: Range<usize>,
    pub stream: bool,
    pub max_tokens: Option<u64>,
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("invalid JSON body: {0}")]
    Malformed(String),
    #[error("model: field required")]
    MissingModel,
    #[error("model: must be a string")]
    ModelNotString,
    #[error("model: must not be empty")]
    EmptyModel,
}

#[derive(Deserialize)]
struct Fields<'a> {
    /// `Some` whenever the field is present, `null` included.
    #[serde(borrow, default, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Validates `body` as JSON and extracts the fields the gateway needs.
pub fn extract_fields(body: &[u8]) -> Result<RequestFields<'_>, FieldError> {
    // serde would also accept a struct written as an array.
    if body.trim_ascii_start().first().is_some_and(|b| *b != b'{') {
        return Err(FieldError::Malformed(
            "expected a JSON object at line 1 column 1".to_owned(),
        ));
    }
    let fields: Fields<'_> =
        serde_json::from_slice(body).map_err(|e| FieldError::Malformed(e.to_string()))?;
    let raw = fields.model.ok_or(FieldError::MissingModel)?.get();
    let literal = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or(FieldError::ModelNotString)?;
    let model = if literal.contains('\\') {
        Cow::Owned(serde_json::from_str::<String>(raw).map_err(|_| FieldError::ModelNotString)?)
    } else {
        Cow::Borrowed(literal)
    };
    if model.is_empty() {
        return Err(FieldError::EmptyModel);
    }
    // `raw` borrows from `body`, so its address lies inside it.
    let start = (raw.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let model_span = start..start + raw.len();
    if body.get(model_span.clone()) != Some(raw.as_bytes()) {
        return Err(FieldError::ModelNotString);
    }
    Ok(RequestFields {
        model,
        model_span,
        stream: fields.stream.unwrap_or(false),
        max_tokens: fields.max_tokens,
    })
}

/// Replaces the model string literal at `span` with `model`; every other byte is unchanged.
/// `None` if `span` is not inside `body`.
pub fn splice_model(body: &[u8], span: Range<usize>, model: &str) -> Option<Bytes> {
    let head = body.get(..span.start)?;
    let tail = body.get(span.end..)?;
    let mut out = Vec::with_capacity(body.len() + model.len() + 2);
    out.extend_from_slice(head);
    serde_json::to_writer(&mut out, model).ok()?;
    out.extend_from_slice(tail);
    Some(Bytes::from(out))
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds {max} bytes")]
    TooLarge { max: usize },
    #[error("could not read the request body")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Refuses, without reading, a body whose declared length exceeds `max`.
pub fn check_declared_length(headers: &HeaderMap, max: usize) -> Result<(), BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > max as u64 => Err(BodyError::TooLarge { max }),
        _ => Ok(()),
    }
}

/// Reads a whole body, enforcing `max` while reading (for chunked bodies too).
pub async fn read_body<B>(body: B, max: usize) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { max })
        }
        Err(e) => Err(BodyError::Read(e)),
    }
}

pub mod edit;

#[cfg(test)]
mod tests;
