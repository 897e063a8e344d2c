//! Admission against every applicable limit: the fast path in-process, the slow path one
//! `RateLease` call for the buckets whose slices are short.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tollgate_policy::{AppliedLimit, BucketKey, OutageMode, RateLimit, RateLimitKind};

use super::headers::success_headers;
use super::lease::{RateAsk, RateReply};
use super::ledger::{Charge, Ledger};
use crate::budget::{HeaderList, SpendCallError};
use crate::control_plane::{self, OutageLatch, SyncApi};
use crate::flight_locks::{FlightGuard, FlightLocks};

/// What one request asks of its limits. Requests-per-minute buckets and concurrency limits
/// always take 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Demand {
    /// Estimated input tokens (body bytes / `input_bytes_per_token`).
    pub input_tokens: u64,
    /// Reserved output tokens (`max_tokens`, bounded by `output_estimate_max_tokens`).
    pub output_tokens: u64,
}

impl Demand {
    /// Units this demand takes from a limit of `kind`.
    fn of(self, kind: RateLimitKind) -> u64 {
        match kind {
            RateLimitKind::RequestsPerMinute | RateLimitKind::ConcurrentRequests => 1,
            RateLimitKind::InputTokensPerMinute => self.input_tokens,
            RateLimitKind::OutputTokensPerMinute => self.output_tokens,
        }
    }
}

/// A limit that refused a request: everything its `429` says.
#[derive(Debug, Clone)]
pub(crate) struct RateLimited {
    pub limit: Arc<RateLimit>,
    /// Milliseconds until the request would fit (at least 1 s is advertised when unknown).
    pub retry_after_ms: u64,
    /// The request needs more than the whole limit (e.g. a prompt larger than the input
    /// tokens per minute): retrying can never succeed.
    pub never_fits: bool,
    /// Units left in the bucket when refused.
    pub remaining: u64,
}

/// What admission decided.
#[derive(Debug)]
pub(crate) enum RateAdmission {
    /// Reserved on every bucket (an empty hold when no limit applied).
    Admitted(RateHold),
    /// The limit at `applied[index]` cannot fit the request now.
    Limited { index: usize, limited: RateLimited },
    /// The control plane could not be asked and the outage mode is `closed`.
    Unavailable,
}

impl RateAdmission {
    /// Admitted with no limit applying (allocates nothing).
    pub(crate) fn admitted_empty() -> Self {
        RateAdmission::Admitted(RateHold::empty())
    }
}

/// How long a refused request should wait when the control plane did not say: a
/// concurrency slot frees when some request ends.
const UNKNOWN_RETRY_MS: u64 = 1_000;

/// A per-minute request that can never fit is told to come back after a full refill.
const NEVER_FITS_RETRY_MS: u64 = 60_000;

/// A request's hold on its buckets between admission and the end of its response.
#[derive(Debug)]
pub(crate) struct RateHold {
    /// `None` for the empty hold.
    ledger: Option<Arc<Ledger>>,
    charges: Vec<Charge>,
    open: bool,
    /// Not admitted yet (the slow path awaits its lease call): dropped now — the client
    /// hung up — the reservation is given back without counting the request.
    pending: bool,
    /// When the reservation was made (a long request's unused reservation goes back to the
    /// bucket, not to this data plane's slice).
    since: Instant,
}

impl RateHold {
    /// A hold on nothing (no limit applied): no allocation.
    pub(crate) fn empty() -> Self {
        RateHold {
            ledger: None,
            charges: Vec::new(),
            open: false,
            pending: false,
            since: Instant::now(),
        }
    }

    fn new(ledger: Arc<Ledger>, charges: Vec<Charge>) -> Self {
        RateHold {
            ledger: Some(ledger),
            charges,
            open: true,
            pending: false,
            since: Instant::now(),
        }
    }

    /// A reservation made before asking the control plane (see `pending`).
    fn pending(ledger: Arc<Ledger>, charges: Vec<Charge>) -> Self {
        RateHold {
            ledger: Some(ledger),
            charges,
            open: true,
            pending: true,
            since: Instant::now(),
        }
    }

