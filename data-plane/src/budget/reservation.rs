//! A request's hold on its counters between admission and the end of its response.

use std::sync::Arc;

use tollgate_policy::CounterKey;

use super::Ledger;

/// `amount` reserved on every counter. [`Reservation::settle`] charges the real cost and
/// frees the rest; dropping it unsettled (an early return, a panic) frees it all.
#[derive(Debug)]
pub(crate) struct Reservation {
    ledger: Arc<Ledger>,
    counters: Arc<[CounterKey]>,
    amount: u64,
    open: bool,
}

impl Reservation {
    pub(super) fn new(ledger: Arc<Ledger>, counters: Arc<[CounterKey]>, amount: u64) -> Self {
        Reservation {
            ledger,
            counters,
            amount,
            open: true,
        }
    }

    /// The counters the request is charged to.
    pub(crate) fn counters(&self) -> &[CounterKey] {
        &self.counters
    }

    /// Charges `cost` and frees the rest of the reservation.
    pub(crate) fn settle(mut self, cost: u64) {
        self.open = false;
        self.ledger.settle(&self.counters, self.amount, cost);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            self.ledger.release(&self.counters, self.amount);
        }
    }
}
