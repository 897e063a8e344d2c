//! Spend caps on the request path: reserve before forwarding, settle when the response ends.
//!
//! The authoritative counters live behind the control plane; this data plane spends from
//! slices of them leased to it ([`Ledger`]). Far from a cap a request's admission is one
//! check under a short mutex ([`Ledger::try_reserve`]); only when a slice runs short does
//! the request take the counters' lease locks (one `Lease` call per counter per data plane
//! at a time) and ask for more. A [`Reservation`] settles to the real cost or, if dropped
//! unsettled, releases itself. The lease keeper renews slices in use and hands idle ones
//! back; shutdown hands back everything. See `docs/spend.md` for the overshoot bound.

mod clock;
mod headers;
mod keeper;
mod lease;
mod ledger;
mod reservation;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_policy::{
    AppliedBudget, BudgetScope, BudgetSettings, CounterKey, OutageMode, Snapshot,
};

pub use clock::Clock;
pub(crate) use headers::{CapReached, HeaderList, fetch_error_headers, success_headers};
pub(crate) use keeper::{KeeperSchedule, spawn_lease_keeper};
pub(crate) use lease::{CounterState, LeaseAsk, LeaseReply, SpendCallError, SpendSummary};
pub use ledger::{CounterUse, Ledger, Representative};
pub(crate) use reservation::Reservation;

use crate::control_plane::{self, OutageLatch, SyncApi};
use crate::flight_locks::FlightLocks;

/// What admission decided for a capped request.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Reserved on every counter; `representative` is the most used one.
    Admitted {
        reservation: Reservation,
        representative: Option<Representative>,
    },
    /// The counter at `index` cannot fit the request.
    Refused { index: usize, usage: CounterUse },
    /// The control plane could not be asked and the outage mode is `closed`.
    Unavailable,
}

/// The data plane's spend state: its ledger, lease locks and control-plane client.
#[derive(Debug)]
pub(crate) struct Spend {
    ledger: Arc<Ledger>,
    /// One async lock per counter: at most one lease call per counter at a time.
    flights: FlightLocks<CounterKey>,
    api: SyncApi,
    data_plane_id: String,
    clock: Clock,
    /// Skips lease calls for a while after one found the control plane unreachable.
    outage: OutageLatch,
}

impl Spend {
    pub(crate) fn new(api: SyncApi, data_plane_id: String, clock: Clock) -> Self {
        Spend {
            ledger: Arc::new(Ledger::new()),
            flights: FlightLocks::default(),
            api,
            data_plane_id,
            clock,
            outage: OutageLatch::default(),
        }
    }

    /// The local ledger (the usage shipper notes acknowledged costs in it).
    pub(crate) fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The clock spend windows are read from.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Reserves `estimate` against every counter of `applied` (deduplicated by the caller).
    pub(crate) async fn admit(
        &self,
        applied: &[AppliedBudget],
        estimate: u64,
        settings: &BudgetSettings,
    ) -> Admission {
        let counters: Arc<[CounterKey]> = applied.iter().map(|a| a.counter.clone()).collect();
        if let Some(representative) = self.ledger.try_reserve(&counters, estimate, Instant::now()) {
            return Admission::Admitted {
                reservation: Reservation::new(self.ledger.clone(), counters, estimate),
                representative: Some(representative),
            };
        }
        self.admit_slow(applied, counters, estimate, settings).await
    }

    /// Under the counters' lease locks (sorted order): re-check, then one `Lease` call.
    async fn admit_slow(
        &self,
        applied: &[AppliedBudget],
        counters: Arc<[CounterKey]>,
        estimate: u64,
        settings: &BudgetSettings,
    ) -> Admission {
        // Held until the lease answer is in the ledger; sorted order, so concurrent
        // requests on overlapping counters never deadlock.
        let guards = self.flights.lock(counters.iter()).await;
        if let Some(representative) = self.ledger.try_reserve(&counters, estimate, Instant::now()) {
            return Admission::Admitted {
                reservation: Reservation::new(self.ledger.clone(), counters, estimate),
                representative: Some(representative),
            };
        }
        let asks = self
            .ledger
            .reserve_for_lease(applied, estimate, Instant::now());
        // From here on the reservation exists; dropping it releases it.
        let reservation = Reservation::new(self.ledger.clone(), counters.clone(), estimate);
        if asks.is_empty() {
            return self.admitted(reservation, &counters);
        }
        let ttl = Duration::from_secs(u64::from(settings.lease_ttl_s));
        let answer = if self.outage.is_down() {
            Err(SpendCallError::unreachable(
                "control plane failed a spend call moments ago",
            ))
        } else {
            let answer = self.lease_detached(asks.clone(), ttl).await;
            if answer.as_ref().is_err_and(|e| e.unreachable) {
                self.outage.mark_down();
            }
            answer
        };
        drop(guards);
        match answer {
            Ok(reply) => {
                if reply.granted {
                    return self.admitted(reservation, &counters);
                }
                drop(reservation);
                let blocked = asks.get(reply.blocked_index).map(|a| &a.counter);
                let index = blocked
                    .and_then(|b| counters.iter().position(|c| c == b))
                    .unwrap_or(0);
                let state = reply
                    .counters
                    .get(reply.blocked_index)
                    .copied()
                    .unwrap_or_default();
                let usage = CounterUse {
                    used: state.spent,
                    limit: state.limit,
                };
                Admission::Refused { index, usage }
            }
            Err(error) if !error.unreachable => {
                // The control plane answered but refused the ask: never a reason to
                // serve without a cap, whatever the outage mode.
                tracing::error!(%error, "spend cap check refused by the control plane; refusing");
                Admission::Unavailable
            }
            Err(error) => match settings.outage_mode {
                OutageMode::Closed => {
                    tracing::warn!(%error, "spend cap cannot be checked; refusing (outage mode closed)");
                    Admission::Unavailable
                }
                OutageMode::Open => {
                    tracing::warn!(%error, "spend cap cannot be checked; admitting (outage mode open)");
                    self.admitted(reservation, &counters)
                }
            },
        }
    }

