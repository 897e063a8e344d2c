//! In-process fakes: a control plane (tonic `Sync` server) and an Anthropic-shaped upstream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::{TcpListenerStream, WatchStream};
use tokio_util::sync::CancellationToken;
use tollgate_policy::secret_sha256;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::sync_server::{Sync as SyncService, SyncServer};
use tonic::{Status, transport::Server};

pub const SYNC_TOKEN: &str = "sync-secret";
pub const PROVIDER_KEY: &str = "sk-ant-provider-key";

// ---------------------------------------------------------------- control plane

#[derive(Clone)]
pub struct FakeControlPlane {
    snapshots: Arc<watch::Sender<Option<pb::Snapshot>>>,
    usage: Arc<Mutex<Vec<pb::UsageRecord>>>,
    refuse_usage: Arc<AtomicBool>,
    spend: Arc<Mutex<FakeSpend>>,
    spend_down: Arc<AtomicBool>,
    lease_refused: Arc<AtomicBool>,
    rate: Arc<Mutex<FakeRate>>,
    /// The rate-limit clock (Unix ms): bucket refill and concurrency lease expiry read it.
    rate_now_ms: Arc<AtomicI64>,
}

/// (limit id, subject id)
pub type Bucket = (String, String);

/// One data plane's concurrency lease on one bucket.
#[derive(Debug, Clone, Copy)]
pub struct FakeSlots {
    pub held: u64,
    expires_at_ms: i64,
}

/// The design's rate-limit buckets and concurrency leases, in memory.
#[derive(Debug, Default)]
struct FakeRate {
    /// Per-minute buckets: (level in units × 60 000, when last refilled).
    levels: HashMap<Bucket, (u128, i64)>,
    slots: HashMap<(Bucket, String), FakeSlots>,
    calls: Vec<pb::RateLeaseRequest>,
}

/// Scaled units per unit: a full bucket holds `limit × 60 000`.
const PER_UNIT: u128 = 60_000;

/// (budget id, subject id, window start)
pub type Key = (String, String, i64);

pub fn key(k: &pb::CounterKey) -> Key {
    (
        k.budget_id.clone(),
        k.subject_id.clone(),
        k.window_start_unix_s,
    )
}

/// One data plane's lease on one counter.
#[derive(Debug, Clone, Copy)]
pub struct FakeLease {
    pub granted: u64,
    pub consumed: u64,
    expires: Instant,
}

impl FakeLease {
    fn unused(&self, now: Instant) -> u64 {
        if self.expires > now {
            self.granted.saturating_sub(self.consumed)
        } else {
            0
        }
    }
}

/// The design's counters and leases, in memory (real time for lease expiry).
#[derive(Debug, Default)]
struct FakeSpend {
    spent: HashMap<Key, u64>,
    leases: HashMap<(Key, String), FakeLease>,
    calls: Vec<pb::LeaseRequest>,
    /// Spend before the stored usage records, per principal: (day, week, month).
    past: HashMap<String, (u64, u64, u64)>,
}

impl FakeControlPlane {
    pub fn new() -> Self {
        FakeControlPlane {
            snapshots: Arc::new(watch::channel(None).0),
            usage: Arc::default(),
            refuse_usage: Arc::default(),
            spend: Arc::default(),
            spend_down: Arc::default(),
            lease_refused: Arc::default(),
            rate: Arc::default(),
            rate_now_ms: Arc::new(AtomicI64::new(1_800_000_000_000)),
        }
    }

    /// Moves the rate-limit clock on (buckets refill, concurrency leases may expire).
    pub fn advance_rate_clock(&self, by: Duration) {
        self.rate_now_ms
            .fetch_add(i64::try_from(by.as_millis()).unwrap(), Ordering::SeqCst);
    }

    /// Every `RateLease` call so far.
    pub fn rate_calls(&self) -> Vec<pb::RateLeaseRequest> {
        self.rate.lock().unwrap().calls.clone()
    }

