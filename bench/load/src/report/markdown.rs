//! The report as Markdown tables.

use std::fmt::{Result, Write};

use super::checks::mb;
use super::{Report, Verdict};
use crate::stats::Percentiles;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| String::from("—"), |v| format!("{v:.digits$}"))
}

fn signed(v: f64) -> String {
    format!("{v:+.3}")
}

pub fn render(r: &Report) -> std::result::Result<String, std::fmt::Error> {
    let mut out = String::new();
    write_all(&mut out, r)?;
    Ok(out)
}

fn write_all(out: &mut String, r: &Report) -> Result {
    let m = &r.machine;
    let s = &r.settings;
    writeln!(out, "## Tollgate load harness results\n")?;
    writeln!(
        out,
        "Machine: {} cores ({}), {}, {:.1} GiB RAM; load average at start {}.  ",
        m.cores, m.cpu_model, m.kernel, m.memory_gib, m.load_average_at_start
    )?;
    writeln!(
        out,
        "Run: {} s per target per phase, {} connections at saturation, {} req/s per target at the \
         fixed rate, {} streams/s per target with a {} ms upstream pause; nginx: {}.\n",
        s.duration_secs,
        s.connections,
        s.rate,
        s.stream_rate,
        s.stream_gap_ms,
        s.nginx.as_deref().unwrap_or("not used")
    )?;
    for note in &r.notes {
        writeln!(out, "- note: {note}")?;
    }
    if !r.notes.is_empty() {
        writeln!(out)?;
    }

    writeln!(
        out,
        "### Saturation ({} keep-alive connections, closed loop, targets interleaved)\n",
        s.connections
    )?;
    writeln!(
        out,
        "| target | req/s | rounds min–max | vs direct | errors | p50 ms | p99 ms | proxy CPU µs/req | \
         fake upstream µs/req | load generator µs/req | control plane µs/req | all started processes µs/req | other processes' CPU |"
    )?;
    writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    for row in &r.saturation {
        writeln!(
            out,
            "| {} | {:.0} | {:.0}–{:.0} | {:.2}× | {} | {:.3} | {:.3} | {} | {} | {} | {} | {:.1} | {:.0} % |",
            row.target.label(),
            row.requests_per_s,
            row.round_min_per_s,
            row.round_max_per_s,
            row.vs_direct,
            row.errors,
            row.latency.p50_ms,
            row.latency.p99_ms,
            opt(row.proxy_cpu_us, 1),
            opt(row.upstream_cpu_us, 1),
            opt(row.load_generator_cpu_us, 1),
            opt(row.control_plane_cpu_us, 1),
            row.harness_processes_cpu_us,
            row.other_processes_share * 100.0
        )?;
    }

    writeln!(
        out,
        "\n### Light fixed rate ({} req/s per target, open loop, interleaved request by request)\n",
        s.rate
    )?;
    writeln!(
        out,
        "| target | requests | errors | p50 ms | p90 ms | p99 ms | max ms | added p50 ms | added p90 ms | added p99 ms |"
    )?;
    writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    for row in &r.fixed_rate {
        let l = &row.latency;
        let (a50, a90, a99) = added(row.added.as_ref());
        writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {a50} | {a90} | {a99} |",
            row.target.label(),
            row.completed,
            row.errors,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms
        )?;
    }

    writeln!(
        out,
        "\n### Streaming ({} streams/s per target; the upstream sends its first events, pauses {} ms, then the rest)\n",
        s.stream_rate, s.stream_gap_ms
    )?;
    writeln!(
        out,
        "| target | streams | errors | first event p50 ms | first event p99 ms | added p50 ms | added p99 ms | first→last event p50 ms |"
    )?;
    writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|")?;
    for row in &r.streaming {
        let (a50, _, a99) = added(row.added_first_event.as_ref());
        writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.3} | {a50} | {a99} | {:.3} |",
            row.target.label(),
            row.completed,
            row.errors,
            row.first_event.p50_ms,
            row.first_event.p99_ms,
            row.first_to_last.p50_ms
        )?;
    }

    if !r.phase_load.is_empty() {
        writeln!(out, "\n### Machine load per phase\n")?;
        writeln!(
            out,
            "| phase | waited for a quiet machine | machine busy | of which other processes |"
        )?;
        writeln!(out, "|---|--:|--:|--:|")?;
        for p in &r.phase_load {
            writeln!(
                out,
                "| {} | {:.1} s | {:.0} % | {:.0} % |",
                p.phase,
                p.settled_after_s,
                p.machine_busy_share * 100.0,
                p.other_processes_share * 100.0
            )?;
        }
    }

    writeln!(out, "\n### Data plane memory (RSS)\n")?;
    writeln!(
        out,
        "| idle | after the load phases | high-water mark after the load phases |"
    )?;
    writeln!(out, "|--:|--:|--:|")?;
    writeln!(
        out,
        "| {:.1} MB | {:.1} MB | {:.1} MB |",
        mb(r.memory.idle.rss_kib),
        mb(r.memory.after_load.rss_kib),
        mb(r.memory.after_load.hwm_kib)
    )?;
    if let Some(c) = &r.memory.concurrent {
        writeln!(
            out,
            "\n| concurrent streams requested | open at reading | seconds to open | RSS with them open | peak RSS | RSS after they closed | errors |"
        )?;
        writeln!(out, "|--:|--:|--:|--:|--:|--:|--:|")?;
        writeln!(
            out,
            "| {} | {} | {:.2} | {:.1} MB | {:.1} MB | {:.1} MB | {} |",
            c.requested,
            c.open_at_reading,
            c.seconds_to_open,
            mb(c.all_open.rss_kib),
            mb(c.peak_rss_kib),
            mb(c.after.rss_kib),
            c.errors
        )?;
    }

    if let Some(p) = &r.propagation {
        writeln!(out, "\n### Admin change → enforced by the data plane\n")?;
        writeln!(out, "| change | samples | p50 s | max s |")?;
        writeln!(out, "|---|--:|--:|--:|")?;
        for (what, v) in [
            ("group model allowlist", &p.policy_change_s),
            ("API key revoked", &p.revocation_s),
        ] {
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let p50 = sorted.get(sorted.len() / 2).copied();
            let max = sorted.last().copied();
            writeln!(
                out,
                "| {what} | {} | {} | {} |",
                v.len(),
                opt(p50, 3),
                opt(max, 3)
            )?;
        }
    }

    writeln!(out, "\n### Against the architecture brief §9\n")?;
    writeln!(out, "| what | target | measured | verdict |")?;
    writeln!(out, "|---|---|---|---|")?;
    for c in &r.checks {
        let verdict = match c.verdict {
            Verdict::Met => "met",
            Verdict::NotMet => "**not met**",
            Verdict::NotMeasured => "not measured",
        };
        writeln!(
            out,
            "| {} | {} | {} | {verdict} |",
            c.what, c.target, c.measured
        )?;
    }

    let errors: Vec<String> =
        r.saturation
            .iter()
            .filter_map(|x| {
                Some(format!(
                    "saturation, {}: {}",
                    x.target.label(),
                    x.first_error.as_ref()?
                ))
            })
            .chain(r.fixed_rate.iter().filter_map(|x| {
                Some(format!(
                    "fixed rate, {}: {}",
                    x.target.label(),
                    x.first_error.as_ref()?
                ))
            }))
            .chain(r.streaming.iter().filter_map(|x| {
                Some(format!(
                    "streaming, {}: {}",
                    x.target.label(),
                    x.first_error.as_ref()?
                ))
            }))
            .chain(
                r.memory.concurrent.iter().filter_map(|c| {
                    Some(format!("concurrent streams: {}", c.first_error.as_ref()?))
                }),
            )
            .collect();
    if !errors.is_empty() {
        writeln!(out, "\nFirst error of each phase that had any:\n")?;
        for e in errors {
            writeln!(out, "- {e}")?;
        }
    }
    Ok(())
}

fn added(p: Option<&Percentiles>) -> (String, String, String) {
    match p {
        Some(a) => (signed(a.p50_ms), signed(a.p90_ms), signed(a.p99_ms)),
        None => (String::from("—"), String::from("—"), String::from("—")),
    }
}
