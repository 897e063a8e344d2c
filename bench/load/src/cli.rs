//! Command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Measures the same Anthropic Messages request sent directly to a fast fake upstream, through
/// an nginx reverse-proxy hop and through the Tollgate data plane, interleaved in one run.
///
/// Needs release binaries of the control and data planes (`cargo build --release --bins`) and a
/// PostgreSQL server; sends traffic to 127.0.0.1 only.
#[derive(Debug, Parser)]
#[command(name = "tollgate-load", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub harness: HarnessArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Internal: run the fake upstream (started by the harness itself).
    #[command(hide = true)]
    Upstream(UpstreamArgs),
}

#[derive(Debug, Clone, Args)]
pub struct HarnessArgs {
    /// Measured seconds per target in each phase (saturation, fixed rate, streaming).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_secs: u64,
    /// Keep-alive connections per target in the saturation phase.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub connections: u64,
    /// Requests per second per target in the light fixed-rate phase (open loop).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub rate: u32,
    /// Requests per second per target in the streaming phase.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub stream_rate: u32,
    /// Pause of the fake upstream between the first SSE events and the rest, in milliseconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub stream_gap_ms: u64,
    /// Streams held open at once through the data plane for the memory measurement (0: skip).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=10000))]
    pub concurrent_streams: u64,
    /// Policy changes (alternately deny and allow) timed until the data plane enforces them.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub policy_changes: u32,
    /// API keys revoked one by one, timed until the data plane rejects them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub revocations: u32,
    /// Worker threads of the fake upstream process.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub upstream_threads: u64,
    /// Log filter for the data plane (`TOLLGATE_LOG`); unset keeps its default (`info`, one
    /// line per request).
    #[arg(long)]
    pub data_plane_log: Option<String>,
    /// Leave nginx out even when it is installed.
    #[arg(long)]
    pub skip_nginx: bool,
    /// Print the results as JSON instead of Markdown.
    #[arg(long)]
    pub json: bool,
    /// Server URL of PostgreSQL; a fresh `tg_load_<random>` database is created and dropped.
    #[arg(
        long,
        env = "TOLLGATE_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Directory holding `tollgate-control-plane` and `tollgate-data-plane`
    /// [default: the directory of this executable, normally target/release].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 20)]
    pub stream_gap_ms: u64,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_brief() {
        let cli = Cli::try_parse_from(["tollgate-load"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.harness.duration_secs, 10);
        assert_eq!(cli.harness.connections, 64);
        assert_eq!(cli.harness.rate, 200);
    }
}
