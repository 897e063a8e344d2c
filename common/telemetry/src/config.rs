//! What to log and where to export: [`TelemetryConfig`], built from a process's flags and the
//! standard `OTEL_*` environment variables by [`TelemetryConfig::from_env`].
//!
//! OTLP export is on only when asked for: an endpoint (`--otlp-endpoint`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or a per-signal `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`)
//! or an explicit `OTEL_{TRACES,METRICS,LOGS}_EXPORTER=otlp` (which then uses the protocol's
//! default endpoint on localhost). `OTEL_SDK_DISABLED=true` turns every OTLP signal off.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use crate::error::TelemetryError;

/// How log lines are written (also the servers' `--log-format` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message`, the event's fields
    /// and the fields of every span the event is in (e.g. `request_id`), never ANSI colours.
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogOutput {
    /// Standard output, through a background writer (the caller never waits on `write(2)`).
    #[default]
    Stdout,
    /// Standard error, written directly (interactive tools).
    Stderr,
}

/// The wire protocol of an OTLP exporter (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `http/protobuf`: protobuf bodies POSTed to `/v1/traces`, `/v1/metrics`, `/v1/logs`.
    #[default]
    HttpProtobuf,
    /// `grpc`: the OTLP gRPC services (plaintext `http://` endpoints only in this build).
    Grpc,
}

impl Protocol {
    fn parse(variable: &str, value: &str) -> Result<Self, TelemetryError> {
        match value.trim() {
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            "http/json" => Err(TelemetryError::invalid(
                variable,
                "`http/json` is not supported; use `http/protobuf` or `grpc`",
            )),
            other => Err(TelemetryError::invalid(
                variable,
                format!("unknown protocol `{other}` (expected `http/protobuf` or `grpc`)"),
            )),
        }
    }

    fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http://localhost:4318",
            Protocol::Grpc => "http://localhost:4317",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        })
    }
}

/// Headers sent with every export request (often credentials): `Debug` shows their names
/// only, never their values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OtlpHeaders(BTreeMap<String, String>);

impl OtlpHeaders {
    /// Parses `key1=value1,key2=value2` (values percent-decoded), as in
    /// `OTEL_EXPORTER_OTLP_HEADERS`. Errors name the variable and the header, not the value.
    pub fn parse(variable: &str, input: &str) -> Result<Self, TelemetryError> {
        let mut headers = BTreeMap::new();
        for pair in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(TelemetryError::invalid(
                    variable,
                    "expected `name=value` pairs separated by commas",
                ));
            };
            let name = name.trim().to_ascii_lowercase();
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(TelemetryError::invalid(
                    variable,
                    format!("`{name}` is not a valid header name"),
                ));
            }
            let value = percent_decode(value.trim()).ok_or_else(|| {
                TelemetryError::invalid(
                    variable,
                    format!("the value of header `{name}` is not valid percent-encoded UTF-8"),
                )
            })?;
            if HeaderValue::from_str(&value).is_err() {
                return Err(TelemetryError::invalid(
                    variable,
                    format!("the value of header `{name}` is not a valid header value"),
                ));
            }
            headers.insert(name, value);
        }
        Ok(OtlpHeaders(headers))
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The header names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// Where and how one signal (traces, metrics or logs) is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalExport {
    /// The full URL requests go to (for `http/protobuf` including `/v1/<signal>`).
    pub endpoint: String,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Extra request headers (or gRPC metadata).
    pub headers: OtlpHeaders,
    /// Longest an export request may take.
    pub timeout: Duration,
}

/// OTLP export of each signal; `None` exports nothing of that signal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OtlpConfig {
    /// Spans (`tracing` spans through the OpenTelemetry layer).
    pub traces: Option<SignalExport>,
    /// Metrics (the global meter provider, read every `metric_export_interval`).
    pub metrics: Option<SignalExport>,
    /// Log records (`tracing` events, e.g. target `tollgate::usage`).
    pub logs: Option<SignalExport>,
    /// Period of the metrics export (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s).
    pub metric_export_interval: Duration,
}

impl OtlpConfig {
    /// Default period of the metrics export.
    pub const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(60);

    /// Whether any signal is exported.
    pub fn is_enabled(&self) -> bool {
        self.traces.is_some() || self.metrics.is_some() || self.logs.is_some()
    }