    /// Whole units left in a per-minute bucket now (`None` before its first lease).
    pub fn bucket_level(&self, bucket: &Bucket) -> Option<u64> {
        let now = self.rate_now_ms.load(Ordering::SeqCst);
        let limit = self.rate_limit_of(&bucket.0)?.limit;
        let rate = self.rate.lock().unwrap();
        let (level, at) = rate.levels.get(bucket).copied()?;
        let full = u128::from(limit) * PER_UNIT;
        let elapsed = u128::try_from((now - at).max(0)).unwrap();
        let level = (level + u128::from(limit) * elapsed).min(full);
        Some(u64::try_from(level / PER_UNIT).unwrap())
    }

    /// Concurrency slots a data plane holds on a bucket (0 when its lease expired).
    pub fn slots_held(&self, data_plane_id: &str, bucket: &Bucket) -> u64 {
        let now = self.rate_now_ms.load(Ordering::SeqCst);
        let rate = self.rate.lock().unwrap();
        rate.slots
            .get(&(bucket.clone(), data_plane_id.to_owned()))
            .filter(|s| s.expires_at_ms > now)
            .map_or(0, |s| s.held)
    }

    fn rate_limit_of(&self, limit_id: &str) -> Option<pb::RateLimit> {
        let snapshot = self.snapshots.borrow();
        snapshot
            .as_ref()?
            .rate_limits
            .iter()
            .find(|l| l.id == limit_id)
            .cloned()
    }

    fn lease_ttl_ms(&self) -> i64 {
        let snapshot = self.snapshots.borrow();
        let ttl_s = snapshot
            .as_ref()
            .and_then(|s| s.budget_settings.as_ref())
            .map_or(30, |b| {
                if b.lease_ttl_s == 0 {
                    30
                } else {
                    b.lease_ttl_s
                }
            });
        i64::from(ttl_s) * 1_000
    }

    /// The design's `RateLease`: all asks or none, in one critical section.
    fn rate_grant(&self, request: pb::RateLeaseRequest) -> pb::RateLeaseResponse {
        let now = self.rate_now_ms.load(Ordering::SeqCst);
        let ttl_ms = self.lease_ttl_ms();
        let dp = request.data_plane_id.clone();
        let mut rate = self.rate.lock().unwrap();
        rate.calls.push(request.clone());
        let live_free = |rate: &FakeRate, bucket: &Bucket, limit: u64| {
            let held: u64 = rate
                .slots
                .iter()
                .filter(|((b, _), s)| b == bucket && s.expires_at_ms > now)
                .map(|(_, s)| s.held)
                .sum();
            limit.saturating_sub(held)
        };
        // First pass: refill, apply releases and lease resets, and see what fits.
        let mut states = Vec::new();
        let mut limits = Vec::new();
        for ask in &request.asks {
            let key = ask.bucket.clone().unwrap();
            let bucket: Bucket = (key.limit_id.clone(), key.subject_id.clone());
            let limit = self.rate_limit_of(&key.limit_id);
            let mut state = pb::BucketState {
                bucket: Some(key),
                ..Default::default()
            };
            if let Some(l) = &limit {
                state.limit = l.limit;
                if l.kind == pb::RateLimitKind::ConcurrentRequests as i32 {
                    let lease =
                        rate.slots
                            .entry((bucket.clone(), dp.clone()))
                            .or_insert(FakeSlots {
                                held: 0,
                                expires_at_ms: now + ttl_ms,
                            });
                    if lease.expires_at_ms <= now {
                        lease.held = 0;
                        state.lease_reset = true;
                    }
                    lease.held = lease.held.saturating_sub(ask.release);
                    lease.expires_at_ms = now + ttl_ms;
                    state.lease_expires_at_unix_ms = now + ttl_ms;
                } else {
                    let full = u128::from(l.limit) * PER_UNIT;
                    let (level, at) = rate.levels.get(&bucket).copied().unwrap_or((full, now));
                    let elapsed = u128::try_from((now - at).max(0)).unwrap();
                    let level = (level + u128::from(l.limit) * elapsed).min(full);
                    let level = (level + u128::from(ask.release) * PER_UNIT).min(full);
                    rate.levels.insert(bucket.clone(), (level, now));
                }
            }
            limits.push((bucket, limit));
            states.push(state);
        }
        let available = |rate: &FakeRate, bucket: &Bucket, l: &pb::RateLimit| {
            if l.kind == pb::RateLimitKind::ConcurrentRequests as i32 {
                live_free(rate, bucket, l.limit)
            } else {
                u64::try_from(rate.levels[bucket].0 / PER_UNIT).unwrap()
            }
        };
        let blocked = request
            .asks
            .iter()
            .zip(&limits)
            .position(|(ask, (bucket, limit))| {
                limit
                    .as_ref()
                    .is_some_and(|l| ask.need > available(&rate, bucket, l))
            });
        for (i, ask) in request.asks.iter().enumerate() {
            let (bucket, limit) = &limits[i];
            let Some(l) = limit else {
                if blocked.is_none() {
                    states[i].granted = ask.need;
                }
                continue;
            };
            let avail = available(&rate, bucket, l);
            let concurrency = l.kind == pb::RateLimitKind::ConcurrentRequests as i32;
            if blocked.is_none() {
                let g = avail.min(ask.need.max(ask.want.min(avail / 4)));
                states[i].granted = g;
                if concurrency {
                    rate.slots
                        .get_mut(&(bucket.clone(), dp.clone()))
                        .unwrap()
                        .held += g;
                } else {
                    rate.levels.get_mut(bucket).unwrap().0 -= u128::from(g) * PER_UNIT;
                }
            } else if !concurrency && ask.need > avail {
                let level = rate.levels[bucket].0;
                let missing = (u128::from(ask.need) * PER_UNIT).saturating_sub(level);
                states[i].retry_after_ms =
                    u64::try_from(missing.div_ceil(u128::from(l.limit))).unwrap();
            }
            states[i].available = available(&rate, bucket, l);
            if concurrency {
                states[i].held = rate.slots[&(bucket.clone(), dp.clone())].held;
            }
            if !concurrency {
                let full = u128::from(l.limit) * PER_UNIT;
                let missing = full - rate.levels[bucket].0;
                states[i].full_in_ms =
                    u64::try_from(missing.div_ceil(u128::from(l.limit))).unwrap();
            }
        }
        pb::RateLeaseResponse {
            granted: blocked.is_none(),
            buckets: states,
            blocked_index: blocked.map_or(0, |b| u32::try_from(b).unwrap()),
            server_time_unix_ms: now,
        }
    }

