//! tollgate-load: the load harness behind `docs/benchmarks.md`.
//!
//! One run measures the same small Anthropic Messages request sent directly to a fast fake
//! upstream ([`upstream`], its own process), through a bare nginx reverse-proxy hop ([`nginx`],
//! when installed) and through the Tollgate data plane ([`stack`]: release binaries of the control
//! and data planes, fed by a fresh Postgres database and seeded over the admin gRPC API). The
//! targets take turns within every phase ([`saturation`], [`open_loop`]) so machine noise hits
//! them alike, and the [`report`] compares ratios within the run against the architecture brief's
//! §9 targets. Traffic goes to 127.0.0.1 only; every loop is bounded in time and count; every
//! child process is stopped when the harness ends, fails or is interrupted.
//!
//! It depends on the other crates only through `tollgate-proto` (the admin API) and the built
//! binaries; nothing here is linked into the gateway.

pub mod cli;
mod client;
mod concurrent;
mod harness;
mod machine;
mod nginx;
mod open_loop;
mod probe;
mod process;
mod propagation;
mod report;
mod saturation;
mod stack;
mod stats;
mod upstream;

pub use cli::{Cli, Command};

/// Runs what the command line asks for: the harness, or the internal fake upstream.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Upstream(args)) => upstream::serve(&args),
        None => harness::run_blocking(&cli.harness),
    }
}
