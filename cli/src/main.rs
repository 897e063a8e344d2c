//! The `tollgate` command.

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Tollgate: a self-hosted gateway for Claude Code and the Anthropic Messages API.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a control plane, a data plane and PostgreSQL locally, with a demo provider.
    Dev(tollgate_cli::dev::DevArgs),
    /// Administer a running Tollgate through its control plane.
    Admin(Box<tollgate_cli::admin::AdminArgs>),
    /// Sign this machine in to a gateway (device flow); for base-URL mode.
    Login(tollgate_cli::login::LoginArgs),
    /// Print a valid gateway access token, refreshing it when needed (Claude Code's apiKeyHelper).
    Token(tollgate_cli::login::TokenArgs),
    /// Revoke this machine's gateway tokens and delete its credentials.
    Logout(tollgate_cli::login::LogoutArgs),
    /// Verify the tamper-evident audit log (hash chain and signed checkpoints).
    Audit(tollgate_cli::audit::AuditArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => {
            // Both planes run in this process: one telemetry, service name `tollgate-dev`.
            let telemetry = tollgate_telemetry::init(args.telemetry()?)?;
            tollgate_data_plane::metrics::set_enabled(
                telemetry.metrics_enabled() || telemetry.traces_enabled(),
            );
            let shutdown = CancellationToken::new();
            let on_signal = shutdown.clone();
            let mut sigterm =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = sigterm.recv() => {}
                }
                on_signal.cancel();
            });
            let result = tollgate_cli::dev::run(args, shutdown).await;
            if let Err(error) = telemetry.shutdown().await {
                eprintln!("{error}");
            }
            result
        }
        Command::Admin(args) => tollgate_cli::admin::run(*args).await,
        Command::Login(args) => tollgate_cli::login::login(args).await,
        Command::Token(args) => tollgate_cli::login::token(args).await,
        Command::Logout(args) => tollgate_cli::login::logout(args).await,
        Command::Audit(args) => {
            let status = tollgate_cli::audit::run(args).await;
            if status != 0 {
                std::process::exit(status);
            }
            Ok(())
        }
    }
}
