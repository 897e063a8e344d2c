//! The wall clock the spend code reads: system time in production, settable in tests.
//!
//! Only calendar decisions (which UTC day/week/month a request is charged to, when a cap
//! resets) read this clock. Durations (lease expiry, idleness) use `Instant`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Unix seconds for spend windows. Cloning shares the same clock.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock that stays at `unix_s` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn manual(unix_s: i64) -> Self {
        Clock(Some(Arc::new(AtomicI64::new(unix_s))))
    }

    /// Moves a manual clock to `unix_s`; no effect on the system clock.
    pub fn set(&self, unix_s: i64) {
        if let Some(at) = &self.0 {
            at.store(unix_s, Ordering::SeqCst);
        }
    }

    /// Moves a manual clock forward by `seconds`; no effect on the system clock.
    pub fn advance(&self, seconds: i64) {
        if let Some(at) = &self.0 {
            at.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    /// Now, in Unix seconds.
    pub fn now_unix_s(&self) -> i64 {
        match &self.0 {
            Some(at) => at.load(Ordering::SeqCst),
            None => crate::gateway::unix_now_s(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_is_shared_by_clones() {
        let clock = Clock::manual(100);
        let other = clock.clone();
        clock.advance(5);
        assert_eq!(other.now_unix_s(), 105);
        other.set(7);
        assert_eq!(clock.now_unix_s(), 7);
        assert!(Clock::system().now_unix_s() > 1_700_000_000);
    }
}