    /// `Lease` answers `invalid_argument` while set (the control plane is up but refuses).
    pub fn refuse_leases(&self, refuse: bool) {
        self.lease_refused.store(refuse, Ordering::SeqCst);
    }

    /// `Lease` and `SpendSummary` answer `unavailable` while set.
    pub fn spend_unavailable(&self, down: bool) {
        self.spend_down.store(down, Ordering::SeqCst);
    }

    /// Sets a counter's ledger (as if usage had been stored before).
    pub fn set_spent(&self, key: Key, micro_usd: u64) {
        self.spend.lock().unwrap().spent.insert(key, micro_usd);
    }

    pub fn spent(&self, key: &Key) -> u64 {
        self.spend
            .lock()
            .unwrap()
            .spent
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// This data plane's lease on a counter.
    pub fn lease_of(&self, data_plane_id: &str, key: &Key) -> Option<FakeLease> {
        let spend = self.spend.lock().unwrap();
        spend
            .leases
            .get(&(key.clone(), data_plane_id.to_owned()))
            .copied()
    }

    /// Every `Lease` call so far.
    pub fn lease_calls(&self) -> Vec<pb::LeaseRequest> {
        self.spend.lock().unwrap().calls.clone()
    }

    /// `Lease` calls that asked for more spend (not renewals or releases).
    pub fn grant_calls(&self) -> usize {
        self.lease_calls()
            .iter()
            .filter(|c| c.asks.iter().any(|a| a.need_micro_usd > 0))
            .count()
    }

    /// Day/week/month spend of a principal from before the stored records.
    pub fn set_past_spend(&self, principal_id: &str, day: u64, week: u64, month: u64) {
        let mut spend = self.spend.lock().unwrap();
        spend
            .past
            .insert(principal_id.to_owned(), (day, week, month));
    }

    fn limit_and_ttl(&self, budget_id: &str) -> (Option<u64>, Duration) {
        let snapshot = self.snapshots.borrow();
        let Some(s) = snapshot.as_ref() else {
            return (None, Duration::from_secs(30));
        };
        let ttl = s.budget_settings.as_ref().map_or(30, |b| {
            if b.lease_ttl_s == 0 {
                30
            } else {
                b.lease_ttl_s
            }
        });
        let limit = s
            .budgets
            .iter()
            .find(|b| b.id == budget_id)
            .map(|b| b.limit_micro_usd);
        (limit, Duration::from_secs(u64::from(ttl)))
    }

    /// The design's grant rule, in one critical section.
    fn grant(&self, request: pb::LeaseRequest) -> pb::LeaseResponse {
        let now = Instant::now();
        let dp = request.data_plane_id.clone();
        let mut spend = self.spend.lock().unwrap();
        spend.calls.push(request.clone());
        let mut states = Vec::new();
        let mut limits = Vec::new();
        for ask in &request.asks {
            let k = key(ask.counter.as_ref().unwrap());
            let (limit, ttl) = self.limit_and_ttl(&k.0);
            let lease = spend
                .leases
                .entry((k.clone(), dp.clone()))
                .or_insert(FakeLease {
                    granted: 0,
                    consumed: 0,
                    expires: now + ttl,
                });
            let reset = lease.expires <= now;
            if reset {
                lease.granted = lease.consumed;
            }
            let unused = lease.unused(now).min(if reset { 0 } else { u64::MAX });
            lease.granted -= ask.release_micro_usd.min(unused);
            lease.expires = now + ttl;
            limits.push(limit);
            states.push(pb::CounterState {
                counter: ask.counter.clone(),
                limit_micro_usd: limit.unwrap_or(0),
                lease_reset: reset,
                ..Default::default()
            });
        }
        let remaining = |spend: &FakeSpend, k: &Key, limit: u64| {
            let leased: u64 = spend
                .leases
                .iter()
                .filter(|((lk, _), _)| lk == k)
                .map(|(_, l)| l.unused(now))
                .sum();
            let spent = spend.spent.get(k).copied().unwrap_or(0);
            limit.saturating_sub(spent).saturating_sub(leased)
        };
        let blocked = request.asks.iter().zip(&limits).position(|(ask, limit)| {
            let k = key(ask.counter.as_ref().unwrap());
            limit.is_some_and(|l| ask.need_micro_usd > remaining(&spend, &k, l))
        });
        if blocked.is_none() {
            for (i, ask) in request.asks.iter().enumerate() {
                let k = key(ask.counter.as_ref().unwrap());
                let g = match limits[i] {
                    Some(l) => {
                        let r = remaining(&spend, &k, l);
                        r.min(ask.need_micro_usd.max(ask.want_micro_usd.min(r / 4)))
                    }
                    None => ask.need_micro_usd.max(ask.want_micro_usd),
                };
                spend.leases.get_mut(&(k, dp.clone())).unwrap().granted += g;
                states[i].granted_micro_usd = g;
            }
        }
        for (i, ask) in request.asks.iter().enumerate() {
            let k = key(ask.counter.as_ref().unwrap());
            states[i].spent_micro_usd = spend.spent.get(&k).copied().unwrap_or(0);
            states[i].leased_micro_usd = spend
                .leases
                .iter()
                .filter(|((lk, _), _)| *lk == k)
                .map(|(_, l)| l.unused(now))
                .sum();
        }
        pb::LeaseResponse {
            granted: blocked.is_none(),
            counters: states,
            blocked_index: blocked.map_or(0, |b| u32::try_from(b).unwrap()),
            server_time_unix_ms: 0,
        }
    }

    /// What ReportUsage does to the ledger for a newly stored record.
    fn charge(&self, record: &pb::UsageRecord) {
        let mut spend = self.spend.lock().unwrap();
        for c in &record.charges {
            let k = key(c);
            *spend.spent.entry(k.clone()).or_default() += record.cost_micro_usd;
            if let Some(lease) = spend.leases.get_mut(&(k, record.data_plane_id.clone())) {
                lease.consumed += record.cost_micro_usd;
            }
        }
    }

    pub fn publish(&self, snapshot: pb::Snapshot) {
        self.snapshots.send_replace(Some(snapshot));
    }

    pub fn refuse_usage(&self, refuse: bool) {
        self.refuse_usage.store(refuse, Ordering::SeqCst);
    }

    pub fn usage(&self) -> Vec<pb::UsageRecord> {
        self.usage.lock().unwrap().clone()
    }

    /// Waits until at least `n` usage records arrived.
    pub async fn wait_for_usage(&self, n: usize) -> Vec<pb::UsageRecord> {
        for _ in 0..500 {
            let usage = self.usage();
            if usage.len() >= n {
                return usage;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {n} usage records, got {:?}", self.usage());
    }

    pub async fn serve(&self, shutdown: CancellationToken) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder()
            .add_service(SyncServer::new(self.clone()))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                shutdown.cancelled_owned(),
            );
        tokio::spawn(server);
        format!("http://{addr}")
    }
}

fn check_token<T>(request: &tonic::Request<T>) -> Result<(), Status> {
    let expected = format!("Bearer {SYNC_TOKEN}");
    match request.metadata().get("authorization") {
        Some(v) if v.to_str().ok() == Some(expected.as_str()) => Ok(()),
        _ => Err(Status::unauthenticated("bad sync token")),
    }
}

#[tonic::async_trait]
impl SyncService for FakeControlPlane {
    type WatchSnapshotsStream = Pin<Box<dyn Stream<Item = Result<pb::Snapshot, Status>> + Send>>;

