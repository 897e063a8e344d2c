//! Remembers for a while that the control plane was unreachable, so admission answers
//! queued requests with the outage reply at once instead of a timeout each.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long an unreachable control plane is not asked again by admission (the keepers
/// keep trying on their own schedule).
const OUTAGE_RECHECK: Duration = Duration::from_secs(5);

/// Until when lease calls are skipped after one found the control plane unreachable.
#[derive(Debug, Default)]
pub(crate) struct OutageLatch {
    down_until: Mutex<Option<Instant>>,
}

impl OutageLatch {
    /// Whether a call found the control plane unreachable less than `OUTAGE_RECHECK` ago.
    pub(crate) fn is_down(&self) -> bool {
        let down_until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        down_until.is_some_and(|until| Instant::now() < until)
    }

    /// Notes that a call just found the control plane unreachable.
    pub(crate) fn mark_down(&self) {
        let mut down_until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *down_until = Some(Instant::now() + OUTAGE_RECHECK);
    }
}