    /// The request is admitted: from now on it counts even if dropped unsettled.
    fn admitted(mut self) -> RateAdmission {
        self.pending = false;
        RateAdmission::Admitted(self)
    }

    /// Charges the reported token usage on the token buckets (the difference to the
    /// reservation is returned to, or taken from, this data plane's slice) and frees the
    /// concurrency slots. Dropping an unsettled hold settles it at zero tokens.
    /// `input_tokens` includes cache writes (5 m and 1 h).
    pub(crate) fn settle(mut self, input_tokens: u64, output_tokens: u64) {
        self.finish(input_tokens, output_tokens, false);
    }

    /// Gives the reservation back without counting anything (the request was refused, here
    /// or by a spend cap after the rate limits admitted it).
    pub(crate) fn cancel(mut self) {
        self.finish(0, 0, true);
    }

    fn finish(&mut self, input_tokens: u64, output_tokens: u64, cancelled: bool) {
        if !self.open {
            return;
        }
        self.open = false;
        if let Some(ledger) = &self.ledger {
            ledger.settle_held(
                &self.charges,
                input_tokens,
                output_tokens,
                cancelled,
                self.since.elapsed(),
            );
        }
    }

    /// `anthropic-ratelimit-requests-*` / `-input-tokens-*` / `-output-tokens-*` /
    /// `-tokens-*` headers for a successful response: the tightest limit of each kind as
    /// this data plane last saw it. Empty when no per-minute limit applied.
    pub(crate) fn headers(&self) -> HeaderList {
        let Some(ledger) = &self.ledger else {
            return HeaderList::new();
        };
        if !self.charges.iter().any(|c| c.kind().per_minute()) {
            return HeaderList::new();
        }
        let views = ledger.views(&self.charges, Instant::now());
        success_headers(views.iter().flatten(), now_unix_ms())
    }
}

impl Drop for RateHold {
    fn drop(&mut self) {
        self.finish(0, 0, self.pending);
    }
}

/// The wall clock in Unix milliseconds.
pub(crate) fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The lease TTL until the keeper reads one from the snapshot.
const DEFAULT_LEASE_TTL_S: u64 = 30;

/// The data plane's rate-limit state: its ledger, lease locks and control-plane client.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    ledger: Arc<Ledger>,
    /// One async lock per bucket: at most one lease call per bucket at a time.
    flights: FlightLocks<BucketKey>,
    api: SyncApi,
    data_plane_id: String,
    /// Skips lease calls for a while after one found the control plane unreachable.
    outage: OutageLatch,
    /// The concurrency lease TTL (the budget settings' `lease_ttl_s`), kept by the keeper.
    lease_ttl_s: AtomicU64,
}

impl RateLimiter {
    pub(crate) fn new(api: SyncApi, data_plane_id: String) -> Self {
        RateLimiter {
            ledger: Arc::new(Ledger::new()),
            flights: FlightLocks::default(),
            api,
            data_plane_id,
            outage: OutageLatch::default(),
            lease_ttl_s: AtomicU64::new(DEFAULT_LEASE_TTL_S),
        }
    }

