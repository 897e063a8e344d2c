//! Amazon Bedrock. (Being written: see the providers work.)

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tollgate_policy::BedrockProvider;

use super::{Outbound, PrepareError, Prepared, Secrets, UpstreamFailure};
use crate::meter::UpstreamBody;

/// Builds an InvokeModel / InvokeModelWithResponseStream / CountTokens request (or a
/// bedrock-mantle Messages request), signed with SigV4 or carrying the Bedrock API key.
pub(crate) fn prepare(
    _provider: &BedrockProvider,
    _out: &Outbound<'_>,
    _secrets: &Secrets,
    _now: SystemTime,
) -> Result<Prepared, PrepareError> {
    Err(PrepareError::Config("bedrock is not built yet".into()))
}

/// AWS event stream → Anthropic SSE.
pub(crate) fn decode_event_stream(body: UpstreamBody) -> UpstreamBody {
    body
}

/// `{"inputTokens": n}` → `{"input_tokens": n}`; `None` if the body is not that shape.
pub(crate) fn decode_count_tokens(_body: &[u8]) -> Option<Bytes> {
    None
}

/// Maps a Bedrock error answer (`x-amzn-ErrorType` + `{"message"}`).
pub(crate) fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamFailure {
    super::anthropic::map_error(status, headers, body)
}
