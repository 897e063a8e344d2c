//! Admission against an in-process fake control plane (a tonic `Sync` server whose
//! `RateLease` keeps token buckets without refill and concurrency slots).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tollgate_policy::{
    AppliedLimit, BucketKey, OutageMode, RateLimit, RateLimitKind, RateLimitScope,
};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::sync_server::{Sync as SyncService, SyncServer};
use tonic::Status;
use tonic::transport::Server;

use super::*;
use crate::snapshot::SnapshotStore;

type Key = (String, String);

#[derive(Debug, Default)]
struct FakeState {
    /// limit id → (kind, limit); a bucket of an unknown limit is granted as asked.
    limits: HashMap<String, (RateLimitKind, u64)>,
    /// Per-minute buckets: whole units left (no refill; a new bucket starts full).
    levels: HashMap<Key, u64>,
    /// Concurrency slots held by the (only) data plane.
    held: HashMap<Key, u64>,
    /// The next call finds every concurrency lease expired.
    expire_leases: bool,
    calls: Vec<Vec<pb::RateLeaseAsk>>,
}

#[derive(Clone, Default)]
struct FakeControlPlane {
    state: Arc<Mutex<FakeState>>,
    /// Answers `Unavailable` (unreachable).
    down: Arc<AtomicBool>,
    /// Answers `InvalidArgument` (a refusal).
    refusing: Arc<AtomicBool>,
    /// Answers `RateLease` this many milliseconds late.
    delay_ms: Arc<AtomicU64>,
}

impl FakeControlPlane {
    fn with_limits(limits: &[(&str, RateLimitKind, u64)]) -> Self {
        let fake = FakeControlPlane::default();
        fake.state.lock().unwrap().limits = limits
            .iter()
            .map(|(id, kind, limit)| ((*id).to_owned(), (*kind, *limit)))
            .collect();
        fake
    }

    fn calls(&self) -> Vec<Vec<pb::RateLeaseAsk>> {
        self.state.lock().unwrap().calls.clone()
    }

    fn level(&self, limit_id: &str) -> Option<u64> {
        let key = (limit_id.to_owned(), String::new());
        self.state.lock().unwrap().levels.get(&key).copied()
    }

