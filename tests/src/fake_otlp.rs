//! An OpenTelemetry collector stand-in on 127.0.0.1: accepts OTLP/HTTP protobuf exports on
//! `/v1/traces`, `/v1/metrics` and `/v1/logs`, decodes them with the official protobuf
//! definitions (`opentelemetry-proto`) and keeps both the decoded requests and the raw bytes
//! (for searching a secret canary).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http_server::{self, TestResponse};

/// A span as received: its ids, name, service and attributes.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
}

/// One data point of a metric: the metric's name, the service and the point's attributes.
#[derive(Debug, Clone)]
pub struct ReceivedPoint {
    pub service: String,
    pub metric: String,
    pub attributes: BTreeMap<String, String>,
}

/// A log record: service, scope (the `tracing` target), body and attributes.
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    pub service: String,
    pub scope: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    spans: Vec<ReceivedSpan>,
    points: Vec<ReceivedPoint>,
    logs: Vec<ReceivedLog>,
    raw: Vec<Bytes>,
    rejected: Vec<String>,
}

/// The running receiver; stopped when its shutdown token is cancelled.
pub struct FakeOtlp {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeOtlp {
    pub async fn start(shutdown: CancellationToken) -> anyhow::Result<FakeOtlp> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        http_server::spawn(listener, shutdown, move |req| {
            let state = shared.clone();
            async move { receive(req, &state).await }
        });
        Ok(FakeOtlp { addr, state })
    }

    /// The base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.with(|s| s.spans.clone())
    }

    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.with(|s| s.points.clone())
    }

    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.with(|s| s.logs.clone())
    }

    /// Every request body received, undecoded.
    pub fn raw(&self) -> Vec<Bytes> {
        self.with(|s| s.raw.clone())
    }

    /// Requests that were not valid OTLP/HTTP protobuf (path, content type or body).
    pub fn rejected(&self) -> Vec<String> {
        self.with(|s| s.rejected.clone())
    }

    fn with<T: Default>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.state.lock().map(|s| f(&s)).unwrap_or_default()
    }
}

async fn receive(req: hyper::Request<hyper::body::Incoming>, state: &Mutex<State>) -> TestResponse {
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, Bytes::new()),
    };
    let Ok(mut state) = state.lock() else {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new());
    };
    state.raw.push(body.clone());
    if content_type != "application/x-protobuf" {
        state
            .rejected
            .push(format!("{path}: content-type {content_type:?}"));
        return reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, Bytes::new());
    }
    let decoded = match path.as_str() {
        "/v1/traces" => ExportTraceServiceRequest::decode(body).map(|r| {
            record_spans(&mut state, r);
            ExportTraceServiceResponse::default().encode_to_vec()
        }),
        "/v1/metrics" => ExportMetricsServiceRequest::decode(body).map(|r| {
            record_metrics(&mut state, r);
            ExportMetricsServiceResponse::default().encode_to_vec()
        }),
        "/v1/logs" => ExportLogsServiceRequest::decode(body).map(|r| {
            record_logs(&mut state, r);
            ExportLogsServiceResponse::default().encode_to_vec()
        }),
        _ => {
            state.rejected.push(format!("{path}: unknown path"));
            return reply(StatusCode::NOT_FOUND, Bytes::new());
        }
    };
    match decoded {
        Ok(answer) => reply(StatusCode::OK, Bytes::from(answer)),
        Err(e) => {
            state.rejected.push(format!("{path}: {e}"));
            reply(StatusCode::BAD_REQUEST, Bytes::new())
        }
    }
}

fn reply(status: StatusCode, body: Bytes) -> TestResponse {
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}

fn service_of(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .map(|r| attributes(&r.attributes))
        .and_then(|a| a.get("service.name").cloned())
        .unwrap_or_default()
}

fn record_spans(state: &mut State, request: ExportTraceServiceRequest) {
    for resource in request.resource_spans {
        let service = service_of(resource.resource.as_ref());
        for scope in resource.scope_spans {
            for span in scope.spans {
                state.spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
}

fn record_metrics(state: &mut State, request: ExportMetricsServiceRequest) {
    for resource in request.resource_metrics {
        let service = service_of(resource.resource.as_ref());
        for scope in resource.scope_metrics {
            for m in scope.metrics {
                let point_attributes: Vec<&[KeyValue]> = match &m.data {
                    Some(metric::Data::Sum(s)) => {
                        s.data_points.iter().map(|p| &p.attributes[..]).collect()
                    }
                    Some(metric::Data::Gauge(g)) => {
                        g.data_points.iter().map(|p| &p.attributes[..]).collect()
                    }
                    Some(metric::Data::Histogram(h)) => {
                        h.data_points.iter().map(|p| &p.attributes[..]).collect()
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        h.data_points.iter().map(|p| &p.attributes[..]).collect()
                    }
                    Some(metric::Data::Summary(s)) => {
                        s.data_points.iter().map(|p| &p.attributes[..]).collect()
                    }
                    None => Vec::new(),
                };
                for attrs in point_attributes {
                    state.points.push(ReceivedPoint {
                        service: service.clone(),
                        metric: m.name.clone(),
                        attributes: attributes(attrs),
                    });
                }
            }
        }
    }
}

fn record_logs(state: &mut State, request: ExportLogsServiceRequest) {
    for resource in request.resource_logs {
        let service = service_of(resource.resource.as_ref());
        for scope in resource.scope_logs {
            let scope_name = scope.scope.map(|s| s.name).unwrap_or_default();
            for record in scope.log_records {
                state.logs.push(ReceivedLog {
                    service: service.clone(),
                    scope: scope_name.clone(),
                    body: record.body.as_ref().map(value_text).unwrap_or_default(),
                    attributes: attributes(&record.attributes),
                });
            }
        }
    }
}

/// Attributes as text (arrays and maps as their debug form, enough for assertions).
pub fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(value_text).unwrap_or_default(),
            )
        })
        .collect()
}

fn value_text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
