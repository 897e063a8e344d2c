//! tollgate-telemetry: what every Tollgate process shares for observability: the tracing
//! subscriber (text or JSON logs), OpenTelemetry export over OTLP (configured by the standard
//! `OTEL_*` variables or flags; nothing is exported, and nothing costs, when none is set), and
//! the Prometheus rendering served on each process's admin listener.
//!
//! # Use
//!
//! ```no_run
//! # async fn run() -> Result<(), tollgate_telemetry::TelemetryError> {
//! use tollgate_telemetry::{LogFormat, TelemetryConfig};
//!
//! let mut config = TelemetryConfig::from_env("tollgate-data-plane", None)?; // OTEL_* variables
//! config.log_filter = "info".into();
//! config.log_format = LogFormat::Json;
//! config.prometheus = true; // this process serves /metrics on an admin listener
//! let telemetry = tollgate_telemetry::init(config)?; // inside the Tokio runtime
//! // … run; instrumentation may check `telemetry.metrics_enabled()` first …
//! telemetry.shutdown().await?; // flushes spans, metrics and logs
//! # Ok(()) }
//! ```
//!
//! [`init`] installs the global `tracing` subscriber: an `EnvFilter` (the configured filter),
//! the fmt layer (text, or flat JSON lines carrying the fields of the spans an event is in),
//! and, when OTLP is configured:
//! - traces: a batch [`SdkTracerProvider`] behind a `tracing-opentelemetry` layer (every
//!   `tracing` span becomes a span) and W3C TraceContext as the global propagator;
//! - logs: a batch [`SdkLoggerProvider`] behind the `opentelemetry-appender-tracing` bridge
//!   (every `tracing` event, e.g. target `tollgate::usage`, becomes an OTLP log record);
//! - metrics: the global [`SdkMeterProvider`] with a periodic reader exporting over OTLP.
//!
//! Independently, [`TelemetryConfig::prometheus`] adds a Prometheus reader to the same meter
//! provider, rendered by [`Telemetry::prometheus_text`] (and [`prometheus_text`]) and served by
//! [`admin`]. With neither, no meter provider is installed (the global no-op stays) and no
//! OpenTelemetry layer is added.
//!
//! OTLP/HTTP (`http/protobuf`, the default) uses a hyper client whose requests run on the Tokio
//! runtime `init` was called in; `grpc` uses tonic (plaintext endpoints).

pub mod admin;
mod config;
mod error;
mod json;
mod transport;

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::Handle;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, layer::Layered};

pub use config::{
    LogFormat, LogOutput, OtlpConfig, OtlpHeaders, Protocol, SignalExport, TelemetryConfig,
};
pub use error::TelemetryError;

/// The instrumentation scope of the spans this crate's tracer creates.
const TRACER_NAME: &str = "tollgate";

/// The Prometheus registry of the running process, for [`prometheus_text`].
static PROMETHEUS: RwLock<Option<prometheus::Registry>> = RwLock::new(None);
/// Whether the installed telemetry has a meter provider, for [`metrics_enabled`].
static METRICS_ON: AtomicBool = AtomicBool::new(false);
/// Whether the installed telemetry exports spans, for [`traces_enabled`].
static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Whether the process's [`Telemetry`] (if any) installed a meter provider: libraries that
/// do not hold the [`Telemetry`] value check this (one atomic load) before building
/// attributes or starting metric-only work.
pub fn metrics_enabled() -> bool {
    METRICS_ON.load(Ordering::Relaxed)
}

/// Whether the process's [`Telemetry`] (if any) exports spans.
pub fn traces_enabled() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
}

/// The installed telemetry of a process. Keep it until exit, then [`Telemetry::shutdown`].
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    prometheus: Option<prometheus::Registry>,
    log_guard: Option<WorkerGuard>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("traces", &self.traces_enabled())
            .field("metrics", &self.metrics_enabled())
            .field("logs", &self.logger_provider.is_some())
            .field("prometheus", &self.prometheus.is_some())
            .finish()
    }
}

impl Telemetry {
    /// Whether a meter provider is installed (OTLP metrics or Prometheus): when false, the
    /// global meter is a no-op and instrumentation should skip building attributes.
    pub fn metrics_enabled(&self) -> bool {
        self.meter_provider.is_some()
    }

