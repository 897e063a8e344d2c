//! Request telemetry against the fake upstream: the client's trace context reaches the
//! provider, the request's phases are spans of the client's trace, every request logs one
//! usage line, and content capture follows the snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::field::{Field, Visit};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::{Context, SubscriberExt as _};

use super::support::send;
use super::{ADA, setup, setup_with, stream_request};

const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";
const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// An event's fields, as text.
type Fields = BTreeMap<String, String>;

/// The `tollgate::*` events seen on this thread: target and fields.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, Fields)>>>);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        if target.starts_with("tollgate::") {
            let mut fields = BTreeMap::new();
            event.record(&mut Visitor(&mut fields));
            self.0.lock().unwrap().push((target.to_owned(), fields));
        }
    }
}

impl Events {
    fn of(&self, target: &str) -> Vec<Fields> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == target)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

/// Telemetry on, spans exported to memory and events collected, for this (test) thread —
/// the test runtime runs the data plane on it too.
struct Telemetry {
    spans: InMemorySpanExporter,
    provider: SdkTracerProvider,
    events: Events,
    _guard: DefaultGuard,
}

impl Telemetry {
    fn start() -> Self {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let events = Events::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(events.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        // Interest another test thread cached before this subscriber existed is recomputed.
        tracing::callsite::rebuild_interest_cache();
        tollgate_data_plane::metrics::set_enabled(true);
        Telemetry {
            spans,
            provider,
            events,
            _guard: guard,
        }
    }

    fn finished_spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().unwrap();
        self.spans.get_finished_spans().unwrap()
    }
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn the_upstream_joins_the_clients_trace_and_each_phase_is_a_span() {
    let telemetry = Telemetry::start();
    let s = setup(Duration::ZERO).await;
    let headers = [
        ADA,
        ("content-type", "application/json"),
        ("traceparent", CLIENT_TRACEPARENT),
    ];
    let streamed = send(
        s.dp.addr,
        "POST",
        "/v1/messages",
        &headers,
        &stream_request("claude-sonnet-5"),
        false,
    )
    .await;
    assert_eq!(streamed.status, 200);
    let plain = send(
        s.dp.addr,
        "POST",
        "/v1/messages",
        &headers,
        r#"{"model":"claude-sonnet-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#,
        false,
    )
    .await;
    assert_eq!(plain.status, 200);
    s.cp.wait_for_usage(2).await;

    // Each upstream request carries the client's trace, with a gateway span as parent.
    let received = s.upstream.received();
    assert_eq!(received.len(), 2);
    let mut upstream_parents = Vec::new();
    for r in &received {
        let traceparent = r.headers["traceparent"].to_str().unwrap();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[1], CLIENT_TRACE_ID, "{traceparent}");
        assert_ne!(parts[2], CLIENT_SPAN_ID, "{traceparent}");
        upstream_parents.push(SpanId::from_hex(parts[2]).unwrap());
    }

    let spans = telemetry.finished_spans();
    let client_trace = TraceId::from_hex(CLIENT_TRACE_ID).unwrap();
    let requests = named(&spans, "request");
    assert_eq!(
        requests.len(),
        2,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for request in &requests {
        assert_eq!(request.span_context.trace_id(), client_trace);
        assert_eq!(
            request.parent_span_id,
            SpanId::from_hex(CLIENT_SPAN_ID).unwrap()
        );
        assert!(request.parent_span_is_remote);
    }
    let request_ids: Vec<SpanId> = requests.iter().map(|r| r.span_context.span_id()).collect();
    for phase in ["auth", "admission", "upstream", "stream"] {
        let children = named(&spans, phase);
        assert_eq!(children.len(), 2, "{phase} spans");
        for child in children {
            assert_eq!(child.span_context.trace_id(), client_trace, "{phase}");
            assert!(
                request_ids.contains(&child.parent_span_id),
                "{phase} is a child"
            );
        }
    }
    // The traceparent sent upstream names the attempt's span.
    let attempts: Vec<SpanId> = named(&spans, "upstream")
        .iter()
        .map(|s| s.span_context.span_id())
        .collect();
    for parent in &upstream_parents {
        assert!(attempts.contains(parent));
    }
    // The request span of the stream ends after its stream span (it covers the relay).
    for stream in named(&spans, "stream") {
        let request = requests
            .iter()
            .find(|r| r.span_context.span_id() == stream.parent_span_id)
            .unwrap();
        assert!(request.end_time >= stream.end_time);
    }
    let attribute = |span: &SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    for request in &requests {
        assert_eq!(
            attribute(request, "user.email").as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(attribute(request, "outcome").as_deref(), Some("complete"));
        assert_eq!(
            attribute(request, "http.response.status_code").as_deref(),
            Some("200")
        );
    }
    for attempt in named(&spans, "upstream") {
        assert_eq!(attribute(attempt, "provider").as_deref(), Some("upstream"));
        assert_eq!(attribute(attempt, "outcome").as_deref(), Some("ok"));
    }

    // One usage line per request; no content without capture.
    let usage = telemetry.events.of("tollgate::usage");
    assert_eq!(usage.len(), 2, "{usage:?}");
    for line in &usage {
        assert_eq!(line["outcome"], "complete");
        assert_eq!(line["provider"], "upstream");
        assert_eq!(line["user.email"], "ada@example.com");
    }
    assert!(telemetry.events.of("tollgate::content").is_empty());
    s.stop().await;
}

#[tokio::test]
async fn content_capture_logs_what_the_client_sent_and_got() {
    let telemetry = Telemetry::start();
    let s = setup_with(Duration::ZERO, |snap| snap.content_capture = true, |_| {}).await;
    let body = stream_request("claude-sonnet-5");
    let answer = send(
        s.dp.addr,
        "POST",
        "/v1/messages",
        &[ADA, ("content-type", "application/json")],
        &body,
        false,
    )
    .await;
    assert_eq!(answer.status, 200);
    s.cp.wait_for_usage(1).await;
    let content = telemetry.events.of("tollgate::content");
    assert_eq!(content.len(), 1, "{content:?}");
    let line = &content[0];
    assert_eq!(
        line["request_id"],
        answer.headers["request-id"].to_str().unwrap()
    );
    assert_eq!(line["request_body"], body);
    assert_eq!(
        line["response_body"],
        std::str::from_utf8(&answer.body).unwrap()
    );
    assert!(!line.values().any(|v| v.contains("tg_ada")));
    s.stop().await;
}
