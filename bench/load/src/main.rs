//! `tollgate-load`: see the library documentation and `docs/benchmarks.md`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tollgate_load::run(tollgate_load::Cli::parse())
}