    fn held(&self, limit_id: &str) -> u64 {
        let key = (limit_id.to_owned(), String::new());
        self.state
            .lock()
            .unwrap()
            .held
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    async fn start(&self) -> (RateLimiter, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = Server::builder()
            .add_service(SyncServer::new(self.clone()))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        let api = crate::control_plane::sync_api(
            &format!("http://{addr}"),
            &secrecy::SecretString::from("token"),
        )
        .unwrap();
        (RateLimiter::new(api, "dp-1".into()), stop)
    }

    fn rate_lease(&self, request: &pb::RateLeaseRequest) -> pb::RateLeaseResponse {
        let mut state = self.state.lock().unwrap();
        state.calls.push(request.asks.clone());
        let expire = std::mem::take(&mut state.expire_leases);
        let mut buckets = Vec::new();
        let mut grants = Vec::new();
        let mut blocked = None;
        for (i, ask) in request.asks.iter().enumerate() {
            let bucket = ask.bucket.clone().unwrap();
            let key = (bucket.limit_id.clone(), bucket.subject_id.clone());
            let Some(&(kind, limit)) = state.limits.get(&bucket.limit_id) else {
                grants.push((key, None, ask.need));
                buckets.push(pb::BucketState {
                    bucket: Some(bucket),
                    granted: ask.need,
                    ..Default::default()
                });
                continue;
            };
            let mut answer = pb::BucketState {
                bucket: Some(bucket),
                limit,
                ..Default::default()
            };
            let free = if kind.per_minute() {
                let level = state.levels.entry(key.clone()).or_insert(limit);
                *level = (*level + ask.release).min(limit);
                *level
            } else {
                let held = state.held.entry(key.clone()).or_insert(0);
                if expire {
                    *held = 0;
                    answer.lease_reset = true;
                }
                *held = held.saturating_sub(ask.release);
                answer.lease_expires_at_unix_ms = 1_000_000 + 30_000;
                limit - *held
            };
            if ask.need <= free {
                let g = free.min(ask.need.max(ask.want.min(free / 4)));
                grants.push((key, Some(kind), g));
                answer.granted = g;
                answer.available = free - g;
            } else {
                blocked.get_or_insert(i);
                answer.available = free;
                if kind.per_minute() {
                    answer.retry_after_ms = (ask.need - free) * 60_000 / limit;
                }
            }
            buckets.push(answer);
        }
        let granted = blocked.is_none();
        if granted {
            for (key, kind, g) in grants {
                match kind {
                    Some(k) if k.per_minute() => *state.levels.get_mut(&key).unwrap() -= g,
                    Some(_) => *state.held.get_mut(&key).unwrap() += g,
                    None => {}
                }
            }
        } else {
            for b in &mut buckets {
                b.granted = 0;
            }
        }
        // Concurrency answers say what this data plane holds now, absolutely.
        for b in &mut buckets {
            let Some(bucket) = &b.bucket else { continue };
            let key = (bucket.limit_id.clone(), bucket.subject_id.clone());
            if b.lease_expires_at_unix_ms > 0 {
                b.held = state.held.get(&key).copied().unwrap_or(0);
            }
        }
        pb::RateLeaseResponse {
            granted,
            buckets,
            blocked_index: u32::try_from(blocked.unwrap_or(0)).unwrap(),
            server_time_unix_ms: 1_000_000,
        }
    }
}

#[tonic::async_trait]
impl SyncService for FakeControlPlane {
    type WatchSnapshotsStream = Pin<Box<dyn Stream<Item = Result<pb::Snapshot, Status>> + Send>>;

    async fn watch_snapshots(
        &self,
        _: tonic::Request<pb::WatchSnapshotsRequest>,
    ) -> Result<tonic::Response<Self::WatchSnapshotsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn report_usage(
        &self,
        _: tonic::Request<pb::UsageBatch>,
    ) -> Result<tonic::Response<pb::UsageAck>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn lease(
        &self,
        _: tonic::Request<pb::LeaseRequest>,
    ) -> Result<tonic::Response<pb::LeaseResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn rate_lease(
        &self,
        request: tonic::Request<pb::RateLeaseRequest>,
    ) -> Result<tonic::Response<pb::RateLeaseResponse>, Status> {
        let request = request.into_inner();
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            self.state.lock().unwrap().calls.push(request.asks);
            return Err(Status::unavailable("database gone"));
        }
        if self.refusing.load(Ordering::SeqCst) {
            self.state.lock().unwrap().calls.push(request.asks);
            return Err(Status::invalid_argument("malformed"));
        }
        Ok(tonic::Response::new(FakeControlPlane::rate_lease(
            self, &request,
        )))
    }

