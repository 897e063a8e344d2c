//! `ReportUsage` settles into the ledger once; alerts fire once per window and reach the
//! webhook, signed.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;
use tollgate_proto::v1 as pb;

use super::{ask, daily_counter, lease_at, ledger, org_daily_cap, set_budget, spend_admin, usage};
use crate::support::{TestControlPlane, TestDb};

#[tokio::test]
async fn report_usage_charges_each_record_once_even_when_resent() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut spend = spend_admin(&cp).await;
    let org = org_daily_cap(&mut spend, 10_000_000).await;
    let weekly = set_budget(
        &mut spend,
        pb::BudgetScope::Org,
        "",
        pb::BudgetPeriod::Weekly,
        10_000_000,
    )
    .await;
    let now = Utc::now();
    let counter = daily_counter(&org, now);
    let week_counter = tollgate_control_plane::store::spend::Counter {
        budget_id: uuid::Uuid::parse_str(&weekly.id).unwrap(),
        subject_id: String::new(),
        window_start: chrono::DateTime::from_timestamp(
            tollgate_policy::Period::Weekly
                .window(now.timestamp())
                .start_unix_s,
            0,
        )
        .unwrap(),
    };
    let pool = db.pool().await;
    let held = lease_at(
        &pool,
        "dp-1",
        &[ask(&counter, 1_000_000, 1_000_000, 0)],
        now,
    )
    .await;
    assert!(held.granted);

    let gone = pb::CounterKey {
        budget_id: uuid::Uuid::now_v7().to_string(),
        subject_id: String::new(),
        window_start_unix_s: counter.window_start.timestamp(),
    };
    let charges = [counter.to_pb(), week_counter.to_pb(), gone];
    let batch = pb::UsageBatch {
        records: vec![
            usage("dp-1", 120_000, &charges),
            usage("dp-1", 30_000, &charges),
            usage("dp-1", 0, &charges),
        ],
    };
    let mut sync = cp.sync().await;
    let ack = sync.report_usage(batch.clone()).await.unwrap().into_inner();
    assert_eq!((ack.inserted, ack.duplicates), (3, 0));
    let ack = sync.report_usage(batch).await.unwrap().into_inner();
    assert_eq!((ack.inserted, ack.duplicates), (0, 3));

    for c in [&counter, &week_counter] {
        assert_eq!(ledger(&pool, c).await, (150_000, 150_000, 150_000));
    }
    let consumed: i64 = sqlx::query_scalar(
        "SELECT consumed_micro_usd FROM spend_leases WHERE data_plane_id = 'dp-1' AND budget_id = $1",
    )
    .bind(counter.budget_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(consumed, 150_000);
    // One charge per stored record and counter (zero-cost ones too); the charge to a budget
    // that no longer exists is dropped.
    let charges: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_charges")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(charges, 6);
    let (cost, source): (i64, String) =
        sqlx::query_as("SELECT sum(cost_micro_usd)::int8, min(price_source) FROM usage_records")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((cost, source.as_str()), (150_000, "catalogue"));

    // The lease sees the spend: 1_000_000 granted, 150_000 of it consumed.
    let state = lease_at(&pool, "dp-1", &[ask(&counter, 0, 0, 0)], now).await;
    assert_eq!(state.counters[0].spent, 150_000);
    assert_eq!(state.counters[0].leased, 850_000);
}

type Seen = (HeaderMap, Bytes);

async fn capture(State(tx): State<mpsc::UnboundedSender<Seen>>, headers: HeaderMap, body: Bytes) {
    let _ = tx.send((headers, body));
}

#[tokio::test]
async fn alert_thresholds_fire_once_per_window_and_reach_the_webhook_signed() {
    let (tx, mut rx) = mpsc::unbounded_channel::<Seen>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(capture)).with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut spend = spend_admin(&cp).await;
    let settings = spend
        .set_budget_settings(pb::SetBudgetSettingsRequest {
            alert_webhook_url: format!("http://{hook}/hook"),
            alert_webhook_secret: "s3cret".to_owned(),
            output_estimate_max_tokens: -1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(settings.alert_webhook_secret_set);
    assert_eq!(settings.lease_ttl_s, 30);
    let budget = spend
        .set_budget(pb::SetBudgetRequest {
            scope: pb::BudgetScope::Org as i32,
            period: pb::BudgetPeriod::Daily as i32,
            limit_micro_usd: 100_000,
            alert_thresholds_percent: vec![100, 50],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key = daily_counter(&budget, Utc::now()).to_pb();
    let mut sync = cp.sync().await;
    for cost in [60_000, 10_000, 30_000, 5_000] {
        sync.report_usage(pb::UsageBatch {
            records: vec![usage("dp-1", cost, std::slice::from_ref(&key))],
        })
        .await
        .unwrap();
    }

    let mut thresholds = Vec::new();
    for _ in 0..2 {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a webhook arrives")
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(&body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(headers["x-tollgate-signature"], expected.as_str());
        let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(payload["kind"], "spend.alert");
        assert_eq!(payload["budget"]["id"], budget.id.as_str());
        assert_eq!(payload["limit_usd"], "$0.10");
        thresholds.push((
            payload["threshold_percent"].as_i64().unwrap(),
            payload["spent_micro_usd"].as_i64().unwrap(),
        ));
    }
    thresholds.sort_unstable();
    assert_eq!(thresholds, vec![(50, 60_000), (100, 100_000)]);

    let pool = db.pool().await;
    let (alerts, audits): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM budget_alerts), \
         (SELECT count(*) FROM audit_entries WHERE action = 'spend.alert')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((alerts, audits), (2, 2));
    // Exactly the two threshold crossings were queued for the webhook.
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(queued, 2);
}
