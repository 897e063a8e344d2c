//! `ExportUsage` and `ReconcileUsage`: per-request usage with cost over a range, paged in
//! `(started_at, request_id)` order, whose total equals the spend counters of the range, and
//! a per-counter reconciliation that shows a counter changed behind the ledger's back.

use chrono::{DateTime, TimeDelta, Utc};
use tollgate_proto::v1 as pb;
use tonic::Code;

use crate::audit_admin::audit_admin;
use crate::spend::{daily_counter, noon, org_daily_cap, spend_admin, usage};
use crate::support::{TestControlPlane, TestDb, create_key, create_principal, seed_catalogue};

#[tokio::test]
async fn usage_export_totals_equal_the_org_daily_counters_and_reconcile_per_counter() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;
    let alice = create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Alice",
        "alice@example.com",
        &["eng"],
    )
    .await;
    let key = create_key(&mut admin, "alice@example.com", "laptop").await;
    let key_id = key.key.unwrap().id;
    let provider_id = admin
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers[0]
        .id
        .clone();
    let mut spend = spend_admin(&cp).await;
    let org = org_daily_cap(&mut spend, 1_000_000_000).await;

    let day1 = noon();
    let day2 = noon() + TimeDelta::days(1);
    let day0 = noon() - TimeDelta::days(1);
    let record = |at: DateTime<Utc>, cost: u64| {
        let mut r = usage("dp-1", cost, &[daily_counter(&org, at).to_pb()]);
        r.started_at_unix_ms = at.timestamp_millis();
        r.principal_id = alice.id.clone();
        r.api_key_id = key_id.clone();
        r.provider_id = provider_id.clone();
        r
    };
    let records = vec![
        record(day0, 7),
        record(day1, 100_000),
        // Same start: ordered by request id.
        record(day1, 250_000),
        record(day1 + TimeDelta::minutes(5), 1),
        record(day2, 40_000),
        record(day2 + TimeDelta::hours(3), 0),
    ];
    let mut sync = cp.sync().await;
    sync.report_usage(pb::UsageBatch {
        records: records.clone(),
    })
    .await
    .unwrap();

    let from = day1.timestamp() - 12 * 3600;
    let to = day2.timestamp() + 12 * 3600;
    let mut audit = audit_admin(&cp).await;
    let mut exported = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = audit
            .export_usage(pb::ExportUsageRequest {
                from_unix_s: from,
                to_unix_s: to,
                cursor: cursor.clone(),
                limit: 2,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.records.len() <= 2);
        exported.extend(page.records);
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!((exported.len(), pages), (5, 3));
    let mut expected: Vec<(i64, String)> = records[1..]
        .iter()
        .map(|r| (r.started_at_unix_ms, r.request_id.clone()))
        .collect();
    expected.sort();
    let order: Vec<(i64, String)> = exported
        .iter()
        .map(|r| (r.started_at_unix_ms, r.request_id.clone()))
        .collect();
    assert_eq!(order, expected);
    let first = &exported[0];
    assert_eq!(
        (
            first.principal.as_str(),
            first.email.as_str(),
            first.provider.as_str(),
            first.api_key_id.as_str(),
            first.principal_id.as_str(),
        ),
        (
            "Alice",
            "alice@example.com",
            "demo",
            key_id.as_str(),
            alice.id.as_str()
        )
    );
    assert_eq!(
        (first.model.as_str(), first.status, first.input_tokens),
        ("claude-test", 200, 10)
    );
    let exported_total: u64 = exported.iter().map(|r| r.cost_micro_usd).sum();
    assert_eq!(exported_total, 390_001);

    // The export's total equals the org's daily counters of the range, and each counter
    // equals what was charged to it.
    let rec = audit
        .reconcile_usage(pb::ReconcileUsageRequest {
            from_unix_s: from,
            to_unix_s: to,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((rec.usage_cost_micro_usd, rec.usage_requests), (390_001, 5));
    let counters: Vec<(i64, u64, u64, u64)> = rec
        .counters
        .iter()
        .map(|c| {
            assert_eq!(
                (c.budget_id.as_str(), c.subject_id.as_str()),
                (org.id.as_str(), "")
            );
            (
                c.window_start_unix_s,
                c.counter_spent_micro_usd,
                c.charged_micro_usd,
                c.charged_requests,
            )
        })
        .collect();
    let window = |t: DateTime<Utc>| daily_counter(&org, t).window_start.timestamp();
    assert_eq!(
        counters,
        vec![
            (window(day1), 350_001, 350_001, 3),
            (window(day2), 40_000, 40_000, 2)
        ]
    );
    let counter_total: u64 = rec.counters.iter().map(|c| c.counter_spent_micro_usd).sum();
    assert_eq!(counter_total, exported_total);

    // A counter changed outside the ledger no longer reconciles.
    sqlx::query(
        "UPDATE spend_counters SET spent_micro_usd = spent_micro_usd + 5 WHERE window_start = $1",
    )
    .bind(daily_counter(&org, day2).window_start)
    .execute(&pool)
    .await
    .unwrap();
    let rec = audit
        .reconcile_usage(pb::ReconcileUsageRequest {
            from_unix_s: from,
            to_unix_s: to,
        })
        .await
        .unwrap()
        .into_inner();
    let off: Vec<_> = rec
        .counters
        .iter()
        .filter(|c| c.counter_spent_micro_usd != c.charged_micro_usd)
        .map(|c| {
            (
                c.window_start_unix_s,
                c.counter_spent_micro_usd,
                c.charged_micro_usd,
            )
        })
        .collect();
    assert_eq!(off, vec![(window(day2), 40_005, 40_000)]);

    // Open bounds export everything; bad bounds and cursors are refused.
    let all = audit
        .export_usage(pb::ExportUsageRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((all.records.len(), all.next_cursor.as_str()), (6, ""));
    for bad in [
        pb::ExportUsageRequest {
            cursor: "not-a-cursor".to_owned(),
            ..Default::default()
        },
        pb::ExportUsageRequest {
            from_unix_s: to,
            to_unix_s: from,
            ..Default::default()
        },
        pb::ExportUsageRequest {
            from_unix_s: -1,
            ..Default::default()
        },
    ] {
        let err = audit.export_usage(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let err = audit
        .reconcile_usage(pb::ReconcileUsageRequest {
            from_unix_s: to,
            to_unix_s: from,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    cp.stop().await;
}