    async fn spend_summary(
        &self,
        _: tonic::Request<pb::SpendSummaryRequest>,
    ) -> Result<tonic::Response<pb::SpendSummaryResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn report_target_health(
        &self,
        _: tonic::Request<pb::TargetHealthReport>,
    ) -> Result<tonic::Response<pb::TargetHealthAck>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

fn applied(id: &str, kind: RateLimitKind, limit: u64) -> AppliedLimit {
    AppliedLimit {
        limit: Arc::new(RateLimit {
            id: id.into(),
            scope: RateLimitScope::User,
            scope_id: "alice".into(),
            per_member: false,
            model: None,
            kind,
            limit,
        }),
        bucket: BucketKey {
            limit_id: id.into(),
            subject_id: String::new(),
        },
    }
}

fn demand(input_tokens: u64, output_tokens: u64) -> Demand {
    Demand {
        input_tokens,
        output_tokens,
    }
}

fn admitted(admission: RateAdmission) -> RateHold {
    match admission {
        RateAdmission::Admitted(hold) => hold,
        other => panic!("expected admission, got {other:?}"),
    }
}

fn limited(admission: RateAdmission) -> (usize, RateLimited) {
    match admission {
        RateAdmission::Limited { index, limited } => (index, limited),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn header<'a>(headers: &'a crate::budget::HeaderList, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .and_then(|(_, v)| v.to_str().ok())
}

#[tokio::test]
async fn no_limit_admits_with_an_empty_hold_and_no_call() {
    let fake = FakeControlPlane::default();
    let (limiter, _stop) = fake.start().await;
    let hold = admitted(limiter.admit(&[], demand(10, 10), OutageMode::Closed).await);
    assert!(hold.headers().is_empty());
    hold.settle(10, 10);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn the_fast_path_admits_from_the_slice_without_calls() {
    let fake = FakeControlPlane::with_limits(&[("rpm", RateLimitKind::RequestsPerMinute, 100)]);
    let (limiter, _stop) = fake.start().await;
    let limits = [applied("rpm", RateLimitKind::RequestsPerMinute, 100)];
    // The first asks need 1, want 100 / 20 = 5 and gets 5.
    let hold = admitted(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
    );
    hold.settle(0, 0);
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0][0].need, calls[0][0].want), (1, 5));
    for _ in 0..4 {
        admitted(
            limiter
                .admit(&limits, demand(0, 0), OutageMode::Closed)
                .await,
        );
    }
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(fake.level("rpm"), Some(95));
    // The sixth needs another slice.
    admitted(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
    );
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn the_slow_path_asks_only_the_short_buckets_for_need_and_want() {
    let fake = FakeControlPlane::with_limits(&[
        ("itpm", RateLimitKind::InputTokensPerMinute, 100_000),
        ("otpm", RateLimitKind::OutputTokensPerMinute, 40_000),
    ]);
    let (limiter, _stop) = fake.start().await;
    let limits = [
        applied("itpm", RateLimitKind::InputTokensPerMinute, 100_000),
        applied("otpm", RateLimitKind::OutputTokensPerMinute, 40_000),
    ];
    admitted(
        limiter
            .admit(&limits, demand(2_000, 1_000), OutageMode::Closed)
            .await,
    )
    .settle(2_000, 1_000);
    let first = &fake.calls()[0];
    assert_eq!((first[0].need, first[0].want), (2_000, 5_000));
    assert_eq!((first[1].need, first[1].want), (1_000, 2_000));
    // Input: 3_000 left here; output: 1_000 left. A request of 2_000 / 1_500 is short
    // only on output tokens.
    admitted(
        limiter
            .admit(&limits, demand(2_000, 1_500), OutageMode::Closed)
            .await,
    );
    let second = &fake.calls()[1];
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].bucket.as_ref().unwrap().limit_id, "otpm");
    assert_eq!((second[0].need, second[0].want), (500, 2_000));
}

