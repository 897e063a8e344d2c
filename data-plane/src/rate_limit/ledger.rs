//! The local ledger: per bucket, the slice of the limit this data plane holds.
//!
//! A slice tracks `granted` (what the control plane handed this data plane: tokens or
//! requests taken from a per-minute bucket, or concurrency slots held under a lease),
//! `settled` (what finished requests used) and `reserved` (what requests in flight hold).
//! `headroom = granted − settled − reserved` goes negative when a request used more than
//! its estimate (or the control plane reset a concurrency lease): that debt is paid from
//! the next grant. Every operation is a few integer updates under one short mutex.
//!
//! Per-minute slices are usable for [`PER_MINUTE_SLICE_LIFETIME`] after their last grant;
//! the keeper then hands what is left back. Concurrency slices live until the lease expiry
//! the control plane answered, less [`EXPIRY_MARGIN`], and are renewed while in use.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tollgate_policy::{BucketKey, RateLimit, RateLimitKind};

use super::lease::{RateAsk, RateReply};

/// A per-minute slice is spent from for at most this long after its last grant.
pub(crate) const PER_MINUTE_SLICE_LIFETIME: Duration = Duration::from_secs(5);

/// A concurrency lease is treated as expired this long before the control plane would
/// expire it.
pub(crate) const EXPIRY_MARGIN: Duration = Duration::from_secs(2);

/// A concurrency slice hands slots no request holds back to the control plane once idle
/// this long (at once when the limit was fully leased out at the last answer), so another
/// data plane can take them.
pub(crate) const SPARE_SLOTS_IDLE: Duration = Duration::from_secs(1);

/// A per-minute slice left in debt (requests used more than their estimate) and idle this
/// long is dropped: the bucket has refilled completely since.
const DEBT_FORGIVEN_AFTER: Duration = Duration::from_secs(60);

/// What one request reserves on one bucket.
#[derive(Debug, Clone)]
pub struct Charge {
    pub bucket: BucketKey,
    pub limit: Arc<RateLimit>,
    /// Units reserved: 1 for requests and concurrency, estimated tokens for token limits.
    pub amount: u64,
}

impl Charge {
    pub(crate) fn kind(&self) -> RateLimitKind {
        self.limit.kind
    }

    /// What the request finally used: requests count 1 (0 when `cancelled`, i.e. never
    /// admitted), token limits the reported tokens, concurrency slots nothing (freed).
    fn cost(&self, input_tokens: u64, output_tokens: u64, cancelled: bool) -> u64 {
        match self.kind() {
            _ if cancelled => 0,
            RateLimitKind::RequestsPerMinute => 1,
            RateLimitKind::InputTokensPerMinute => input_tokens,
            RateLimitKind::OutputTokensPerMinute => output_tokens,
            RateLimitKind::ConcurrentRequests => 0,
        }
    }
}

/// A bucket as this data plane last saw it (for response headers and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BucketView {
    pub kind: RateLimitKind,
    pub limit: u64,
    /// Units left: the bucket's level at the last answer, refilled since, plus this data
    /// plane's unused slice (per-minute); free slots plus the unused slice (concurrency).
    pub remaining: u64,
}

impl BucketView {
    /// Milliseconds until a per-minute bucket is full again at its refill rate.
    pub(crate) fn full_in_ms(&self) -> u64 {
        refill_ms(self.limit.saturating_sub(self.remaining), self.limit)
    }

    /// Fraction of the limit in use, 0..=1.
    pub(crate) fn utilization(&self) -> f64 {
        if self.limit == 0 {
            return 0.0;
        }
        let used = self.limit.saturating_sub(self.remaining.min(self.limit));
        // Limits and counts fit f64's mantissa far beyond any practical limit.
        #[allow(clippy::cast_precision_loss)]
        let fraction = used as f64 / self.limit as f64;
        fraction.clamp(0.0, 1.0)
    }
}

