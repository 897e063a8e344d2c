//! Rate limits: `RateLease` token buckets (exact grants under a frozen clock, refill, release),
//! concurrency slots (shared across data planes, lost when a lease expires), all-or-nothing
//! asks, concurrent calls, and the `RateLimitAdmin` service (set, list, explain, delete,
//! audit, snapshot).

use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::PgPool;
use tollgate_control_plane::Clock;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::rate_limit_admin_client::RateLimitAdminClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::support::{
    SyncApi, TestControlPlane, TestDb, create_key, create_principal, policy_version, seed_catalogue,
};

type RateLimitApi = RateLimitAdminClient<InterceptedService<Channel, AdminKey>>;

/// Adds the admin key to every call.
#[derive(Clone)]
struct AdminKey(MetadataValue<Ascii>);

impl Interceptor for AdminKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A fixed instant (Monday 2026-11-23 12:00 UTC).
fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

/// A control plane on a fresh database whose clock is frozen at noon until advanced.
struct Fixture {
    _db: TestDb,
    cp: TestControlPlane,
    pool: PgPool,
    clock: Clock,
    limits: RateLimitApi,
    sync: SyncApi,
}

impl Fixture {
    async fn start() -> Fixture {
        let db = TestDb::create().await;
        let clock = Clock::manual(noon());
        let mut config = db.config();
        config.clock = clock.clone();
        let cp = TestControlPlane::start_with(config).await;
        let key = AdminKey(format!("Bearer {}", cp.admin_key).parse().unwrap());
        let limits = RateLimitAdminClient::with_interceptor(cp.channel().await, key);
        let sync = cp.sync().await;
        let pool = db.pool().await;
        Fixture {
            _db: db,
            cp,
            pool,
            clock,
            limits,
            sync,
        }
    }

    async fn set(
        &mut self,
        scope: pb::RateLimitScope,
        scope_ref: &str,
        kind: pb::RateLimitKind,
        limit: u64,
    ) -> pb::RateLimitInfo {
        self.try_set(scope, scope_ref, false, "", kind, limit)
            .await
            .unwrap()
    }

