//! The retry budget: retries (second and later attempts) are capped as a share of traffic,
//! so a provider outage cannot multiply the load on the remaining targets.
//!
//! A token bucket in thousandths: each request deposits `percent × 10`, each retry takes
//! 1000, and a floor of `min_per_second` retries a second is always available. The balance
//! is capped at [`MAX_BALANCE`] retries, so a quiet hour does not bank a retry storm.

use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

const MILLI: u64 = 1000;
/// The most retries the bucket holds.
const MAX_BALANCE: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryBudgetSettings {
    /// Retries allowed as a percentage of requests.
    pub percent: u32,
    /// Retries a second allowed whatever the traffic.
    pub min_per_second: u32,
}

impl Default for RetryBudgetSettings {
    fn default() -> Self {
        RetryBudgetSettings {
            percent: 20,
            min_per_second: 3,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    balance: u64,
    refilled: Instant,
}

#[derive(Debug)]
pub(crate) struct RetryBudget {
    settings: RetryBudgetSettings,
    bucket: Mutex<Bucket>,
}

impl RetryBudget {
    pub(crate) fn new(settings: RetryBudgetSettings) -> Self {
        RetryBudget {
            settings,
            bucket: Mutex::new(Bucket {
                balance: u64::from(settings.min_per_second) * MILLI,
                refilled: Instant::now(),
            }),
        }
    }

    fn cap(&self) -> u64 {
        MAX_BALANCE.max(u64::from(self.settings.min_per_second)) * MILLI
    }

    /// A request arrived.
    pub(crate) fn deposit(&self) {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let add = u64::from(self.settings.percent.min(100)) * MILLI / 100;
        b.balance = (b.balance + add).min(self.cap());
    }

    /// Takes one retry if the budget allows it.
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed_ms = u64::try_from(now.saturating_duration_since(b.refilled).as_millis())
            .unwrap_or(u64::MAX);
        if elapsed_ms > 0 {
            let refill = elapsed_ms.saturating_mul(u64::from(self.settings.min_per_second));
            b.balance = b.balance.saturating_add(refill).min(self.cap());
            b.refilled = now;
        }
        if b.balance >= MILLI {
            b.balance -= MILLI;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn retries_are_a_share_of_requests_plus_a_floor() {
        let budget = RetryBudget::new(RetryBudgetSettings {
            percent: 20,
            min_per_second: 0,
        });
        let now = Instant::now();
        assert!(!budget.try_withdraw(now));
        for _ in 0..10 {
            budget.deposit();
        }
        // 10 requests at 20% = 2 retries.
        assert!(budget.try_withdraw(now));
        assert!(budget.try_withdraw(now));
        assert!(!budget.try_withdraw(now));

        let floor = RetryBudget::new(RetryBudgetSettings {
            percent: 0,
            min_per_second: 2,
        });
        let now = Instant::now();
        assert!(floor.try_withdraw(now));
        assert!(floor.try_withdraw(now));
        assert!(!floor.try_withdraw(now));
        assert!(floor.try_withdraw(now + Duration::from_millis(500)));
        assert!(!floor.try_withdraw(now + Duration::from_millis(500)));
    }
}