/// Milliseconds to refill `missing` units at `limit` per minute (rounded up).
pub(crate) fn refill_ms(missing: u64, limit: u64) -> u64 {
    if missing == 0 || limit == 0 {
        return 0;
    }
    let ms = (u128::from(missing) * 60_000).div_ceil(u128::from(limit));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone)]
struct Slot {
    /// The rule as the latest snapshot a request saw had it.
    limit: Arc<RateLimit>,
    granted: u64,
    settled: u64,
    reserved: u64,
    /// Per-minute: last grant + [`PER_MINUTE_SLICE_LIFETIME`]. Concurrency: the answered
    /// lease expiry less [`EXPIRY_MARGIN`].
    expires: Instant,
    /// The limit the control plane last answered (0 until it answered).
    answered_limit: u64,
    /// False once the control plane said the limit no longer exists: the slice admits
    /// everything until the snapshot drops the limit.
    enforced: bool,
    /// The control plane's `available` and when it was answered.
    available: Option<(u64, Instant)>,
    last_used: Instant,
    /// The keeper is handing this slice back.
    retiring: bool,
    /// Per-minute: the unused reservations of requests that outlived the slice lifetime,
    /// taken out of the slice to be handed back to the bucket (see [`Ledger::settle_held`]).
    returned: u64,
}

impl Slot {
    fn new(limit: Arc<RateLimit>, now: Instant) -> Self {
        Slot {
            limit,
            granted: 0,
            settled: 0,
            reserved: 0,
            expires: now,
            answered_limit: 0,
            enforced: true,
            available: None,
            last_used: now,
            retiring: false,
            returned: 0,
        }
    }

    fn kind(&self) -> RateLimitKind {
        self.limit.kind
    }

    fn per_minute(&self) -> bool {
        self.kind().per_minute()
    }

    /// The limit in force: as the control plane answered, else as the snapshot says.
    fn limit_units(&self) -> u64 {
        if self.answered_limit > 0 {
            self.answered_limit
        } else {
            self.limit.limit
        }
    }

    fn headroom(&self) -> i128 {
        i128::from(self.granted) - i128::from(self.settled) - i128::from(self.reserved)
    }

    fn positive_headroom(&self) -> u64 {
        u64::try_from(self.headroom().max(0)).unwrap_or(u64::MAX)
    }

    fn debt(&self) -> u64 {
        u64::try_from((-self.headroom()).max(0)).unwrap_or(u64::MAX)
    }

    fn live(&self, now: Instant) -> bool {
        now < self.expires
    }

    /// A concurrency limit the control plane said was fully leased out.
    fn scarce(&self) -> bool {
        !self.per_minute() && matches!(self.available, Some((0, _)))
    }

    /// Concurrency slots no request holds that should go back to the control plane now.
    fn spare_to_hand_back(&self, now: Instant) -> u64 {
        if self.per_minute() || !self.enforced {
            return 0;
        }
        let idle = now.saturating_duration_since(self.last_used) >= SPARE_SLOTS_IDLE;
        if self.scarce() || idle {
            self.positive_headroom()
        } else {
            0
        }
    }

    /// A concurrency lease certainly expired at the control plane too (its expiry is at
    /// most the answer's arrival + what it answered, and we keep a margin below that).
    fn surely_expired(&self, now: Instant) -> bool {
        !self.per_minute() && self.granted > 0 && now >= self.expires + EXPIRY_MARGIN
    }

    /// Forgets the slots the control plane no longer counts (its lease expired): only the
    /// in-flight requests remain, as debt to be covered again.
    fn reset(&mut self) {
        self.granted = self.settled;
    }

