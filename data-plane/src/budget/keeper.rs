//! The lease keeper: renews slices in use, hands idle ones back, releases all at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Spend;
use crate::snapshot::SnapshotStore;

/// How often a keeper looks at the lease TTL (which may change with a snapshot).
const TICK: Duration = Duration::from_secs(1);

/// How often leases are renewed under a lease TTL of `ttl_s` seconds.
pub(crate) fn renew_period(ttl_s: u32) -> Duration {
    Duration::from_secs(u64::from((ttl_s / 3).max(1)))
}

/// A lease keeper's schedule: a tick every second, and leases renewed every
/// [`renew_period`] of the lease TTL in force.
#[derive(Debug)]
pub(crate) struct KeeperSchedule {
    ticker: Interval,
    last_renewal: Instant,
}

impl KeeperSchedule {
    pub(crate) fn new() -> Self {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        KeeperSchedule {
            ticker,
            last_renewal: Instant::now(),
        }
    }

    /// The next tick (cancel safe, for `select!`).
    pub(crate) async fn tick(&mut self) {
        self.ticker.tick().await;
    }

    /// Whether leases are due for renewal under a lease TTL of `ttl_s` seconds; when they
    /// are, the next renewal counts from now.
    pub(crate) fn renewal_due(&mut self, ttl_s: u32) -> bool {
        let due = self.last_renewal.elapsed() >= renew_period(ttl_s);
        if due {
            self.last_renewal = Instant::now();
        }
        due
    }
}

/// Runs every `max(1, ttl / 3)` seconds until `stop`, then releases every slice's headroom.
/// Cancel `stop` only after in-flight requests have settled.
pub(crate) fn spawn_lease_keeper(
    spend: Arc<Spend>,
    snapshots: Arc<SnapshotStore>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut schedule = KeeperSchedule::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = schedule.tick() => {}
            }
            let ttl_s = snapshots.lease_ttl_s();
            if schedule.renewal_due(ttl_s) {
                spend.upkeep(Duration::from_secs(u64::from(ttl_s))).await;
            }
        }
        spend.release_all().await;
    })
}