#[tokio::test]
async fn a_refusal_is_all_or_nothing_and_names_the_limit_with_its_retry_time() {
    let fake = FakeControlPlane::with_limits(&[
        ("rpm", RateLimitKind::RequestsPerMinute, 1_000),
        ("itpm", RateLimitKind::InputTokensPerMinute, 6_000),
    ]);
    fake.state
        .lock()
        .unwrap()
        .levels
        .insert(("itpm".into(), String::new()), 1_000);
    let (limiter, _stop) = fake.start().await;
    let limits = [
        applied("rpm", RateLimitKind::RequestsPerMinute, 1_000),
        applied("itpm", RateLimitKind::InputTokensPerMinute, 6_000),
    ];
    let (index, refusal) = limited(
        limiter
            .admit(&limits, demand(3_000, 0), OutageMode::Closed)
            .await,
    );
    assert_eq!(index, 1);
    assert_eq!(refusal.limit.id, "itpm");
    assert!(!refusal.never_fits);
    // 2_000 tokens missing at 6_000 a minute: 20 s.
    assert_eq!(refusal.retry_after_ms, 20_000);
    assert_eq!(refusal.remaining, 1_000);
    // Nothing was granted on the requests bucket either, and nothing stays reserved.
    assert_eq!(fake.level("rpm"), Some(1_000));
    let ledger = limiter.ledger();
    assert_eq!(ledger.amounts(&limits[0].bucket), Some((0, 0, 0)));
    assert_eq!(ledger.amounts(&limits[1].bucket), Some((0, 0, 0)));
    let h = limited_headers(&refusal, 0);
    assert_eq!(header(&h, "retry-after"), Some("20"));
    assert_eq!(
        header(&h, "anthropic-ratelimit-input-tokens-remaining"),
        Some("1000")
    );
}

#[tokio::test]
async fn a_request_larger_than_the_limit_never_fits_and_makes_no_call() {
    let fake =
        FakeControlPlane::with_limits(&[("itpm", RateLimitKind::InputTokensPerMinute, 1_000)]);
    let (limiter, _stop) = fake.start().await;
    let limits = [
        applied("rpm", RateLimitKind::RequestsPerMinute, 10),
        applied("itpm", RateLimitKind::InputTokensPerMinute, 1_000),
    ];
    let (index, refusal) = limited(
        limiter
            .admit(&limits, demand(5_000, 0), OutageMode::Closed)
            .await,
    );
    assert_eq!(index, 1);
    assert!(refusal.never_fits);
    assert_eq!(refusal.remaining, 1_000);
    assert!(fake.calls().is_empty());
    let h = limited_headers(&refusal, 0);
    assert_eq!(header(&h, "x-should-retry"), Some("false"));
}

#[tokio::test]
async fn a_bucket_applied_twice_is_charged_once() {
    let fake = FakeControlPlane::with_limits(&[("rpm", RateLimitKind::RequestsPerMinute, 20)]);
    let (limiter, _stop) = fake.start().await;
    let one = applied("rpm", RateLimitKind::RequestsPerMinute, 20);
    let limits = [one.clone(), one.clone()];
    let hold = admitted(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
    );
    assert_eq!(fake.calls()[0].len(), 1);
    assert_eq!(limiter.ledger().amounts(&one.bucket), Some((1, 0, 1)));
    hold.settle(0, 0);
    assert_eq!(limiter.ledger().amounts(&one.bucket), Some((1, 1, 0)));
}

#[tokio::test]
async fn settlement_charges_the_real_tokens_and_a_dropped_hold_counts_the_request_only() {
    let fake = FakeControlPlane::with_limits(&[
        ("rpm", RateLimitKind::RequestsPerMinute, 1_000),
        ("itpm", RateLimitKind::InputTokensPerMinute, 100_000),
        ("otpm", RateLimitKind::OutputTokensPerMinute, 100_000),
    ]);
    let (limiter, _stop) = fake.start().await;
    let limits = [
        applied("rpm", RateLimitKind::RequestsPerMinute, 1_000),
        applied("itpm", RateLimitKind::InputTokensPerMinute, 100_000),
        applied("otpm", RateLimitKind::OutputTokensPerMinute, 100_000),
    ];
    let ledger = limiter.ledger().clone();
    let hold = admitted(
        limiter
            .admit(&limits, demand(1_000, 4_000), OutageMode::Closed)
            .await,
    );
    assert_eq!(ledger.amounts(&limits[1].bucket), Some((5_000, 0, 1_000)));
    assert_eq!(ledger.amounts(&limits[2].bucket), Some((5_000, 0, 4_000)));
    // Actual input (with cache writes) above the estimate, output below.
    hold.settle(1_500, 250);
    assert_eq!(ledger.amounts(&limits[0].bucket), Some((50, 1, 0)));
    assert_eq!(ledger.amounts(&limits[1].bucket), Some((5_000, 1_500, 0)));
    assert_eq!(ledger.amounts(&limits[2].bucket), Some((5_000, 250, 0)));
    let hold = admitted(
        limiter
            .admit(&limits, demand(1_000, 4_000), OutageMode::Closed)
            .await,
    );
    drop(hold);
    assert_eq!(ledger.amounts(&limits[0].bucket), Some((50, 2, 0)));
    assert_eq!(ledger.amounts(&limits[1].bucket), Some((5_000, 1_500, 0)));
    assert_eq!(ledger.amounts(&limits[2].bucket), Some((5_000, 250, 0)));
}

