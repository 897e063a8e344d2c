//! `Lease`: the cap holds under concurrency, asks are all-or-nothing, slices shrink near the
//! cap, unrenewed leases expire, releases return headroom, windows are validated.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use tokio::sync::Mutex;
use tollgate_control_plane::StoreError;
use tollgate_control_plane::store::spend::lease;
use tollgate_policy::Period;
use tollgate_proto::v1 as pb;

use super::{
    ask, daily_counter, lease_at, ledger, noon, org_daily_cap, set_budget, spend_admin, usage,
};
use crate::support::{TestControlPlane, TestDb};

const COST: u64 = 30_000;
const LIMIT: u64 = 1_000_000;

/// One simulated data plane: the local headroom its requests spend from, refilled by
/// `Lease` (one call at a time per data plane, like the real one).
struct DataPlane {
    id: String,
    headroom: Mutex<i64>,
}

/// A fresh control plane with one daily org cap, and a pool on its database.
struct OrgCap {
    _db: TestDb,
    cp: TestControlPlane,
    pool: sqlx::PgPool,
    org: pb::BudgetInfo,
}

impl OrgCap {
    async fn daily(limit: u64) -> Self {
        let db = TestDb::create().await;
        let cp = TestControlPlane::start(&db).await;
        let mut spend = spend_admin(&cp).await;
        let org = org_daily_cap(&mut spend, limit).await;
        let pool = db.pool().await;
        OrgCap {
            _db: db,
            cp,
            pool,
            org,
        }
    }
}

#[tokio::test]
async fn concurrent_leases_from_three_data_planes_never_exceed_the_limit() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut spend = spend_admin(&cp).await;
    let budget = org_daily_cap(&mut spend, LIMIT).await;
    let counter = daily_counter(&budget, Utc::now());
    let key = counter.to_pb();
    let planes: Vec<Arc<DataPlane>> = (0..3)
        .map(|i| {
            Arc::new(DataPlane {
                id: format!("dp-{i}"),
                headroom: Mutex::new(0),
            })
        })
        .collect();

    let mut tasks = Vec::new();
    for plane in &planes {
        for _ in 0..8 {
            let plane = plane.clone();
            let key = key.clone();
            let mut sync = cp.sync().await;
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0u64;
                loop {
                    {
                        let mut headroom = plane.headroom.lock().await;
                        let cost = i64::try_from(COST).unwrap();
                        if *headroom < cost {
                            let need = u64::try_from(cost - *headroom).unwrap();
                            let answer = sync
                                .lease(pb::LeaseRequest {
                                    data_plane_id: plane.id.clone(),
                                    asks: vec![pb::LeaseAsk {
                                        counter: Some(key.clone()),
                                        need_micro_usd: need,
                                        want_micro_usd: need.max(LIMIT / 20),
                                        release_micro_usd: 0,
                                    }],
                                })
                                .await
                                .unwrap()
                                .into_inner();
                            let state = &answer.counters[0];
                            assert!(
                                state.spent_micro_usd + state.leased_micro_usd <= LIMIT,
                                "spent {} + leased {} exceeds the limit",
                                state.spent_micro_usd,
                                state.leased_micro_usd
                            );
                            if !answer.granted {
                                return admitted;
                            }
                            assert!(state.granted_micro_usd >= need);
                            *headroom += i64::try_from(state.granted_micro_usd).unwrap();
                        }
                        *headroom -= cost;
                    }
                    sync.report_usage(pb::UsageBatch {
                        records: vec![usage(&plane.id, COST, std::slice::from_ref(&key))],
                    })
                    .await
                    .unwrap();
                    admitted += 1;
                }
            }));
        }
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }

    let pool = db.pool().await;
    let (spent, charged, recorded) = ledger(&pool, &counter).await;
    assert!(admitted * COST <= LIMIT, "{admitted} requests admitted");
    // Each data plane is left with less than one request's worth of headroom.
    assert!(
        admitted * COST > LIMIT - 3 * COST,
        "only {admitted} admitted"
    );
    assert_eq!(u64::try_from(spent).unwrap(), admitted * COST);
    assert_eq!(spent, charged);
    assert_eq!(spent, recorded);
    let granted: i64 = sqlx::query_scalar("SELECT sum(granted_micro_usd)::int8 FROM spend_leases")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(u64::try_from(granted).unwrap() <= LIMIT);
}

