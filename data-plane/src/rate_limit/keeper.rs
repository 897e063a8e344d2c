//! The rate keeper: hands expired per-minute slices back, renews concurrency leases in use
//! and hands idle ones back, releases all at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tollgate_policy::BudgetSettings;

use super::RateLimiter;
use crate::snapshot::SnapshotStore;

/// How often the keeper looks for expired per-minute slices (and at the lease TTL, which
/// may change with a snapshot).
const TICK: Duration = Duration::from_secs(1);

/// How often concurrency leases are renewed under a lease TTL of `ttl_s` seconds.
pub(crate) fn renew_period(ttl_s: u32) -> Duration {
    Duration::from_secs(u64::from((ttl_s / 3).max(1)))
}

/// Runs until `stop`, then releases every slice. Cancel `stop` only after in-flight
/// requests have settled.
pub(crate) fn spawn_rate_keeper(
    limiter: Arc<RateLimiter>,
    snapshots: Arc<SnapshotStore>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
                () = limiter.spare_freed() => {}
            }
            let ttl_s = snapshots
                .load()
                .map_or(BudgetSettings::default().lease_ttl_s, |s| {
                    s.budgets().settings.lease_ttl_s
                })
                .max(1);
            limiter.set_lease_ttl(Duration::from_secs(u64::from(ttl_s)));
            let renew = last_renewal.elapsed() >= renew_period(ttl_s);
            if renew {
                last_renewal = Instant::now();
            }
            limiter.upkeep(renew).await;
        }
        limiter.release_all().await;
    })
}
