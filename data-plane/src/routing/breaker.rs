//! Circuit breakers, one per route target (provider + upstream model).
//!
//! Closed: every attempt goes through; `failure_threshold` consecutive failures open it.
//! Open: the target is skipped until `retry_at`; then the next request to reach it becomes
//! the single half-open probe (others keep skipping it). The probe's success closes the
//! breaker; its failure opens it again for another cooldown. A probe is a lease: one that
//! never reports back (its request was cancelled) is replaced after a cooldown.
//!
//! A provider's `retry-after` also takes the target out of rotation until then, without
//! tripping the breaker: when that time has passed, the target is simply back (no probe).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use tollgate_proto::v1 as pb;

/// Longest cooldown a provider's `retry-after` can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BreakerSettings {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// How long an open breaker waits before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed,
    Open,
    HalfOpen,
}

/// Whether an attempt may go to a target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    /// Yes, as the half-open probe.
    Probe,
    /// No: skipped until `until`; `rate_limited` when the provider asked callers to wait
    /// (a `429` with `retry-after`) rather than failing.
    No {
        until: Instant,
        rate_limited: bool,
    },
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive_failures: u32,
    retry_at: Option<Instant>,
    /// Opened by consecutive failures (needs a probe), not only by a `retry-after`.
    tripped: bool,
    /// The current cool-down was asked for by a rate-limited answer.
    rate_limited: bool,
    last_error: String,
    last_failure: Option<SystemTime>,
}

/// One target's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    inner: Mutex<Inner>,
    attempts: AtomicU64,
    failures: AtomicU64,
}

impl Breaker {
    fn new() -> Self {
        Breaker {
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
                retry_at: None,
                tripped: false,
                rate_limited: false,
                last_error: String::new(),
                last_failure: None,
            }),
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn admit(&self, settings: &BreakerSettings, now: Instant) -> Admit {
        let mut inner = self.lock();
        if inner.state == State::Closed {
            return Admit::Yes;
        }
        if let Some(until) = inner.retry_at.filter(|at| now < *at) {
            return Admit::No {
                until,
                rate_limited: inner.state == State::Open && inner.rate_limited,
            };
        }
        if inner.state == State::Open && !inner.tripped {
            // Only a `retry-after` held it: the wait is over.
            inner.state = State::Closed;
            inner.retry_at = None;
            inner.rate_limited = false;
            return Admit::Yes;
        }
        // Open past its cooldown, or a probe that never reported back: one (new) probe,
        // leased for a cooldown.
        inner.state = State::HalfOpen;
        inner.retry_at = Some(now + settings.cooldown);
        Admit::Probe
    }

    /// A granted probe will not be sent after all: the next request may probe at once.
    pub(crate) fn release_probe(&self, now: Instant) {
        let mut inner = self.lock();
        if inner.state == State::HalfOpen {
            inner.state = State::Open;
            inner.retry_at = Some(now);
        }
    }

    /// An attempt is being sent.
    pub(crate) fn attempted(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// The target answered (any non-retryable status counts: it is up).
    pub(crate) fn success(&self) {
        let mut inner = self.lock();
        inner.state = State::Closed;
        inner.consecutive_failures = 0;
        inner.retry_at = None;
        inner.tripped = false;
        inner.rate_limited = false;
    }

    /// The target failed (connect error, timeout, retryable status). `retry_after` takes it
    /// out of rotation at once for that long; `rate_limited` says the answer was a `429`.
    pub(crate) fn failure(
        &self,
        settings: &BreakerSettings,
        now: Instant,
        reason: &str,
        retry_after: Option<Duration>,
        rate_limited: bool,
    ) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        inner.last_error = reason.chars().take(120).collect();
        inner.last_failure = Some(SystemTime::now());
        let trips = inner.state == State::HalfOpen
            || inner.consecutive_failures >= settings.failure_threshold.max(1);
        let hinted = retry_after.map(|d| d.min(MAX_RETRY_AFTER));
        if trips || hinted.is_some() {
            let wait = match hinted {
                Some(hint) if trips => hint.max(settings.cooldown),
                Some(hint) => hint,
                None => settings.cooldown,
            };
            inner.state = State::Open;
            inner.retry_at = Some(now + wait);
            inner.tripped |= trips;
            inner.rate_limited = hinted.is_some() && rate_limited && !inner.tripped;
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.lock().state
    }

    fn health(&self, provider_id: &str, upstream_model: &str) -> pb::TargetHealth {
        let inner = self.lock();
        let state = match inner.state {
            State::Closed => pb::BreakerState::Closed,
            State::Open => pb::BreakerState::Open,
            State::HalfOpen => pb::BreakerState::HalfOpen,
        };
        let retry_at_unix_ms = inner.retry_at.map_or(0, |at| {
            let from_now = at.saturating_duration_since(Instant::now());
            unix_ms(SystemTime::now() + from_now)
        });
        pb::TargetHealth {
            provider_id: provider_id.to_owned(),
            upstream_model: upstream_model.to_owned(),
            state: state as i32,
            consecutive_failures: inner.consecutive_failures,
            retry_at_unix_ms,
            attempts: self.attempts.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: inner.last_error.clone(),
            last_failure_unix_ms: inner.last_failure.map_or(0, unix_ms),
        }
    }
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Every target's breaker, created on first use: provider id → upstream model → breaker.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    pub settings: BreakerSettings,
    map: RwLock<HashMap<String, HashMap<String, Arc<Breaker>>>>,
}

impl Breakers {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Breakers {
            settings,
            map: RwLock::default(),
        }
    }

