//! [`TelemetryError`]: why telemetry could not be configured, started or flushed.

/// Why telemetry could not be configured, installed or shut down cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A setting has an invalid value (never shows header values).
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The variable or flag (e.g. `OTEL_EXPORTER_OTLP_PROTOCOL`).
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An OTLP exporter could not be built.
    #[error("cannot build the OTLP {signal} exporter: {reason}")]
    Exporter {
        /// `traces`, `metrics` or `logs`.
        signal: &'static str,
        /// The exporter's error.
        reason: String,
    },
    /// The Prometheus exporter could not be registered.
    #[error("cannot set up the Prometheus exporter: {0}")]
    Prometheus(String),
    /// A global tracing subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    /// `init` was called outside a Tokio runtime (the exporters need one).
    #[error("telemetry export needs a Tokio runtime")]
    NoRuntime,
    /// Flushing or shutting down a provider failed (what was buffered may be lost).
    #[error("telemetry shutdown: {0}")]
    Shutdown(String),
}

impl TelemetryError {
    pub(crate) fn invalid(setting: &str, reason: impl Into<String>) -> Self {
        TelemetryError::Invalid {
            setting: setting.to_owned(),
            reason: reason.into(),
        }
    }
}
