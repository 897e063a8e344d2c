//! Memory under many concurrent streams: open N SSE streams through the data plane, each held
//! open by the fake upstream for a while, and watch the data plane's resident memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Connection, RequestTemplate, Target};
use crate::process::{Memory, memory};

/// How long the fake upstream holds each stream open after its first events.
const HOLD: Duration = Duration::from_secs(10);
/// How long opening all streams may take before memory is read anyway.
const OPEN_WITHIN: Duration = Duration::from_secs(8);
/// Connections being set up at once (keeps accept queues from overflowing).
const OPENING_AT_ONCE: usize = 200;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Concurrent {
    pub requested: u64,
    /// Streams whose first event had arrived when memory was read.
    pub open_at_reading: u64,
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds_to_open: f64,
    pub before: Memory,
    pub all_open: Memory,
    pub peak_rss_kib: u64,
    pub after: Memory,
}

pub async fn run(target: Target, api_key: &str, n: u64, data_plane_pid: u32) -> Result<Concurrent> {
    let hold_ms = u64::try_from(HOLD.as_millis()).unwrap_or(10_000);
    let template = RequestTemplate::new(api_key, true, Some(hold_ms))?;
    let mut out = Concurrent {
        requested: n,
        before: memory(data_plane_pid).unwrap_or_default(),
        ..Concurrent::default()
    };
    let opened = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let peak = Arc::new(AtomicU64::new(out.before.rss_kib));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_peak(data_plane_pid, peak.clone(), stop.clone()));

    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (template, opened, gate) = (template.clone(), opened.clone(), gate.clone());
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await.ok();
            let mut conn = Connection::open(target.addr).await?;
            let limit = HOLD + OPEN_WITHIN + Duration::from_secs(10);
            let exchange = conn
                .exchange_observed(&template, Instant::now(), limit, move || {
                    drop(permit);
                    opened.fetch_add(1, Ordering::Relaxed);
                })
                .await?;
            anyhow::ensure!(exchange.status == 200, "status {}", exchange.status);
            anyhow::Ok(())
        });
    }
    while opened.load(Ordering::Relaxed) < n && start.elapsed() < OPEN_WITHIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.seconds_to_open = start.elapsed().as_secs_f64();
    out.open_at_reading = opened.load(Ordering::Relaxed);
    out.all_open = memory(data_plane_pid).unwrap_or_default();

    let deadline = tokio::time::Instant::now() + HOLD + OPEN_WITHIN + Duration::from_secs(15);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        match joined {
            Ok(Ok(())) => out.completed += 1,
            Ok(Err(err)) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("{err:#}"));
            }
            Err(err) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
    tasks.abort_all();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    out.peak_rss_kib = peak.load(Ordering::Relaxed).max(out.all_open.rss_kib);
    out.after = memory(data_plane_pid).unwrap_or_default();
    Ok(out)
}

async fn sample_peak(pid: u32, peak: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    // Bounded: the phase itself ends within HOLD + OPEN_WITHIN + 15 s.
    for _ in 0..2_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Some(m) = memory(pid) {
            peak.fetch_max(m.rss_kib, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