    pub(crate) fn get(&self, provider_id: &str, upstream_model: &str) -> Arc<Breaker> {
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(b) = map.get(provider_id).and_then(|m| m.get(upstream_model)) {
                return b.clone();
            }
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(provider_id.to_owned())
            .or_default()
            .entry(upstream_model.to_owned())
            .or_insert_with(|| Arc::new(Breaker::new()))
            .clone()
    }

    /// Every target's health, for the control plane and metrics.
    pub(crate) fn report(&self) -> Vec<pb::TargetHealth> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = map
            .iter()
            .flat_map(|(p, models)| models.iter().map(move |(m, b)| b.health(p, m)))
            .collect();
        out.sort_by(|a, b| {
            (a.provider_id.as_str(), a.upstream_model.as_str())
                .cmp(&(b.provider_id.as_str(), b.upstream_model.as_str()))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 3,
            cooldown: Duration::from_secs(10),
        }
    }

    fn no(until: Instant) -> Admit {
        Admit::No {
            until,
            rate_limited: false,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers_through_one_probe() {
        let b = Breaker::new();
        let s = settings();
        let now = Instant::now();
        b.failure(&s, now, "status 529", None, false);
        b.failure(&s, now, "status 529", None, false);
        assert_eq!(b.admit(&s, now), Admit::Yes);
        b.failure(&s, now, "status 529", None, false);
        assert_eq!(b.admit(&s, now), no(now + Duration::from_secs(10)));

        let later = now + Duration::from_secs(10);
        assert_eq!(b.admit(&s, later), Admit::Probe);
        // Only one probe at a time.
        assert!(matches!(b.admit(&s, later), Admit::No { .. }));
        b.success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.admit(&s, later), Admit::Yes);
    }

    #[test]
    fn a_failed_probe_opens_again_and_success_resets_the_count() {
        let b = Breaker::new();
        let s = settings();
        let now = Instant::now();
        for _ in 0..3 {
            b.failure(&s, now, "timeout", None, false);
        }
        let later = now + Duration::from_secs(11);
        assert_eq!(b.admit(&s, later), Admit::Probe);
        b.failure(&s, later, "timeout", None, false);
        assert_eq!(b.admit(&s, later), no(later + Duration::from_secs(10)));

        let c = Breaker::new();
        c.failure(&s, now, "x", None, false);
        c.failure(&s, now, "x", None, false);
        c.success();
        c.failure(&s, now, "x", None, false);
        assert_eq!(
            c.admit(&s, now),
            Admit::Yes,
            "success resets the consecutive count"
        );
    }

    #[test]
    fn a_probe_that_never_reports_back_is_replaced_after_a_cooldown() {
        let b = Breaker::new();
        let s = settings();
        let now = Instant::now();
        for _ in 0..3 {
            b.failure(&s, now, "timeout", None, false);
        }
        let t1 = now + Duration::from_secs(10);
        assert_eq!(b.admit(&s, t1), Admit::Probe);
        // Its request was cancelled: nothing is reported.
        assert!(matches!(
            b.admit(&s, t1 + Duration::from_secs(9)),
            Admit::No { .. }
        ));
        assert_eq!(b.admit(&s, t1 + Duration::from_secs(10)), Admit::Probe);
        // A probe given back is available at once.
        b.release_probe(t1 + Duration::from_secs(10));
        assert_eq!(b.admit(&s, t1 + Duration::from_secs(10)), Admit::Probe);
    }

    #[test]
    fn retry_after_rests_the_target_then_it_is_simply_back() {
        let b = Breaker::new();
        let s = settings();
        let now = Instant::now();
        b.failure(&s, now, "status 429", Some(Duration::from_secs(4)), true);
        assert_eq!(
            b.admit(&s, now),
            Admit::No {
                until: now + Duration::from_secs(4),
                rate_limited: true
            }
        );
        let h = b.health("p", "m");
        assert_eq!(h.state, pb::BreakerState::Open as i32);
        assert_eq!((h.failures, h.last_error.as_str()), (1, "status 429"));
        // No probe: the provider said when to come back.
        assert_eq!(b.admit(&s, now + Duration::from_secs(4)), Admit::Yes);
        assert_eq!(b.admit(&s, now + Duration::from_secs(4)), Admit::Yes);
    }

    #[test]
    fn breakers_are_per_target() {
        let all = Breakers::new(settings());
        let a = all.get("p1", "m1");
        assert!(Arc::ptr_eq(&a, &all.get("p1", "m1")));
        assert!(!Arc::ptr_eq(&a, &all.get("p1", "m2")));
        assert_eq!(all.report().len(), 2);
    }
}
