//! `tollgate-control-plane`: parse settings, start the control plane, stop on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::ControlPlaneConfig;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Tollgate control plane: policy, snapshots, usage and admin API",
    long_about = "Tollgate control plane: policy, snapshots, usage and admin API.\n\n\
        Telemetry: OpenTelemetry export (traces, metrics, logs) is configured by the standard \
        OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, \
        OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, ...; see docs/observability.md) or \
        --otlp-endpoint; nothing is exported when none is set."
)]
struct Args {
    /// Postgres connection URL.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Address of the gRPC `Sync` and `Admin` services.
    #[arg(long, env = "TOLLGATE_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    grpc_listen: SocketAddr,
    /// PEM certificate chain (leaf first) served on --grpc-listen: data planes and `tollgate
    /// admin` then connect with https:// URLs. Read at start (renewal takes a restart).
    #[arg(
        long,
        env = "TOLLGATE_GRPC_TLS_CERT_FILE",
        requires = "grpc_tls_key_file"
    )]
    grpc_tls_cert_file: Option<PathBuf>,
    /// PEM private key of --grpc-tls-cert-file.
    #[arg(
        long,
        env = "TOLLGATE_GRPC_TLS_KEY_FILE",
        requires = "grpc_tls_cert_file"
    )]
    grpc_tls_key_file: Option<PathBuf>,
    /// PEM CA certificates for mutual TLS on --grpc-listen: every caller (data planes and
    /// `tollgate admin`) must present a client certificate issued by one of them.
    #[arg(
        long,
        env = "TOLLGATE_GRPC_TLS_CLIENT_CA_FILE",
        requires = "grpc_tls_cert_file"
    )]
    grpc_tls_client_ca_file: Option<PathBuf>,
    /// Token data planes must present (`authorization: Bearer <token>`).
    #[arg(long, env = "TOLLGATE_SYNC_TOKEN", hide_env_values = true)]
    sync_token: String,
    /// Where to write the admin key generated at first start (mode 0600).
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_KEY_FILE",
        default_value = "tollgate-admin.key"
    )]
    admin_key_file: PathBuf,
    /// Period of the full policy recompile backing up LISTEN/NOTIFY.
    #[arg(long, env = "TOLLGATE_RESYNC_INTERVAL_SECS", default_value_t = 30)]
    resync_interval_secs: u64,
    /// Size of the Postgres connection pool.
    #[arg(long, env = "TOLLGATE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    db_max_connections: u32,
    /// Address of the HTTP identity endpoints (device flow, verification page, IdP callback),
    /// which data planes forward to. Unset serves none.
    #[arg(long, env = "TOLLGATE_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// The gateway's external base URL (issuer of gateway tokens, base of absolute URLs).
    /// Unset: URLs follow the forwarded host of each request.
    #[arg(long, env = "TOLLGATE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Lifetime of gateway access tokens, in seconds.
    #[arg(long, env = "TOLLGATE_TOKEN_TTL_SECS", default_value_t = 3600)]
    token_ttl_secs: u64,
    /// Base64 of the 32-byte key encrypting secrets at rest; the same on every replica.
    #[arg(long, env = "TOLLGATE_SECRETS_KEY", hide_env_values = true)]
    secrets_key: Option<String>,
    /// Where the secrets key is read from, or generated into (mode 0600) at first start, when
    /// --secrets-key is not given.
    #[arg(
        long,
        env = "TOLLGATE_SECRETS_KEY_FILE",
        default_value = "tollgate-secrets.key"
    )]
    secrets_key_file: PathBuf,
    /// Where audit entries past their retention are archived before deletion. Unset: audit
    /// entries are never deleted, whatever the retention setting.
    #[arg(long, env = "TOLLGATE_AUDIT_ARCHIVE_DIR")]
    audit_archive_dir: Option<PathBuf>,
    /// Ed25519 private key (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes) signing
    /// audit checkpoints; created (mode 0600) at first start if missing. Give every replica
    /// the same key and hand its public key (`tollgate audit public-key`) to auditors.
    #[arg(
        long,
        env = "TOLLGATE_AUDIT_SIGNING_KEY_FILE",
        default_value = "tollgate-audit.pem"
    )]
    audit_signing_key_file: PathBuf,
    /// Period of the signed audit checkpoints (written even when nothing happened).
    #[arg(
        long,
        env = "TOLLGATE_AUDIT_CHECKPOINT_INTERVAL_SECS",
        default_value_t = 300
    )]
    audit_checkpoint_interval_secs: u64,
    /// Append every signed audit checkpoint to this file (JSON lines, fsynced).
    #[arg(long, env = "TOLLGATE_AUDIT_CHECKPOINT_FILE")]
    audit_checkpoint_file: Option<PathBuf>,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "TOLLGATE_LOG", default_value = "info")]
    log: String,
    /// Log output format: `text`, or `json` (one object a line).
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = tollgate_telemetry::LogFormat::Text)]
    log_format: tollgate_telemetry::LogFormat,
    /// Operator listener for `/metrics` (Prometheus), `/healthz` and `/readyz` (ready while
    /// the database answers and a policy snapshot is compiled). Unset serves none.
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// OTLP collector base URL (e.g. http://otel-collector:4318); overrides
    /// OTEL_EXPORTER_OTLP_ENDPOINT. Unset, and with no OTEL_* endpoint, nothing is exported.
    #[arg(long, env = "TOLLGATE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Validate the settings and exit without connecting anywhere.
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

