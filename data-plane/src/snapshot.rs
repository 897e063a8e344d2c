//! The live policy snapshot: prepared fallibly, swapped infallibly, loaded once per request.

mod cache;
mod sync;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tollgate_policy::{BudgetSettings, Snapshot};

pub(crate) use cache::{CacheWriter, spawn_snapshot_cache};
pub(crate) use sync::spawn_snapshot_sync;

/// Holds the snapshot the request path enforces. Lock-free reads; one writer (the sync task).
#[derive(Debug)]
pub(crate) struct SnapshotStore {
    current: ArcSwapOption<Snapshot>,
    /// The installed version (0 = none), for waiters.
    version: watch::Sender<u64>,
    /// When the control plane was last heard from on the snapshot stream (or when the
    /// store was created, or how old a snapshot restored from the cache was), and whether
    /// the stream is open now — for the staleness gauge.
    last_contact: Mutex<Contact>,
    connected: AtomicBool,
}

impl Default for SnapshotStore {
    fn default() -> Self {
        SnapshotStore {
            current: ArcSwapOption::empty(),
            version: watch::channel(0).0,
            last_contact: Mutex::new(Contact::now()),
            connected: AtomicBool::new(false),
        }
    }
}

impl SnapshotStore {
    /// The snapshot to use for one whole request; `None` until the first one arrives.
    pub(crate) fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// The lease TTL in seconds (at least 1) the lease keepers work with: the budget
    /// settings' `lease_ttl_s`, or its default until the first snapshot arrives.
    pub(crate) fn lease_ttl_s(&self) -> u32 {
        self.load()
            .map_or(BudgetSettings::default().lease_ttl_s, |s| {
                s.budgets().settings.lease_ttl_s
            })
            .max(1)
    }

    pub(crate) fn version(&self) -> Option<u64> {
        self.current.load().as_ref().map(|s| s.version)
    }

    /// Installs `snapshot` if it is newer than the current one; returns whether it did.
    pub(crate) fn install(&self, snapshot: Snapshot) -> bool {
        let version = snapshot.version;
        if self.version().is_some_and(|current| version <= current) {
            return false;
        }
        self.current.store(Some(Arc::new(snapshot)));
        self.version.send_replace(version);
        true
    }

    /// Installs a snapshot read back from the local cache, last delivered by the control
    /// plane `age` ago: staleness counts from then, as if it had been heard from at that time.
    pub(crate) fn install_cached(&self, snapshot: Snapshot, age: Duration) -> bool {
        if !self.install(snapshot) {
            return false;
        }
        *self
            .last_contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Contact {
            at: Instant::now(),
            age_then: age,
        };
        true
    }

    /// The control plane was heard from: a snapshot arrived or the stream (re)opened
    /// (`connected`), or the stream ended (`!connected`).
    pub(crate) fn note_contact(&self, connected: bool) {
        *self
            .last_contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Contact::now();
        self.connected.store(connected, Ordering::Relaxed);
    }

    /// How long the snapshot may be out of date: zero while the stream to the control plane
    /// is open (it pushes every change), else the time since it was last heard from.
    pub(crate) fn staleness(&self) -> Duration {
        if self.connected.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        self.last_contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    /// Waits until a snapshot with at least version `min` is installed.
    pub(crate) async fn wait_for_version(&self, min: u64, timeout: Duration) -> bool {
        let mut rx = self.version.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= min))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The last contact with the control plane: `age_then` before the instant `at` (non-zero
/// only for a snapshot restored from the cache, which may be older than this process).
#[derive(Debug, Clone, Copy)]
struct Contact {
    at: Instant,
    age_then: Duration,
}

impl Contact {
    fn now() -> Contact {
        Contact {
            at: Instant::now(),
            age_then: Duration::ZERO,
        }
    }

    fn elapsed(&self) -> Duration {
        self.age_then.saturating_add(self.at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use tollgate_proto::v1 as pb;

    use super::*;

    fn snapshot(version: u64) -> Snapshot {
        Snapshot::try_from(pb::Snapshot {
            version,
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn installs_only_newer_versions() {
        let store = SnapshotStore::default();
        assert!(store.load().is_none());
        assert!(store.install(snapshot(3)));
        assert!(!store.install(snapshot(3)));
        assert!(!store.install(snapshot(2)));
        assert_eq!(store.version(), Some(3));
        assert!(store.install(snapshot(4)));
        assert_eq!(store.load().unwrap().version, 4);
    }

    #[tokio::test]
    async fn staleness_is_zero_while_connected_and_grows_after() {
        let store = SnapshotStore::default();
        store.note_contact(true);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(store.staleness(), Duration::ZERO);
        store.note_contact(false);
        std::thread::sleep(Duration::from_millis(5));
        assert!(store.staleness() >= Duration::from_millis(5));
    }

    #[tokio::test]
    async fn cached_snapshot_is_as_stale_as_its_age_until_the_control_plane_answers() {
        let store = SnapshotStore::default();
        assert!(store.install_cached(snapshot(5), Duration::from_secs(600)));
        assert_eq!(store.version(), Some(5));
        assert!(store.staleness() >= Duration::from_secs(600));
        assert!(!store.install_cached(snapshot(5), Duration::ZERO));
        store.note_contact(true);
        assert_eq!(store.staleness(), Duration::ZERO);
        store.note_contact(false);
        assert!(store.staleness() < Duration::from_secs(600));
        assert!(
            store.install(snapshot(6)),
            "the stream's newer snapshot wins"
        );
    }

    #[tokio::test]
    async fn waiters_see_new_versions() {
        let store = Arc::new(SnapshotStore::default());
        assert!(!store.wait_for_version(1, Duration::from_millis(10)).await);
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_for_version(2, Duration::from_secs(5)).await })
        };
        store.install(snapshot(1));
        store.install(snapshot(2));
        assert!(waiter.await.unwrap());
    }
}