#[tokio::test]
async fn success_headers_report_this_data_planes_view_of_the_tightest_limits() {
    let fake = FakeControlPlane::with_limits(&[
        ("rpm", RateLimitKind::RequestsPerMinute, 100),
        ("itpm", RateLimitKind::InputTokensPerMinute, 100_000),
        ("conc", RateLimitKind::ConcurrentRequests, 4),
    ]);
    let (limiter, _stop) = fake.start().await;
    let limits = [
        applied("rpm", RateLimitKind::RequestsPerMinute, 100),
        applied("itpm", RateLimitKind::InputTokensPerMinute, 100_000),
        applied("conc", RateLimitKind::ConcurrentRequests, 4),
    ];
    let hold = admitted(
        limiter
            .admit(&limits, demand(1_000, 0), OutageMode::Closed)
            .await,
    );
    let h = hold.headers();
    assert_eq!(
        header(&h, "anthropic-ratelimit-requests-limit"),
        Some("100")
    );
    // 95 in the bucket, 4 unused here.
    assert_eq!(
        header(&h, "anthropic-ratelimit-requests-remaining"),
        Some("99")
    );
    assert!(header(&h, "anthropic-ratelimit-requests-reset").is_some_and(|v| v.ends_with('Z')));
    assert_eq!(
        header(&h, "anthropic-ratelimit-input-tokens-remaining"),
        Some("99000")
    );
    assert_eq!(
        header(&h, "anthropic-ratelimit-tokens-remaining"),
        Some("99000")
    );
    let used = limiter.utilization();
    assert_eq!(used.len(), 3);
}

#[tokio::test]
async fn a_concurrency_slot_is_freed_when_the_hold_ends_settled_or_dropped() {
    let fake = FakeControlPlane::with_limits(&[("conc", RateLimitKind::ConcurrentRequests, 1)]);
    let (limiter, _stop) = fake.start().await;
    let limits = [applied("conc", RateLimitKind::ConcurrentRequests, 1)];
    let first = admitted(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
    );
    let (index, refusal) = limited(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
    );
    assert_eq!(index, 0);
    assert_eq!(refusal.retry_after_ms, 1_000);
    assert_eq!(
        limited_message(&refusal, "user alice@example.com"),
        "Too many requests in flight: at most 1 at once for user alice@example.com; retry \
         when one finishes."
    );
    drop(first);
    let calls = fake.calls().len();
    let second = admitted(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
    );
    second.settle(100, 100);
    admitted(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
    );
    // The slot stayed with this data plane: no call to reuse it.
    assert_eq!(fake.calls().len(), calls);
    assert_eq!(fake.held("conc"), 1);
}

