//! `tollgate admin usage export`: every request with its cost over a range (JSON lines or
//! CSV), totals on stderr, and with `--reconcile` the check that each spend counter equals the
//! costs charged to it.

use std::io::Write as _;

use anyhow::{Context as _, bail};
use chrono::DateTime;
use serde_json::json;
use tollgate_proto::v1 as pb;

use super::super::args::UsageExportArgs;
use super::super::client::AdminClient;
use super::super::time_arg::{format_instant, parse_instant};
use super::super::usd_arg::{dollars, format_usd};
use super::audit::Output;
use super::status;
use crate::report::{Format, Report};

/// Records asked for per call (the service's maximum).
const PAGE: u32 = 5000;

const COLUMNS: [&str; 25] = [
    "request_id",
    "started_at",
    "started_at_unix_ms",
    "duration_ms",
    "data_plane_id",
    "principal_id",
    "principal",
    "email",
    "api_key_id",
    "group_ids",
    "model",
    "provider",
    "upstream_model",
    "endpoint",
    "stream",
    "status",
    "outcome",
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "cost_usd",
    "cost_micro_usd",
    "price_source",
];

pub(super) async fn usage_export(
    client: &mut AdminClient,
    args: UsageExportArgs,
    format: Format,
) -> anyhow::Result<String> {
    let instant = |s: &Option<String>| -> anyhow::Result<i64> {
        s.as_deref()
            .map(|s| parse_instant(s).map_err(anyhow::Error::msg))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let (from, to) = (instant(&args.from)?, instant(&args.to)?);
    let csv = format == Format::Csv;
    let mut out = Output::open(args.output.as_deref())?;
    let (mut requests, mut cost) = (0u64, 0u64);
    let mut cursor = String::new();
    let mut first_page = true;
    loop {
        let page = client
            .audit()
            .export_usage(pb::ExportUsageRequest {
                from_unix_s: from,
                to_unix_s: to,
                cursor,
                limit: PAGE,
            })
            .await
            .map_err(status)?
            .into_inner();
        for r in &page.records {
            requests += 1;
            cost = cost.saturating_add(r.cost_micro_usd);
        }
        let text = if csv {
            csv_page(&page.records, first_page)
        } else {
            page.records
                .iter()
                .map(|r| format!("{}\n", json_line(r)))
                .collect()
        };
        out.write_all(text.as_bytes())
            .context("cannot write the export")?;
        first_page = false;
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    out.finish()?;
    eprintln!(
        "exported {requests} request(s) {}, total {} ({cost} micro-USD)",
        range_text(from, to),
        dollars(cost)
    );
    if args.reconcile {
        reconcile(client, from, to, (requests, cost)).await?;
    }
    Ok(String::new())
}

fn range_text(from: i64, to: i64) -> String {
    let bound = |t: i64, open: &str| {
        if t == 0 {
            open.to_owned()
        } else {
            format_instant(t)
        }
    };
    format!("from {} to {}", bound(from, "the start"), bound(to, "now"))
}

fn started_at(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| unix_ms.to_string())
}

/// One record as a JSON object (numbers as numbers, groups as an array).
fn json_line(r: &pb::UsageRecordExport) -> serde_json::Value {
    json!({
        "request_id": r.request_id,
        "started_at": started_at(r.started_at_unix_ms),
        "started_at_unix_ms": r.started_at_unix_ms,
        "duration_ms": r.duration_ms,
        "data_plane_id": r.data_plane_id,
        "principal_id": r.principal_id,
        "principal": r.principal,
        "email": r.email,
        "api_key_id": r.api_key_id,
        "group_ids": r.group_ids,
        "model": r.model,
        "provider": r.provider,
        "upstream_model": r.upstream_model,
        "endpoint": r.endpoint,
        "stream": r.stream,
        "status": r.status,
        "outcome": r.outcome,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cache_write_5m_tokens": r.cache_creation_5m_tokens,
        "cache_write_1h_tokens": r.cache_creation_1h_tokens,
        "cache_read_tokens": r.cache_read_tokens,
        "cost_usd": format_usd(r.cost_micro_usd),
        "cost_micro_usd": r.cost_micro_usd,
        "price_source": r.price_source,
    })
}

/// CSV rows of one page; the header only on the first.
fn csv_page(records: &[pb::UsageRecordExport], header: bool) -> String {
    let mut report = Report::new(COLUMNS);
    for r in records {
        report.push(vec![
            r.request_id.clone(),
            started_at(r.started_at_unix_ms),
            r.started_at_unix_ms.to_string(),
            r.duration_ms.to_string(),
            r.data_plane_id.clone(),
            r.principal_id.clone(),
            r.principal.clone(),
            r.email.clone(),
            r.api_key_id.clone(),
            r.group_ids.join(";"),
            r.model.clone(),
            r.provider.clone(),
            r.upstream_model.clone(),
            r.endpoint.clone(),
            r.stream.to_string(),
            r.status.to_string(),
            r.outcome.clone(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.cache_creation_5m_tokens.to_string(),
            r.cache_creation_1h_tokens.to_string(),
            r.cache_read_tokens.to_string(),
            format_usd(r.cost_micro_usd),
            r.cost_micro_usd.to_string(),
            r.price_source.clone(),
        ]);
    }
    let text = report.render(Format::Csv);
    if header {
        return text;
    }
    // The header is one line of fixed column names.
    text.split_once("\r\n")
        .map(|(_, rows)| rows.to_owned())
        .unwrap_or_default()
}

/// Prints each counter's check to stderr; fails when any counter differs from its charges.
async fn reconcile(
    client: &mut AdminClient,
    from: i64,
    to: i64,
    (exported_requests, exported_cost): (u64, u64),
) -> anyhow::Result<()> {
    let rec = client
        .audit()
        .reconcile_usage(pb::ReconcileUsageRequest {
            from_unix_s: from,
            to_unix_s: to,
        })
        .await
        .map_err(status)?
        .into_inner();
    let mut mismatches = 0usize;
    for c in &rec.counters {
        let ok = c.counter_spent_micro_usd == c.charged_micro_usd;
        if !ok {
            mismatches += 1;
        }
        let subject = if c.subject_id.is_empty() {
            "shared"
        } else {
            c.subject_id.as_str()
        };
        eprintln!(
            "{} budget {} ({subject}) window {}: counter {} = {} charged by {} request(s){}",
            if ok { "ok      " } else { "MISMATCH" },
            c.budget_id,
            format_instant(c.window_start_unix_s),
            dollars(c.counter_spent_micro_usd),
            dollars(c.charged_micro_usd),
            c.charged_requests,
            if ok {
                String::new()
            } else {
                format!(
                    " (counter {} micro-USD, charges {} micro-USD)",
                    c.counter_spent_micro_usd, c.charged_micro_usd
                )
            }
        );
    }
    let counters_total: u64 = rec
        .counters
        .iter()
        .fold(0, |sum, c| sum.saturating_add(c.counter_spent_micro_usd));
    eprintln!(
        "{} counter(s) in range, spent {}; usage records in range: {} request(s), {}",
        rec.counters.len(),
        dollars(counters_total),
        rec.usage_requests,
        dollars(rec.usage_cost_micro_usd)
    );
    if (rec.usage_requests, rec.usage_cost_micro_usd) != (exported_requests, exported_cost) {
        eprintln!("note: usage records arrived or changed while exporting; export again to match");
    }
    if mismatches > 0 {
        bail!("{mismatches} spend counter(s) differ from the usage charged to them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_pages_after_the_first_have_no_header() {
        let rec = pb::UsageRecordExport {
            request_id: "r1".to_owned(),
            cost_micro_usd: 1_500_000,
            group_ids: vec!["g1".to_owned(), "g2".to_owned()],
            ..Default::default()
        };
        let first = csv_page(std::slice::from_ref(&rec), true);
        assert!(first.starts_with("request_id,started_at,"));
        let next = csv_page(std::slice::from_ref(&rec), false);
        assert!(next.starts_with("r1,"), "{next}");
        assert!(
            next.contains(",g1;g2,") && next.contains(",1.50,1500000,"),
            "{next}"
        );
        assert_eq!(csv_page(&[], true).lines().count(), 1);
    }

    #[test]
    fn json_lines_keep_amounts_numeric() {
        let v = json_line(&pb::UsageRecordExport {
            started_at_unix_ms: 1_767_312_000_123,
            cost_micro_usd: 7,
            ..Default::default()
        });
        assert_eq!(v["cost_micro_usd"], 7);
        assert_eq!(v["cost_usd"], "0.000007");
        assert_eq!(v["started_at"], "2026-01-02T00:00:00.123Z");
    }
}
