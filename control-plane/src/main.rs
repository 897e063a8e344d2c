//! `tollgate-control-plane`: parse settings, start the control plane, stop on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::ControlPlaneConfig;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Tollgate control plane: policy, snapshots, usage and admin API"
)]
struct Args {
    /// Postgres connection URL.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Address of the gRPC `Sync` and `Admin` services.
    #[arg(long, env = "TOLLGATE_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    grpc_listen: SocketAddr,
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
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "TOLLGATE_LOG", default_value = "info")]
    log: String,
    /// Log output format.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Validate the settings and exit without connecting anywhere.
    #[arg(long)]
    check_config: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    let args = Args::parse();
    init_tracing(&args.log, args.log_format)?;
    let check_config = args.check_config;
    let config = config(args)?;
    if check_config {
        println!("configuration ok");
        return Ok(());
    }
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
    sqlx::postgres::PgConnectOptions::from_str(database_url.expose_secret())
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
    config.http_listen = args.http_listen;
    config.public_url = args.public_url;
    config.token_ttl = Duration::from_secs(args.token_ttl_secs);
    config.secrets_key = args.secrets_key.map(SecretString::from);
    config.secrets_key_file = Some(args.secrets_key_file);
    Ok(config)
}

fn init_tracing(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for SIGINT"),
        _ = term.recv() => Ok(()),
    }
}