    /// Every signal to `endpoint` over `http/protobuf` (the base URL: `/v1/<signal>` is
    /// appended), with default timeout and interval. Handy for tests.
    pub fn http(endpoint: &str) -> Result<Self, TelemetryError> {
        let signal = |path: &str| -> Result<SignalExport, TelemetryError> {
            Ok(SignalExport {
                endpoint: join_path("endpoint", endpoint, path)?,
                protocol: Protocol::HttpProtobuf,
                headers: OtlpHeaders::default(),
                timeout: DEFAULT_TIMEOUT,
            })
        };
        Ok(OtlpConfig {
            traces: Some(signal("v1/traces")?),
            metrics: Some(signal("v1/metrics")?),
            logs: Some(signal("v1/logs")?),
            metric_export_interval: Self::DEFAULT_METRIC_EXPORT_INTERVAL,
        })
    }
}

/// Default timeout of an export request (`OTEL_EXPORTER_OTLP_TIMEOUT`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything [`crate::init`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `service.name` of every exported signal (`OTEL_SERVICE_NAME` overrides the default).
    pub service_name: String,
    /// Other resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
    /// Which events are logged, in `tracing` `EnvFilter` syntax (e.g. `info,tollgate=debug`).
    /// It also filters what becomes spans and OTLP log records.
    pub log_filter: String,
    /// Text or JSON lines.
    pub log_format: LogFormat,
    /// Standard output or standard error.
    pub log_output: LogOutput,
    /// OTLP export; nothing is exported when every signal is `None`.
    pub otlp: OtlpConfig,
    /// Whether metrics are also kept for Prometheus scraping (processes with an admin
    /// listener), read by [`crate::Telemetry::prometheus_text`].
    pub prometheus: bool,
}

impl TelemetryConfig {
    /// Logging only (no export, no Prometheus): `default_service_name`, filter `info`, text.
    pub fn new(default_service_name: &str) -> Self {
        TelemetryConfig {
            service_name: default_service_name.to_owned(),
            resource_attributes: Vec::new(),
            log_filter: "info".to_owned(),
            log_format: LogFormat::Text,
            log_output: LogOutput::Stdout,
            otlp: OtlpConfig::default(),
            prometheus: false,
        }
    }

    /// Reads the standard `OTEL_*` variables of the process environment: see
    /// [`TelemetryConfig::from_lookup`].
    pub fn from_env(
        default_service_name: &str,
        otlp_endpoint: Option<&str>,
    ) -> Result<Self, TelemetryError> {
        Self::from_lookup(default_service_name, otlp_endpoint, |name| {
            std::env::var(name).ok()
        })
    }

    /// Builds a configuration from the `OTEL_*` variables `lookup` returns, with logging
    /// defaults of [`TelemetryConfig::new`] (set the log fields afterwards).
    ///
    /// `otlp_endpoint` (the `--otlp-endpoint` flag) replaces `OTEL_EXPORTER_OTLP_ENDPOINT`;
    /// per-signal endpoint variables still win for their signal. Read: `OTEL_SDK_DISABLED`,
    /// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_{TRACES,METRICS,LOGS}_EXPORTER`
    /// (`otlp` | `none`), `OTEL_EXPORTER_OTLP_{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT}` and their
    /// per-signal forms `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_…`,
    /// `OTEL_METRIC_EXPORT_INTERVAL` (ms). Any invalid value is an error naming the variable.
    pub fn from_lookup(
        default_service_name: &str,
        otlp_endpoint: Option<&str>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TelemetryError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = TelemetryConfig::new(default_service_name);

        let mut resource = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(value) => parse_resource_attributes(&value)?,
            None => Vec::new(),
        };
        if let Some(pos) = resource.iter().position(|(k, _)| k == "service.name") {
            let (_, name) = resource.remove(pos);
            config.service_name = name;
        }
        if let Some(name) = get("OTEL_SERVICE_NAME") {
            config.service_name = name.trim().to_owned();
        }
        config.resource_attributes = resource;