    async fn watch_snapshots(
        &self,
        request: tonic::Request<pb::WatchSnapshotsRequest>,
    ) -> Result<tonic::Response<Self::WatchSnapshotsStream>, Status> {
        check_token(&request)?;
        let stream =
            WatchStream::new(self.snapshots.subscribe()).filter_map(|s| async move { s.map(Ok) });
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn report_usage(
        &self,
        request: tonic::Request<pb::UsageBatch>,
    ) -> Result<tonic::Response<pb::UsageAck>, Status> {
        check_token(&request)?;
        if self.refuse_usage.load(Ordering::SeqCst) {
            return Err(Status::unavailable("database is down"));
        }
        let mut usage = self.usage.lock().unwrap();
        let mut ack = pb::UsageAck::default();
        for record in request.into_inner().records {
            if usage.iter().any(|r| r.request_id == record.request_id) {
                ack.duplicates += 1;
            } else {
                self.charge(&record);
                usage.push(record);
                ack.inserted += 1;
            }
        }
        Ok(tonic::Response::new(ack))
    }

    async fn lease(
        &self,
        request: tonic::Request<pb::LeaseRequest>,
    ) -> Result<tonic::Response<pb::LeaseResponse>, Status> {
        check_token(&request)?;
        if self.spend_down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("database is down"));
        }
        if self.lease_refused.load(Ordering::SeqCst) {
            return Err(Status::invalid_argument("counter window is not current"));
        }
        Ok(tonic::Response::new(self.grant(request.into_inner())))
    }