    /// One `Lease` call whose answer is applied to the ledger even if the request that
    /// asked is cancelled meanwhile (a client that hangs up): a grant the control plane
    /// recorded is never lost locally.
    async fn lease_detached(
        &self,
        asks: Vec<LeaseAsk>,
        ttl: Duration,
    ) -> Result<LeaseReply, SpendCallError> {
        let ledger = self.ledger.clone();
        let api = self.api.clone();
        let data_plane_id = self.data_plane_id.clone();
        let call = tokio::spawn(async move {
            let answer = control_plane::lease(&api, &data_plane_id, &asks).await;
            if let Ok(reply) = &answer {
                ledger.apply_reply(&asks, reply, Instant::now(), ttl);
            }
            answer
        });
        call.await
            .unwrap_or_else(|e| Err(SpendCallError::refused(format!("lease task failed: {e}"))))
    }

    fn admitted(&self, reservation: Reservation, counters: &[CounterKey]) -> Admission {
        Admission::Admitted {
            reservation,
            representative: self.ledger.representative(counters),
        }
    }

    /// Current use of each counter: from the ledger when this data plane holds a slot,
    /// else read from the control plane (one `Lease` call with zero amounts).
    pub(crate) async fn usage_of(
        &self,
        applied: &[AppliedBudget],
    ) -> Result<Vec<CounterUse>, SpendCallError> {
        let known: Vec<Option<CounterUse>> = applied
            .iter()
            .map(|a| self.ledger.usage_of(&a.counter))
            .collect();
        let asks: Vec<LeaseAsk> = applied
            .iter()
            .zip(&known)
            .filter(|(_, k)| k.is_none())
            .map(|(a, _)| LeaseAsk::renew(a.counter.clone()))
            .collect();
        let mut read = if asks.is_empty() {
            Vec::new().into_iter()
        } else {
            control_plane::lease(&self.api, &self.data_plane_id, &asks)
                .await?
                .counters
                .into_iter()
        };
        Ok(known
            .into_iter()
            .map(|k| {
                k.unwrap_or_else(|| {
                    let state = read.next().unwrap_or_default();
                    CounterUse {
                        used: state.spent,
                        limit: state.limit,
                    }
                })
            })
            .collect())
    }

    /// Day-, week- and month-to-date spend of a principal (no cap applies to them).
    pub(crate) async fn summary(&self, principal_id: &str) -> Result<SpendSummary, SpendCallError> {
        control_plane::spend_summary(&self.api, principal_id).await
    }

    /// One keeper round: renew slices in use, hand idle or finished ones back.
    async fn upkeep(&self, ttl: Duration) {
        // Serialised with admission's lease calls on the same counters, so a renewal's
        // answer never overwrites a grant applied in between.
        let held = self.ledger.counters();
        let guards = self.flights.lock(held.iter()).await;
        let asks = self
            .ledger
            .plan_upkeep(Instant::now(), self.clock.now_unix_s(), ttl);
        if !asks.is_empty() {
            let reply = match control_plane::lease(&self.api, &self.data_plane_id, &asks).await {
                Ok(reply) => Some(reply),
                Err(error) => {
                    tracing::warn!(%error, counters = asks.len(), "cannot renew spend leases");
                    None
                }
            };
            self.ledger
                .finish_upkeep(&asks, reply.as_ref(), Instant::now(), ttl);
        }
        drop(guards);
        self.flights.prune();
    }

    /// At shutdown, after in-flight requests settled: hands every slice's headroom back.
    async fn release_all(&self) {
        let asks = self.ledger.release_all();
        if asks.is_empty() {
            return;
        }
        match control_plane::lease(&self.api, &self.data_plane_id, &asks).await {
            Ok(_) => tracing::info!(counters = asks.len(), "spend leases released"),
            Err(error) => {
                tracing::warn!(%error, "spend leases not released; they expire by themselves");
            }
        }
    }
}

/// The refusal for the cap at `applied`.
pub(crate) fn cap_reached(
    applied: &AppliedBudget,
    usage: CounterUse,
    snapshot: &Snapshot,
    now_unix_s: i64,
) -> CapReached {
    let budget = &applied.budget;
    let label = match budget.scope {
        BudgetScope::Org => "organisation-wide".to_owned(),
        BudgetScope::Group => {
            let name = snapshot.group_name(&budget.scope_id);
            if budget.per_member {
                format!("group {name}, per member")
            } else {
                format!("group {name}")
            }
        }
        BudgetScope::User => "personal".to_owned(),
        BudgetScope::Key => "this API key".to_owned(),
    };
    CapReached {
        scope: budget.scope,
        group_pool: budget.scope == BudgetScope::Group && !budget.per_member,
        label,
        period: budget.period,
        usage,
        reset_unix_s: applied.window.end_unix_s,
        now_unix_s,
    }
}
