//! The control plane's OpenTelemetry metrics and what its admin listener serves.
//!
//! Instruments, on the global meter `tollgate-control-plane` (names use dots; Prometheus
//! renders underscores, units and `_total`):
//!
//! | name | kind | attributes |
//! |---|---|---|
//! | `tollgate.snapshot.version` | gauge | — (the version this replica publishes) |
//! | `tollgate.snapshot.compiles` | counter | `outcome` (`ok` \| `error`) |
//! | `tollgate.snapshot.compile.duration` | histogram (s) | `outcome` |
//! | `tollgate.usage.ingested` | counter (records) | `result` (`inserted` \| `duplicate`) |
//! | `tollgate.audit.head` | gauge | — (size of the audit chain) |
//!
//! Everything here is a no-op (one atomic load) unless telemetry installed a meter provider
//! ([`tollgate_telemetry::metrics_enabled`]). The audit head and database liveness are read by
//! a probe task (one indexed single-row `SELECT` every [`PROBE_INTERVAL`]), started only when
//! metrics are on or an admin listener is served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, ObservableGauge};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tollgate_telemetry::admin::{AdminEndpoints, Readiness};

use crate::publisher::SnapshotReceiver;

/// The instrumentation scope of every control-plane instrument.
pub const METER_NAME: &str = "tollgate-control-plane";

/// Period of the database probe (audit head, liveness).
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// Longest silence from the database before `/readyz` answers 503.
const DATABASE_STALE_AFTER: Duration = Duration::from_secs(30);

/// Last published snapshot version (0: none yet).
static PUBLISHED_VERSION: AtomicU64 = AtomicU64::new(0);
/// Last read audit chain size (`u64::MAX`: not read yet).
static AUDIT_HEAD: AtomicU64 = AtomicU64::new(u64::MAX);

/// Latency buckets in seconds for a compile (milliseconds to a minute).
const COMPILE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

struct Instruments {
    compiles: Counter<u64>,
    compile_duration: Histogram<f64>,
    usage_ingested: Counter<u64>,
    _snapshot_version: ObservableGauge<u64>,
    _audit_head: ObservableGauge<u64>,
}

/// The instruments, created once on the global meter; `None` when metrics are off.
fn instruments() -> Option<&'static Instruments> {
    if !tollgate_telemetry::metrics_enabled() {
        return None;
    }
    static GLOBAL: OnceLock<Instruments> = OnceLock::new();
    Some(GLOBAL.get_or_init(|| {
        let meter = opentelemetry::global::meter(METER_NAME);
        Instruments {
            compiles: meter
                .u64_counter("tollgate.snapshot.compiles")
                .with_description("Policy snapshot compiles, by outcome.")
                .build(),
            compile_duration: meter
                .f64_histogram("tollgate.snapshot.compile.duration")
                .with_unit("s")
                .with_description("Time to compile a policy snapshot from the database.")
                .with_boundaries(COMPILE_BUCKETS.to_vec())
                .build(),
            usage_ingested: meter
                .u64_counter("tollgate.usage.ingested")
                .with_unit("{record}")
                .with_description("Usage records received from data planes, by result.")
                .build(),
            _snapshot_version: meter
                .u64_observable_gauge("tollgate.snapshot.version")
                .with_description(
                    "Version of the policy snapshot this control plane publishes (0: none).",
                )
                .with_callback(|gauge| {
                    gauge.observe(PUBLISHED_VERSION.load(Ordering::Relaxed), &[])
                })
                .build(),
            _audit_head: meter
                .u64_observable_gauge("tollgate.audit.head")
                .with_description("Number of entries ever appended to the audit chain.")
                .with_callback(|gauge| {
                    let head = AUDIT_HEAD.load(Ordering::Relaxed);
                    if head != u64::MAX {
                        gauge.observe(head, &[]);
                    }
                })
                .build(),
        }
    }))
}

/// Records one compile: `ok` or not, and how long it took.
pub(crate) fn snapshot_compiled(ok: bool, took: Duration) {
    if let Some(i) = instruments() {
        let outcome = [KeyValue::new("outcome", if ok { "ok" } else { "error" })];
        i.compiles.add(1, &outcome);
        i.compile_duration.record(took.as_secs_f64(), &outcome);
    }
}

/// Records the version just published.
pub(crate) fn snapshot_published(version: u64) {
    PUBLISHED_VERSION.fetch_max(version, Ordering::Relaxed);
}

