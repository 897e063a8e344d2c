//! OTLP/HTTP end to end: a local receiver gets the spans, metrics and log records of a process
//! that installed telemetry, once it shuts down (flush). Its own test binary: `init` installs
//! process-global state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use tokio::net::TcpListener;
use tollgate_telemetry::{LogFormat, LogOutput, OtlpConfig, OtlpHeaders, TelemetryConfig};

/// What the receiver got: (path, headers, body) per request.
type Received = Arc<Mutex<Vec<(String, http::HeaderMap, Bytes)>>>;

async fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let headers = request.headers().clone();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        store.lock().unwrap().push((path, headers, body));
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = StatusCode::OK;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), received)
}

fn string(value: &Option<AnyValue>) -> Option<&str> {
    match value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string(&kv.value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_logs_reach_an_otlp_http_receiver() {
    let (endpoint, received) = receiver().await;
    let mut config = TelemetryConfig::new("tollgate-test");
    config.resource_attributes = vec![("deployment.environment".into(), "ci".into())];
    config.log_format = LogFormat::Json;
    config.log_output = LogOutput::Stderr;
    config.otlp = OtlpConfig::http(&endpoint).unwrap();
    let headers = OtlpHeaders::parse("test", "x-canary=canary-header-value").unwrap();
    for signal in [
        &mut config.otlp.traces,
        &mut config.otlp.metrics,
        &mut config.otlp.logs,
    ]
    .into_iter()
    .flatten()
    {
        signal.headers = headers.clone();
    }
    config.prometheus = true;
    let telemetry = tollgate_telemetry::init(config).unwrap();
    assert!(telemetry.traces_enabled() && telemetry.metrics_enabled() && telemetry.logs_enabled());

    {
        let span =
            tracing::info_span!(target: "tollgate::request", "request", request_id = "req_1");
        let _entered = span.enter();
        tracing::info!(target: "tollgate::usage", tokens = 12_u64, user.email = "ada@example.com", "usage");
    }
    let meter = opentelemetry::global::meter("tollgate-test");
    let counter = meter.u64_counter("tollgate.test.requests").build();
    counter.add(3, &[opentelemetry::KeyValue::new("model", "claude")]);
    meter
        .f64_histogram("tollgate.test.duration")
        .with_unit("s")
        .build()
        .record(0.5, &[]);
    let text = telemetry.prometheus_text();
    assert!(
        text.contains("tollgate_test_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("target_info{"), "{text}");
    assert!(
        telemetry
            .prometheus_text()
            .contains("tollgate_test_requests_total"),
        "{}",
        telemetry.prometheus_text()
    );
    tokio::time::timeout(Duration::from_secs(30), telemetry.shutdown())
        .await
        .unwrap()
        .unwrap();

    let received = received.lock().unwrap().clone();
    let bodies = |path: &str| -> Vec<Bytes> {
        received
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, _, b)| b.clone())
            .collect()
    };
    for (_, headers, _) in &received {
        assert_eq!(headers["x-canary"], "canary-header-value");
        assert_eq!(headers["content-type"], "application/x-protobuf");
    }

    let spans: Vec<_> = bodies("/v1/traces")
        .iter()
        .flat_map(|b| {
            ExportTraceServiceRequest::decode(b.clone())
                .unwrap()
                .resource_spans
        })
        .collect();
    let resource = spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attribute(&resource.attributes, "service.name"),
        Some("tollgate-test")
    );
    assert_eq!(
        attribute(&resource.attributes, "deployment.environment"),
        Some("ci")
    );
    let request = spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .find(|s| s.name == "request")
        .expect("the request span");
    assert_eq!(attribute(&request.attributes, "request_id"), Some("req_1"));

    let metrics: Vec<_> = bodies("/v1/metrics")
        .iter()
        .flat_map(|b| {
            ExportMetricsServiceRequest::decode(b.clone())
                .unwrap()
                .resource_metrics
        })
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .collect();
    assert!(
        metrics.iter().any(|m| m.name == "tollgate.test.requests"),
        "{metrics:?}"
    );

    let logs: Vec<_> = bodies("/v1/logs")
        .iter()
        .flat_map(|b| {
            ExportLogsServiceRequest::decode(b.clone())
                .unwrap()
                .resource_logs
        })
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect();
    let usage = logs
        .iter()
        .find(|l| l.event_name == "usage" || string(&l.body) == Some("usage"))
        .unwrap_or_else(|| panic!("the usage record in {logs:?}"));
    assert_eq!(
        attribute(&usage.attributes, "user.email"),
        Some("ada@example.com")
    );
    // The record belongs to the request's trace.
    assert_eq!(request.trace_id.len(), 16);
    assert_eq!(usage.trace_id, request.trace_id);
}
