//! CPU accounting per process role, from `/proc`, around each measured window.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::process::{cpu_ticks, machine_ticks, ticks_per_second};

/// Which process the CPU time was spent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    LoadGenerator,
    Upstream,
    Nginx,
    DataPlane,
    ControlPlane,
}

/// The processes to account for, by role (nginx is its master plus its workers).
#[derive(Debug, Default, Clone)]
pub struct Probes {
    roles: Vec<(Role, Vec<u32>)>,
}

/// CPU ticks of every role and of the machine at one instant.
#[derive(Debug, Clone)]
pub struct CpuSample {
    roles: Vec<(Role, u64)>,
    machine: Option<(u64, u64)>,
}

/// CPU time spent between two samples, summed over windows.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CpuUsage {
    /// Microseconds of CPU per role.
    pub role_us: BTreeMap<Role, u64>,
    /// Microseconds of CPU the whole machine was busy (all processes, ours or not).
    pub machine_busy_us: u64,
    /// Microseconds of CPU the machine had (wall time × cores).
    pub machine_capacity_us: u64,
}

impl Probes {
    pub fn add(&mut self, role: Role, pids: Vec<u32>) {
        self.roles.push((role, pids));
    }

    pub fn sample(&self) -> CpuSample {
        let roles = self
            .roles
            .iter()
            .map(|(role, pids)| (*role, pids.iter().filter_map(|p| cpu_ticks(*p)).sum()))
            .collect();
        CpuSample {
            roles,
            machine: machine_ticks(),
        }
    }
}

fn ticks_to_us(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000) / ticks_per_second()
}

impl CpuUsage {
    /// Adds the time spent between `before` and `after`.
    pub fn add_window(&mut self, before: &CpuSample, after: &CpuSample) {
        for ((role, b), (_, a)) in before.roles.iter().zip(&after.roles) {
            *self.role_us.entry(*role).or_default() += ticks_to_us(a.saturating_sub(*b));
        }
        if let (Some((busy_b, total_b)), Some((busy_a, total_a))) = (before.machine, after.machine)
        {
            self.machine_busy_us += ticks_to_us(busy_a.saturating_sub(busy_b));
            self.machine_capacity_us += ticks_to_us(total_a.saturating_sub(total_b));
        }
    }

    pub fn role(&self, role: Role) -> Option<u64> {
        self.role_us.get(&role).copied()
    }

    /// CPU of every process the harness started (including itself).
    pub fn ours_us(&self) -> u64 {
        self.role_us.values().sum()
    }

    /// Share of the machine's CPU used by processes the harness did not start (e.g. Postgres,
    /// or anything else running on the box) — a noise indicator.
    pub fn foreign_share(&self) -> f64 {
        if self.machine_capacity_us == 0 {
            return 0.0;
        }
        let foreign = self.machine_busy_us.saturating_sub(self.ours_us());
        foreign as f64 / self.machine_capacity_us as f64
    }
}

impl CpuUsage {
    /// Share of the machine's CPU that was busy (all processes).
    pub fn busy_share(&self) -> f64 {
        if self.machine_capacity_us == 0 {
            return 0.0;
        }
        self.machine_busy_us as f64 / self.machine_capacity_us as f64
    }
}

/// Waits until the machine is quiet (under `threshold` busy over a 500 ms window), e.g. until
/// the control plane and Postgres have ingested the usage of a saturation phase; at most
/// `within`. Returns how long it waited.
pub async fn settle(threshold: f64, within: std::time::Duration) -> std::time::Duration {
    let start = std::time::Instant::now();
    let mut before = machine_ticks();
    while start.elapsed() < within {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let after = machine_ticks();
        if let (Some((busy_b, total_b)), Some((busy_a, total_a))) = (before, after) {
            let total = total_a.saturating_sub(total_b);
            if total > 0 && (busy_a.saturating_sub(busy_b) as f64 / total as f64) < threshold {
                break;
            }
        }
        before = after;
    }
    start.elapsed()
}