        let disabled = match get("OTEL_SDK_DISABLED") {
            None => false,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(TelemetryError::invalid(
                        "OTEL_SDK_DISABLED",
                        "expected `true` or `false`",
                    ));
                }
            },
        };
        let general_endpoint = match otlp_endpoint.filter(|e| !e.trim().is_empty()) {
            Some(e) => Some(("--otlp-endpoint", e.trim().to_owned())),
            None => get("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|e| ("OTEL_EXPORTER_OTLP_ENDPOINT", e.trim().to_owned())),
        };
        let signal = |name: &str, path: &str| -> Result<Option<SignalExport>, TelemetryError> {
            let upper = name.to_ascii_uppercase();
            let exporter_var = format!("OTEL_{upper}_EXPORTER");
            let explicit_otlp = match get(&exporter_var) {
                None => false,
                Some(value) => parse_exporter(&exporter_var, &value)?,
            };
            let exporter_none =
                lookup(&exporter_var).is_some_and(|v| v.split(',').all(|e| e.trim() == "none"));
            let specific = |suffix: &str| {
                let var = format!("OTEL_EXPORTER_OTLP_{upper}_{suffix}");
                get(&var).map(|v| (var, v))
            };
            let general = |suffix: &str| {
                let var = format!("OTEL_EXPORTER_OTLP_{suffix}");
                get(&var).map(|v| (var, v))
            };
            let signal_endpoint = specific("ENDPOINT");
            // Validate every variable even when the signal ends up off.
            let protocol = match specific("PROTOCOL").or_else(|| general("PROTOCOL")) {
                Some((var, value)) => Protocol::parse(&var, &value)?,
                None => Protocol::default(),
            };
            let headers = match specific("HEADERS").or_else(|| general("HEADERS")) {
                Some((var, value)) => OtlpHeaders::parse(&var, &value)?,
                None => OtlpHeaders::default(),
            };
            let timeout = match specific("TIMEOUT").or_else(|| general("TIMEOUT")) {
                Some((var, value)) => parse_millis(&var, &value)?,
                None => DEFAULT_TIMEOUT,
            };
            let endpoint = match (&signal_endpoint, &general_endpoint) {
                (Some((var, url)), _) => Some(check_url(var, url.trim())?),
                (None, Some((var, base))) => Some(match protocol {
                    Protocol::HttpProtobuf => join_path(var, base, path)?,
                    Protocol::Grpc => check_url(var, base)?,
                }),
                (None, None) => None,
            };
            if disabled || exporter_none {
                return Ok(None);
            }
            let endpoint = match (endpoint, explicit_otlp) {
                (Some(endpoint), _) => endpoint,
                (None, true) => match protocol {
                    Protocol::HttpProtobuf => {
                        join_path("endpoint", protocol.default_endpoint(), path)?
                    }
                    Protocol::Grpc => protocol.default_endpoint().to_owned(),
                },
                (None, false) => return Ok(None),
            };
            if protocol == Protocol::Grpc && endpoint.starts_with("https://") {
                return Err(TelemetryError::invalid(
                    &format!("OTLP {name} endpoint"),
                    "gRPC over TLS (`https://`) is not supported by this build; use \
                     `http/protobuf` for an https collector",
                ));
            }
            Ok(Some(SignalExport {
                endpoint,
                protocol,
                headers,
                timeout,
            }))
        };
        config.otlp.traces = signal("traces", "v1/traces")?;
        config.otlp.metrics = signal("metrics", "v1/metrics")?;
        config.otlp.logs = signal("logs", "v1/logs")?;
        if let Some(value) = get("OTEL_METRIC_EXPORT_INTERVAL") {
            let interval = parse_millis("OTEL_METRIC_EXPORT_INTERVAL", &value)?;
            if interval.is_zero() {
                return Err(TelemetryError::invalid(
                    "OTEL_METRIC_EXPORT_INTERVAL",
                    "must be positive",
                ));
            }
            config.otlp.metric_export_interval = interval;
        } else {
            config.otlp.metric_export_interval = OtlpConfig::DEFAULT_METRIC_EXPORT_INTERVAL;
        }
        Ok(config)
    }

    /// Checks the log filter and format-independent settings without installing anything.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        tracing_subscriber::EnvFilter::builder()
            .parse(&self.log_filter)
            .map_err(|e| TelemetryError::invalid("log filter", e.to_string()))?;
        if self.service_name.trim().is_empty() {
            return Err(TelemetryError::invalid(
                "OTEL_SERVICE_NAME",
                "the service name is empty",
            ));
        }
        Ok(())
    }
}

/// `otlp` → true, `none` → false; anything else (console, zipkin, …) is unsupported.
fn parse_exporter(variable: &str, value: &str) -> Result<bool, TelemetryError> {
    let mut otlp = false;
    for exporter in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match exporter {
            "otlp" => otlp = true,
            "none" => {}
            other => {
                return Err(TelemetryError::invalid(
                    variable,
                    format!("exporter `{other}` is not supported (expected `otlp` or `none`)"),
                ));
            }
        }
    }
    Ok(otlp)
}

fn parse_millis(variable: &str, value: &str) -> Result<Duration, TelemetryError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| TelemetryError::invalid(variable, "expected a whole number of milliseconds"))
}

fn check_url(variable: &str, url: &str) -> Result<String, TelemetryError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| TelemetryError::invalid(variable, format!("`{url}` is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(url.to_owned()),
        _ => Err(TelemetryError::invalid(
            variable,
            format!("`{url}` must be an absolute http:// or https:// URL"),
        )),
    }
}

fn join_path(variable: &str, base: &str, path: &str) -> Result<String, TelemetryError> {
    let base = check_url(variable, base.trim())?;
    Ok(format!("{}/{path}", base.trim_end_matches('/')))
}