    fn view(&self, now: Instant) -> BucketView {
        let limit = self.limit_units();
        let outside = match self.available {
            None => limit,
            Some((available, at)) if self.per_minute() => {
                let elapsed = u64::try_from(now.saturating_duration_since(at).as_millis())
                    .unwrap_or(u64::MAX);
                let refilled = u128::from(limit) * u128::from(elapsed) / 60_000;
                let level = u128::from(available).saturating_add(refilled);
                u64::try_from(level.min(u128::from(limit))).unwrap_or(limit)
            }
            Some((available, _)) => available,
        };
        BucketView {
            kind: self.kind(),
            limit,
            remaining: outside.saturating_add(self.positive_headroom()).min(limit),
        }
    }
}

/// Every bucket this data plane holds a slice of.
#[derive(Debug, Default)]
pub struct Ledger {
    slots: Mutex<HashMap<BucketKey, Slot>>,
    /// Woken when a request frees a concurrency slot of a fully leased limit: the keeper
    /// hands it back at once instead of at its next tick.
    spare_freed: tokio::sync::Notify,
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<BucketKey, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fast path: if every bucket holds a live slice with room for its charge, reserves
    /// them all and returns `true`. `false` (nothing reserved) means a lease call is needed.
    pub fn try_reserve(&self, charges: &[Charge], now: Instant) -> bool {
        let mut slots = self.slots();
        for (index, charge) in charges.iter().enumerate() {
            match slots.get_mut(&charge.bucket) {
                Some(slot)
                    if !slot.enforced
                        || (slot.live(now) && slot.headroom() >= i128::from(charge.amount)) =>
                {
                    slot.reserved = slot.reserved.saturating_add(charge.amount);
                    slot.last_used = now;
                }
                _ => {
                    for undo in charges.iter().take(index) {
                        if let Some(slot) = slots.get_mut(&undo.bucket) {
                            slot.reserved = slot.reserved.saturating_sub(undo.amount);
                        }
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Ends a hold: its reservations are no longer reserved and what it used is settled
    /// (see [`Charge::cost`]). `cancelled`: the request was never admitted, nothing counts.
    pub fn settle(
        &self,
        charges: &[Charge],
        input_tokens: u64,
        output_tokens: u64,
        cancelled: bool,
    ) {
        self.settle_held(
            charges,
            input_tokens,
            output_tokens,
            cancelled,
            Duration::ZERO,
        );
    }

    /// [`Ledger::settle`] for a hold that lasted `held_for`. On a per-minute bucket, what a
    /// request held longer than [`PER_MINUTE_SLICE_LIFETIME`] reserved and did not use left
    /// the bucket too long ago to be spent now: it is taken out of the slice and handed back
    /// to the bucket by the next call, instead of being reused here.
    pub(crate) fn settle_held(
        &self,
        charges: &[Charge],
        input_tokens: u64,
        output_tokens: u64,
        cancelled: bool,
        held_for: Duration,
    ) {
        let mut slots = self.slots();
        let mut freed_scarce = false;
        let outlived = held_for > PER_MINUTE_SLICE_LIFETIME;
        for charge in charges {
            if let Some(slot) = slots.get_mut(&charge.bucket) {
                slot.reserved = slot.reserved.saturating_sub(charge.amount);
                let cost = charge.cost(input_tokens, output_tokens, cancelled);
                slot.settled = slot.settled.saturating_add(cost);
                if outlived && slot.per_minute() && slot.enforced {
                    let surplus = charge.amount.saturating_sub(cost);
                    let taken = surplus.min(slot.positive_headroom());
                    slot.granted -= taken;
                    slot.returned = slot.returned.saturating_add(taken);
                }
                freed_scarce |= slot.scarce() && slot.positive_headroom() > 0;
            }
        }
        drop(slots);
        if freed_scarce {
            self.spare_freed.notify_one();
        }
    }

    /// Resolves when a request freed a concurrency slot of a fully leased limit.
    pub(crate) async fn spare_freed(&self) {
        self.spare_freed.notified().await;
    }

    /// The slow path, first half (the caller holds the buckets' lease locks): reserves every
    /// charge — so concurrent fast-path requests cannot take the headroom this request is
    /// counting on — and returns the asks for the buckets whose slice is missing, expired
    /// or short: `need = amount − headroom` (a debt adds to it, bounded by the limit),
    /// `want = max(need, limit / 20)`. An expired per-minute slice hands its unused rest
    /// back in the same ask. No asks means the reservation is already covered.
    pub(crate) fn reserve_for_lease(&self, charges: &[Charge], now: Instant) -> Vec<RateAsk> {
        let mut slots = self.slots();
        let mut asks = Vec::new();
        for charge in charges {
            let slot = match slots.entry(charge.bucket.clone()) {
                Entry::Occupied(e) => {
                    let slot = e.into_mut();
                    if !Arc::ptr_eq(&slot.limit, &charge.limit) {
                        slot.limit = charge.limit.clone();
                    }
                    slot
                }
                Entry::Vacant(e) => e.insert(Slot::new(charge.limit.clone(), now)),
            };
            let live = slot.live(now);
            let mut release = 0;
            if slot.enforced {
                if !live && slot.per_minute() {
                    release = slot.positive_headroom();
                    slot.granted -= release;
                }
                if slot.surely_expired(now) {
                    slot.reset();
                }
            }
            // The headroom before this reservation; an expired slice's rest does not count.
            let before = slot.headroom();
            let amount = charge.amount;
            slot.reserved = slot.reserved.saturating_add(amount);
            slot.last_used = now;
            slot.retiring = false;
            if !slot.enforced {
                continue;
            }
            let usable = if live { before } else { before.min(0) };
            if live && usable >= i128::from(amount) {
                continue;
            }
            let limit = slot.limit_units();
            let need = u64::try_from(i128::from(amount) - usable.min(i128::from(amount)))
                .unwrap_or(u64::MAX)
                .min(amount.max(limit));
            asks.push(RateAsk {
                bucket: charge.bucket.clone(),
                need,
                want: need.max(limit / 20),
                release: release.saturating_add(std::mem::take(&mut slot.returned)),
            });
        }
        asks
    }

    /// Applies a `RateLease` answer: grants (when granted), resets, limits, views, expiry.
    /// `ttl` caps a concurrency lease's lifetime (and stands in when none was answered).
    pub(crate) fn apply_reply(
        &self,
        asks: &[RateAsk],
        reply: &RateReply,
        now: Instant,
        ttl: Duration,
    ) {
        let mut slots = self.slots();
        for (ask, state) in asks.iter().zip(&reply.buckets) {
            let Some(slot) = slots.get_mut(&ask.bucket) else {
                continue;
            };
            if !slot.per_minute() && state.limit > 0 && state.expires_in.is_some() {
                // A concurrency lease answer says what this data plane holds, absolutely:
                // a lost answer (a grant committed after the call timed out, a release the
                // keeper counted but the control plane never saw) is corrected by the next.
                slot.granted = slot.settled.saturating_add(state.held);
            } else if state.lease_reset {
                slot.reset();
            }
            if reply.granted && (slot.per_minute() || state.expires_in.is_none()) {
                slot.granted = slot.granted.saturating_add(state.granted);
                if slot.per_minute() && state.granted > 0 {
                    slot.expires = now + PER_MINUTE_SLICE_LIFETIME;
                }
            }
            if state.limit == 0 {
                slot.enforced = false;
            } else {
                slot.answered_limit = state.limit;
            }
            slot.available = Some((state.available, now));
            if !slot.per_minute() {
                let lifetime = match state.expires_in {
                    Some(answered) => Some(answered.min(ttl)),
                    None if reply.granted => Some(ttl),
                    None => None,
                };
                if let Some(lifetime) = lifetime {
                    slot.expires = now + lifetime.saturating_sub(EXPIRY_MARGIN);
                }
            }
        }
    }

    /// Every bucket with a slice.
    pub(crate) fn buckets(&self) -> Vec<BucketKey> {
        self.slots().keys().cloned().collect()
    }

    /// Whether a keeper round has anything to do: an expired per-minute slice, a slice of a
    /// limit that no longer exists, or (when `renew`) a concurrency slice.
    pub(crate) fn wants_upkeep(&self, now: Instant, renew: bool) -> bool {
        self.slots().values().any(|s| {
            if !s.enforced {
                s.reserved == 0
            } else if s.per_minute() {
                !s.live(now) || s.returned > 0
            } else {
                renew || s.spare_to_hand_back(now) > 0
            }
        })
    }

    /// [`Ledger::plan_upkeep_skipping`] with no bucket busy.
    #[cfg(test)]
    pub(crate) fn plan_upkeep(&self, now: Instant, ttl: Duration, renew: bool) -> Vec<RateAsk> {
        self.plan_upkeep_skipping(now, ttl, renew, &[])
    }

    /// What the keeper should do now (`renew`: also renew concurrency leases this round),
    /// leaving the slices of `busy` buckets alone (an admission's lease call on them is in
    /// flight, and renews them anyway):
    ///
    /// - a per-minute slice hands back what long requests left unused; an expired one also
    ///   hands back its unused rest and, with nothing in flight, is dropped (after the
    ///   call); one in debt asks for what it owes (`need` 0) until paid, or is forgiven
    ///   after [`DEBT_FORGIVEN_AFTER`] idle;
    /// - a concurrency slice hands back the slots no request holds once idle for
    ///   [`SPARE_SLOTS_IDLE`] (at once when the limit was fully leased out), and is dropped
    ///   when nothing is in flight; the others are renewed, asking to cover any debt
    ///   (in-flight requests the control plane no longer counts after a reset).
    ///
    /// What is handed back leaves the slice at once, so nothing can reserve it meanwhile.
    pub(crate) fn plan_upkeep_skipping(
        &self,
        now: Instant,
        ttl: Duration,
        renew: bool,
        busy: &[BucketKey],
    ) -> Vec<RateAsk> {
        let mut slots = self.slots();
        let mut asks = Vec::new();
        let mut dropped = Vec::new();
        for (bucket, slot) in slots.iter_mut() {
            if busy.contains(bucket) {
                continue;
            }
            let idle_for = now.saturating_duration_since(slot.last_used);
            if !slot.enforced {
                if slot.reserved == 0 {
                    dropped.push(bucket.clone());
                }
                continue;
            }
            if slot.per_minute() {
                let returned = std::mem::take(&mut slot.returned);
                if slot.live(now) {
                    if returned > 0 {
                        asks.push(RateAsk {
                            release: returned,
                            ..RateAsk::renew(bucket.clone())
                        });
                    }
                    continue;
                }
                let headroom = slot.headroom();
                if headroom > 0 || returned > 0 {
                    let release = slot.positive_headroom();
                    slot.granted -= release;
                    slot.retiring = slot.reserved == 0;
                    asks.push(RateAsk {
                        release: release.saturating_add(returned),
                        ..RateAsk::renew(bucket.clone())
                    });
                } else if slot.reserved > 0 {
                    // In flight: settles into this slice; handled once settled.
                } else if headroom == 0 || idle_for >= DEBT_FORGIVEN_AFTER {
                    dropped.push(bucket.clone());
                } else {
                    asks.push(RateAsk {
                        want: slot.debt(),
                        ..RateAsk::renew(bucket.clone())
                    });
                }
                continue;
            }
            if slot.surely_expired(now) {
                slot.reset();
            }
            let spare = slot.spare_to_hand_back(now);
            if spare > 0 {
                // Also renews the lease of the slots still in flight.
                slot.granted -= spare;
                slot.retiring = slot.reserved == 0;
                asks.push(RateAsk {
                    release: spare,
                    want: slot.debt(),
                    ..RateAsk::renew(bucket.clone())
                });
                continue;
            }
            if !renew {
                continue;
            }
            if slot.reserved == 0 && idle_for >= ttl {
                let release = slot.positive_headroom();
                slot.granted -= release;
                if release > 0 {
                    slot.retiring = true;
                    asks.push(RateAsk {
                        release,
                        ..RateAsk::renew(bucket.clone())
                    });
                } else {
                    dropped.push(bucket.clone());
                }
            } else if slot.granted > 0 || slot.reserved > 0 {
                asks.push(RateAsk {
                    want: slot.debt(),
                    ..RateAsk::renew(bucket.clone())
                });
            }
        }
        for bucket in dropped {
            slots.remove(&bucket);
        }
        asks
    }

    /// After the keeper's call (`None` when it failed): applies the answer, then drops the
    /// retired slices nobody picked up meanwhile.
    pub(crate) fn finish_upkeep(
        &self,
        asks: &[RateAsk],
        reply: Option<&RateReply>,
        now: Instant,
        ttl: Duration,
    ) {
        if let Some(reply) = reply {
            self.apply_reply(asks, reply, now, ttl);
        }
        let mut slots = self.slots();
        for ask in asks {
            let Some(slot) = slots.get_mut(&ask.bucket) else {
                continue;
            };
            if !slot.retiring {
                continue;
            }
            if slot.reserved == 0 && slot.headroom() == 0 {
                slots.remove(&ask.bucket);
            } else {
                slot.retiring = false;
            }
        }
    }

    /// At shutdown: takes every slice's unused rest out and returns the release asks.
    pub(crate) fn release_all(&self) -> Vec<RateAsk> {
        let mut slots = self.slots();
        let asks = slots
            .iter_mut()
            .filter(|(_, s)| s.enforced && (s.headroom() > 0 || s.returned > 0))
            .map(|(bucket, slot)| {
                let release = slot.positive_headroom();
                slot.granted -= release;
                RateAsk {
                    release: release.saturating_add(std::mem::take(&mut slot.returned)),
                    ..RateAsk::renew(bucket.clone())
                }
            })
            .collect();
        slots.clear();
        asks
    }

    /// This data plane's view of each charge's bucket (`None` without a slice).
    pub(crate) fn views(&self, charges: &[Charge], now: Instant) -> Vec<Option<BucketView>> {
        let slots = self.slots();
        charges
            .iter()
            .map(|c| {
                slots
                    .get(&c.bucket)
                    .filter(|s| s.enforced)
                    .map(|s| s.view(now))
            })
            .collect()
    }

    /// Utilisation of every limit with a slice here: the most used of its buckets.
    pub(crate) fn utilization(&self, now: Instant) -> Vec<(Arc<RateLimit>, f64)> {
        let slots = self.slots();
        let mut out: Vec<(Arc<RateLimit>, f64)> = Vec::new();
        for slot in slots.values().filter(|s| s.enforced) {
            let used = slot.view(now).utilization();
            match out.iter_mut().find(|(l, _)| l.id == slot.limit.id) {
                Some((_, u)) => *u = u.max(used),
                None => out.push((slot.limit.clone(), used)),
            }
        }
        out
    }

    /// Installs a held slice directly (benchmarks and tests that need no control plane).
    pub fn seed(
        &self,
        bucket: BucketKey,
        limit: Arc<RateLimit>,
        granted: u64,
        valid_for: Duration,
    ) {
        let now = Instant::now();
        let mut slot = Slot::new(limit, now);
        slot.granted = granted;
        slot.expires = now + valid_for;
        self.slots().insert(bucket, slot);
    }

    /// Granted, settled and reserved amounts of a bucket.
    #[cfg(test)]
    pub(crate) fn amounts(&self, bucket: &BucketKey) -> Option<(u64, u64, u64)> {
        self.slots()
            .get(bucket)
            .map(|s| (s.granted, s.settled, s.reserved))
    }
}

#[cfg(test)]
mod tests;
