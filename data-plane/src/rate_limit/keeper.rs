//! The rate keeper: hands expired per-minute slices back, renews concurrency leases in use
//! and hands idle ones back, releases all at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RateLimiter;
use crate::budget::KeeperSchedule;
use crate::snapshot::SnapshotStore;

/// Looks every second for expired per-minute slices (and at the lease TTL, which may
/// change with a snapshot). Runs until `stop`, then releases every slice. Cancel `stop`
/// only after in-flight requests have settled.
pub(crate) fn spawn_rate_keeper(
    limiter: Arc<RateLimiter>,
    snapshots: Arc<SnapshotStore>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut schedule = KeeperSchedule::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = schedule.tick() => {}
                () = limiter.spare_freed() => {}
            }
            let ttl_s = snapshots.lease_ttl_s();
            limiter.set_lease_ttl(Duration::from_secs(u64::from(ttl_s)));
            let renew = schedule.renewal_due(ttl_s);
            limiter.upkeep(renew).await;
        }
        limiter.release_all().await;
    })
}
