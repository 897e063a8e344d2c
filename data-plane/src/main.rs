//! The `tollgate-data-plane` binary: parse settings, start, stop on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tollgate_data_plane::DataPlaneConfig;
use tollgate_data_plane::{ControlPlaneTls, ListenerLimits, SignInLimitSettings, TlsSettings};
use tollgate_telemetry::{LogOutput, TelemetryConfig};

/// Tollgate data plane: authenticates, authorizes, proxies and meters Anthropic Messages API
/// traffic under the policy the control plane streams to it.
///
/// Telemetry: OpenTelemetry export (traces, metrics, usage events as logs) is configured by
/// the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
/// OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, …; see docs/observability.md) or
/// --otlp-endpoint; nothing is exported when none is set.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Operator listener for `/metrics` (Prometheus), `/healthz` and `/readyz`; off when unset.
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Address clients connect to (HTTP/1.1 and h2c; HTTPS with --tls-cert-file).
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PEM certificate chain (leaf first) served on --listen: clients then connect over TLS
    /// (ALPN h2 and http/1.1). Reloaded without a restart when the file changes.
    #[arg(long, env = "TOLLGATE_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "TOLLGATE_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// How often the TLS certificate and key files are checked for changes (SIGHUP checks at
    /// once); a bad new pair is logged and the previous one kept.
    #[arg(long, env = "TOLLGATE_TLS_RELOAD_INTERVAL_SECS", default_value_t = TlsSettings::DEFAULT_RELOAD_INTERVAL.as_secs())]
    tls_reload_interval_secs: u64,
    /// Time a client has to complete the TLS handshake.
    #[arg(long, env = "TOLLGATE_TLS_HANDSHAKE_TIMEOUT_SECS", default_value_t = TlsSettings::DEFAULT_HANDSHAKE_TIMEOUT.as_secs())]
    tls_handshake_timeout_secs: u64,
    /// The control plane's gRPC endpoint.
    #[arg(
        long,
        env = "TOLLGATE_CONTROL_PLANE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    control_plane_url: String,
    /// For an https --control-plane-url: PEM certificates the control plane's certificate must
    /// chain to (default: the public web PKI roots).
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE_CA_FILE")]
    control_plane_ca_file: Option<PathBuf>,
    /// For an https --control-plane-url: PEM client certificate presented to the control plane
    /// (mutual TLS).
    #[arg(
        long,
        env = "TOLLGATE_CONTROL_PLANE_CLIENT_CERT_FILE",
        requires = "control_plane_client_key_file"
    )]
    control_plane_client_cert_file: Option<PathBuf>,
    /// PEM private key of --control-plane-client-cert-file.
    #[arg(
        long,
        env = "TOLLGATE_CONTROL_PLANE_CLIENT_KEY_FILE",
        requires = "control_plane_client_cert_file"
    )]
    control_plane_client_key_file: Option<PathBuf>,
    /// Token presented to the control plane (keep it in the environment, not on the command line).
    #[arg(long, env = "TOLLGATE_SYNC_TOKEN", hide_env_values = true)]
    sync_token: String,
    /// Name of this data plane in usage records (random if unset).
    #[arg(long, env = "TOLLGATE_DATA_PLANE_ID")]
    data_plane_id: Option<String>,
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = DataPlaneConfig::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    #[arg(
        long,
        env = "TOLLGATE_UPSTREAM_CONNECT_TIMEOUT_SECS",
        default_value_t = 10
    )]
    upstream_connect_timeout_secs: u64,
    #[arg(
        long,
        env = "TOLLGATE_UPSTREAM_FIRST_BYTE_TIMEOUT_SECS",
        default_value_t = 300
    )]
    upstream_first_byte_timeout_secs: u64,
    /// Longest silence between two chunks of a provider's answer before it is cut (an SSE
    /// answer then ends with an `error` event). Route targets may set their own.
    #[arg(
        long,
        env = "TOLLGATE_UPSTREAM_IDLE_TIMEOUT_SECS",
        default_value_t = 300
    )]
    upstream_idle_timeout_secs: u64,
    /// Silence after which a `ping` event is sent on streams translated from Bedrock's
    /// event stream (which has no pings of its own).
    #[arg(long, env = "TOLLGATE_PING_INTERVAL_SECS", default_value_t = 15)]
    ping_interval_secs: u64,
    /// Most route targets tried for one request (failover before the first byte).
    #[arg(long, env = "TOLLGATE_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    /// Consecutive failures that open a route target's circuit breaker.
    #[arg(long, env = "TOLLGATE_BREAKER_FAILURE_THRESHOLD", default_value_t = 5)]
    breaker_failure_threshold: u32,
    /// How long an open breaker skips its target before one probe request.
    #[arg(long, env = "TOLLGATE_BREAKER_COOLDOWN_SECS", default_value_t = 30)]
    breaker_cooldown_secs: u64,
    /// Failover attempts allowed as a percentage of requests …
    #[arg(long, env = "TOLLGATE_RETRY_BUDGET_PERCENT", default_value_t = 20)]
    retry_budget_percent: u32,
    /// … plus this many a second whatever the traffic.
    #[arg(
        long,
        env = "TOLLGATE_RETRY_BUDGET_MIN_PER_SECOND",
        default_value_t = 3
    )]
    retry_budget_min_per_second: u32,
    /// Prefixes of the environment variables provider credential references may name
    /// (comma-separated; replaces the default list).
    #[arg(long, env = "TOLLGATE_CREDENTIAL_ENV_PREFIXES", value_delimiter = ',')]
    credential_env_prefix: Vec<String>,
    /// Directories provider credential file references may point into (comma-separated;
    /// replaces the default list).
    #[arg(long, env = "TOLLGATE_CREDENTIAL_DIRS", value_delimiter = ',')]
    credential_dir: Vec<PathBuf>,
    /// How long to keep metering a provider's answer after the client disconnected.
    #[arg(
        long,
        env = "TOLLGATE_DISCONNECT_DRAIN_TIMEOUT_SECS",
        default_value_t = 600
    )]
    disconnect_drain_timeout_secs: u64,
    #[arg(
        long,
        env = "TOLLGATE_SHUTDOWN_DRAIN_TIMEOUT_SECS",
        default_value_t = 30
    )]
    shutdown_drain_timeout_secs: u64,
    /// Requests served at once (streams included); beyond it clients get 529
    /// `overloaded_error` with `retry-after` at once.
    #[arg(long, env = "TOLLGATE_MAX_CONCURRENT_REQUESTS", default_value_t = ListenerLimits::default().max_concurrent_requests)]
    max_concurrent_requests: usize,
    /// Time a client has to send a request head (HTTP/1); also how long a connection with no
    /// request in flight stays open (HTTP/1 and HTTP/2).
    #[arg(long, env = "TOLLGATE_HEADER_READ_TIMEOUT_SECS", default_value_t = ListenerLimits::default().header_read_timeout.as_secs())]
    header_read_timeout_secs: u64,
    /// Largest request head in bytes (HTTP/1: larger gets 431; HTTP/2: max header list size);
    /// at least 8192.
    #[arg(long, env = "TOLLGATE_MAX_HEADER_BYTES", default_value_t = ListenerLimits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request (more gets 431).
    #[arg(long, env = "TOLLGATE_MAX_HEADERS", default_value_t = ListenerLimits::default().max_headers)]
    max_headers: usize,
    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, env = "TOLLGATE_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = ListenerLimits::default().http2_max_concurrent_streams)]
    http2_max_concurrent_streams: u32,
    /// HTTP/2 streams a client may reset before they are served before its connection is
    /// closed with GOAWAY (rapid-reset protection).
    #[arg(long, env = "TOLLGATE_HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS", default_value_t = ListenerLimits::default().http2_max_pending_accept_reset_streams)]
    http2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 streams reset for a client's protocol errors before its connection is closed
    /// with GOAWAY.
    #[arg(long, env = "TOLLGATE_HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS", default_value_t = ListenerLimits::default().http2_max_local_error_reset_streams)]
    http2_max_local_error_reset_streams: usize,
    /// HTTP/2 keep-alive PING interval (0: no pings).
    #[arg(long, env = "TOLLGATE_HTTP2_KEEP_ALIVE_INTERVAL_SECS", default_value_t = ListenerLimits::default().http2_keep_alive_interval.map_or(0, |d| d.as_secs()))]
    http2_keep_alive_interval_secs: u64,
    /// An unanswered keep-alive PING closes the HTTP/2 connection after this long.
    #[arg(long, env = "TOLLGATE_HTTP2_KEEP_ALIVE_TIMEOUT_SECS", default_value_t = ListenerLimits::default().http2_keep_alive_timeout.as_secs())]
    http2_keep_alive_timeout_secs: u64,
    /// Sign-in requests (`/oauth/…`, `/device…`, authorization-server metadata) allowed per
    /// client address a minute (0: no limit); over it clients get 429 with `retry-after`.
    #[arg(long, env = "TOLLGATE_SIGN_IN_RATE_PER_MINUTE", default_value_t = SignInLimitSettings::default().per_minute)]
    sign_in_rate_per_minute: u32,
    /// Sign-in requests one client address may make at once before the rate applies.
    #[arg(long, env = "TOLLGATE_SIGN_IN_BURST", default_value_t = SignInLimitSettings::default().burst)]
    sign_in_burst: u32,
    #[arg(long, env = "TOLLGATE_USAGE_BATCH_MAX", default_value_t = 500)]
    usage_batch_max: usize,
    #[arg(long, env = "TOLLGATE_USAGE_FLUSH_INTERVAL_MS", default_value_t = 1000)]
    usage_flush_interval_ms: u64,
    /// Usage journal: every usage record is appended here before it is shipped, and what
    /// the control plane has not acknowledged is sent from here at the next start.
    #[arg(long, env = "TOLLGATE_SPOOL_PATH")]
    spool_path: Option<PathBuf>,
    /// File the last good policy snapshot is kept in (encrypted with a key derived from the
    /// sync token), to serve from at the next start while the control plane is unreachable;
    /// off when unset.
    #[arg(long, env = "TOLLGATE_SNAPSHOT_CACHE_PATH")]
    snapshot_cache_path: Option<PathBuf>,
    /// A cached snapshot older than this (since the control plane last delivered or
    /// confirmed it) is not served at start.
    #[arg(
        long,
        env = "TOLLGATE_SNAPSHOT_CACHE_MAX_AGE_SECS",
        default_value_t = DataPlaneConfig::DEFAULT_SNAPSHOT_CACHE_MAX_AGE.as_secs()
    )]
    snapshot_cache_max_age_secs: u64,
    /// The control plane's HTTP listener (OAuth and device flow), e.g. http://cp:8081;
    /// `/oauth/…`, `/device` and the authorization-server metadata are forwarded there.
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE_HTTP_URL")]
    control_plane_http_url: Option<String>,
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,tollgate_data_plane=debug`); also
    /// read from RUST_LOG; default `info`.
    #[arg(long, env = "TOLLGATE_LOG")]
    log: Option<String>,
    /// Log output format: `text`, or `json` (one object a line, with the request's fields).
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: tollgate_telemetry::LogFormat,
    /// OTLP collector base URL (e.g. http://otel-collector:4318); overrides
    /// OTEL_EXPORTER_OTLP_ENDPOINT. Unset, and with no OTEL_* endpoint, nothing is exported.
    #[arg(long, env = "TOLLGATE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Validate the settings and exit.
    #[arg(long)]
    check_config: bool,
    /// TOML file of settings: keys are these flags' long names, values may be references
    /// (`{ file = "PATH" }`, `{ env = "NAME" }`); the command line and TOLLGATE_* variables
    /// win over it. See docs/configuration.md.
    #[arg(long, env = "TOLLGATE_CONFIG", value_name = "FILE")]
    #[allow(dead_code)] // read by `tollgate_settings::with_config_file` before parsing
    config: Option<PathBuf>,
}

/// The arguments, with the settings of the `--config` file for flags set nowhere else.
fn parse_args() -> anyhow::Result<Args> {
    use clap::CommandFactory as _;
    let args =
        tollgate_settings::with_config_file(&Args::command(), std::env::args_os().collect())?;
    Ok(Args::parse_from(args))
}

impl Args {
    /// Logging and export settings: these flags plus the standard `OTEL_*` variables.
    fn telemetry(&self) -> anyhow::Result<TelemetryConfig> {
        let mut telemetry =
            TelemetryConfig::from_env("tollgate-data-plane", self.otlp_endpoint.as_deref())?;
        telemetry.log_filter = self
            .log
            .clone()
            .or_else(|| std::env::var("RUST_LOG").ok())
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| "info".to_owned());
        telemetry.log_format = self.log_format;
        telemetry.log_output = LogOutput::Stdout;
        telemetry.prometheus = self.admin_listen.is_some();
        telemetry.validate()?;
        Ok(telemetry)
    }

    fn into_config(self) -> DataPlaneConfig {
        let mut config = DataPlaneConfig::new(
            self.listen,
            self.control_plane_url,
            SecretString::from(self.sync_token),
        );
        if let Some(id) = self.data_plane_id {
            config.data_plane_id = id;
        }
        config.admin_listen = self.admin_listen;
        if let (Some(cert_file), Some(key_file)) = (self.tls_cert_file, self.tls_key_file) {
            config.tls = Some(TlsSettings {
                reload_interval: Duration::from_secs(self.tls_reload_interval_secs),
                handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_secs),
                ..TlsSettings::new(cert_file, key_file)
            });
        }
        config.control_plane_tls = ControlPlaneTls {
            ca_file: self.control_plane_ca_file,
            client_cert_file: self.control_plane_client_cert_file,
            client_key_file: self.control_plane_client_key_file,
        };
        config.max_body_bytes = self.max_body_bytes;
        config.upstream_connect_timeout = Duration::from_secs(self.upstream_connect_timeout_secs);
        config.upstream_first_byte_timeout =
            Duration::from_secs(self.upstream_first_byte_timeout_secs);
        config.upstream_idle_timeout = Duration::from_secs(self.upstream_idle_timeout_secs);
        config.ping_interval = Duration::from_secs(self.ping_interval_secs);
        config.max_attempts = self.max_attempts;
        if !self.credential_env_prefix.is_empty() {
            config.credential_references.env_prefixes = self.credential_env_prefix;
        }
        if !self.credential_dir.is_empty() {
            config.credential_references.dirs = self.credential_dir;
        }
        config.breaker_failure_threshold = self.breaker_failure_threshold;
        config.breaker_cooldown = Duration::from_secs(self.breaker_cooldown_secs);
        config.retry_budget_percent = self.retry_budget_percent;
        config.retry_budget_min_per_second = self.retry_budget_min_per_second;
        config.disconnect_drain_timeout = Duration::from_secs(self.disconnect_drain_timeout_secs);
        config.shutdown_drain_timeout = Duration::from_secs(self.shutdown_drain_timeout_secs);
        config.listener_limits = ListenerLimits {
            max_concurrent_requests: self.max_concurrent_requests,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            http2_max_concurrent_streams: self.http2_max_concurrent_streams,
            http2_max_pending_accept_reset_streams: self.http2_max_pending_accept_reset_streams,
            http2_max_local_error_reset_streams: self.http2_max_local_error_reset_streams,
            http2_keep_alive_interval: (self.http2_keep_alive_interval_secs > 0)
                .then(|| Duration::from_secs(self.http2_keep_alive_interval_secs)),
            http2_keep_alive_timeout: Duration::from_secs(self.http2_keep_alive_timeout_secs),
        };
        config.sign_in_limit = SignInLimitSettings {
            per_minute: self.sign_in_rate_per_minute,
            burst: self.sign_in_burst,
        };
        config.usage_batch_max = self.usage_batch_max;
        config.usage_flush_interval = Duration::from_millis(self.usage_flush_interval_ms);
        config.spool_path = self.spool_path;
        config.snapshot_cache_path = self.snapshot_cache_path;
        config.snapshot_cache_max_age = Duration::from_secs(self.snapshot_cache_max_age_secs);
        config.control_plane_http_url = self.control_plane_http_url;
        config
    }
}

/// Waits for the first SIGINT/SIGTERM (graceful shutdown: drain, then stop); a second one
/// exits at once.
async fn stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            result = tokio::signal::ctrl_c() => if result.is_err() { return },
            _ = term.recv() => {}
        }
        // Straight to stderr: the log writer is not flushed by `exit`.
        eprintln!("second stop signal: exiting without finishing the drain");
        std::process::exit(130);
    });
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let telemetry_config = args.telemetry()?;
    let check_only = args.check_config;
    let config = args.into_config();
    config.validate()?;
    if check_only {
        println!("configuration ok");
        return Ok(());
    }
    // Logs go to stdout through a background writer, so the request path never waits on a
    // `write(2)`; OpenTelemetry export only when configured.
    let telemetry = tollgate_telemetry::init(telemetry_config)?;
    tollgate_data_plane::metrics::set_enabled(
        telemetry.metrics_enabled() || telemetry.traces_enabled(),
    );
    let result = run(config).await;
    if let Err(error) = telemetry.shutdown().await {
        eprintln!("{error}");
    }
    result
}

async fn run(config: DataPlaneConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let handle = tollgate_data_plane::spawn(config, shutdown.clone())
        .await
        .context("data plane failed to start")?;
    stop_signal().await?;
    tracing::info!("shutting down");
    shutdown.cancel();
    handle
        .wait()
        .await
        .context("data plane did not stop cleanly")?;
    Ok(())
}
