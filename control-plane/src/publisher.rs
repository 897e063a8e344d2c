//! Keeps the published snapshot current: a Postgres `LISTEN tollgate_policy` (fast path,
//! within a second of a commit) plus a periodic full recompile (safety net across replicas and
//! lost notifications), both feeding one recompile loop that publishes through a `watch`
//! channel only when the version moved forward.

mod listener;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tracing::{debug, error, info};

use crate::compiler;
use crate::error_report::Report;
use crate::identity::Identity;
use listener::{ListenerEvent, spawn_listener};

/// The latest published snapshot; `None` until the first compile succeeds.
pub type SnapshotReceiver = watch::Receiver<Option<Arc<pb::Snapshot>>>;
/// The publishing side of [`SnapshotReceiver`].
pub type SnapshotSender = watch::Sender<Option<Arc<pb::Snapshot>>>;

/// A channel holding no snapshot yet.
pub fn snapshot_channel() -> (SnapshotSender, SnapshotReceiver) {
    watch::channel(None)
}

/// Starts the publisher. `listen_pool` provides the dedicated `LISTEN` connection (a pool of
/// one, so closing the main pool never disturbs it). The task ends on `shutdown`.
/// `identity` provides the secrets key that opens provider credentials.
pub fn spawn_publisher(
    pool: PgPool,
    listen_pool: PgPool,
    snapshots: SnapshotSender,
    resync_interval: Duration,
    identity: Identity,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (events_tx, events) = mpsc::channel(16);
        let listener = spawn_listener(listen_pool, events_tx, shutdown.clone());
        let source = Source {
            pool: &pool,
            identity: &identity,
        };
        run(source, &snapshots, events, resync_interval, &shutdown).await;
        shutdown.cancel();
        if let Err(err) = listener.await {
            error!(error = %Report(&err), "policy listener task failed");
        }
        debug!("publisher stopped");
    })
}

/// Where snapshots are compiled from.
#[derive(Clone, Copy)]
struct Source<'a> {
    pool: &'a PgPool,
    identity: &'a Identity,
}

async fn run(
    pool: Source<'_>,
    snapshots: &SnapshotSender,
    mut events: mpsc::Receiver<ListenerEvent>,
    resync_interval: Duration,
    shutdown: &CancellationToken,
) {
    // The first tick fires at once: that is the initial compile.
    let mut resync = tokio::time::interval(resync_interval.max(Duration::from_millis(100)));
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = resync.tick() => refresh(pool, snapshots).await,
            event = events.recv() => {
                let Some(event) = event else { return };
                let mut needed = is_news(&event, snapshots);
                // Coalesce a burst of notifications (one per statement) into one recompile.
                while let Ok(event) = events.try_recv() {
                    needed |= is_news(&event, snapshots);
                }
                if needed {
                    refresh(pool, snapshots).await;
                }
            }
        }
    }
}

/// Whether an event may mean the published snapshot is stale.
fn is_news(event: &ListenerEvent, snapshots: &SnapshotSender) -> bool {
    match event {
        ListenerEvent::Connected => true,
        ListenerEvent::Changed(Some(version)) => snapshots
            .borrow()
            .as_ref()
            .is_none_or(|s| *version > s.version),
        ListenerEvent::Changed(None) => true,
    }
}

/// Recompiles and publishes; a failure is logged and the previous snapshot stays.
async fn refresh(source: Source<'_>, snapshots: &SnapshotSender) {
    let started = std::time::Instant::now();
    let compiled = compiler::compile(source.pool, source.identity.secrets()).await;
    crate::metrics::snapshot_compiled(compiled.is_ok(), started.elapsed());
    match compiled {
        Ok(snapshot) => {
            let version = snapshot.version;
            if publish(snapshots, snapshot) {
                crate::metrics::snapshot_published(version);
                info!(version, "published policy snapshot");
            }
        }
        Err(err) => error!(
            error = %Report(&err),
            "policy compile failed; keeping the previous snapshot"
        ),
    }
}

/// Publishes `snapshot` if it is newer than the current one; returns whether it was.
pub fn publish(snapshots: &SnapshotSender, snapshot: pb::Snapshot) -> bool {
    snapshots.send_if_modified(|current| {
        if current
            .as_ref()
            .is_some_and(|c| c.version >= snapshot.version)
        {
            return false;
        }
        *current = Some(Arc::new(snapshot));
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(version: u64) -> pb::Snapshot {
        pb::Snapshot {
            version,
            ..Default::default()
        }
    }

    #[test]
    fn publishes_only_strictly_newer_versions() {
        let (tx, rx) = snapshot_channel();
        assert!(publish(&tx, snapshot(2)));
        assert!(!publish(&tx, snapshot(2)));
        assert!(!publish(&tx, snapshot(1)));
        assert!(publish(&tx, snapshot(3)));
        assert_eq!(rx.borrow().as_ref().map(|s| s.version), Some(3));
    }

    #[test]
    fn notification_of_an_older_version_is_not_news() {
        let (tx, _rx) = snapshot_channel();
        assert!(is_news(&ListenerEvent::Changed(Some(1)), &tx));
        publish(&tx, snapshot(5));
        assert!(!is_news(&ListenerEvent::Changed(Some(5)), &tx));
        assert!(is_news(&ListenerEvent::Changed(Some(6)), &tx));
        assert!(is_news(&ListenerEvent::Connected, &tx));
    }
}
