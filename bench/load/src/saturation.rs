//! Saturation: N closed-loop keep-alive connections per target, targets taking turns in short
//! slices (rotating the order every round) so that machine noise hits all of them alike.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use crate::client::{Connection, REQUEST_TIMEOUT, RequestTemplate, Target, TargetKind};
use crate::probe::{CpuUsage, Probes};
use crate::stats;

/// Unmeasured run-in at the start of every slice (connections open, caches warm).
const SLICE_WARMUP: Duration = Duration::from_millis(300);

/// What one target did over all its slices.
#[derive(Debug)]
pub struct Saturation {
    pub kind: TargetKind,
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub measured: Duration,
    /// Requests per second in each round, to show the spread.
    pub round_rps: Vec<f64>,
    pub latency: Histogram<u64>,
    pub cpu: CpuUsage,
}

impl Saturation {
    pub fn rps(&self) -> f64 {
        let secs = self.measured.as_secs_f64();
        if secs == 0.0 {
            0.0
        } else {
            self.completed as f64 / secs
        }
    }

    /// CPU microseconds per completed request spent in `role`.
    pub fn cpu_us_per_request(&self, role: crate::probe::Role) -> Option<f64> {
        let us = self.cpu.role(role)?;
        (self.completed > 0).then(|| us as f64 / self.completed as f64)
    }
}

pub struct Plan<'a> {
    pub targets: &'a [Target],
    pub template: Arc<RequestTemplate>,
    pub connections: usize,
    pub duration: Duration,
    pub probes: &'a Probes,
}

/// Runs an unmeasured warm-up slice per target, then the measured rounds.
pub async fn run(plan: &Plan<'_>) -> Result<Vec<Saturation>> {
    for target in plan.targets {
        slice(plan, *target, Duration::from_secs(1)).await;
    }
    let rounds = (plan.duration.as_secs() / 2).max(1);
    let slice_len = plan.duration / u32::try_from(rounds).unwrap_or(1);
    let mut results: Vec<Saturation> = plan
        .targets
        .iter()
        .map(|t| Saturation {
            kind: t.kind,
            completed: 0,
            errors: 0,
            first_error: None,
            measured: Duration::ZERO,
            round_rps: Vec::new(),
            latency: stats::histogram(),
            cpu: CpuUsage::default(),
        })
        .collect();
    let n = plan.targets.len();
    for round in 0..rounds as usize {
        for k in 0..n {
            let index = (round + k) % n;
            let s = slice(plan, plan.targets[index], slice_len).await;
            let total = &mut results[index];
            total.completed += s.completed;
            total.errors += s.errors;
            if total.first_error.is_none() {
                total.first_error = s.first_error;
            }
            total.measured += slice_len;
            total
                .round_rps
                .push(s.completed as f64 / slice_len.as_secs_f64());
            total.latency.add(&s.latency).ok();
            total.cpu.add_window(&s.cpu_before, &s.cpu_after);
            eprintln!(
                "  saturation round {}/{rounds} {:<18} {:>9.0} req/s  ({} errors)",
                round + 1,
                plan.targets[index].kind.label(),
                s.completed as f64 / slice_len.as_secs_f64(),
                s.errors
            );
        }
    }
    Ok(results)
}

struct Slice {
    completed: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
    cpu_before: crate::probe::CpuSample,
    cpu_after: crate::probe::CpuSample,
}

async fn slice(plan: &Plan<'_>, target: Target, measure: Duration) -> Slice {
    let window_start = Instant::now() + SLICE_WARMUP;
    let window_end = window_start + measure;
    let mut tasks = JoinSet::new();
    for _ in 0..plan.connections {
        let template = plan.template.clone();
        tasks.spawn(connection_loop(target, template, window_start, window_end));
    }
    sleep_until(window_start).await;
    let cpu_before = plan.probes.sample();
    sleep_until(window_end).await;
    let cpu_after = plan.probes.sample();
    let mut out = Slice {
        completed: 0,
        errors: 0,
        first_error: None,
        latency: stats::histogram(),
        cpu_before,
        cpu_after,
    };
    let drain_deadline = window_end + REQUEST_TIMEOUT + Duration::from_secs(5);
    while let Ok(Some(joined)) = tokio::time::timeout_at(drain_deadline, tasks.join_next()).await {
        if let Ok(conn) = joined {
            out.completed += conn.completed;
            out.errors += conn.errors;
            out.first_error = out.first_error.or(conn.first_error);
            out.latency.add(&conn.latency).ok();
        }
    }
    tasks.abort_all();
    out
}

struct ConnectionResult {
    completed: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

/// Sends requests back to back until `window_end`; counts those that end inside the window.
async fn connection_loop(
    target: Target,
    template: Arc<RequestTemplate>,
    window_start: Instant,
    window_end: Instant,
) -> ConnectionResult {
    let mut out = ConnectionResult {
        completed: 0,
        errors: 0,
        first_error: None,
        latency: stats::histogram(),
    };
    let mut conn: Option<Connection> = None;
    while Instant::now() < window_end {
        let c = match conn.as_mut() {
            Some(c) if c.is_open() => c,
            _ => match Connection::open(target.addr).await {
                Ok(c) => conn.insert(c),
                Err(err) => {
                    note_error(&mut out, Instant::now() >= window_start, format!("{err:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let started = std::time::Instant::now();
        let result = c.exchange(&template, started).await;
        let now = Instant::now();
        let in_window = now >= window_start && now < window_end;
        match result {
            Ok(ex) if ex.status == 200 => {
                if in_window {
                    out.completed += 1;
                    stats::record(&mut out.latency, ex.total);
                }
            }
            Ok(ex) => note_error(&mut out, in_window, format!("status {}", ex.status)),
            Err(err) => {
                note_error(&mut out, in_window, format!("{err:#}"));
                conn = None;
            }
        }
    }
    out
}

fn note_error(out: &mut ConnectionResult, counted: bool, what: String) {
    if counted {
        out.errors += 1;
        if out.first_error.is_none() {
            out.first_error = Some(what);
        }
    }
}
