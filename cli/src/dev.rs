//! `tollgate dev`: a control plane, a data plane and PostgreSQL on one machine, seeded with a
//! demo group, routes and an API key, for trying Tollgate with Claude Code in minutes.

mod database;
mod seed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use secrecy::{ExposeSecret as _, SecretString};
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::ControlPlaneConfig;
use tollgate_data_plane::DataPlaneConfig;

pub use database::{DevDatabase, open_database};
pub use seed::{SeedOptions, Seeded, seed};

/// Options of `tollgate dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Address the data plane (the gateway clients talk to) listens on.
    #[arg(long, env = "TOLLGATE_DEV_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address the control plane's gRPC API (admin and sync) listens on.
    #[arg(
        long,
        env = "TOLLGATE_DEV_GRPC_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub grpc_listen: SocketAddr,
    /// Where state lives: the private PostgreSQL cluster, the admin key, the demo key.
    #[arg(long, env = "TOLLGATE_DEV_STATE_DIR", default_value = ".tollgate")]
    pub state_dir: PathBuf,
    /// Use this PostgreSQL database instead of starting a private cluster.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Port of the private PostgreSQL cluster (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub pg_port: u16,
    /// Send requests to this Anthropic-compatible upstream instead of the built-in demo provider.
    #[arg(long, env = "TOLLGATE_DEV_UPSTREAM_URL")]
    pub upstream_url: Option<String>,
    /// API key for --upstream-url.
    #[arg(long, env = "TOLLGATE_DEV_UPSTREAM_KEY", hide_env_values = true)]
    pub upstream_key: Option<String>,
    /// OTLP collector base URL (e.g. http://localhost:4318) for both planes' traces, metrics
    /// and usage logs (service name `tollgate-dev`); the standard OTEL_* variables work too.
    #[arg(long, env = "TOLLGATE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl DevArgs {
    /// Telemetry of the whole `tollgate dev` process (both planes share it): logs on stderr
    /// (filter from RUST_LOG), OTLP export when an endpoint is configured.
    pub fn telemetry(&self) -> anyhow::Result<tollgate_telemetry::TelemetryConfig> {
        let mut config = tollgate_telemetry::TelemetryConfig::from_env(
            "tollgate-dev",
            self.otlp_endpoint.as_deref(),
        )?;
        config.log_filter = std::env::var("RUST_LOG")
            .ok()
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| {
                "warn,tollgate_cli=info,tollgate_control_plane=info,tollgate_data_plane=info".into()
            });
        config.log_output = tollgate_telemetry::LogOutput::Stderr;
        config.validate()?;
        Ok(config)
    }
}

/// Runs until `shutdown` is cancelled (Ctrl-C in the binary), then stops everything cleanly.
pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create state directory {}", args.state_dir.display()))?;
    let db = open_database(&args.state_dir, args.database_url.clone(), args.pg_port).await?;
    let result = run_with_database(&args, &db, shutdown).await;
    db.close().await;
    result
}