/// Records a usage batch: how many records were new and how many already stored.
pub(crate) fn usage_ingested(inserted: u64, duplicates: u64) {
    if let Some(i) = instruments() {
        if inserted > 0 {
            i.usage_ingested
                .add(inserted, &[KeyValue::new("result", "inserted")]);
        }
        if duplicates > 0 {
            i.usage_ingested
                .add(duplicates, &[KeyValue::new("result", "duplicate")]);
        }
    }
}

/// When the database last answered the probe.
#[derive(Debug)]
pub(crate) struct DatabaseHealth {
    started: Instant,
    /// Milliseconds after `started` of the last answer, plus one (0: never).
    last_answer: AtomicU64,
}

impl DatabaseHealth {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(DatabaseHealth {
            started: Instant::now(),
            last_answer: AtomicU64::new(0),
        })
    }

    fn answered(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_answer
            .store(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// How long ago the database last answered; `None` if it never did.
    fn silence(&self) -> Option<Duration> {
        let last = self.last_answer.load(Ordering::Relaxed);
        (last > 0).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(last - 1))
        })
    }
}

/// Reads the audit head every [`PROBE_INTERVAL`] (the first at once), which also tells
/// whether the database answers. Registers the instruments. Stops with `stop`.
pub(crate) fn spawn_probe(
    pool: PgPool,
    health: Arc<DatabaseHealth>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let _ = instruments();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let probe = sqlx::query_scalar::<_, i64>("SELECT seq FROM audit_head WHERE singleton")
                .fetch_one(&pool);
            match tokio::time::timeout(Duration::from_secs(5), probe).await {
                Ok(Ok(seq)) => {
                    health.answered();
                    AUDIT_HEAD.store(u64::try_from(seq).unwrap_or(0), Ordering::Relaxed);
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "database probe failed");
                }
                Err(_) => tracing::warn!("database probe timed out"),
            }
        }
    })
}

/// Starts what observability needs: the database probe (when metrics are on or an admin
/// listener is served) and the admin listener on `admin`, if any. Everything stops with
/// `stop`; await the returned tasks to know it has.
pub(crate) fn start(
    pool: &PgPool,
    admin: Option<TcpListener>,
    snapshots: SnapshotReceiver,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if admin.is_none() && !tollgate_telemetry::metrics_enabled() {
        return tasks;
    }
    let health = DatabaseHealth::new();
    tasks.push(spawn_probe(pool.clone(), health.clone(), stop.clone()));
    if let Some(listener) = admin {
        tasks.push(tollgate_telemetry::admin::spawn(
            listener,
            admin_endpoints(health, snapshots),
            stop.clone(),
        ));
    }
    tasks
}

/// The admin listener: telemetry metrics only; ready while the database answered within
/// the last 30 s and a compiled snapshot is published.
pub(crate) fn admin_endpoints(
    health: Arc<DatabaseHealth>,
    snapshots: SnapshotReceiver,
) -> AdminEndpoints {
    AdminEndpoints::new().with_readiness(move || readiness(&health, &snapshots))
}

fn readiness(health: &DatabaseHealth, snapshots: &SnapshotReceiver) -> Readiness {
    let version = snapshots.borrow().as_ref().map(|s| s.version);
    match (health.silence(), version) {
        (None, _) => Readiness::NotReady("the database has not answered yet".into()),
        (Some(silence), _) if silence > DATABASE_STALE_AFTER => Readiness::NotReady(format!(
            "the database has not answered for {} s",
            silence.as_secs()
        )),
        (Some(_), None) => Readiness::NotReady("no policy snapshot compiled yet".into()),
        (Some(_), Some(version)) => Readiness::Ready(format!("snapshot {version}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tollgate_proto::v1 as pb;

    use super::*;
    use crate::publisher::{publish, snapshot_channel};

    #[test]
    fn ready_only_with_a_live_database_and_a_snapshot() {
        let health = DatabaseHealth::new();
        let (tx, rx) = snapshot_channel();
        assert!(
            matches!(readiness(&health, &rx), Readiness::NotReady(r) if r.contains("database"))
        );
        health.answered();
        assert!(
            matches!(readiness(&health, &rx), Readiness::NotReady(r) if r.contains("snapshot"))
        );
        publish(
            &tx,
            pb::Snapshot {
                version: 7,
                ..Default::default()
            },
        );
        assert_eq!(
            readiness(&health, &rx),
            Readiness::Ready("snapshot 7".into())
        );
        let stale = Arc::new(DatabaseHealth {
            started: Instant::now() - Duration::from_secs(120),
            last_answer: AtomicU64::new(1),
        });
        assert!(
            matches!(readiness(&stale, &rx), Readiness::NotReady(r) if r.contains("not answered for"))
        );
    }
}
