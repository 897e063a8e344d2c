//! One async lock per lease key: at most one lease call per key (spend counter, rate
//! bucket) and data plane at a time.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// A held key lock (owned, so it can be kept across awaits).
pub(crate) type FlightGuard = tokio::sync::OwnedMutexGuard<()>;

/// The lease locks, created on first use and dropped by [`FlightLocks::prune`].
#[derive(Debug)]
pub(crate) struct FlightLocks<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for FlightLocks<K> {
    fn default() -> Self {
        FlightLocks {
            locks: Mutex::default(),
        }
    }
}

impl<K: Ord + Hash + Clone> FlightLocks<K> {
    /// Takes the locks of `keys`, in sorted key order (so concurrent callers on
    /// overlapping keys never deadlock); duplicates are locked once.
    pub(crate) async fn lock<'a>(&self, keys: impl IntoIterator<Item = &'a K>) -> Vec<FlightGuard>
    where
        K: 'a,
    {
        let locks = self.locks_of(keys);
        let mut guards = Vec::with_capacity(locks.len());
        for lock in locks {
            guards.push(lock.lock_owned().await);
        }
        guards
    }

    fn locks_of<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a K>,
    ) -> Vec<Arc<tokio::sync::Mutex<()>>>
    where
        K: 'a,
    {
        let mut keys: Vec<&K> = keys.into_iter().collect();
        keys.sort();
        keys.dedup();
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        keys.into_iter()
            .map(|k| locks.entry(k.clone()).or_default().clone())
            .collect()
    }

    /// Takes the locks of `keys` that are free right now, without waiting: the guards, and
    /// the keys whose lock someone else holds (a lease call in flight).
    pub(crate) fn try_lock<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a K>,
    ) -> (Vec<FlightGuard>, Vec<K>)
    where
        K: 'a,
    {
        let keys: Vec<&K> = keys.into_iter().collect();
        let mut guards = Vec::with_capacity(keys.len());
        let mut busy = Vec::new();
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            let lock = locks.entry(key.clone()).or_default().clone();
            match lock.try_lock_owned() {
                Ok(guard) => guards.push(guard),
                Err(_) => busy.push(key.clone()),
            }
        }
        (guards, busy)
    }

    /// Drops the locks nobody holds or waits for.
    pub(crate) fn prune(&self) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn try_lock_takes_the_free_keys_and_names_the_busy_ones() {
        let locks = FlightLocks::<String>::default();
        let (a, b) = ("a".to_owned(), "b".to_owned());
        let held = locks.lock([&a]).await;
        let (guards, busy) = locks.try_lock([&a, &b]);
        assert_eq!(guards.len(), 1);
        assert_eq!(busy, vec![a.clone()]);
        drop(guards);
        drop(held);
        let (guards, busy) = locks.try_lock([&a, &b]);
        assert_eq!((guards.len(), busy.len()), (2, 0));
        drop(guards);
        locks.prune();
        assert!(locks.locks.lock().unwrap().is_empty());
    }
}