    async fn try_set(
        &mut self,
        scope: pb::RateLimitScope,
        scope_ref: &str,
        per_member: bool,
        model: &str,
        kind: pb::RateLimitKind,
        limit: u64,
    ) -> Result<pb::RateLimitInfo, Status> {
        self.limits
            .set_rate_limit(pb::SetRateLimitRequest {
                scope: scope as i32,
                scope_ref: scope_ref.to_owned(),
                per_member,
                model: model.to_owned(),
                kind: kind as i32,
                limit,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    async fn lease(
        &mut self,
        data_plane: &str,
        asks: Vec<pb::RateLeaseAsk>,
    ) -> pb::RateLeaseResponse {
        self.try_lease(data_plane, asks).await.unwrap()
    }

    async fn try_lease(
        &mut self,
        data_plane: &str,
        asks: Vec<pb::RateLeaseAsk>,
    ) -> Result<pb::RateLeaseResponse, Status> {
        rate_lease(&mut self.sync, data_plane, asks).await
    }
}

async fn rate_lease(
    sync: &mut SyncApi,
    data_plane: &str,
    asks: Vec<pb::RateLeaseAsk>,
) -> Result<pb::RateLeaseResponse, Status> {
    sync.rate_lease(pb::RateLeaseRequest {
        data_plane_id: data_plane.to_owned(),
        asks,
    })
    .await
    .map(tonic::Response::into_inner)
}

fn ask(limit: &pb::RateLimitInfo, need: u64, want: u64, release: u64) -> pb::RateLeaseAsk {
    ask_subject(limit, "", need, want, release)
}

fn ask_subject(
    limit: &pb::RateLimitInfo,
    subject: &str,
    need: u64,
    want: u64,
    release: u64,
) -> pb::RateLeaseAsk {
    pb::RateLeaseAsk {
        bucket: Some(pb::BucketKey {
            limit_id: limit.id.clone(),
            subject_id: subject.to_owned(),
        }),
        need,
        want,
        release,
    }
}

fn only(response: &pb::RateLeaseResponse) -> &pb::BucketState {
    assert_eq!(response.buckets.len(), 1);
    &response.buckets[0]
}

#[tokio::test]
async fn token_bucket_grants_exactly_the_limit_across_two_data_planes_then_refuses_with_the_refill_time()
 {
    let mut f = Fixture::start().await;
    let rpm = f
        .set(
            pb::RateLimitScope::Org,
            "",
            pb::RateLimitKind::RequestsPerMinute,
            10,
        )
        .await;
    let mut total = 0;
    let mut calls = 0;
    loop {
        let dp = if calls % 2 == 0 { "dp-a" } else { "dp-b" };
        calls += 1;
        let r = f.lease(dp, vec![ask(&rpm, 1, 3, 0)]).await;
        let b = only(&r);
        if !r.granted {
            assert_eq!(b.granted, 0);
            assert_eq!(b.retry_after_ms, 6_000, "one request refills in 60 s / 10");
            assert_eq!(b.available, 0);
            assert_eq!(b.full_in_ms, 60_000);
            assert_eq!(b.limit, 10);
            assert_eq!(r.blocked_index, 0);
            assert_eq!(r.server_time_unix_ms, noon().timestamp_millis());
            break;
        }
        assert!(b.granted >= 1 && b.granted <= 3);
        total += b.granted;
        assert_eq!(b.available, 10 - total);
        assert!(calls < 20);
    }
    assert_eq!(total, 10);
    // A bigger need is further away.
    let r = f.lease("dp-b", vec![ask(&rpm, 4, 4, 0)]).await;
    assert!(!r.granted);
    assert_eq!(only(&r).retry_after_ms, 24_000);
    f.cp.stop().await;
}

#[tokio::test]
async fn buckets_refill_with_the_clock_partially_and_fully() {
    let mut f = Fixture::start().await;
    let rpm = f
        .set(
            pb::RateLimitScope::Org,
            "",
            pb::RateLimitKind::RequestsPerMinute,
            10,
        )
        .await;
    let r = f.lease("dp-a", vec![ask(&rpm, 10, 10, 0)]).await;
    assert_eq!(only(&r).granted, 10);

    f.clock.advance(Duration::seconds(3));
    let r = f.lease("dp-a", vec![ask(&rpm, 1, 1, 0)]).await;
    assert!(!r.granted);
    assert_eq!(only(&r).retry_after_ms, 3_000);
    assert_eq!(only(&r).full_in_ms, 57_000);

    f.clock.advance(Duration::seconds(3));
    let r = f.lease("dp-b", vec![ask(&rpm, 1, 5, 0)]).await;
    assert!(r.granted);
    assert_eq!(only(&r).granted, 1, "exactly one request has refilled");
    assert_eq!(only(&r).available, 0);

    // 59.5 s later: 9.9 requests refilled, 9 whole ones available.
    f.clock.advance(Duration::milliseconds(59_500));
    let r = f.lease("dp-b", vec![ask(&rpm, 0, 0, 0)]).await;
    assert_eq!(only(&r).available, 9);
    assert_eq!(only(&r).full_in_ms, 500);

    // Far later the bucket is full, never fuller.
    f.clock.advance(Duration::minutes(10));
    let r = f.lease("dp-a", vec![ask(&rpm, 10, 10, 0)]).await;
    assert_eq!(only(&r).granted, 10);
    let r = f.lease("dp-a", vec![ask(&rpm, 1, 1, 0)]).await;
    assert!(!r.granted);
    f.cp.stop().await;
}

#[tokio::test]
async fn released_tokens_go_back_to_the_bucket_capped_at_full() {
    let mut f = Fixture::start().await;
    let itpm = f
        .set(
            pb::RateLimitScope::Org,
            "",
            pb::RateLimitKind::InputTokensPerMinute,
            1_000,
        )
        .await;
    let r = f.lease("dp-a", vec![ask(&itpm, 400, 400, 0)]).await;
    assert_eq!(only(&r).granted, 400);
    assert_eq!(only(&r).available, 600);

    let r = f.lease("dp-a", vec![ask(&itpm, 0, 0, 150)]).await;
    assert!(r.granted);
    assert_eq!(only(&r).granted, 0);
    assert_eq!(only(&r).available, 750);
    assert_eq!(only(&r).full_in_ms, 15_000);

    let r = f.lease("dp-b", vec![ask(&itpm, 0, 0, 5_000)]).await;
    assert_eq!(
        only(&r).available,
        1_000,
        "a release never overfills the bucket"
    );
    assert_eq!(only(&r).full_in_ms, 0);
    let r = f.lease("dp-b", vec![ask(&itpm, 1_001, 1_001, 0)]).await;
    assert!(!r.granted, "more than the limit never fits");
    f.cp.stop().await;
}

#[tokio::test]
async fn concurrency_slots_are_shared_and_an_expired_lease_loses_them() {
    let mut f = Fixture::start().await;
    let slots = f
        .set(
            pb::RateLimitScope::Org,
            "",
            pb::RateLimitKind::ConcurrentRequests,
            4,
        )
        .await;
    let r = f.lease("dp-a", vec![ask(&slots, 3, 3, 0)]).await;
    let b = only(&r);
    assert_eq!((b.granted, b.available, b.limit, b.held), (3, 1, 4, 3));
    assert_eq!(
        b.lease_expires_at_unix_ms,
        (noon() + Duration::seconds(30)).timestamp_millis(),
        "the lease runs for the budget settings' TTL"
    );
    assert!(!b.lease_reset);

    let r = f.lease("dp-b", vec![ask(&slots, 2, 2, 0)]).await;
    assert!(!r.granted);
    assert_eq!((only(&r).granted, only(&r).available), (0, 1));
    assert_eq!(only(&r).retry_after_ms, 0);
    let r = f.lease("dp-b", vec![ask(&slots, 1, 1, 0)]).await;
    assert_eq!((only(&r).granted, only(&r).available), (1, 0));

    // dp-b renews; dp-a does not.
    f.clock.advance(Duration::seconds(20));
    let r = f.lease("dp-b", vec![ask(&slots, 0, 0, 0)]).await;
    assert!(!only(&r).lease_reset);
    assert_eq!(only(&r).available, 0);
    f.clock.advance(Duration::seconds(15));
    // dp-a's lease expired: its three slots are free for dp-b.
    let r = f.lease("dp-b", vec![ask(&slots, 3, 3, 0)]).await;
    assert!(r.granted);
    assert_eq!((only(&r).granted, only(&r).available), (3, 0));
    assert_eq!(only(&r).held, 4, "dp-b holds 1 + 3");
    let r = f.lease("dp-a", vec![ask(&slots, 1, 1, 0)]).await;
    assert!(!r.granted);
    assert!(only(&r).lease_reset, "dp-a learns its slots were dropped");
    assert_eq!(only(&r).held, 0, "dp-a holds nothing any more");
    let r = f.lease("dp-a", vec![ask(&slots, 0, 0, 0)]).await;
    assert!(!only(&r).lease_reset, "the reset is reported once");

    // A release frees slots for everyone.
    let r = f.lease("dp-b", vec![ask(&slots, 0, 0, 2)]).await;
    assert_eq!(only(&r).available, 2);
    let r = f.lease("dp-a", vec![ask(&slots, 2, 2, 0)]).await;
    assert_eq!(only(&r).granted, 2);
    let held: i64 =
        sqlx::query_scalar("SELECT sum(held)::int8 FROM rate_slot_leases WHERE expires_at > $1")
            .bind(f.clock.now())
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!(held, 4);
    f.cp.stop().await;
}

#[tokio::test]
async fn asks_across_two_buckets_are_all_or_nothing() {
    let mut f = Fixture::start().await;
    let mut admin = f.cp.admin().await;
    create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Ada",
        "ada@example.com",
        &[],
    )
    .await;
    let org = f
        .set(
            pb::RateLimitScope::Org,
            "",
            pb::RateLimitKind::RequestsPerMinute,
            10,
        )
        .await;
    let user = f
        .set(
            pb::RateLimitScope::User,
            "ada@example.com",
            pb::RateLimitKind::RequestsPerMinute,
            2,
        )
        .await;
    for _ in 0..2 {
        let r = f
            .lease("dp-a", vec![ask(&org, 1, 0, 0), ask(&user, 1, 0, 0)])
            .await;
        assert!(r.granted);
    }
    let r = f
        .lease("dp-a", vec![ask(&org, 1, 0, 0), ask(&user, 1, 0, 0)])
        .await;
    assert!(!r.granted);
    assert_eq!(r.blocked_index, 1);
    assert_eq!(r.buckets[0].granted, 0);
    assert_eq!(r.buckets[0].available, 8, "the org bucket gave nothing");
    assert_eq!(
        r.buckets[0].retry_after_ms, 0,
        "the org bucket is not short"
    );
    assert_eq!(r.buckets[1].retry_after_ms, 30_000);
    let r = f.lease("dp-b", vec![ask(&org, 0, 0, 0)]).await;
    assert_eq!(only(&r).available, 8);
    f.cp.stop().await;
}

#[tokio::test]
async fn concurrent_rate_leases_never_grant_more_than_the_limit() {
    let f = Fixture::start().await;
    let mut limits = f.limits.clone();
    let set = |kind: pb::RateLimitKind, limit: u64| pb::SetRateLimitRequest {
        scope: pb::RateLimitScope::Org as i32,
        kind: kind as i32,
        limit,
        ..Default::default()
    };
    let rpm = limits
        .set_rate_limit(set(pb::RateLimitKind::RequestsPerMinute, 100))
        .await
        .unwrap()
        .into_inner();
    let slots = limits
        .set_rate_limit(set(pb::RateLimitKind::ConcurrentRequests, 30))
        .await
        .unwrap()
        .into_inner();

    // 50 tasks on each of two data planes take tokens until refused.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut sync = f.cp.sync().await;
        let rpm = rpm.clone();
        let dp = if i % 2 == 0 { "dp-a" } else { "dp-b" };
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            loop {
                let r = rate_lease(&mut sync, dp, vec![ask(&rpm, 1, 5, 0)])
                    .await
                    .unwrap();
                if !r.granted {
                    return got;
                }
                got += r.buckets[0].granted;
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 100, "the frozen bucket hands out exactly its limit");

    // 50 tasks on each data plane ask for one slot each.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut sync = f.cp.sync().await;
        let slots = slots.clone();
        let dp = if i % 2 == 0 { "dp-a" } else { "dp-b" };
        tasks.push(tokio::spawn(async move {
            let r = rate_lease(&mut sync, dp, vec![ask(&slots, 1, 1, 0)])
                .await
                .unwrap();
            r.buckets[0].granted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 30);
    let held: i64 =
        sqlx::query_scalar("SELECT sum(held)::int8 FROM rate_slot_leases WHERE limit_id = $1")
            .bind(Uuid::parse_str(&slots.id).unwrap())
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!(held, 30);
    f.cp.stop().await;
}

#[tokio::test]
async fn unknown_limits_are_granted_as_asked_and_bad_asks_are_refused() {
    let mut f = Fixture::start().await;
    let mut admin = f.cp.admin().await;
    seed_catalogue(&mut admin).await;
    let member = f
        .try_set(
            pb::RateLimitScope::Group,
            "eng",
            true,
            "",
            pb::RateLimitKind::RequestsPerMinute,
            5,
        )
        .await
        .unwrap();
    let gone = pb::RateLimitInfo {
        id: Uuid::now_v7().to_string(),
        ..Default::default()
    };
    let r = f.lease("dp-a", vec![ask(&gone, 3, 10, 0)]).await;
    assert!(r.granted);
    assert_eq!((only(&r).granted, only(&r).limit), (3, 0));

    let code = |r: Result<pb::RateLeaseResponse, Status>| r.unwrap_err().code();
    let twice = vec![ask(&gone, 1, 1, 0), ask(&gone, 1, 1, 0)];
    assert_eq!(
        code(f.try_lease("dp-a", twice).await),
        Code::InvalidArgument
    );
    let mut bad = ask(&gone, 1, 1, 0);
    bad.bucket.as_mut().unwrap().limit_id = "nope".to_owned();
    assert_eq!(
        code(f.try_lease("dp-a", vec![bad]).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(f.try_lease("", vec![ask(&gone, 1, 1, 0)]).await),
        Code::InvalidArgument
    );
    // A bucket of the wrong mode (a data plane still on the snapshot from before the limit
    // switched to per member) no longer exists: granted as asked with limit 0, so that data
    // plane stops enforcing it until its snapshot catches up.
    let r = f.lease("dp-a", vec![ask(&member, 1, 1, 0)]).await;
    assert!(r.granted);
    assert_eq!((only(&r).granted, only(&r).limit), (1, 0));
    let r = f.lease("dp-a", vec![ask(&member, 0, 0, 0)]).await;
    assert!(r.granted);
    assert_eq!(only(&r).granted, 0);
    let r = f
        .lease("dp-a", vec![ask_subject(&member, "someone", 2, 2, 0)])
        .await;
    assert_eq!((only(&r).granted, only(&r).available), (2, 3));

    let mut unauthenticated = f.cp.sync_with(None).await;
    assert_eq!(
        rate_lease(&mut unauthenticated, "dp-a", vec![])
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    f.cp.stop().await;
}

/// The audit entries with `action`: (actor, target, payload).
async fn audit(pool: &PgPool, action: &str) -> Vec<(String, String, serde_json::Value)> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT actor, target, payload FROM audit_entries WHERE action = $1 ORDER BY seq",
    )
    .bind(action)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(a, t, p)| (a, t, serde_json::from_str(&p).unwrap()))
        .collect()
}

#[tokio::test]
async fn admin_sets_lists_explains_and_deletes_limits_with_audit_and_snapshot() {
    let mut f = Fixture::start().await;
    let mut admin = f.cp.admin().await;
    let eng = seed_catalogue(&mut admin).await;
    let ada = create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Ada",
        "ada@example.com",
        &["eng"],
    )
    .await;
    let key = create_key(&mut admin, "ada@example.com", "laptop").await;
    let key_id = key.key.unwrap().id;

    let version = policy_version(&f.pool).await;
    let group = f
        .try_set(
            pb::RateLimitScope::Group,
            "eng",
            true,
            "",
            pb::RateLimitKind::RequestsPerMinute,
            10,
        )
        .await
        .unwrap();
    assert!(
        policy_version(&f.pool).await > version,
        "a change bumps the policy version"
    );
    assert_eq!(group.scope_id, eng.id);
    assert_eq!(group.scope_name, "eng");
    assert!(group.per_member);
    let user = f
        .set(
            pb::RateLimitScope::User,
            "ada@example.com",
            pb::RateLimitKind::ConcurrentRequests,
            2,
        )
        .await;
    assert_eq!(user.scope_id, ada.id);
    let keyed = f
        .try_set(
            pb::RateLimitScope::Key,
            &key_id,
            false,
            "claude-other",
            pb::RateLimitKind::OutputTokensPerMinute,
            500,
        )
        .await
        .unwrap();
    let ceiling = f
        .try_set(
            pb::RateLimitScope::Provider,
            "demo",
            false,
            "claude-test",
            pb::RateLimitKind::RequestsPerMinute,
            100,
        )
        .await
        .unwrap();
    assert_eq!(ceiling.scope_name, "demo");
    // Setting the same (scope target, model, kind) again replaces the value, same id.
    let replaced = f
        .try_set(
            pb::RateLimitScope::Group,
            &eng.id,
            true,
            "",
            pb::RateLimitKind::RequestsPerMinute,
            20,
        )
        .await
        .unwrap();
    assert_eq!(replaced.id, group.id);
    assert_eq!(replaced.limit, 20);

    let list = f
        .limits
        .list_rate_limits(pb::ListRateLimitsRequest {})
        .await
        .unwrap()
        .into_inner()
        .limits;
    let scopes: Vec<(i32, &str)> = list
        .iter()
        .map(|l| (l.scope, l.scope_name.as_str()))
        .collect();
    assert_eq!(
        scopes,
        [
            (pb::RateLimitScope::Group as i32, "eng"),
            (pb::RateLimitScope::User as i32, "ada@example.com"),
            (pb::RateLimitScope::Key as i32, "laptop"),
            (pb::RateLimitScope::Provider as i32, "demo"),
        ]
    );

    let created = audit(&f.pool, "rate_limit.create").await;
    assert_eq!(created.len(), 4);
    assert_eq!(created[0].0, "admin:bootstrap");
    assert_eq!(created[0].1, format!("rate_limit/{}", group.id));
    let updated = audit(&f.pool, "rate_limit.update").await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].2["before"]["limit_value"], 10);
    assert_eq!(updated[0].2["after"]["limit_value"], 20);