    async fn rate_lease(
        &self,
        request: tonic::Request<pb::RateLeaseRequest>,
    ) -> Result<tonic::Response<pb::RateLeaseResponse>, Status> {
        check_token(&request)?;
        if self.spend_down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("database is down"));
        }
        if self.lease_refused.load(Ordering::SeqCst) {
            return Err(Status::invalid_argument("refused"));
        }
        Ok(tonic::Response::new(self.rate_grant(request.into_inner())))
    }

    async fn report_target_health(
        &self,
        request: tonic::Request<pb::TargetHealthReport>,
    ) -> Result<tonic::Response<pb::TargetHealthAck>, Status> {
        check_token(&request)?;
        Ok(tonic::Response::new(pb::TargetHealthAck {}))
    }

    async fn spend_summary(
        &self,
        request: tonic::Request<pb::SpendSummaryRequest>,
    ) -> Result<tonic::Response<pb::SpendSummaryResponse>, Status> {
        check_token(&request)?;
        if self.spend_down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("database is down"));
        }
        let principal = request.into_inner().principal_id;
        let stored: u64 = self
            .usage()
            .iter()
            .filter(|r| r.principal_id == principal)
            .map(|r| r.cost_micro_usd)
            .sum();
        let (day, week, month) = self
            .spend
            .lock()
            .unwrap()
            .past
            .get(&principal)
            .copied()
            .unwrap_or_default();
        Ok(tonic::Response::new(pb::SpendSummaryResponse {
            day_micro_usd: day + stored,
            week_micro_usd: week + stored,
            month_micro_usd: month + stored,
            ..Default::default()
        }))
    }
}