#[tokio::test]
async fn asks_are_all_or_nothing_across_counters() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut spend = spend_admin(&cp).await;
    let org = org_daily_cap(&mut spend, LIMIT).await;
    let mut admin = cp.admin().await;
    crate::support::seed_catalogue(&mut admin).await;
    let group = set_budget(
        &mut spend,
        pb::BudgetScope::Group,
        "eng",
        pb::BudgetPeriod::Daily,
        50_000,
    )
    .await;
    let pool = db.pool().await;
    let (a, b) = (daily_counter(&org, noon()), daily_counter(&group, noon()));

    let refused = lease_at(
        &pool,
        "dp-a",
        &[ask(&a, 60_000, 60_000, 0), ask(&b, 60_000, 60_000, 0)],
        noon(),
    )
    .await;
    assert!(!refused.granted);
    assert_eq!(refused.blocked_index, 1);
    assert!(
        refused
            .counters
            .iter()
            .all(|c| c.granted == 0 && c.leased == 0)
    );
    assert_eq!(refused.counters[1].limit, 50_000);

    // Refused again: still nothing held, and the cap-reached event was recorded once.
    lease_at(
        &pool,
        "dp-a",
        &[ask(&a, 60_000, 60_000, 0), ask(&b, 60_000, 60_000, 0)],
        noon(),
    )
    .await;
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_entries WHERE action = 'spend.cap_reached'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(events, 1);

    let granted = lease_at(
        &pool,
        "dp-a",
        &[ask(&a, 40_000, 40_000, 0), ask(&b, 40_000, 40_000, 0)],
        noon(),
    )
    .await;
    assert!(granted.granted);
    assert_eq!(granted.counters[0].granted, 40_000);
    assert_eq!(granted.counters[1].granted, 40_000);
}

#[tokio::test]
async fn slices_shrink_to_need_near_the_cap() {
    let cap = OrgCap::daily(LIMIT).await;
    let (pool, org) = (&cap.pool, &cap.org);
    let c = daily_counter(org, noon());
    let want = i64::try_from(LIMIT).unwrap();
    let mut grants = Vec::new();
    let mut total = 0;
    loop {
        let out = lease_at(pool, "dp-a", &[ask(&c, 10_000, want, 0)], noon()).await;
        if !out.granted {
            break;
        }
        total += out.counters[0].granted;
        assert_eq!(out.counters[0].leased, total);
        grants.push(out.counters[0].granted);
    }
    // A quarter of what remains each time, then exactly `need` once a quarter is smaller.
    assert_eq!(&grants[..3], &[250_000, 187_500, 140_625]);
    assert_eq!(
        grants.iter().rev().take(3).collect::<Vec<_>>(),
        vec![&10_000; 3]
    );
    assert!(total <= want && total > want - 10_000);
}

