//! The local ledger: per counter, the slice of the cap this data plane holds.
//!
//! A slot tracks `granted` (what the control plane leased to this data plane), `settled`
//! (real cost of finished requests) and `reserved` (estimates of requests in flight).
//! `headroom = granted − settled − reserved` may go negative only in outage `open` mode.
//! Every operation is a few integer updates under one short mutex: no I/O, no waiting.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tollgate_policy::{AppliedBudget, CounterKey};

use self::hasher::BuildCounterHasher;
use super::lease::{CounterState, LeaseAsk, LeaseReply};

mod hasher;

/// A lease is treated as expired this long before the control plane would expire it.
const EXPIRY_MARGIN: Duration = Duration::from_secs(2);

/// How much of a cap is used: the control plane's ledger at the last lease answer plus
/// what this data plane settled that the control plane had not acknowledged when that
/// lease call was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterUse {
    /// Micro-USD spent in the window.
    pub used: u64,
    /// The cap, in micro-USD.
    pub limit: u64,
}

impl CounterUse {
    /// `used / limit` in hundredths, rounded down (a zero limit counts as fully used).
    pub fn hundredths(&self) -> u64 {
        if self.limit == 0 {
            return 100.max(self.hundredths_of(1));
        }
        self.hundredths_of(self.limit)
    }

    fn hundredths_of(&self, limit: u64) -> u64 {
        let h = u128::from(self.used) * 100 / u128::from(limit.max(1));
        u64::try_from(h).unwrap_or(u64::MAX)
    }

    /// `used / limit` as a fraction; a zero limit is infinitely used.
    fn fraction(&self) -> (u128, u128) {
        if self.limit == 0 {
            (1, 0)
        } else {
            (u128::from(self.used), u128::from(self.limit))
        }
    }

    /// Whether this counter is strictly more used (relative to its limit) than `other`.
    fn exceeds(&self, other: &CounterUse) -> bool {
        let (a, b) = self.fraction();
        let (c, d) = other.fraction();
        a * d > c * b
    }
}

/// The most used of a request's counters (the one Claude Code's headers describe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Representative {
    /// Index into the request's counters.
    pub index: usize,
    /// How much of that counter's cap is used.
    pub usage: CounterUse,
}

#[derive(Debug, Clone)]
struct Slot {
    granted: u64,
    settled: u64,
    reserved: u64,
    /// Local lease expiry (the control plane's TTL less a margin).
    expires: Instant,
    limit: u64,
    /// The counter's spend at the last lease answer.
    cp_spent: u64,
    /// Cost of settled requests whose usage records the control plane acknowledged.
    reported: u64,
    /// `reported` when the answer that set `cp_spent` was applied: the control plane had
    /// stored (and so counted) that much of this data plane's spend; what was settled
    /// beyond it is added to `cp_spent` for utilisation. (Taking it when the call was sent
    /// instead counted records acknowledged during the call twice.)
    reported_in_spent: u64,
    last_used: Instant,
    window_end_unix_s: i64,
    /// The keeper is handing this slot's headroom back.
    retiring: bool,
}

impl Slot {
    fn new(limit: u64, window_end_unix_s: i64, now: Instant) -> Self {
        Slot {
            granted: 0,
            settled: 0,
            reserved: 0,
            expires: now,
            limit,
            cp_spent: 0,
            reported: 0,
            reported_in_spent: 0,
            last_used: now,
            window_end_unix_s,
            retiring: false,
        }
    }

    fn headroom(&self) -> i128 {
        i128::from(self.granted) - i128::from(self.settled) - i128::from(self.reserved)
    }

    fn positive_headroom(&self) -> u64 {
        u64::try_from(self.headroom().max(0)).unwrap_or(u64::MAX)
    }

    fn live(&self, now: Instant) -> bool {
        now < self.expires
    }

    /// Past the control plane's expiry too: local expiry is the answer's arrival + TTL
    /// − margin, and the control plane renewed the lease before answering.
    fn surely_expired(&self, now: Instant) -> bool {
        self.granted > 0 && now >= self.expires + EXPIRY_MARGIN
    }

    fn usage(&self) -> CounterUse {
        CounterUse {
            used: self
                .cp_spent
                .saturating_add(self.settled.saturating_sub(self.reported_in_spent)),
            limit: self.limit,
        }
    }
}

/// Every counter this data plane holds a lease on.
#[derive(Debug, Default)]
pub struct Ledger {
    slots: Mutex<HashMap<CounterKey, Slot, BuildCounterHasher>>,
}

/// Picks the most used counter; the first on ties.
fn most_used(
    current: Option<Representative>,
    index: usize,
    usage: CounterUse,
) -> Option<Representative> {
    match current {
        Some(r) if !usage.exceeds(&r.usage) => Some(r),
        _ => Some(Representative { index, usage }),
    }
}

