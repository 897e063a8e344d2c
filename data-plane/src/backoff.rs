//! Jittered exponential backoff for talking to the control plane.

use std::time::Duration;

use rand::Rng;

/// Delays double from `min` up to `max`; each delay is drawn uniformly from the upper half
/// of the current step ("equal jitter"), so many data planes do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// 100 ms → 10 s, the schedule for every control-plane call.
    pub(crate) fn control_plane() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=step - half)
    }

    pub(crate) fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::control_plane();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(10));
        }
        let late = b.next_delay();
        assert!(late >= Duration::from_secs(5), "{late:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
