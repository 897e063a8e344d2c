//! OTLP/gRPC: the tonic exporters build inside the runtime, export from the SDK's threads,
//! and shutdown stays bounded when the collector is unreachable. Its own test binary: `init`
//! installs process-global state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tollgate_telemetry::{LogOutput, TelemetryConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_to_an_unreachable_collector_shuts_down_in_bounded_time() {
    // Port 1 on loopback: connection refused.
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
    ];
    let mut config = TelemetryConfig::from_lookup("tollgate-test", None, |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    config.log_output = LogOutput::Stderr;
    let telemetry = tollgate_telemetry::init(config).unwrap();
    assert!(telemetry.traces_enabled() && telemetry.metrics_enabled() && telemetry.logs_enabled());
    {
        let _span = tracing::info_span!("request").entered();
        tracing::info!("inside");
    }
    opentelemetry::global::meter("t")
        .u64_counter("c")
        .build()
        .add(1, &[]);
    let outcome = tokio::time::timeout(Duration::from_secs(30), telemetry.shutdown()).await;
    assert!(outcome.is_ok(), "shutdown hung");
}
