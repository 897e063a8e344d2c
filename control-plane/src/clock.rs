//! The control plane's notion of "now" for rate limits: the system clock in production, a
//! manual one in tests (bucket refill and concurrency lease expiry read it, so tests can
//! freeze and advance time).

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

/// A clock: the system's, or a manual one that only moves when told. Clones of a manual
/// clock share its time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock frozen at `at` until [`Clock::advance`] or [`Clock::set`] moves it.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Clock {
            manual: Some(Arc::new(Mutex::new(at))),
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            Some(at) => *at.lock().unwrap_or_else(PoisonError::into_inner),
            None => Utc::now(),
        }
    }

    /// Moves a manual clock by `by` (which may be negative); no effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(at) = &self.manual {
            let mut at = at.lock().unwrap_or_else(PoisonError::into_inner);
            *at += by;
        }
    }

    /// Sets a manual clock to `to`; no effect on the system clock.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Some(at) = &self.manual {
            *at.lock().unwrap_or_else(PoisonError::into_inner) = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_of_a_manual_clock_share_its_time() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = Clock::manual(start);
        let other = clock.clone();
        other.advance(Duration::milliseconds(1500));
        assert_eq!(clock.now(), start + Duration::milliseconds(1500));
        clock.set(start);
        assert_eq!(other.now(), start);
        assert!(clock.is_manual());
    }

    #[test]
    fn the_system_clock_ignores_manual_moves() {
        let clock = Clock::system();
        let before = Utc::now();
        clock.advance(Duration::days(10));
        clock.set(before - Duration::days(10));
        let now = clock.now();
        assert!(now >= before && now < before + Duration::days(1));
        assert!(!clock.is_manual());
    }
}
