//! The lease keeper: renews slices in use, hands idle ones back, releases all at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tollgate_policy::BudgetSettings;

use super::Spend;
use crate::snapshot::SnapshotStore;

/// How often the keeper looks at the lease TTL (which may change with a snapshot).
const TICK: Duration = Duration::from_secs(1);

/// Runs every `max(1, ttl / 3)` seconds until `stop`, then releases every slice's headroom.
/// Cancel `stop` only after in-flight requests have settled.
pub(crate) fn spawn_lease_keeper(
    spend: Arc<Spend>,
    snapshots: Arc<SnapshotStore>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let ttl_s = snapshots
                .load()
                .map_or(BudgetSettings::default().lease_ttl_s, |s| {
                    s.budgets().settings.lease_ttl_s
                })
                .max(1);
            let period = Duration::from_secs(u64::from((ttl_s / 3).max(1)));
            if last.elapsed() >= period {
                last = Instant::now();
                spend.upkeep(Duration::from_secs(u64::from(ttl_s))).await;
            }
        }
        spend.release_all().await;
    })
}
