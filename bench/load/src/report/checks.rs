//! The architecture brief's §9 targets, held against one run's numbers.

use super::{Check, LatencyRow, Report, SaturationRow, StreamingRow, Verdict};
use crate::client::TargetKind;

fn verdict(met: bool) -> Verdict {
    if met { Verdict::Met } else { Verdict::NotMet }
}

fn not_measured(what: &'static str, target: &'static str, why: &str) -> Check {
    Check {
        what,
        target,
        measured: why.to_owned(),
        verdict: Verdict::NotMeasured,
    }
}

/// Decimal megabytes from KiB.
pub fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1_000_000.0
}

pub fn checks(r: &Report) -> Vec<Check> {
    let sat = |k| r.saturation.iter().find(|x: &&SaturationRow| x.target == k);
    let lat = |k| r.fixed_rate.iter().find(|x: &&LatencyRow| x.target == k);
    let st = |k| r.streaming.iter().find(|x: &&StreamingRow| x.target == k);
    let (dp, ng) = (TargetKind::DataPlane, TargetKind::Nginx);
    let mut out = Vec::new();

    let what = "CPU per proxied request";
    let target = "≤ 1.5× the nginx hop";
    out.push(
        match (
            sat(dp).and_then(|x| x.proxy_cpu_us),
            sat(ng).and_then(|x| x.proxy_cpu_us),
        ) {
            (Some(d), Some(n)) if n > 0.0 => Check {
                what,
                target,
                measured: format!("{:.2}× (data plane {d:.1} µs, nginx {n:.1} µs)", d / n),
                verdict: verdict(d / n <= 1.5),
            },
            (Some(d), _) => not_measured(what, target, &format!("data plane {d:.1} µs; no nginx")),
            _ => not_measured(what, target, "no data"),
        },
    );

    let what = "saturation throughput";
    let target = "≥ 0.8× the nginx hop";
    out.push(match (sat(dp), sat(ng)) {
        (Some(d), Some(n)) if n.requests_per_s > 0.0 => {
            let ratio = d.requests_per_s / n.requests_per_s;
            Check {
                what,
                target,
                measured: format!(
                    "{ratio:.2}× ({:.0} vs nginx {:.0} req/s)",
                    d.requests_per_s, n.requests_per_s
                ),
                verdict: verdict(ratio >= 0.8),
            }
        }
        (Some(d), _) => not_measured(
            what,
            target,
            &format!("{:.0} req/s; no nginx", d.requests_per_s),
        ),
        _ => not_measured(what, target, "no data"),
    });

    let added = |k| lat(k).and_then(|x| x.added);
    let what = "added latency p50 (light fixed rate)";
    let target = "≤ nginx hop + 0.2 ms";
    out.push(match (added(dp), added(ng)) {
        (Some(d), Some(n)) => Check {
            what,
            target,
            measured: format!("+{:.3} ms (nginx +{:.3} ms)", d.p50_ms, n.p50_ms),
            verdict: verdict(d.p50_ms <= n.p50_ms + 0.2),
        },
        (Some(d), None) => not_measured(what, target, &format!("+{:.3} ms; no nginx", d.p50_ms)),
        _ => not_measured(what, target, "no data"),
    });

    let what = "added latency p99 (light fixed rate)";
    let target = "≤ 1 ms";
    out.push(match added(dp) {
        Some(d) => Check {
            what,
            target,
            measured: format!("+{:.3} ms", d.p99_ms),
            verdict: verdict(d.p99_ms <= 1.0),
        },
        None => not_measured(what, target, "no data"),
    });

    let what = "streaming: first event";
    let target = "no added delay; events relayed as they arrive";
    let gap_ms = r.settings.stream_gap_ms as f64;
    out.push(match st(dp).and_then(|d| Some((d, d.added_first_event?))) {
        Some((d, added)) => {
            let bar = st(ng).and_then(|n| n.added_first_event).map_or(0.0, |n| n.p50_ms.max(0.0)) + 0.2;
            let relayed = d.first_event.p99_ms < gap_ms / 2.0 && d.first_to_last.p50_ms >= gap_ms * 0.9;
            Check {
                what,
                target,
                measured: format!(
                    "first event +{:.3} ms p50 (bar {bar:.3} ms), p99 {:.3} ms; first→last {:.1} ms for a {gap_ms:.0} ms upstream pause",
                    added.p50_ms, d.first_event.p99_ms, d.first_to_last.p50_ms
                ),
                verdict: verdict(added.p50_ms <= bar && relayed),
            }
        }
        None => not_measured(what, target, "no data"),
    });

    let idle = mb(r.memory.idle.rss_kib);
    out.push(Check {
        what: "memory: idle data plane",
        target: "≤ 30 MB RSS",
        measured: format!("{idle:.1} MB"),
        verdict: verdict(idle <= 30.0),
    });

    let what = "memory: 5,000 concurrent streams";
    let target = "≤ 300 MB RSS";
    out.push(match &r.memory.concurrent {
        Some(c) if c.requested >= 5000 && c.open_at_reading >= 5000 => {
            let peak = mb(c.peak_rss_kib);
            Check {
                what,
                target,
                measured: format!("{peak:.1} MB peak with {} streams open", c.open_at_reading),
                verdict: verdict(peak <= 300.0),
            }
        }
        Some(c) => not_measured(
            what,
            target,
            &format!(
                "{:.1} MB peak with {} of {} requested streams open (5,000 needed)",
                mb(c.peak_rss_kib),
                c.open_at_reading,
                c.requested
            ),
        ),
        None => not_measured(what, target, "skipped (--concurrent-streams 0)"),
    });

    let what = "policy change → enforced";
    let target = "≤ 1 s p99";
    let prop = r.propagation.as_ref();
    out.push(
        match prop.map(|p| &p.policy_change_s).filter(|v| !v.is_empty()) {
            Some(v) => {
                let max = v.iter().copied().fold(0.0, f64::max);
                Check {
                    what,
                    target,
                    measured: format!("max {:.3} s over {} changes", max, v.len()),
                    verdict: verdict(max <= 1.0),
                }
            }
            None => not_measured(what, target, "skipped"),
        },
    );
    let what = "revocation → enforced";
    let target = "≤ 5 s";
    out.push(
        match prop.map(|p| &p.revocation_s).filter(|v| !v.is_empty()) {
            Some(v) => {
                let max = v.iter().copied().fold(0.0, f64::max);
                Check {
                    what,
                    target,
                    measured: format!("max {:.3} s over {} revoked keys", max, v.len()),
                    verdict: verdict(max <= 5.0),
                }
            }
            None => not_measured(what, target, "skipped"),
        },
    );
    out.push(not_measured(
        "spend cap under 200 concurrent requests, 3 data planes",
        "final spend ≤ cap + stated bound",
        "not a load-harness measurement (end-to-end tests)",
    ));
    out.push(not_measured(
        "usage records lost across a crash/restart",
        "0",
        "not a load-harness measurement (end-to-end tests)",
    ));
    out
}