#[tokio::test]
async fn unrenewed_lease_expires_and_its_headroom_becomes_grantable_again() {
    let cap = OrgCap::daily(LIMIT).await;
    let (pool, org) = (&cap.pool, &cap.org);
    let c = daily_counter(org, noon());
    let all = i64::try_from(LIMIT).unwrap();

    let held = lease_at(pool, "dp-dead", &[ask(&c, all, all, 0)], noon()).await;
    assert!(held.granted);
    assert_eq!(held.counters[0].expires_at, noon() + Duration::seconds(30));
    let refused = lease_at(
        pool,
        "dp-live",
        &[ask(&c, 1, 1, 0)],
        noon() + Duration::seconds(29),
    )
    .await;
    assert!(!refused.granted);

    // The dead data plane never renews: after the TTL its slice counts for nothing.
    let later = noon() + Duration::seconds(31);
    let granted = lease_at(pool, "dp-live", &[ask(&c, 100_000, 100_000, 0)], later).await;
    assert!(granted.granted);
    assert_eq!(granted.counters[0].leased, 100_000);
    assert!(!granted.counters[0].lease_reset);

    // When it comes back, its lease is reset: earlier grants are gone.
    let back = lease_at(pool, "dp-dead", &[ask(&c, 0, 0, 0)], later).await;
    assert!(back.granted);
    assert!(back.counters[0].lease_reset);
    assert_eq!(back.counters[0].granted, 0);
    assert_eq!(back.counters[0].leased, 100_000);
}

#[tokio::test]
async fn released_headroom_is_grantable_to_others() {
    let cap = OrgCap::daily(LIMIT).await;
    let (pool, org) = (&cap.pool, &cap.org);
    let c = daily_counter(org, noon());
    let all = i64::try_from(LIMIT).unwrap();
    lease_at(pool, "dp-a", &[ask(&c, all, all, 0)], noon()).await;
    assert!(
        !lease_at(pool, "dp-b", &[ask(&c, 1, 1, 0)], noon())
            .await
            .granted
    );

    // A release larger than the unused headroom releases only that; it applies even when the
    // same call's grant is refused.
    let out = lease_at(pool, "dp-a", &[ask(&c, all, all, 400_000)], noon()).await;
    assert!(!out.granted);
    assert_eq!(out.counters[0].leased, 600_000);
    let out = lease_at(pool, "dp-b", &[ask(&c, 400_000, 400_000, 0)], noon()).await;
    assert!(out.granted);
    assert_eq!(out.counters[0].granted, 400_000);
    let out = lease_at(pool, "dp-a", &[ask(&c, 0, 0, 5 * all)], noon()).await;
    assert_eq!(out.counters[0].leased, 400_000);
}