#[tokio::test]
async fn a_lease_reset_is_mirrored_and_the_keeper_covers_requests_in_flight_again() {
    let fake = FakeControlPlane::with_limits(&[("conc", RateLimitKind::ConcurrentRequests, 8)]);
    let (limiter, _stop) = fake.start().await;
    let limits = [applied("conc", RateLimitKind::ConcurrentRequests, 8)];
    let hold = admitted(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
    );
    assert_eq!(limiter.ledger().amounts(&limits[0].bucket), Some((1, 0, 1)));
    fake.state.lock().unwrap().expire_leases = true;
    limiter.upkeep(true).await;
    // The control plane forgot the slot: the request in flight is a debt now…
    assert_eq!(limiter.ledger().amounts(&limits[0].bucket), Some((0, 0, 1)));
    assert_eq!(fake.held("conc"), 0);
    // …which the next renewal covers again.
    limiter.upkeep(true).await;
    let last = fake.calls().last().unwrap().clone();
    assert_eq!((last[0].need, last[0].want), (0, 1));
    assert_eq!(limiter.ledger().amounts(&limits[0].bucket), Some((1, 0, 1)));
    assert_eq!(fake.held("conc"), 1);
    hold.settle(0, 0);
}

#[tokio::test]
async fn the_keeper_renews_concurrency_leases_in_use_and_releases_everything_at_shutdown() {
    let fake = FakeControlPlane::with_limits(&[
        ("conc", RateLimitKind::ConcurrentRequests, 100),
        ("rpm", RateLimitKind::RequestsPerMinute, 100),
    ]);
    let (limiter, _stop) = fake.start().await;
    let limiter = Arc::new(limiter);
    let limits = [
        applied("conc", RateLimitKind::ConcurrentRequests, 100),
        applied("rpm", RateLimitKind::RequestsPerMinute, 100),
    ];
    let hold = admitted(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
    );
    assert_eq!(fake.held("conc"), 5);
    // A round without renewal has nothing to do while the per-minute slice is fresh.
    limiter.upkeep(false).await;
    assert_eq!(fake.calls().len(), 1);
    limiter.upkeep(true).await;
    let renewal = fake.calls().last().unwrap().clone();
    assert_eq!(renewal.len(), 1);
    assert_eq!(renewal[0].bucket.as_ref().unwrap().limit_id, "conc");
    assert_eq!(
        (renewal[0].need, renewal[0].want, renewal[0].release),
        (0, 0, 0)
    );
    hold.settle(0, 0);
    let stop = CancellationToken::new();
    let keeper = spawn_rate_keeper(
        limiter.clone(),
        Arc::new(SnapshotStore::default()),
        stop.clone(),
    );
    stop.cancel();
    keeper.await.unwrap();
    assert_eq!(fake.held("conc"), 0);
    // 4 unused requests went back to the bucket (one was used).
    assert_eq!(fake.level("rpm"), Some(99));
}

#[tokio::test]
async fn an_unreachable_control_plane_refuses_when_closed_admits_when_open_and_is_not_asked_again_for_a_while()
 {
    let fake = FakeControlPlane::with_limits(&[("rpm", RateLimitKind::RequestsPerMinute, 100)]);
    fake.down.store(true, Ordering::SeqCst);
    let (limiter, _stop) = fake.start().await;
    let limits = [applied("rpm", RateLimitKind::RequestsPerMinute, 100)];
    assert!(matches!(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
        RateAdmission::Unavailable
    ));
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(limiter.ledger().amounts(&limits[0].bucket), Some((0, 0, 0)));
    // Within 5 s nobody asks again, even once it is back.
    fake.down.store(false, Ordering::SeqCst);
    assert!(matches!(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
        RateAdmission::Unavailable
    ));
    let hold = admitted(limiter.admit(&limits, demand(0, 0), OutageMode::Open).await);
    assert_eq!(fake.calls().len(), 1);
    // Admitted open without counting: no debt that would throttle the caller later.
    assert_eq!(limiter.ledger().amounts(&limits[0].bucket), Some((0, 0, 0)));
    hold.settle(0, 0);
    assert_eq!(limiter.ledger().amounts(&limits[0].bucket), Some((0, 0, 0)));
}

