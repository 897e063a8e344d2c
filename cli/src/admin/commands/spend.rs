//! `tollgate admin budget|prices|spend`: commands of the SpendAdmin service. Money is given
//! and shown in US dollars and sent as integer micro-USD (see `usd_arg`).

mod budget;
mod prices;
mod report;

pub(super) use budget::budget;
pub(super) use prices::prices;
pub(super) use report::spend;

use super::super::time_arg::format_instant;
use super::super::usd_arg::format_usd;

/// Micro-USD as a dollar amount for a report cell (no `$`, so tools can parse it).
fn usd_cell(micro_usd: u64) -> String {
    format_usd(micro_usd)
}

/// Unix seconds as RFC 3339, `-` for 0.
fn instant_cell(unix_s: i64) -> String {
    format_instant(unix_s)
}