// ---------------------------------------------------------------- snapshot

/// $3 / $15 per million input / output tokens; cache writes $3.75 (5 min) / $6 (1 h),
/// cache reads $0.30. The fake upstream's stream costs 2,640 micro-USD at this price, its
/// JSON answer 125.
pub fn price() -> pb::TargetPrice {
    pb::TargetPrice {
        base: Some(pb::PriceRates {
            input: 3_000_000,
            output: 15_000_000,
            cache_write_5m: 3_750_000,
            cache_write_1h: 6_000_000,
            cache_read: 300_000,
        }),
        long_context_threshold_tokens: 0,
        long_context: None,
        multiplier_bps: 10_000,
        source: "catalogue:claude-sonnet-5".into(),
    }
}

pub fn snapshot(version: u64, upstream_base_url: &str) -> pb::Snapshot {
    let model = |id: &str| pb::Model {
        id: id.into(),
        display_name: id.into(),
        max_input_tokens: 200_000,
        created_at_unix_s: 1_700_000_000,
    };
    pb::Snapshot {
        version,
        generated_at_unix_ms: 1,
        org_id: "org".into(),
        org_name: "Example".into(),
        groups: vec![pb::Group {
            id: "g-eng".into(),
            name: "eng".into(),
            allowed_models: vec![
                "claude-sonnet-5".into(),
                "claude-haiku-5".into(),
                "claude-demo".into(),
            ],
        }],
        api_keys: vec![pb::ApiKey {
            id: "k-ada".into(),
            secret_sha256: secret_sha256("tg_ada").to_vec(),
            principal_id: "u-ada".into(),
            principal_kind: pb::PrincipalKind::User as i32,
            principal_name: "Ada".into(),
            principal_email: "ada@example.com".into(),
            group_ids: vec!["g-eng".into()],
            expires_at_unix_s: 0,
            name: "laptop".into(),
        }],
        providers: vec![
            pb::Provider {
                id: "p-up".into(),
                name: "upstream".into(),
                kind: pb::ProviderKind::Anthropic as i32,
                config: Some(pb::ProviderConfig {
                    base_url: upstream_base_url.into(),
                    api_key: Some(pb::SecretRef {
                        source: Some(pb::secret_ref::Source::Value(PROVIDER_KEY.into())),
                    }),
                    ..Default::default()
                }),
            },
            pb::Provider {
                id: "p-demo".into(),
                name: "demo".into(),
                kind: pb::ProviderKind::Demo as i32,
                ..Default::default()
            },
        ],
        models: vec![
            model("claude-sonnet-5"),
            model("claude-haiku-5"),
            model("claude-opus-4-8"),
            model("claude-demo"),
        ],
        routes: vec![
            pb::Route {
                model: "claude-sonnet-5".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-up".into(),
                    upstream_model: "claude-sonnet-5-20990101".into(),
                    weight: 1,
                    price: Some(price()),
                    ..Default::default()
                }],
            },
            pb::Route {
                model: "claude-haiku-5".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-up".into(),
                    upstream_model: String::new(),
                    weight: 1,
                    price: Some(price()),
                    ..Default::default()
                }],
            },
            pb::Route {
                model: "claude-opus-4-8".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-up".into(),
                    upstream_model: String::new(),
                    weight: 1,
                    price: Some(price()),
                    ..Default::default()
                }],
            },
            pb::Route {
                model: "claude-demo".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-demo".into(),
                    upstream_model: String::new(),
                    weight: 1,
                    price: Some(price()),
                    ..Default::default()
                }],
            },
        ],
        ..Default::default()
    }
}

// ---------------------------------------------------------------- upstream

