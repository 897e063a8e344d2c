use chrono::{TimeZone, Utc};
use tollgate_proto::v1 as pb;
use tonic::Code;
use uuid::Uuid;

use crate::support::{TestControlPlane, TestDb, create_key, create_principal, seed_catalogue};

fn record(started_at_unix_ms: i64, input_tokens: u64) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: Uuid::now_v7().to_string(),
        data_plane_id: "dp-1".to_owned(),
        started_at_unix_ms,
        duration_ms: 120,
        model: "claude-test".to_owned(),
        upstream_model: "claude-test".to_owned(),
        endpoint: "/v1/messages".to_owned(),
        stream: true,
        status: 200,
        outcome: pb::UsageOutcome::Complete as i32,
        input_tokens,
        output_tokens: 2 * input_tokens,
        cache_creation_5m_tokens: 1,
        cache_creation_1h_tokens: 2,
        cache_read_tokens: 3,
        ..Default::default()
    }
}

fn ms(y: i32, m: u32, d: u32, h: u32) -> i64 {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
        .unwrap()
        .timestamp_millis()
}

async fn stored(db: &TestDb) -> i64 {
    let pool = db.pool().await;
    let n = sqlx::query_scalar("SELECT count(*) FROM usage_records")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

#[tokio::test]
async fn resent_usage_batch_is_stored_once() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut sync = cp.sync().await;
    let batch = pb::UsageBatch {
        records: (0..3).map(|i| record(ms(2026, 1, 5, 10), i)).collect(),
    };
    let ack = sync.report_usage(batch.clone()).await.unwrap().into_inner();
    assert_eq!((ack.inserted, ack.duplicates), (3, 0));
    let ack = sync.report_usage(batch.clone()).await.unwrap().into_inner();
    assert_eq!((ack.inserted, ack.duplicates), (0, 3));

    // A record repeated within one batch is stored once too.
    let again = record(ms(2026, 1, 5, 10), 9);
    let ack = sync
        .report_usage(pb::UsageBatch {
            records: vec![again.clone(), again, batch.records[0].clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ack.inserted, ack.duplicates), (1, 2));
    assert_eq!(stored(&db).await, 4);
    cp.stop().await;
}

#[tokio::test]
async fn usage_batch_with_an_invalid_record_is_refused_whole() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut sync = cp.sync().await;
    let mut bad = record(ms(2026, 1, 5, 10), 1);
    bad.request_id = "not-a-uuid".to_owned();
    let err = sync
        .report_usage(pb::UsageBatch {
            records: vec![record(ms(2026, 1, 5, 10), 1), bad],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("usage record 1"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("not-a-uuid"), "{}", err.message());

    let mut huge = record(ms(2026, 1, 5, 10), 1);
    huge.input_tokens = u64::MAX;
    let err = sync
        .report_usage(pb::UsageBatch {
            records: vec![huge],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(stored(&db).await, 0);
    cp.stop().await;
}

#[tokio::test]
async fn query_usage_groups_by_the_requested_dimensions_in_order() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;
    let ada = create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Ada",
        "ada@example.com",
        &["eng"],
    )
    .await;
    let ci = create_principal(
        &mut admin,
        pb::PrincipalKind::ServiceAccount,
        "ci",
        "",
        &["eng"],
    )
    .await;
    let ada_key = create_key(&mut admin, "Ada", "laptop").await.key.unwrap();
    let ci_key = create_key(&mut admin, "ci", "deploy").await.key.unwrap();
    let provider = admin
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers
        .remove(0);

    let with =
        |mut r: pb::UsageRecord, who: &pb::PrincipalInfo, key: &pb::ApiKeyInfo, model: &str| {
            r.principal_id = who.id.clone();
            r.api_key_id = key.id.clone();
            r.provider_id = provider.id.clone();
            r.model = model.to_owned();
            r
        };
    let records = vec![
        with(
            record(ms(2026, 1, 5, 23), 10),
            &ada,
            &ada_key,
            "claude-test",
        ),
        with(record(ms(2026, 1, 5, 9), 20), &ada, &ada_key, "claude-test"),
        with(record(ms(2026, 1, 6, 1), 30), &ada, &ada_key, "other-model"),
        with(record(ms(2026, 1, 6, 2), 40), &ci, &ci_key, "claude-test"),
    ];
    cp.sync()
        .await
        .report_usage(pb::UsageBatch { records })
        .await
        .unwrap();

    let query = |group_by: Vec<pb::UsageDimension>| pb::QueryUsageRequest {
        group_by: group_by.into_iter().map(|d| d as i32).collect(),
        ..Default::default()
    };
    let rows = |r: pb::QueryUsageResponse| -> Vec<(Vec<String>, u64, u64)> {
        r.rows
            .into_iter()
            .map(|row| (row.dimensions, row.requests, row.input_tokens))
            .collect()
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();

    let total = admin.query_usage(query(vec![])).await.unwrap().into_inner();
    assert_eq!(total.rows.len(), 1);
    let t = &total.rows[0];
    assert_eq!((t.requests, t.input_tokens, t.output_tokens), (4, 100, 200));
    assert_eq!(
        (
            t.cache_creation_5m_tokens,
            t.cache_creation_1h_tokens,
            t.cache_read_tokens
        ),
        (4, 8, 12)
    );

    use pb::UsageDimension::{Day, Key, Model, Principal, Provider};
    let by = admin
        .query_usage(query(vec![Principal, Model]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by.group_by, vec![Principal as i32, Model as i32]);
    assert_eq!(
        rows(by),
        vec![
            (s(&["Ada", "claude-test"]), 2, 30),
            (s(&["Ada", "other-model"]), 1, 30),
            (s(&["ci", "claude-test"]), 1, 40),
        ]
    );

    let by = admin
        .query_usage(query(vec![Day, Provider]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rows(by),
        vec![
            (s(&["2026-01-05", "demo"]), 2, 30),
            (s(&["2026-01-06", "demo"]), 2, 70)
        ]
    );

    let by = admin
        .query_usage(query(vec![Key]))
        .await
        .unwrap()
        .into_inner();
    let mut expected = vec![
        (vec![ada_key.id.clone()], 3, 60),
        (vec![ci_key.id.clone()], 1, 40),
    ];
    expected.sort();
    assert_eq!(rows(by), expected);

    // Filters: half-open time range, principal by email, model.
    let filtered = admin
        .query_usage(pb::QueryUsageRequest {
            from_unix_s: ms(2026, 1, 5, 12) / 1000,
            to_unix_s: ms(2026, 1, 6, 2) / 1000,
            group_by: vec![Day as i32],
            principal: "ada@example.com".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rows(filtered),
        vec![(s(&["2026-01-05"]), 1, 10), (s(&["2026-01-06"]), 1, 30)]
    );
    let filtered = admin
        .query_usage(pb::QueryUsageRequest {
            model: "other-model".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rows(filtered), vec![(vec![], 1, 30)]);

    let err = admin.query_usage(query(vec![Day, Day])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = admin
        .query_usage(pb::QueryUsageRequest {
            principal: "nobody".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    cp.stop().await;
}