/// Logging and export settings: the log flags plus the standard `OTEL_*` variables.
fn telemetry_config(args: &Args) -> anyhow::Result<tollgate_telemetry::TelemetryConfig> {
    let mut telemetry = tollgate_telemetry::TelemetryConfig::from_env(
        "tollgate-control-plane",
        args.otlp_endpoint.as_deref(),
    )?;
    telemetry.log_filter = args.log.clone();
    telemetry.log_format = args.log_format;
    telemetry.log_output = tollgate_telemetry::LogOutput::Stdout;
    telemetry.prometheus = args.admin_listen.is_some();
    telemetry.validate()?;
    Ok(telemetry)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let telemetry = telemetry_config(&args)?;
    let check_config = args.check_config;
    let config = config(args)?;
    if check_config {
        println!("configuration ok");
        return Ok(());
    }
    let telemetry = tollgate_telemetry::init(telemetry)?;
    let result = serve(config).await;
    if let Err(error) = telemetry.shutdown().await {
        eprintln!("{error}");
    }
    result
}

async fn serve(config: ControlPlaneConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let handle = tollgate_control_plane::spawn(config, shutdown.clone())
        .await
        .context("control plane failed to start")?;
    wait_for_signal().await?;
    tracing::info!("shutting down");
    shutdown.cancel();
    handle.wait().await.context("control plane failed")
}

/// Validates the arguments into a configuration, without connecting anywhere.
fn config(args: Args) -> anyhow::Result<ControlPlaneConfig> {
    let database_url = SecretString::from(args.database_url);
    let url = database_url.expose_secret();
    anyhow::ensure!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "--database-url is not a valid Postgres URL: it must start with postgres:// or postgresql://"
    );
    sqlx::postgres::PgConnectOptions::from_str(url)
        .context("--database-url is not a valid Postgres URL")?;
    anyhow::ensure!(
        !args.sync_token.is_empty(),
        "--sync-token must not be empty"
    );
    anyhow::ensure!(
        args.resync_interval_secs > 0,
        "--resync-interval-secs must be positive"
    );
    anyhow::ensure!(
        args.db_max_connections >= 2,
        "--db-max-connections must be at least 2"
    );
    let mut config = ControlPlaneConfig::new(
        database_url,
        args.grpc_listen,
        SecretString::from(args.sync_token),
    );
    config.admin_key_file = Some(args.admin_key_file);
    config.resync_interval = Duration::from_secs(args.resync_interval_secs);
    config.db_max_connections = args.db_max_connections;
    anyhow::ensure!(
        args.token_ttl_secs >= 60,
        "--token-ttl-secs must be at least 60"
    );
    if let Some(url) = &args.public_url {
        anyhow::ensure!(
            url.starts_with("https://") || url.starts_with("http://"),
            "--public-url must be an http(s) URL"
        );
    }
    if let (Some(cert_file), Some(key_file)) = (args.grpc_tls_cert_file, args.grpc_tls_key_file) {
        let tls = tollgate_control_plane::GrpcTls {
            cert_file,
            key_file,
            client_ca_file: args.grpc_tls_client_ca_file,
        };
        tls.server_config().context("invalid gRPC TLS settings")?;
        config.grpc_tls = Some(tls);
    }
    config.http_listen = args.http_listen;
    config.admin_listen = args.admin_listen;
    config.public_url = args.public_url;
    config.token_ttl = Duration::from_secs(args.token_ttl_secs);
    config.secrets_key = args.secrets_key.map(SecretString::from);
    config.secrets_key_file = Some(args.secrets_key_file);
    config.audit_archive_dir = args.audit_archive_dir;
    anyhow::ensure!(
        args.audit_checkpoint_interval_secs > 0,
        "--audit-checkpoint-interval-secs must be positive"
    );
    config.audit_signing_key_file = Some(args.audit_signing_key_file);
    config.audit_checkpoint_interval = Duration::from_secs(args.audit_checkpoint_interval_secs);
    config.audit_checkpoint_file = args.audit_checkpoint_file;
    Ok(config)
}

/// Waits for the first SIGINT/SIGTERM (graceful shutdown); a second one exits at once.
async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for SIGINT")?,
        _ = term.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            _ = term.recv() => {}
        }
        // Straight to stderr: the log writer is not flushed by `exit`.
        eprintln!("second stop signal: exiting without finishing the shutdown");
        std::process::exit(130);
    });
    Ok(())
}