fn parse_resource_attributes(input: &str) -> Result<Vec<(String, String)>, TelemetryError> {
    const VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(TelemetryError::invalid(
                VAR,
                "expected `key=value` pairs separated by commas",
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(TelemetryError::invalid(VAR, "an attribute key is empty"));
        }
        let value = percent_decode(value.trim()).ok_or_else(|| {
            TelemetryError::invalid(
                VAR,
                format!("the value of `{key}` is not valid percent-encoded UTF-8"),
            )
        })?;
        out.retain(|(k, _)| k != key);
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        vars: &[(&str, &str)],
        flag: Option<&str>,
    ) -> Result<TelemetryConfig, TelemetryError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup("tollgate-test", flag, move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        let c = config(&[("OTEL_EXPORTER_OTLP_HEADERS", "a=b")], None).unwrap();
        assert!(!c.otlp.is_enabled());
        assert_eq!(c.service_name, "tollgate-test");
    }

    #[test]
    fn the_general_endpoint_gets_signal_paths_and_signal_endpoints_are_used_as_is() {
        let c = config(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                    "https://logs.example/ingest",
                ),
                ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            c.otlp.traces.unwrap().endpoint,
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            c.otlp.metrics.unwrap().endpoint,
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(c.otlp.logs.unwrap().endpoint, "https://logs.example/ingest");
        assert_eq!(c.otlp.metric_export_interval, Duration::from_secs(5));
    }

    #[test]
    fn the_flag_replaces_the_general_endpoint() {
        let c = config(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")],
            Some("http://flag:4318"),
        )
        .unwrap();
        assert_eq!(
            c.otlp.traces.unwrap().endpoint,
            "http://flag:4318/v1/traces"
        );
    }

    #[test]
    fn grpc_uses_the_endpoint_as_is_and_per_signal_protocols_apply() {
        let c = config(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
            ],
            None,
        )
        .unwrap();
        let traces = c.otlp.traces.unwrap();
        assert_eq!(traces.protocol, Protocol::Grpc);
        assert_eq!(traces.endpoint, "http://collector:4317");
        assert_eq!(
            c.otlp.logs.unwrap().endpoint,
            "http://collector:4317/v1/logs"
        );
    }

    #[test]
    fn exporter_none_and_sdk_disabled_turn_signals_off() {
        let c = config(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
            None,
        )
        .unwrap();
        assert!(c.otlp.traces.is_none());
        assert!(c.otlp.metrics.is_some());
        let c = config(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ],
            None,
        )
        .unwrap();
        assert!(!c.otlp.is_enabled());
    }

    #[test]
    fn an_explicit_otlp_exporter_uses_the_default_endpoint() {
        let c = config(&[("OTEL_METRICS_EXPORTER", "otlp")], None).unwrap();
        assert_eq!(
            c.otlp.metrics.unwrap().endpoint,
            "http://localhost:4318/v1/metrics"
        );
        assert!(c.otlp.traces.is_none());
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")], "http/json"),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift")],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (&[("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED"),
            (
                &[("OTEL_METRIC_EXPORT_INTERVAL", "0")],
                "OTEL_METRIC_EXPORT_INTERVAL",
            ),
            (
                &[("OTEL_RESOURCE_ATTRIBUTES", "novalue")],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_HEADERS", "bad name=x")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
        ];
        for (vars, expected) in cases {
            let err = config(vars, None).unwrap_err().to_string();
            assert!(err.contains(expected), "{vars:?}: {err}");
        }
    }

    #[test]
    fn header_values_are_decoded_and_never_shown() {
        let c = config(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "Authorization=Bearer%20canary-secret,x-team=a",
                ),
            ],
            None,
        )
        .unwrap();
        let traces = c.otlp.traces.clone().unwrap();
        assert_eq!(
            traces.headers.iter().collect::<Vec<_>>(),
            vec![("authorization", "Bearer canary-secret"), ("x-team", "a")]
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("canary-secret"), "{shown}");
        assert!(shown.contains("authorization"));
        let err = config(
            &[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=canary%0Asecret",
            )],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("canary"), "{err}");
    }

    #[test]
    fn service_name_and_resource_attributes_come_from_the_environment() {
        let c = config(
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,deployment.environment=prod%2Beu",
            )],
            None,
        )
        .unwrap();
        assert_eq!(c.service_name, "from-attrs");
        assert_eq!(
            c.resource_attributes,
            vec![("deployment.environment".to_owned(), "prod+eu".to_owned())]
        );
        let c = config(
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
                ("OTEL_SERVICE_NAME", "from-name"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(c.service_name, "from-name");
    }
}