#[tokio::test]
async fn window_validation_rejects_far_windows_and_accepts_the_next_within_the_skew() {
    let cap = OrgCap::daily(LIMIT).await;
    let (cp, pool, org) = (&cap.cp, &cap.pool, &cap.org);
    let tomorrow = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
    let next = daily_counter(org, tomorrow);

    // 200 s before midnight a data plane whose clock runs ahead may ask for tomorrow.
    let out = lease_at(
        pool,
        "dp-a",
        &[ask(&next, 1, 1, 0)],
        tomorrow - Duration::seconds(200),
    )
    .await;
    assert!(out.granted);
    // 400 s before, it may not; nor for a window days away.
    for (counter, now) in [
        (&next, tomorrow - Duration::seconds(400)),
        (&daily_counter(org, noon() - Duration::days(3)), noon()),
    ] {
        let err = lease::lease(pool, "dp-a", &[ask(counter, 1, 1, 0)], now)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
    }
    // Just after midnight, yesterday's window is still accepted.
    let yesterday = daily_counter(org, noon());
    assert_eq!(
        Period::Daily.window(noon().timestamp()).end_unix_s,
        tomorrow.timestamp()
    );
    let out = lease_at(
        pool,
        "dp-a",
        &[ask(&yesterday, 1, 1, 0)],
        tomorrow + Duration::seconds(100),
    )
    .await;
    assert!(out.granted);

    // Through gRPC a bad window is `invalid_argument`.
    let mut sync = cp.sync().await;
    let err = sync
        .lease(pb::LeaseRequest {
            data_plane_id: "dp-a".to_owned(),
            asks: vec![pb::LeaseAsk {
                counter: Some(daily_counter(org, noon() - Duration::days(30)).to_pb()),
                need_micro_usd: 1,
                want_micro_usd: 1,
                release_micro_usd: 0,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A pure renewal of a finished window (a long stream crossed midnight) is a no-op and
    // does not sink the renewal of the live lease in the same call.
    let today = daily_counter(org, tomorrow + Duration::hours(1));
    let out = lease_at(
        pool,
        "dp-a",
        &[ask(&today, 10, 10, 0)],
        tomorrow + Duration::hours(1),
    )
    .await;
    assert!(out.granted);
    let out = lease_at(
        pool,
        "dp-a",
        &[ask(&yesterday, 0, 0, 0), ask(&today, 0, 0, 0)],
        tomorrow + Duration::hours(1) + Duration::seconds(10),
    )
    .await;
    assert!(out.granted);
    assert_eq!(out.counters[0].granted, 0);
    assert_eq!(out.counters[0].limit, LIMIT as i64);
    assert_eq!(out.counters[1].leased, 10, "the live lease was renewed");
}

#[tokio::test]
async fn unknown_budget_is_granted_in_full_with_limit_zero() {
    let db = TestDb::create().await;
    let _cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let gone = tollgate_control_plane::store::spend::Counter {
        budget_id: uuid::Uuid::now_v7(),
        subject_id: String::new(),
        window_start: noon(),
    };
    let out = lease_at(&pool, "dp-a", &[ask(&gone, 5, 70, 0)], noon()).await;
    assert!(out.granted);
    assert_eq!((out.counters[0].granted, out.counters[0].limit), (70, 0));
}

#[tokio::test]
async fn concurrent_two_counter_asks_never_overgrant_either_counter() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    crate::support::seed_catalogue(&mut admin).await;
    let mut spend = spend_admin(&cp).await;
    let org = org_daily_cap(&mut spend, LIMIT).await;
    let group = set_budget(
        &mut spend,
        pb::BudgetScope::Group,
        "eng",
        pb::BudgetPeriod::Daily,
        LIMIT / 2,
    )
    .await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(12)
        .connect(&db.url)
        .await
        .unwrap();
    let (a, b) = (daily_counter(&org, noon()), daily_counter(&group, noon()));
    let mut tasks = Vec::new();
    for t in 0..24 {
        let (pool, a, b) = (pool.clone(), a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let plane = format!("dp-{}", t % 3);
            // Alternate the ask order: the store locks in counter order regardless.
            let asks = if t % 2 == 0 {
                vec![ask(&a, 20_000, 60_000, 0), ask(&b, 20_000, 60_000, 0)]
            } else {
                vec![ask(&b, 20_000, 60_000, 0), ask(&a, 20_000, 60_000, 0)]
            };
            let mut grants = 0;
            loop {
                let out = lease_at(&pool, &plane, &asks, noon()).await;
                if !out.granted {
                    return grants;
                }
                assert!(out.counters.iter().all(|c| c.granted >= 20_000));
                grants += 1;
            }
        }));
    }
    let mut calls = 0;
    for task in tasks {
        calls += task.await.unwrap();
    }
    let leased = |c: &tollgate_control_plane::store::spend::Counter| {
        let pool = pool.clone();
        let c = c.clone();
        async move {
            let sum: i64 = sqlx::query_scalar(
                "SELECT COALESCE(sum(granted_micro_usd), 0)::int8 FROM spend_leases \
                 WHERE budget_id = $1",
            )
            .bind(c.budget_id)
            .fetch_one(&pool)
            .await
            .unwrap();
            sum
        }
    };
    let (on_a, on_b) = (leased(&a).await, leased(&b).await);
    assert!(on_a <= i64::try_from(LIMIT).unwrap(), "{on_a}");
    assert!(on_b <= i64::try_from(LIMIT / 2).unwrap(), "{on_b}");
    // The group cap ran out first (within one need of its limit); every granted call got
    // at least `need` on both counters.
    assert!(on_b > i64::try_from(LIMIT / 2).unwrap() - 20_000, "{on_b}");
    assert!(on_a >= calls * 20_000);
}