    let snapshot = crate::support::compile(&f.pool).await.unwrap();
    let snap = |id: &str| {
        snapshot
            .rate_limits
            .iter()
            .find(|l| l.id == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(snapshot.rate_limits.len(), 4);
    let g = snap(&group.id);
    assert_eq!(
        (g.scope, g.scope_id.as_str(), g.per_member, g.limit),
        (pb::RateLimitScope::Group as i32, eng.id.as_str(), true, 20)
    );
    let c = snap(&ceiling.id);
    assert_eq!(c.model, "claude-test");
    assert_eq!(c.kind, pb::RateLimitKind::RequestsPerMinute as i32);
    assert_eq!(
        snap(&keyed.id).kind,
        pb::RateLimitKind::OutputTokensPerMinute as i32
    );

    // Ada uses 15 of her 20 requests and holds both concurrency slots.
    let r = f
        .lease(
            "dp-a",
            vec![ask_subject(&group, &ada.id, 15, 15, 0), ask(&user, 2, 2, 0)],
        )
        .await;
    assert!(r.granted);
    f.clock.advance(Duration::seconds(3));
    let e = f
        .limits
        .explain_rate_limits(pb::ExplainRateLimitsRequest {
            user: "ada@example.com".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.principal_id, ada.id);
    assert_eq!(e.group_names, ["eng"]);
    assert_eq!(
        e.standings.len(),
        2,
        "group and user limits; no key limit, no ceiling"
    );
    let g = &e.standings[0];
    assert_eq!(g.bucket.as_ref().unwrap().subject_id, ada.id);
    assert_eq!(g.available, 6, "5 left plus 1 refilled in 3 s");
    assert_eq!(g.full_in_ms, 42_000);
    assert!(!g.blocks);
    assert_eq!(
        g.explanation,
        "group eng (per member) requests/min: 6 of 20 left; full in 42 s"
    );
    let u = &e.standings[1];
    assert_eq!((u.available, u.held), (0, 2));
    assert!(u.blocks);
    assert!(
        u.explanation.contains("blocks requests now"),
        "{}",
        u.explanation
    );
    assert!(e.blocked);
    // Only the limits counting a model.
    let e = f
        .limits
        .explain_rate_limits(pb::ExplainRateLimitsRequest {
            api_key_id: key_id.clone(),
            model: "claude-test".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.standings.len(), 2, "the key's limit is for another model");
    let e = f
        .limits
        .explain_rate_limits(pb::ExplainRateLimitsRequest {
            api_key_id: key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.standings.len(), 3, "a key's own limits and its owner's");
    assert_eq!(
        e.standings[2].explanation,
        "key laptop output tokens/min for claude-other: 500 of 500 left"
    );
    // Explaining does not write the refilled level back.
    let level: i64 =
        sqlx::query_scalar("SELECT level_scaled FROM rate_buckets WHERE limit_id = $1")
            .bind(Uuid::parse_str(&group.id).unwrap())
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!(level, 5 * 60_000);

    f.limits
        .delete_rate_limit(pb::DeleteRateLimitRequest {
            id: user.id.clone(),
        })
        .await
        .unwrap();
    let deleted = audit(&f.pool, "rate_limit.delete").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].1, format!("rate_limit/{}", user.id));
    let slot_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rate_slot_leases")
        .fetch_one(&f.pool)
        .await
        .unwrap();
    assert_eq!(slot_rows, 0, "a deleted limit's leases go with it");
    let again = f
        .limits
        .delete_rate_limit(pb::DeleteRateLimitRequest { id: user.id })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    let snapshot = crate::support::compile(&f.pool).await.unwrap();
    assert_eq!(snapshot.rate_limits.len(), 3);
    f.cp.stop().await;
}

#[tokio::test]
async fn invalid_limits_are_refused() {
    let mut f = Fixture::start().await;
    let mut admin = f.cp.admin().await;
    seed_catalogue(&mut admin).await;
    create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Ada",
        "ada@example.com",
        &[],
    )
    .await;
    let rpm = pb::RateLimitKind::RequestsPerMinute;
    let cases: Vec<(pb::RateLimitScope, &str, bool, pb::RateLimitKind, u64)> = vec![
        // per_member is for groups only.
        (pb::RateLimitScope::User, "ada@example.com", true, rpm, 10),
        (pb::RateLimitScope::Org, "", true, rpm, 10),
        // A limit of 0 (or absurdly large) is refused.
        (pb::RateLimitScope::Org, "", false, rpm, 0),
        (pb::RateLimitScope::Org, "", false, rpm, u64::MAX),
        // Unknown targets, a missing or superfluous scope_ref, no kind or scope.
        (pb::RateLimitScope::Group, "nobody", false, rpm, 10),
        (
            pb::RateLimitScope::User,
            "nobody@example.com",
            false,
            rpm,
            10,
        ),
        (pb::RateLimitScope::Key, "000", false, rpm, 10),
        (pb::RateLimitScope::Provider, "nowhere", false, rpm, 10),
        (pb::RateLimitScope::Group, "", false, rpm, 10),
        (pb::RateLimitScope::Org, "eng", false, rpm, 10),
        (
            pb::RateLimitScope::Org,
            "",
            false,
            pb::RateLimitKind::Unspecified,
            10,
        ),
        (pb::RateLimitScope::Unspecified, "", false, rpm, 10),
    ];
    for (scope, scope_ref, per_member, kind, limit) in cases {
        let err = f
            .try_set(scope, scope_ref, per_member, "", kind, limit)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{scope:?} {scope_ref} {per_member} {kind:?} {limit}: {}",
            err.message()
        );
    }
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM rate_limits")
        .fetch_one(&f.pool)
        .await
        .unwrap();
    assert_eq!(none, 0);
    let err = f
        .limits
        .explain_rate_limits(pb::ExplainRateLimitsRequest {
            user: "nobody@example.com".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut anonymous = RateLimitAdminClient::new(f.cp.channel().await);
    let err = anonymous
        .list_rate_limits(pb::ListRateLimitsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    f.cp.stop().await;
}

#[tokio::test]
async fn switching_a_group_limit_to_per_member_restarts_its_buckets() {
    let mut f = Fixture::start().await;
    let mut admin = f.cp.admin().await;
    seed_catalogue(&mut admin).await;
    let shared = f
        .set(
            pb::RateLimitScope::Group,
            "eng",
            pb::RateLimitKind::RequestsPerMinute,
            5,
        )
        .await;
    let r = f.lease("dp-a", vec![ask(&shared, 5, 5, 0)]).await;
    assert_eq!(only(&r).granted, 5);
    let member = f
        .try_set(
            pb::RateLimitScope::Group,
            "eng",
            true,
            "",
            pb::RateLimitKind::RequestsPerMinute,
            5,
        )
        .await
        .unwrap();
    assert_eq!(member.id, shared.id);
    assert!(member.per_member);
    let shared_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rate_buckets WHERE subject_id = ''")
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!(shared_rows, 0, "the shared bucket is gone");
    let r = f
        .lease("dp-a", vec![ask_subject(&member, "someone", 5, 5, 0)])
        .await;
    assert_eq!(only(&r).granted, 5, "each member starts with a full bucket");
    let updated = audit(&f.pool, "rate_limit.update").await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].2["after"]["per_member"], true);
    f.cp.stop().await;
}

#[tokio::test]
async fn long_expired_slot_leases_of_other_data_planes_are_cleared() {
    let mut f = Fixture::start().await;
    let slots = f
        .set(
            pb::RateLimitScope::Org,
            "",
            pb::RateLimitKind::ConcurrentRequests,
            4,
        )
        .await;
    f.lease("dp-dead", vec![ask(&slots, 2, 2, 0)]).await;
    f.clock.advance(Duration::minutes(10));
    f.lease("dp-a", vec![ask(&slots, 1, 1, 0)]).await;
    let count = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rate_slot_leases")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(
        count(f.pool.clone()).await,
        2,
        "a recently expired lease is kept"
    );
    f.clock.advance(Duration::hours(2));
    let r = f.lease("dp-a", vec![ask(&slots, 0, 0, 0)]).await;
    assert!(only(&r).lease_reset);
    assert_eq!(count(f.pool.clone()).await, 0);
    f.cp.stop().await;
}