    #[cfg(test)]
    pub(super) fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The concurrency lease TTL in force.
    pub(crate) fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_s.load(Ordering::Relaxed).max(1))
    }

    /// Sets the concurrency lease TTL (from the snapshot's budget settings).
    pub(crate) fn set_lease_ttl(&self, ttl: Duration) {
        self.lease_ttl_s
            .store(ttl.as_secs().max(1), Ordering::Relaxed);
    }

    /// Reserves `demand` on every bucket of `applied` (all or nothing). `outage` decides
    /// what happens when a slice is short and the control plane cannot be reached.
    pub(crate) async fn admit(
        &self,
        applied: &[AppliedLimit],
        demand: Demand,
        outage: OutageMode,
    ) -> RateAdmission {
        if applied.is_empty() {
            return RateAdmission::admitted_empty();
        }
        let mut charges: Vec<Charge> = Vec::with_capacity(applied.len());
        for (index, a) in applied.iter().enumerate() {
            if charges.iter().any(|c| c.bucket == a.bucket) {
                continue;
            }
            let amount = demand.of(a.limit.kind);
            if a.limit.kind.per_minute() && amount > a.limit.limit {
                return self.never_fits(index, a);
            }
            charges.push(Charge {
                bucket: a.bucket.clone(),
                limit: a.limit.clone(),
                amount,
            });
        }
        if self.ledger.try_reserve(&charges, Instant::now()) {
            return RateAdmission::Admitted(RateHold::new(self.ledger.clone(), charges));
        }
        self.admit_slow(applied, charges, outage).await
    }

    /// The refusal of a request larger than the whole limit at `applied` (no call made).
    fn never_fits(&self, index: usize, applied: &AppliedLimit) -> RateAdmission {
        let probe = [Charge {
            bucket: applied.bucket.clone(),
            limit: applied.limit.clone(),
            amount: 0,
        }];
        let remaining = self
            .ledger
            .views(&probe, Instant::now())
            .into_iter()
            .flatten()
            .next()
            .map_or(applied.limit.limit, |v| v.remaining);
        RateAdmission::Limited {
            index,
            limited: RateLimited {
                limit: applied.limit.clone(),
                retry_after_ms: NEVER_FITS_RETRY_MS,
                never_fits: true,
                remaining,
            },
        }
    }

    /// Under the buckets' lease locks (sorted order): re-check, then one `RateLease` call.
    async fn admit_slow(
        &self,
        applied: &[AppliedLimit],
        charges: Vec<Charge>,
        outage: OutageMode,
    ) -> RateAdmission {
        // Held until the lease answer is in the ledger; sorted order, so concurrent
        // requests on overlapping buckets never deadlock.
        let guards = self.flights.lock(charges.iter().map(|c| &c.bucket)).await;
        if self.ledger.try_reserve(&charges, Instant::now()) {
            return RateAdmission::Admitted(RateHold::new(self.ledger.clone(), charges));
        }
        let asks = self.ledger.reserve_for_lease(&charges, Instant::now());
        // From here on the reservation exists; dropping the pending hold gives it back.
        let hold = RateHold::pending(self.ledger.clone(), charges);
        if asks.is_empty() {
            return hold.admitted();
        }
        let (answer, guards) = if self.outage.is_down() {
            let down =
                SpendCallError::unreachable("control plane failed a rate lease call moments ago");
            (Err(down), Some(guards))
        } else {
            let (answer, guards) = self.lease_detached(asks.clone(), guards).await;
            if answer.as_ref().is_err_and(|e| e.unreachable) {
                self.outage.mark_down();
            }
            (answer, guards)
        };
        // Decided (a refused hold given back) before the locks go: the next request on
        // these buckets must not count this one's reservation as a debt to ask for.
        let decided = match answer {
            Ok(reply) if reply.granted => hold.admitted(),
            Ok(reply) => {
                hold.cancel();
                refused(applied, &asks, &reply)
            }
            Err(error) if !error.unreachable => {
                // The control plane answered but refused the ask: never a reason to serve
                // without a limit, whatever the outage mode.
                tracing::error!(%error, "rate limit check refused by the control plane; refusing");
                hold.cancel();
                RateAdmission::Unavailable
            }
            Err(error) => match outage {
                OutageMode::Closed => {
                    tracing::warn!(%error, "rate limits cannot be checked; refusing (outage mode closed)");
                    hold.cancel();
                    RateAdmission::Unavailable
                }
                OutageMode::Open => {
                    // Admitted without counting: a reservation no grant covers would turn
                    // into a debt that throttles the caller once the control plane is back.
                    tracing::warn!(%error, "rate limits cannot be checked; admitting (outage mode open)");
                    hold.cancel();
                    RateAdmission::admitted_empty()
                }
            },
        };
        drop(guards);
        decided
    }

    /// One `RateLease` call whose answer is applied to the ledger even if the request that
    /// asked is cancelled meanwhile (a client that hangs up): a grant the control plane
    /// recorded is never lost locally. The buckets' locks travel with the call and come back
    /// with its answer; if the request is gone they are released only once the answer is in
    /// the ledger, so no other request asks on a view the answer is about to change.
    async fn lease_detached(
        &self,
        asks: Vec<RateAsk>,
        guards: Vec<FlightGuard>,
    ) -> (Result<RateReply, SpendCallError>, Option<Vec<FlightGuard>>) {
        let ledger = self.ledger.clone();
        let api = self.api.clone();
        let data_plane_id = self.data_plane_id.clone();
        let ttl = self.lease_ttl();
        let call = tokio::spawn(async move {
            let answer = control_plane::rate_lease(&api, &data_plane_id, &asks).await;
            if let Ok(reply) = &answer {
                ledger.apply_reply(&asks, reply, Instant::now(), ttl);
            }
            (answer, guards)
        });
        match call.await {
            Ok((answer, guards)) => (answer, Some(guards)),
            Err(e) => (
                Err(SpendCallError::refused(format!(
                    "rate lease task failed: {e}"
                ))),
                None,
            ),
        }
    }

    /// One keeper round: hand back expired per-minute slices, and (when `renew`) renew the
    /// concurrency leases in use and hand idle ones back.
    pub(crate) async fn upkeep(&self, renew: bool) {
        if !self.ledger.wants_upkeep(Instant::now(), renew) {
            return;
        }
        let ttl = self.lease_ttl();
        // Serialised with admission's lease calls on the same buckets, so a renewal's
        // answer never overwrites a grant applied in between.
        let held = self.ledger.buckets();
        // Buckets with an admission's lease call in flight are left for the next round
        // (that call renews them): the keeper never makes requests wait behind its call.
        let (guards, busy) = self.flights.try_lock(held.iter());
        let asks = self
            .ledger
            .plan_upkeep_skipping(Instant::now(), ttl, renew, &busy);
        if !asks.is_empty() {
            let reply = match control_plane::rate_lease(&self.api, &self.data_plane_id, &asks).await
            {
                Ok(reply) => Some(reply),
                Err(error) => {
                    tracing::warn!(%error, buckets = asks.len(), "cannot renew rate-limit leases");
                    if error.unreachable {
                        self.outage.mark_down();
                    }
                    None
                }
            };
            self.ledger
                .finish_upkeep(&asks, reply.as_ref(), Instant::now(), ttl);
        }
        drop(guards);
        self.flights.prune();
    }

    /// Resolves when a request freed a concurrency slot another data plane may be waiting
    /// for (the keeper then hands it back).
    pub(crate) async fn spare_freed(&self) {
        self.ledger.spare_freed().await;
    }

    /// At shutdown, after in-flight requests settled: hands every slice's rest back.
    pub(crate) async fn release_all(&self) {
        let asks = self.ledger.release_all();
        if asks.is_empty() {
            return;
        }
        match control_plane::rate_lease(&self.api, &self.data_plane_id, &asks).await {
            Ok(_) => tracing::info!(buckets = asks.len(), "rate-limit leases released"),
            Err(error) => {
                tracing::warn!(%error, "rate-limit leases not released; concurrency slots expire by themselves");
            }
        }
    }

    /// Fraction used (0..=1) of every limit this data plane holds a slice of, as it last
    /// saw it: the most used bucket of each limit.
    pub(crate) fn utilization(&self) -> Vec<(Arc<RateLimit>, f64)> {
        self.ledger.utilization(Instant::now())
    }
}

/// The refusal for the first ask that did not fit.
fn refused(applied: &[AppliedLimit], asks: &[RateAsk], reply: &RateReply) -> RateAdmission {
    let Some(ask) = asks.get(reply.blocked_index) else {
        return RateAdmission::Unavailable;
    };
    let Some((index, a)) = applied
        .iter()
        .enumerate()
        .find(|(_, a)| a.bucket == ask.bucket)
    else {
        return RateAdmission::Unavailable;
    };
    let state = reply
        .buckets
        .get(reply.blocked_index)
        .copied()
        .unwrap_or_default();
    let retry_after_ms = if a.limit.kind.per_minute() && state.retry_after_ms > 0 {
        state.retry_after_ms
    } else {
        UNKNOWN_RETRY_MS
    };
    RateAdmission::Limited {
        index,
        limited: RateLimited {
            limit: a.limit.clone(),
            retry_after_ms,
            never_fits: false,
            remaining: state.available,
        },
    }
}