async fn run_with_database(
    args: &DevArgs,
    db: &DevDatabase,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sync_token = SecretString::from(crate::secret::random_token("tgs_"));
    let admin_key_file = args.state_dir.join("admin-key");
    let mut cp_config = ControlPlaneConfig::new(
        SecretString::from(db.url.clone()),
        args.grpc_listen,
        sync_token.clone(),
    );
    cp_config.admin_key_file = Some(admin_key_file.clone());
    // Sign-in endpoints: reached through the data plane, which forwards `/oauth/…`,
    // `/device` and the metadata path here, so clients use one base URL.
    cp_config.http_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    cp_config.secrets_key_file = Some(args.state_dir.join("secrets-key"));
    // Audit checkpoints: the signing key stays in the state directory (created at first
    // start), its public half is written beside it for `tollgate audit verify`.
    let audit = DevAudit::new(&args.state_dir);
    cp_config.audit_signing_key_file = Some(audit.signing_key.clone());
    cp_config.audit_checkpoint_file = Some(audit.checkpoints.clone());
    let planes = shutdown.child_token();
    let cp = tollgate_control_plane::spawn(cp_config, planes.clone())
        .await
        .context("control plane failed to start")?;
    let admin_key = match &cp.bootstrap_admin_key {
        Some(k) => k.expose_secret().to_owned(),
        None => std::fs::read_to_string(&admin_key_file)
            .with_context(|| {
                format!(
                    "this database already has an admin key but {} is missing; \
                     remove the state directory to start afresh",
                    admin_key_file.display()
                )
            })?
            .trim()
            .to_owned(),
    };
    let endpoint = format!("http://{}", cp.grpc_addr);
    std::fs::write(
        args.state_dir.join("grpc-endpoint"),
        format!("{endpoint}\n"),
    )
    .context("cannot write the control-plane endpoint into the state directory")?;
    let seeded = seed(
        &endpoint,
        &admin_key,
        &SeedOptions {
            state_dir: args.state_dir.clone(),
            upstream_url: args.upstream_url.clone(),
            upstream_key: args.upstream_key.clone(),
        },
    )
    .await?;

    let mut dp_config = DataPlaneConfig::new(args.listen, endpoint.clone(), sync_token);
    dp_config.control_plane_http_url = cp.http_addr.map(|a| format!("http://{a}"));
    let dp = tollgate_data_plane::spawn(dp_config, planes.clone())
        .await
        .context("data plane failed to start")?;
    let version = db.policy_version().await?;
    if !dp
        .wait_for_snapshot_version(version, Duration::from_secs(10))
        .await
    {
        anyhow::bail!("the data plane did not receive the seeded policy within 10 s");
    }
    audit.write_public_key().await?;
    // A URL given on the command line may carry a password: not printed.
    let verify = audit.verify_command(if args.database_url.is_some() {
        "\"$DATABASE_URL\""
    } else {
        &db.url
    });
    print_banner(args, dp.addr, &endpoint, &admin_key_file, &seeded, &verify);

    shutdown.cancelled().await;
    eprintln!("shutting down…");
    planes.cancel();
    let dp_result = dp.wait().await;
    let cp_result = cp.wait().await;
    dp_result.context("data plane did not shut down cleanly")?;
    cp_result.context("control plane did not shut down cleanly")?;
    Ok(())
}

fn print_banner(
    args: &DevArgs,
    gateway: SocketAddr,
    endpoint: &str,
    admin_key_file: &std::path::Path,
    seeded: &Seeded,
    audit_verify: &str,
) {
    let upstream = args
        .upstream_url
        .as_deref()
        .unwrap_or("the built-in demo provider (offline, deterministic answers)");
    println!(
        "\nTollgate is running: gateway http://{gateway}, control plane {endpoint}, upstream {upstream}.\n\
         \n\
         Point Claude Code (or any Anthropic SDK) at it:\n\
         \n\
         export ANTHROPIC_BASE_URL=http://{gateway}\n\
         export ANTHROPIC_AUTH_TOKEN={key}\n\
         \n\
         Then try: claude -p \"hello\"\n\
         Sign-in through your IdP (Claude Code /login, tollgate login): docs/claude-code-rollout.md\n\
         Admin:    tollgate admin --endpoint {endpoint} --admin-key-file {admin} usage --by user,model\n\
         Audit:    {audit_verify}\n\
         Press Ctrl-C to stop.\n",
        key = seeded.api_key,
        admin = admin_key_file.display(),
    );
}

/// Where `tollgate dev` keeps the audit signing key, its public key and exported checkpoints.
struct DevAudit {
    signing_key: PathBuf,
    public_key: PathBuf,
    checkpoints: PathBuf,
}

impl DevAudit {
    fn new(state_dir: &std::path::Path) -> DevAudit {
        DevAudit {
            signing_key: state_dir.join("audit-signing-key.pem"),
            public_key: state_dir.join("audit-public-key.pem"),
            checkpoints: state_dir.join("audit-checkpoints.jsonl"),
        }
    }

    /// Writes the public key of the (now existing) signing key beside it.
    async fn write_public_key(&self) -> anyhow::Result<()> {
        let key = tollgate_control_plane::audit::AuditSigningKey::load(&self.signing_key).await?;
        std::fs::write(&self.public_key, key.public_key_pem()).with_context(|| {
            format!(
                "cannot write the audit public key to {}",
                self.public_key.display()
            )
        })
    }

    /// The command that verifies this instance's audit log.
    fn verify_command(&self, database_url: &str) -> String {
        format!(
            "tollgate audit verify --database-url {database_url} --public-key {} --checkpoints {}",
            self.public_key.display(),
            self.checkpoints.display()
        )
    }
}