#[tokio::test]
async fn a_refusing_control_plane_is_unavailable_whatever_the_outage_mode() {
    let fake = FakeControlPlane::with_limits(&[("rpm", RateLimitKind::RequestsPerMinute, 100)]);
    fake.refusing.store(true, Ordering::SeqCst);
    let (limiter, _stop) = fake.start().await;
    let limits = [applied("rpm", RateLimitKind::RequestsPerMinute, 100)];
    assert!(matches!(
        limiter.admit(&limits, demand(0, 0), OutageMode::Open).await,
        RateAdmission::Unavailable
    ));
    // Not an outage: asked again at once.
    assert!(matches!(
        limiter.admit(&limits, demand(0, 0), OutageMode::Open).await,
        RateAdmission::Unavailable
    ));
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn an_unreachable_address_counts_as_an_outage() {
    let api =
        crate::control_plane::sync_api("http://127.0.0.1:9", &secrecy::SecretString::from("token"))
            .unwrap();
    let limiter = RateLimiter::new(api, "dp-1".into());
    let limits = [applied("rpm", RateLimitKind::RequestsPerMinute, 100)];
    assert!(matches!(
        limiter
            .admit(&limits, demand(0, 0), OutageMode::Closed)
            .await,
        RateAdmission::Unavailable
    ));
    admitted(limiter.admit(&limits, demand(0, 0), OutageMode::Open).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admissions_never_reserve_more_than_was_granted() {
    let fake = FakeControlPlane::with_limits(&[
        ("rpm", RateLimitKind::RequestsPerMinute, 40),
        ("conc", RateLimitKind::ConcurrentRequests, 7),
    ]);
    let (limiter, _stop) = fake.start().await;
    let limiter = Arc::new(limiter);
    let rpm = [applied("rpm", RateLimitKind::RequestsPerMinute, 40)];
    let conc = [applied("conc", RateLimitKind::ConcurrentRequests, 7)];
    let mut tasks = Vec::new();
    for i in 0..100 {
        let limiter = limiter.clone();
        let limits = if i % 2 == 0 {
            rpm.clone()
        } else {
            conc.clone()
        };
        tasks.push(tokio::spawn(async move {
            match limiter
                .admit(&limits, demand(0, 0), OutageMode::Closed)
                .await
            {
                // Held until every task has been decided.
                RateAdmission::Admitted(hold) => Some(hold),
                RateAdmission::Limited { .. } => None,
                RateAdmission::Unavailable => panic!("control plane is up"),
            }
        }));
    }
    let mut holds = Vec::new();
    for task in tasks {
        holds.push(task.await.unwrap());
    }
    let admitted_rpm = holds.iter().step_by(2).flatten().count();
    let admitted_conc = holds.iter().skip(1).step_by(2).flatten().count();
    assert_eq!(admitted_rpm, 40);
    assert_eq!(admitted_conc, 7);
    let ledger = limiter.ledger();
    let (granted, settled, reserved) = ledger.amounts(&rpm[0].bucket).unwrap();
    assert!(settled + reserved <= granted);
    assert_eq!(fake.level("rpm"), Some(40 - granted));
    let (granted, _, reserved) = ledger.amounts(&conc[0].bucket).unwrap();
    assert!(reserved <= granted);
    assert_eq!(fake.held("conc"), granted);
}

#[tokio::test]
async fn a_request_abandoned_while_its_lease_call_runs_is_not_counted_but_the_grant_is_kept() {
    let fake = FakeControlPlane::with_limits(&[("rpm", RateLimitKind::RequestsPerMinute, 100)]);
    fake.delay_ms.store(200, Ordering::SeqCst);
    let (limiter, _stop) = fake.start().await;
    let limits = [applied("rpm", RateLimitKind::RequestsPerMinute, 100)];
    let admission = limiter.admit(&limits, demand(0, 0), OutageMode::Closed);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), admission)
            .await
            .is_err()
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(fake.level("rpm"), Some(95));
    assert_eq!(limiter.ledger().amounts(&limits[0].bucket), Some((5, 0, 0)));
}