/// The events the fake upstream streams, in order.
pub fn sse_events() -> Vec<String> {
    let mut events = vec![
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_up\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-5-20990101\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":1200,\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},\"output_tokens\":1}}}\n\n".to_owned(),
        "event: ping\ndata: {\"type\": \"ping\"}\n\n".to_owned(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_owned(),
    ];
    for i in 0..10 {
        events.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} \"}}}}\n\n"));
    }
    events.push(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            .to_owned(),
    );
    events.push("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n".to_owned());
    events.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned());
    events
}

pub const PROMPT_TOO_LONG: &str = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct FakeUpstream {
    pub base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests for the model `flaky` fail with 503 while this is set.
    flaky_failing: Arc<std::sync::atomic::AtomicBool>,
    completed_streams: Arc<AtomicUsize>,
    event_pause: Duration,
}

type UpBody = BoxBody<Bytes, Infallible>;

impl FakeUpstream {
    pub async fn start(event_pause: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = FakeUpstream {
            base_url: format!("http://{}", listener.local_addr().unwrap()),
            received: Arc::default(),
            flaky_failing: Arc::default(),
            completed_streams: Arc::default(),
            event_pause,
        };
        let server = upstream.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        upstream
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn set_flaky_failing(&self, failing: bool) {
        self.flaky_failing.store(failing, Ordering::SeqCst);
    }

    /// The models of the requests received, in order.
    pub fn models(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| {
                let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                json["model"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }

    pub fn completed_streams(&self) -> usize {
        self.completed_streams.load(Ordering::SeqCst)
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<UpBody> {
        let path = req.uri().path().to_owned();
        let headers = req.headers().clone();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        self.received.lock().unwrap().push(Received {
            path: path.clone(),
            headers,
            body: body.clone(),
        });
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if let Some(ms) = json["delay_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let model = json["model"].as_str().unwrap_or_default().to_owned();
        let failing_status = model
            .strip_prefix("status-")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .or_else(|| {
                (model == "flaky" && self.flaky_failing.load(Ordering::SeqCst)).then_some(503)
            });
        if let Some(code) = failing_status {
            let mut response = full(
                StatusCode::from_u16(code).unwrap(),
                "application/json",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                    .to_owned(),
            );
            if model.contains("noretry") {
                response
                    .headers_mut()
                    .insert("x-should-retry", "false".parse().unwrap());
            }
            if model.contains("retryafter") {
                response
                    .headers_mut()
                    .insert("retry-after", "3600".parse().unwrap());
            }
            return response;
        }
        let mut response = if path == "/v1/messages/count_tokens" {
            full(
                StatusCode::OK,
                "application/json",
                r#"{"input_tokens":77}"#.to_owned(),
            )
        } else if json["please_fail"] == true {
            full(
                StatusCode::BAD_REQUEST,
                "application/json",
                PROMPT_TOO_LONG.to_owned(),
            )
        } else if json["stream"] == true {
            self.sse()
        } else {
            full(StatusCode::OK, "application/json", r#"{"id":"msg_up","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":11,"cache_read_input_tokens":5,"output_tokens":6}}"#.to_owned())
        };
        let h = response.headers_mut();
        h.insert("request-id", "req_fake".parse().unwrap());
        h.insert(
            "anthropic-ratelimit-requests-remaining",
            "99".parse().unwrap(),
        );
        h.insert("anthropic-organization-id", "org-secret".parse().unwrap());
        response
    }

    fn sse(&self) -> Response<UpBody> {
        let pause = self.event_pause;
        let completed = self.completed_streams.clone();
        let events = sse_events();
        let last = events.len() - 1;
        let stream =
            futures_util::stream::iter(events.into_iter().enumerate()).then(move |(i, e)| {
                let completed = completed.clone();
                async move {
                    if i > 0 && !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    if i == last {
                        completed.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok::<_, Infallible>(Frame::data(Bytes::from(e)))
                }
            });
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(Box::pin(stream))));
        response
            .headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        response
    }
}

fn full(status: StatusCode, content_type: &str, body: String) -> Response<UpBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    response
}

// ---------------------------------------------------------------- client

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    http2: bool,
) -> Answer {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http::<Full<Bytes>>();
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}
