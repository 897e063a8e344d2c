//! Request spans and W3C trace context in and out of HTTP headers.
//!
//! Each request gets one `request` span (when telemetry is on, see [`crate::metrics`]) whose
//! parent is the client's `traceparent`/`tracestate`, if it sent one, and whose children are
//! the phases: `auth`, `admission` (access and spend reservation), `upstream` (one per
//! attempt) and `stream` (relaying the answer to its end). Every upstream request carries
//! the trace context of its `upstream` span, through the global propagator (a no-op when
//! tracing is not installed). Spans are `tracing` spans: the OpenTelemetry layer the binary
//! installs exports them.
//!
//! Telemetry off, every function here returns [`Span::none`] or does nothing.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every request span.
pub const SPAN_TARGET: &str = "tollgate::request";

/// Reads trace context out of request headers.
pub(crate) struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes trace context into request headers (replacing what is there).
pub(crate) struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The span of one request, child of the trace context the client sent; [`Span::none`]
/// when telemetry is off.
pub(crate) fn request_span(
    enabled: bool,
    headers: &HeaderMap,
    request_id: &str,
    method: &http::Method,
    route: &str,
) -> Span {
    if !enabled {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "request",
        otel.kind = "server",
        otel.status_code = Empty,
        request_id = %request_id,
        http.request.method = %method,
        http.route = %route,
        model = Empty,
        user.email = Empty,
        api_key = Empty,
        http.response.status_code = Empty,
        outcome = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Fails only without the OpenTelemetry layer, when there is nothing to parent.
    let _ = span.set_parent(parent);
    span
}

/// The `auth` phase of `parent`.
pub(crate) fn auth_span(parent: &Span) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(target: SPAN_TARGET, parent: parent, "auth")
}

/// The `admission` phase (model access and spend reservation) of `parent`.
pub(crate) fn admission_span(parent: &Span) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(target: SPAN_TARGET, parent: parent, "admission", budget.outcome = Empty)
}

/// One attempt at a provider, child of `parent`.
pub(crate) fn upstream_span(
    parent: &Span,
    provider: &str,
    upstream_model: &str,
    attempt: u32,
) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: SPAN_TARGET,
        parent: parent,
        "upstream",
        otel.kind = "client",
        otel.status_code = Empty,
        provider = %provider,
        upstream_model = %upstream_model,
        attempt,
        http.response.status_code = Empty,
        outcome = Empty,
    )
}

/// Relaying the answer to the client, until its end; child of `parent`.
pub(crate) fn stream_span(parent: &Span) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: SPAN_TARGET,
        parent: parent,
        "stream",
        bytes = Empty,
        outcome = Empty,
    )
}

/// Puts the trace context of `span` into `headers` (`traceparent`, `tracestate`).
pub(crate) fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_off_makes_no_spans_and_injects_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let span = request_span(false, &headers, "r1", &http::Method::POST, "/v1/messages");
        assert!(span.is_none());
        assert!(auth_span(&span).is_none());
        assert!(upstream_span(&span, "p", "m", 1).is_none());
        let mut out = HeaderMap::new();
        inject(&span, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn headers_carry_trace_context_both_ways() {
        let mut headers = HeaderMap::new();
        HeaderInjector(&mut headers).set("traceparent", "00-abc-def-01".to_owned());
        assert_eq!(
            HeaderExtractor(&headers).get("traceparent"),
            Some("00-abc-def-01")
        );
        assert_eq!(HeaderExtractor(&headers).keys(), vec!["traceparent"]);
    }
}