impl Ledger {
    /// An empty ledger (no leases held).
    pub fn new() -> Self {
        Ledger::default()
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<CounterKey, Slot, BuildCounterHasher>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fast path: if every counter holds a live lease with `amount` of headroom,
    /// reserves `amount` on all of them and returns the most used one. `None` (nothing
    /// reserved) means a lease call is needed.
    pub fn try_reserve(
        &self,
        counters: &[CounterKey],
        amount: u64,
        now: Instant,
    ) -> Option<Representative> {
        let mut slots = self.slots();
        let mut representative = None;
        // One lookup per counter; a counter that cannot take it undoes the ones before.
        for (index, counter) in counters.iter().enumerate() {
            match slots.get_mut(counter) {
                Some(slot) if slot.live(now) && slot.headroom() >= i128::from(amount) => {
                    slot.reserved += amount;
                    slot.last_used = now;
                    representative = most_used(representative, index, slot.usage());
                }
                _ => {
                    for undo in counters.iter().take(index) {
                        if let Some(slot) = slots.get_mut(undo) {
                            slot.reserved -= amount;
                        }
                    }
                    return None;
                }
            }
        }
        representative
    }

    /// Gives a reservation back without charging anything.
    pub fn release(&self, counters: &[CounterKey], amount: u64) {
        self.settle(counters, amount, 0);
    }

    /// Ends a reservation: `amount` is no longer reserved and `cost` is spent.
    pub fn settle(&self, counters: &[CounterKey], amount: u64, cost: u64) {
        let mut slots = self.slots();
        for counter in counters {
            if let Some(slot) = slots.get_mut(counter) {
                slot.reserved = slot.reserved.saturating_sub(amount);
                slot.settled = slot.settled.saturating_add(cost);
            }
        }
    }

    /// The slow path, first half (the caller holds the counters' lease locks): reserves
    /// `amount` on every counter — so concurrent fast-path requests cannot take the
    /// headroom this request is counting on — and returns the asks for the counters whose
    /// lease is missing, expired or short: `need = amount − headroom`, `want = max(need,
    /// limit / 20)`. No asks means the reservation is already covered.
    pub(crate) fn reserve_for_lease(
        &self,
        applied: &[AppliedBudget],
        amount: u64,
        now: Instant,
    ) -> Vec<LeaseAsk> {
        let mut slots = self.slots();
        let mut asks = Vec::new();
        for a in applied {
            let slot = slots
                .entry(a.counter.clone())
                .or_insert_with(|| Slot::new(a.budget.limit_micro_usd, a.window.end_unix_s, now));
            if slot.surely_expired(now) {
                // The control plane has certainly expired this lease (its lifetime is at
                // most the last answer's arrival + TTL), so its next answer resets it. Do
                // the reset now, so a lost answer cannot bring the old grant back.
                slot.granted = slot.reported.min(slot.settled);
            }
            let headroom = if slot.live(now) {
                slot.positive_headroom()
            } else {
                0
            };
            slot.reserved = slot.reserved.saturating_add(amount);
            slot.last_used = now;
            slot.retiring = false;
            if headroom < amount || !slot.live(now) {
                let need = amount - headroom.min(amount);
                let limit = if slot.limit == 0 {
                    a.budget.limit_micro_usd
                } else {
                    slot.limit
                };
                asks.push(LeaseAsk {
                    counter: a.counter.clone(),
                    need,
                    want: need.max(limit / 20),
                    release: 0,
                });
            }
        }
        asks
    }

    /// The control plane acknowledged a usage record of `cost` charged to `counters`.
    pub(crate) fn reported(&self, counters: &[CounterKey], cost: u64) {
        let mut slots = self.slots();
        for counter in counters {
            if let Some(slot) = slots.get_mut(counter) {
                slot.reported = slot.reported.saturating_add(cost);
            }
        }
    }

    /// Applies a `Lease` answer: grants (when granted), resets, limits, spend, expiry.
    pub(crate) fn apply_reply(
        &self,
        asks: &[LeaseAsk],
        reply: &LeaseReply,
        now: Instant,
        ttl: Duration,
    ) {
        self.apply_states(asks, &reply.counters, reply.granted, now, ttl);
    }

    fn apply_states(
        &self,
        asks: &[LeaseAsk],
        states: &[CounterState],
        granted: bool,
        now: Instant,
        ttl: Duration,
    ) {
        let mut slots = self.slots();
        for (ask, state) in asks.iter().zip(states) {
            let Some(slot) = slots.get_mut(&ask.counter) else {
                continue;
            };
            if state.lease_reset {
                // The control plane dropped this lease's unused grant (granted := consumed,
                // i.e. what it has been told). Mirror that: only acknowledged costs stay
                // covered, so spend settled but not yet reported and in-flight reservations
                // must be paid for from the next grant, as the control plane will count them.
                slot.granted = slot.reported.min(slot.settled);
            }
            if granted {
                slot.granted = slot.granted.saturating_add(state.granted);
            }
            slot.limit = state.limit;
            slot.cp_spent = state.spent;
            slot.reported_in_spent = slot.reported;
            // The control plane's own answer wins over the snapshot's TTL (a data plane
            // on an older snapshot must not outlive a shortened lease).
            let lifetime = state.expires_in.map_or(ttl, |answered| answered.min(ttl));
            slot.expires = now + lifetime.saturating_sub(EXPIRY_MARGIN);
        }
    }

    /// Every counter with a slot.
    pub(crate) fn counters(&self) -> Vec<CounterKey> {
        self.slots().keys().cloned().collect()
    }

    /// The most used of `counters` (those with a slot).
    pub fn representative(&self, counters: &[CounterKey]) -> Option<Representative> {
        let slots = self.slots();
        counters
            .iter()
            .enumerate()
            .filter_map(|(i, c)| slots.get(c).map(|s| (i, s.usage())))
            .fold(None, |rep, (i, usage)| most_used(rep, i, usage))
    }

    /// How much of the counter is used, if this data plane holds a slot for it.
    pub fn usage_of(&self, counter: &CounterKey) -> Option<CounterUse> {
        self.slots().get(counter).map(Slot::usage)
    }

    /// What the lease keeper should do now: release and retire slots with nothing in
    /// flight that are idle for `ttl` or whose window has ended (their headroom is taken
    /// out of the slot at once, so nothing can reserve it meanwhile), renew the others.
    /// The release is sent even when the local lease looks expired: the control plane's
    /// lease lives a little longer, and it ignores releases beyond what is unused. Idle
    /// slots with nothing to hand back are dropped silently.
    pub(crate) fn plan_upkeep(
        &self,
        now: Instant,
        now_unix_s: i64,
        ttl: Duration,
    ) -> Vec<LeaseAsk> {
        let mut slots = self.slots();
        slots.retain(|_, s| {
            s.reserved > 0 || s.headroom() > 0 || now.duration_since(s.last_used) < ttl
        });
        let mut asks = Vec::new();
        for (counter, slot) in slots.iter_mut() {
            let idle = now.duration_since(slot.last_used) >= ttl;
            let ended = slot.window_end_unix_s <= now_unix_s;
            if ended && slot.reserved > 0 {
                // No new request can use a window that has ended; requests still in
                // flight settle into it whether or not its lease lives on, and the
                // control plane refuses renewals of old windows once past the skew.
                continue;
            }
            if slot.reserved == 0 && (idle || ended) {
                let release = slot.positive_headroom();
                slot.granted = slot.granted.saturating_sub(release);
                slot.retiring = true;
                asks.push(LeaseAsk {
                    release,
                    ..LeaseAsk::renew(counter.clone())
                });
            } else {
                asks.push(LeaseAsk::renew(counter.clone()));
            }
        }
        asks
    }

    /// After the keeper's call (`None` when it failed): drops retired slots nobody picked
    /// up meanwhile, refreshes renewed ones.
    pub(crate) fn finish_upkeep(
        &self,
        asks: &[LeaseAsk],
        reply: Option<&LeaseReply>,
        now: Instant,
        ttl: Duration,
    ) {
        if let Some(reply) = reply {
            // Upkeep asks never ask for more; only resets, limits and spend apply.
            self.apply_states(asks, &reply.counters, false, now, ttl);
        }
        let mut slots = self.slots();
        for ask in asks {
            let Some(slot) = slots.get_mut(&ask.counter) else {
                continue;
            };
            if !slot.retiring {
                continue;
            }
            if slot.reserved == 0 && slot.headroom() <= 0 {
                slots.remove(&ask.counter);
            } else {
                slot.retiring = false;
            }
        }
    }

    /// At shutdown: takes every slot's headroom out and returns the release asks.
    pub(crate) fn release_all(&self) -> Vec<LeaseAsk> {
        let mut slots = self.slots();
        let asks = slots
            .iter_mut()
            .filter(|(_, s)| s.headroom() > 0)
            .map(|(counter, slot)| {
                let release = slot.positive_headroom();
                slot.granted = slot.granted.saturating_sub(release);
                LeaseAsk {
                    release,
                    ..LeaseAsk::renew(counter.clone())
                }
            })
            .collect();
        slots.clear();
        asks
    }

    /// Installs a held lease directly (benchmarks and tests that need no control plane).
    pub fn seed(&self, counter: CounterKey, granted: u64, limit: u64, valid_for: Duration) {
        let now = Instant::now();
        let mut slot = Slot::new(limit, i64::MAX, now);
        slot.granted = granted;
        slot.expires = now + valid_for;
        self.slots().insert(counter, slot);
    }

    /// Granted, settled and reserved amounts of a counter.
    #[cfg(test)]
    pub(crate) fn amounts(&self, counter: &CounterKey) -> Option<(u64, u64, u64)> {
        self.slots()
            .get(counter)
            .map(|s| (s.granted, s.settled, s.reserved))
    }
}

#[cfg(test)]
mod tests;
