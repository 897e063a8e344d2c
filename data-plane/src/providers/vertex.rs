//! Google Vertex AI. (Being written: see the providers work.)

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};
use tollgate_policy::VertexProvider;

use super::{Outbound, PrepareError, Prepared, ProviderRuntime, UpstreamFailure};
use crate::upstream::UpstreamClient;

/// Cached OAuth2 access tokens per provider (service-account JWT-bearer exchange).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {}

/// Builds a rawPredict / streamRawPredict / count-tokens request with a bearer token.
pub(crate) async fn prepare(
    _provider: &VertexProvider,
    _provider_id: &str,
    _out: &Outbound<'_>,
    _runtime: &ProviderRuntime,
    _client: &UpstreamClient,
    _now: SystemTime,
) -> Result<Prepared, PrepareError> {
    Err(PrepareError::Config("vertex is not built yet".into()))
}

/// Maps a Vertex error answer (Google `{"error":{…}}`, possibly in an array, or Anthropic's).
pub(crate) fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamFailure {
    super::anthropic::map_error(status, headers, body)
}
