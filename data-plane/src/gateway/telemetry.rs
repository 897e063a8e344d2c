//! `POST /v1/metrics`, `/v1/logs`, `/v1/traces`: OTLP/HTTP from signed-in clients, relayed
//! unchanged to the organisation's collector (or dropped). The client always gets `200`:
//! telemetry must never disturb it.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::Full;

use super::{Gateway, RequestContext, ResponseBody, full_body};
use crate::error::{ApiError, ErrorCode};
use crate::request::{BodyError, check_declared_length, read_body};

/// Larger telemetry bodies are refused with 413.
const MAX_TELEMETRY_BYTES: usize = 8 * 1024 * 1024;
/// How long a relay may take before the batch is dropped.
const RELAY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which OTLP signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Metrics,
    Logs,
    Traces,
}

impl Signal {
    fn path(self) -> &'static str {
        match self {
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
            Signal::Traces => "/v1/traces",
        }
    }
}

pub(super) async fn relay<B>(
    gateway: &Gateway,
    ctx: &mut RequestContext,
    request: Request<B>,
    signal: Signal,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (snapshot, _caller) = gateway.admit(ctx, request.headers())?;
    let (parts, body) = request.into_parts();
    check_declared_length(&parts.headers, MAX_TELEMETRY_BYTES).map_err(body_error)?;
    let body = read_body(body, MAX_TELEMETRY_BYTES)
        .await
        .map_err(body_error)?;
    let content_type = parts.headers.get(CONTENT_TYPE).cloned();
    let is_json = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    if let Some(base) = snapshot.telemetry_collector_url() {
        let url = format!("{base}{}", signal.path());
        let mut builder = Request::builder().method(Method::POST).uri(&url);
        if let Some(v) = content_type {
            builder = builder.header(CONTENT_TYPE, v);
        }
        if let Some(v) = parts.headers.get(CONTENT_ENCODING) {
            builder = builder.header(CONTENT_ENCODING, v.clone());
        }
        match builder.body(Full::new(body)) {
            Ok(outbound) => {
                match tokio::time::timeout(RELAY_TIMEOUT, gateway.side.client.send(outbound)).await
                {
                    Ok(Ok(response)) if response.status().is_success() => {}
                    Ok(Ok(response)) => {
                        tracing::warn!(
                            status = response.status().as_u16(),
                            signal = signal.path(),
                            "telemetry collector refused a batch"
                        );
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, signal = signal.path(), "telemetry relay failed");
                    }
                    Err(_) => {
                        tracing::warn!(
                            signal = signal.path(),
                            "telemetry relay timed out; batch dropped"
                        );
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot build the telemetry relay request"),
        }
    }
    // An empty OTLP Export*ServiceResponse: `{}` in JSON, zero bytes in protobuf.
    let (body, content_type) = if is_json {
        (Bytes::from_static(b"{}"), "application/json")
    } else {
        (Bytes::new(), "application/x-protobuf")
    };
    let mut response = Response::new(full_body(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn body_error(error: BodyError) -> ApiError {
    match error {
        BodyError::TooLarge { .. } => ApiError::new(ErrorCode::RequestTooLarge, error.to_string()),
        BodyError::Read(_) => ApiError::new(ErrorCode::InvalidRequest, error.to_string()),
    }
}
