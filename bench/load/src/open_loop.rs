//! Open-loop fixed rate: requests are released on a schedule whatever the answers do, round-robin
//! over the targets (each target gets `rate` req/s, interleaved request by request), and latency
//! is measured from the moment a request was released — so a stall shows up in the percentiles
//! instead of silently lowering the rate (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use crate::client::{Connection, REQUEST_TIMEOUT, RequestTemplate, Target, TargetKind};
use crate::stats;

pub struct Plan<'a> {
    pub targets: &'a [Target],
    pub template: Arc<RequestTemplate>,
    pub rate_per_target: u32,
    pub duration: Duration,
    pub connections_per_target: usize,
}

/// What one target did.
#[derive(Debug)]
pub struct OpenLoop {
    pub kind: TargetKind,
    pub released: u64,
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Release → end of the response.
    pub latency: Histogram<u64>,
    /// Release → first body bytes (for SSE, the first event).
    pub first_byte: Histogram<u64>,
    /// First body bytes → end of the body (for SSE, how the upstream's pause came through).
    pub body_span: Histogram<u64>,
}

impl OpenLoop {
    fn new(kind: TargetKind) -> OpenLoop {
        OpenLoop {
            kind,
            released: 0,
            completed: 0,
            errors: 0,
            first_error: None,
            latency: stats::histogram(),
            first_byte: stats::histogram(),
            body_span: stats::histogram(),
        }
    }

    fn merge(&mut self, other: OpenLoop) {
        self.completed += other.completed;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.latency.add(&other.latency).ok();
        self.first_byte.add(&other.first_byte).ok();
        self.body_span.add(&other.body_span).ok();
    }
}

pub async fn run(plan: &Plan<'_>) -> Result<Vec<OpenLoop>> {
    let n = plan.targets.len();
    let total = u64::from(plan.rate_per_target) * n as u64 * plan.duration.as_secs();
    let capacity = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .clamp(1, 100_000);
    let mut senders = Vec::with_capacity(n);
    let mut workers = JoinSet::new();
    for (index, target) in plan.targets.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Instant>(capacity);
        senders.push(tx);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..plan.connections_per_target {
            let (rx, template, target) = (rx.clone(), plan.template.clone(), *target);
            workers.spawn(async move { (index, worker(target, template, rx).await) });
        }
    }
    let mut results: Vec<OpenLoop> = plan.targets.iter().map(|t| OpenLoop::new(t.kind)).collect();

    // Let every worker open its connection before the schedule starts.
    let start = tokio::time::Instant::now() + Duration::from_millis(300);
    let interval_ns = 1_000_000_000 / (u64::from(plan.rate_per_target) * n as u64).max(1);
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_nanos(i * interval_ns)).await;
        let index = usize::try_from(i % n as u64).unwrap_or(0);
        results[index].released += 1;
        if senders[index].try_send(Instant::now()).is_err() {
            results[index].errors += 1;
        }
    }
    drop(senders);

    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(10);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, workers.join_next()).await {
        if let Ok((index, part)) = joined {
            results[index].merge(part);
        }
    }
    workers.abort_all();
    Ok(results)
}

async fn worker(
    target: Target,
    template: Arc<RequestTemplate>,
    jobs: Arc<Mutex<mpsc::Receiver<Instant>>>,
) -> OpenLoop {
    let mut out = OpenLoop::new(target.kind);
    let mut conn = Connection::open(target.addr).await.ok();
    loop {
        let job = { jobs.lock().await.recv().await };
        let Some(released) = job else { break };
        let c = match conn.as_mut() {
            Some(c) if c.is_open() => c,
            _ => match Connection::open(target.addr).await {
                Ok(c) => conn.insert(c),
                Err(err) => {
                    fail(&mut out, format!("{err:#}"));
                    continue;
                }
            },
        };
        match c.exchange(&template, released).await {
            Ok(ex) if ex.status == 200 => {
                out.completed += 1;
                stats::record(&mut out.latency, ex.total);
                stats::record(&mut out.first_byte, ex.first_byte);
                stats::record(&mut out.body_span, ex.body_span);
            }
            Ok(ex) => fail(&mut out, format!("status {}", ex.status)),
            Err(err) => {
                fail(&mut out, format!("{err:#}"));
                conn = None;
            }
        }
    }
    out
}

fn fail(out: &mut OpenLoop, what: String) {
    out.errors += 1;
    if out.first_error.is_none() {
        out.first_error = Some(what);
    }
}