    /// Whether `tracing` spans are exported (an OTLP trace exporter is installed).
    pub fn traces_enabled(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Whether `tracing` events are exported as OTLP log records.
    pub fn logs_enabled(&self) -> bool {
        self.logger_provider.is_some()
    }

    /// The metrics in the Prometheus text exposition format (empty without
    /// [`TelemetryConfig::prometheus`]).
    pub fn prometheus_text(&self) -> String {
        self.prometheus.as_ref().map(render).unwrap_or_default()
    }

    /// Flushes and stops every provider (spans, metrics, log records still buffered are
    /// exported, each under its export timeout), then flushes the log writer. Runs the
    /// blocking flush off the async workers.
    pub async fn shutdown(mut self) -> Result<(), TelemetryError> {
        let tracer = self.tracer_provider.take();
        let logger = self.logger_provider.take();
        let meter = self.meter_provider.take();
        if let Ok(mut global) = PROMETHEUS.write() {
            *global = None;
        }
        METRICS_ON.store(false, Ordering::Relaxed);
        TRACES_ON.store(false, Ordering::Relaxed);
        let flushed = tokio::task::spawn_blocking(move || {
            let mut failures = Vec::new();
            if let Some(p) = tracer
                && let Err(e) = p.shutdown()
            {
                failures.push(format!("traces: {e}"));
            }
            if let Some(p) = meter
                && let Err(e) = p.shutdown()
            {
                failures.push(format!("metrics: {e}"));
            }
            if let Some(p) = logger
                && let Err(e) = p.shutdown()
            {
                failures.push(format!("logs: {e}"));
            }
            failures
        })
        .await
        .map_err(|e| TelemetryError::Shutdown(e.to_string()))?;
        drop(self.log_guard.take());
        if flushed.is_empty() {
            Ok(())
        } else {
            Err(TelemetryError::Shutdown(flushed.join("; ")))
        }
    }
}

/// The running process's metrics in the Prometheus text format (empty when no
/// [`Telemetry`] with Prometheus is installed). For admin listeners that have no access to
/// the [`Telemetry`] value.
pub fn prometheus_text() -> String {
    match PROMETHEUS.read() {
        Ok(registry) => registry.as_ref().map(render).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn render(registry: &prometheus::Registry) -> String {
    let encoder = prometheus::TextEncoder::new();
    encoder
        .encode_to_string(&registry.gather())
        .unwrap_or_default()
}

/// Targets whose events never become spans or OTLP log records: the exporters' own
/// transport (a log about an export must not cause another export).
fn is_export_internal(target: &str) -> bool {
    [
        "opentelemetry",
        "hyper",
        "h2",
        "tonic",
        "tower",
        "rustls",
        "reqwest",
    ]
    .iter()
    .any(|prefix| {
        target.starts_with(prefix)
            && matches!(
                target.as_bytes().get(prefix.len()),
                None | Some(b':' | b'_')
            )
    })
}

type BoxedLayer = Box<dyn Layer<Layered<EnvFilter, Registry>> + Send + Sync>;

/// Installs telemetry for the process: the global `tracing` subscriber and, when configured,
/// the OpenTelemetry providers (see the crate documentation). Call once, inside the Tokio
/// runtime (it is captured for export requests).
///
/// Errors: an invalid filter, an exporter that cannot be built, no runtime while OTLP is
/// configured, or a subscriber already installed.
pub fn init(config: TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    config.validate()?;
    let mut filter = EnvFilter::builder()
        .parse(&config.log_filter)
        .map_err(|e| TelemetryError::invalid("log filter", e.to_string()))?;
    // The SDK's own chatter ("global provider is set", …) only from warnings up, unless the
    // filter says otherwise.
    if !config.log_filter.contains("opentelemetry") {
        for directive in [
            "opentelemetry=warn",
            "opentelemetry_sdk=warn",
            "opentelemetry_otlp=warn",
        ] {
            if let Ok(directive) = directive.parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let otlp = &config.otlp;
    let runtime = if otlp.is_enabled() {
        Some(Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?)
    } else {
        None
    };
    let resource = (otlp.is_enabled() || config.prometheus).then(|| {
        Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .with_attributes(
                config
                    .resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build()
    });

    let mut layers: Vec<BoxedLayer> = Vec::new();
    let (fmt_layer, log_guard) = fmt_layer(&config);
    layers.push(fmt_layer);

    let mut tracer_provider = None;
    if let (Some(signal), Some(runtime), Some(resource)) = (&otlp.traces, &runtime, &resource) {
        let exporter = span_exporter(signal, runtime)?;
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer(TRACER_NAME);
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter_fn(|meta| !is_export_internal(meta.target())))
                .boxed(),
        );
        tracer_provider = Some(provider);
    }

    let mut logger_provider = None;
    if let (Some(signal), Some(runtime), Some(resource)) = (&otlp.logs, &runtime, &resource) {
        let exporter = log_exporter(signal, runtime)?;
        let provider = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(exporter)
            .build();
        layers.push(
            OpenTelemetryTracingBridge::new(&provider)
                .with_filter(filter_fn(|meta| !is_export_internal(meta.target())))
                .boxed(),
        );
        logger_provider = Some(provider);
    }

    let mut meter_provider = None;
    let mut registry = None;
    if let Some(resource) = resource
        .as_ref()
        .filter(|_| otlp.metrics.is_some() || config.prometheus)
    {
        let mut builder = SdkMeterProvider::builder().with_resource(resource.clone());
        if let (Some(signal), Some(runtime)) = (&otlp.metrics, &runtime) {
            let exporter = metric_exporter(signal, runtime)?;
            builder = builder.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(otlp.metric_export_interval)
                    .build(),
            );
        }
        if config.prometheus {
            let prometheus_registry = prometheus::Registry::new();
            let reader = opentelemetry_prometheus::exporter()
                .with_registry(prometheus_registry.clone())
                .build()
                .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
            builder = builder.with_reader(reader);
            registry = Some(prometheus_registry);
        }
        meter_provider = Some(builder.build());
    }

    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if let Some(provider) = &tracer_provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    if let Some(provider) = &meter_provider {
        opentelemetry::global::set_meter_provider(provider.clone());
    }
    if let Ok(mut global) = PROMETHEUS.write() {
        global.clone_from(&registry);
    }
    METRICS_ON.store(meter_provider.is_some(), Ordering::Relaxed);
    TRACES_ON.store(tracer_provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry {
        tracer_provider,
        logger_provider,
        meter_provider,
        prometheus: registry,
        log_guard,
    })
}

/// The fmt layer of the configured format and output.
fn fmt_layer(config: &TelemetryConfig) -> (BoxedLayer, Option<WorkerGuard>) {
    use std::io::IsTerminal as _;
    let (writer, guard, ansi) = match config.log_output {
        LogOutput::Stdout => {
            let ansi = std::io::stdout().is_terminal();
            let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
            (
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(writer),
                Some(guard),
                ansi,
            )
        }
        LogOutput::Stderr => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
            None,
            std::io::stderr().is_terminal(),
        ),
    };
    let layer = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(json::JsonLines)
            .with_writer(writer)
            .with_ansi(false)
            .boxed(),
    };
    (layer, guard)
}

fn exporter_error(
    signal: &'static str,
) -> impl Fn(opentelemetry_otlp::ExporterBuildError) -> TelemetryError {
    move |e| TelemetryError::Exporter {
        signal,
        reason: e.to_string(),
    }
}

fn http_headers(signal: &SignalExport) -> HashMap<String, String> {
    signal
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn grpc_metadata(signal: &SignalExport) -> tonic::metadata::MetadataMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in signal.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    tonic::metadata::MetadataMap::from_headers(headers)
}

/// Builds one signal's exporter for `signal`'s protocol; the same code for the three kinds.
macro_rules! build_exporter {
    ($exporter:ty, $name:literal, $signal:expr, $runtime:expr) => {{
        let signal: &SignalExport = $signal;
        let runtime: &Handle = $runtime;
        match signal.protocol {
            Protocol::HttpProtobuf => <$exporter>::builder()
                .with_http()
                .with_http_client(transport::ExportClient::new(
                    runtime.clone(),
                    signal.timeout,
                ))
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(signal.endpoint.clone())
                .with_timeout(signal.timeout)
                .with_headers(http_headers(signal))
                .build()
                .map_err(exporter_error($name)),
            Protocol::Grpc => {
                // The tonic channel spawns its worker on the current runtime.
                let _entered = runtime.enter();
                <$exporter>::builder()
                    .with_tonic()
                    .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                    .with_endpoint(signal.endpoint.clone())
                    .with_timeout(signal.timeout)
                    .with_metadata(grpc_metadata(signal))
                    .build()
                    .map_err(exporter_error($name))
            }
        }
    }};
}

fn span_exporter(
    signal: &SignalExport,
    runtime: &Handle,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    build_exporter!(opentelemetry_otlp::SpanExporter, "traces", signal, runtime)
}

fn log_exporter(
    signal: &SignalExport,
    runtime: &Handle,
) -> Result<opentelemetry_otlp::LogExporter, TelemetryError> {
    build_exporter!(opentelemetry_otlp::LogExporter, "logs", signal, runtime)
}

fn metric_exporter(
    signal: &SignalExport,
    runtime: &Handle,
) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    build_exporter!(
        opentelemetry_otlp::MetricExporter,
        "metrics",
        signal,
        runtime
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_internal_targets_are_recognised() {
        assert!(is_export_internal("hyper_util::client::legacy"));
        assert!(is_export_internal("h2::proto"));
        assert!(is_export_internal("opentelemetry_sdk"));
        assert!(is_export_internal("tonic"));
        assert!(!is_export_internal("tollgate::usage"));
        assert!(!is_export_internal("h2o"));
    }
}
