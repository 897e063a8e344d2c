//! tollgate-telemetry: what every Tollgate process shares for observability: the tracing
//! subscriber (text or JSON logs), OpenTelemetry export over OTLP (configured by the standard
//! `OTEL_*` variables or flags; nothing is exported, and nothing costs, when none is set), and
//! the Prometheus rendering served on each process's admin listener.
