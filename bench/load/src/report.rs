//! The results of one run, the §9 targets they are held against, and their rendering.

mod checks;
mod markdown;

use serde::Serialize;

use crate::client::TargetKind;
use crate::concurrent::Concurrent;
use crate::machine::Machine;
use crate::open_loop::OpenLoop;
use crate::probe::Role;
use crate::process::Memory;
use crate::propagation::Propagation;
use crate::saturation::Saturation;
use crate::stats::Percentiles;

pub use checks::checks;
pub use markdown::render as markdown;

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub duration_secs: u64,
    pub connections: u64,
    pub rate: u32,
    pub stream_rate: u32,
    pub stream_gap_ms: u64,
    pub concurrent_streams: u64,
    pub nginx: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub notes: Vec<String>,
    pub saturation: Vec<SaturationRow>,
    pub fixed_rate: Vec<LatencyRow>,
    pub streaming: Vec<StreamingRow>,
    /// How busy the machine was during each phase.
    pub phase_load: Vec<PhaseLoad>,
    pub memory: MemoryReport,
    pub propagation: Option<Propagation>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SaturationRow {
    pub target: TargetKind,
    pub requests_per_s: f64,
    pub round_min_per_s: f64,
    pub round_max_per_s: f64,
    pub vs_direct: f64,
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Percentiles,
    /// CPU µs per request in the proxy of this row (nginx or the data plane).
    pub proxy_cpu_us: Option<f64>,
    pub upstream_cpu_us: Option<f64>,
    pub load_generator_cpu_us: Option<f64>,
    pub control_plane_cpu_us: Option<f64>,
    /// All processes the harness started, per request.
    pub harness_processes_cpu_us: f64,
    /// Share of the machine's CPU taken by other processes (Postgres included) meanwhile.
    pub other_processes_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    pub target: TargetKind,
    pub released: u64,
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Percentiles,
    /// This row minus the direct row, percentile by percentile.
    pub added: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamingRow {
    pub target: TargetKind,
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Release → first event.
    pub first_event: Percentiles,
    pub added_first_event: Option<Percentiles>,
    /// First event → last event (the upstream pauses `stream_gap_ms` in between).
    pub first_to_last: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseLoad {
    pub phase: &'static str,
    /// Seconds waited beforehand for the machine to go quiet.
    pub settled_after_s: f64,
    pub machine_busy_share: f64,
    /// Processes the harness did not start (Postgres, anything else on the box).
    pub other_processes_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub idle: Memory,
    pub after_load: Memory,
    pub concurrent: Option<Concurrent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    NotMet,
    NotMeasured,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: &'static str,
    pub target: &'static str,
    pub measured: String,
    pub verdict: Verdict,
}

pub fn saturation_rows(results: &[Saturation]) -> Vec<SaturationRow> {
    let direct = results
        .iter()
        .find(|r| r.kind == TargetKind::Direct)
        .map_or(0.0, Saturation::rps);
    results
        .iter()
        .map(|r| {
            let proxy = match r.kind {
                TargetKind::Direct => None,
                TargetKind::Nginx => r.cpu_us_per_request(Role::Nginx),
                TargetKind::DataPlane => r.cpu_us_per_request(Role::DataPlane),
            };
            let per_request = |us: u64| {
                if r.completed == 0 {
                    0.0
                } else {
                    us as f64 / r.completed as f64
                }
            };
            SaturationRow {
                target: r.kind,
                requests_per_s: r.rps(),
                round_min_per_s: r.round_rps.iter().copied().fold(f64::INFINITY, f64::min),
                round_max_per_s: r.round_rps.iter().copied().fold(0.0, f64::max),
                vs_direct: if direct > 0.0 { r.rps() / direct } else { 0.0 },
                completed: r.completed,
                errors: r.errors,
                first_error: r.first_error.clone(),
                latency: Percentiles::of(&r.latency),
                proxy_cpu_us: proxy,
                upstream_cpu_us: r.cpu_us_per_request(Role::Upstream),
                load_generator_cpu_us: r.cpu_us_per_request(Role::LoadGenerator),
                control_plane_cpu_us: r.cpu_us_per_request(Role::ControlPlane),
                harness_processes_cpu_us: per_request(r.cpu.ours_us()),
                other_processes_share: r.cpu.foreign_share(),
            }
        })
        .collect()
}

fn direct_of(results: &[OpenLoop]) -> Option<&OpenLoop> {
    results.iter().find(|r| r.kind == TargetKind::Direct)
}

pub fn latency_rows(results: &[OpenLoop]) -> Vec<LatencyRow> {
    let direct = direct_of(results).map(|d| Percentiles::of(&d.latency));
    results
        .iter()
        .map(|r| {
            let latency = Percentiles::of(&r.latency);
            LatencyRow {
                target: r.kind,
                released: r.released,
                completed: r.completed,
                errors: r.errors,
                first_error: r.first_error.clone(),
                added: direct
                    .filter(|_| r.kind != TargetKind::Direct)
                    .map(|d| latency.minus(&d)),
                latency,
            }
        })
        .collect()
}

pub fn streaming_rows(results: &[OpenLoop]) -> Vec<StreamingRow> {
    let direct = direct_of(results).map(|d| Percentiles::of(&d.first_byte));
    results
        .iter()
        .map(|r| {
            let first_event = Percentiles::of(&r.first_byte);
            StreamingRow {
                target: r.kind,
                completed: r.completed,
                errors: r.errors,
                first_error: r.first_error.clone(),
                added_first_event: direct
                    .filter(|_| r.kind != TargetKind::Direct)
                    .map(|d| first_event.minus(&d)),
                first_event,
                first_to_last: Percentiles::of(&r.body_span),
            }
        })
        .collect()
}
