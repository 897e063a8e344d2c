//! `SpendAdmin`: budget CRUD and its errors, settings, the snapshot, explain and reports.

use chrono::{TimeZone, Utc};
use tollgate_proto::v1 as pb;
use tonic::Code;
use uuid::Uuid;

use super::{daily_counter, set_budget, spend_admin, usage};
use crate::support::{TestControlPlane, TestDb, create_key, create_principal, seed_catalogue};

fn budget_request(scope: pb::BudgetScope, scope_ref: &str, limit: u64) -> pb::SetBudgetRequest {
    pb::SetBudgetRequest {
        scope: scope as i32,
        scope_ref: scope_ref.to_owned(),
        period: pb::BudgetPeriod::Daily as i32,
        limit_micro_usd: limit,
        ..Default::default()
    }
}

#[tokio::test]
async fn budget_crud_resolves_targets_refuses_bad_ones_and_replaces_duplicates() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let eng = seed_catalogue(&mut admin).await;
    let alice = create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Alice",
        "alice@example.com",
        &["eng"],
    )
    .await;
    let mut spend = spend_admin(&cp).await;

    let err = spend
        .set_budget(budget_request(pb::BudgetScope::Group, "nope", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut per_member_user = budget_request(pb::BudgetScope::User, "alice@example.com", 1);
    per_member_user.per_member = true;
    let err = spend.set_budget(per_member_user).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = spend
        .set_budget(budget_request(pb::BudgetScope::User, "bob@example.com", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = spend
        .set_budget(budget_request(
            pb::BudgetScope::Key,
            &Uuid::now_v7().to_string(),
            1,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = spend
        .set_budget(budget_request(pb::BudgetScope::Unspecified, "", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let first = spend
        .set_budget(budget_request(pb::BudgetScope::Group, "eng", 20_000_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.scope_id.as_str(), first.scope_name.as_str()),
        (eng.id.as_str(), "eng")
    );
    assert_eq!(first.alert_thresholds_percent, vec![50, 80, 100]);
    let again = budget_request(pb::BudgetScope::Group, &eng.id, 30_000_000);
    let replaced = spend.set_budget(again).await.unwrap().into_inner();
    assert_eq!(replaced.id, first.id);
    assert_eq!(replaced.limit_micro_usd, 30_000_000);
    assert!(!replaced.per_member);
    // Switching pool <-> per member would restart the window's spend: refused.
    let mut switch = budget_request(pb::BudgetScope::Group, &eng.id, 30_000_000);
    switch.per_member = true;
    let err = spend.set_budget(switch).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("per-member"), "{}", err.message());
    let org1 = spend
        .set_budget(budget_request(pb::BudgetScope::Org, "", 1))
        .await
        .unwrap()
        .into_inner();
    let org2 = spend
        .set_budget(budget_request(pb::BudgetScope::Org, "", 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(org1.id, org2.id);
    let user = spend
        .set_budget(budget_request(pb::BudgetScope::User, &alice.id, 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.scope_name, "alice@example.com");

    let list = spend
        .list_budgets(pb::ListBudgetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .budgets;
    assert_eq!(list.len(), 3);

    // The snapshot carries the budgets and default settings.
    let pool = db.pool().await;
    let snapshot = crate::support::compile(&pool).await.unwrap();
    assert_eq!(snapshot.budgets.len(), 3);
    assert_eq!(snapshot.budget_settings.unwrap().lease_ttl_s, 30);

    spend
        .delete_budget(pb::DeleteBudgetRequest {
            id: user.id.clone(),
        })
        .await
        .unwrap();
    let err = spend
        .delete_budget(pb::DeleteBudgetRequest { id: user.id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let settings = spend
        .get_budget_settings(pb::GetBudgetSettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settings.outage_mode, pb::OutageMode::Closed as i32);
    assert!(!settings.alert_webhook_secret_set);
    let settings = spend
        .set_budget_settings(pb::SetBudgetSettingsRequest {
            outage_mode: pb::OutageMode::Open as i32,
            lease_ttl_s: 60,
            output_estimate_max_tokens: 4096,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            settings.outage_mode,
            settings.lease_ttl_s,
            settings.output_estimate_max_tokens
        ),
        (pb::OutageMode::Open as i32, 60, 4096)
    );
    let err = spend
        .set_budget_settings(pb::SetBudgetSettingsRequest {
            lease_ttl_s: 7200,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let snapshot = crate::support::compile(&pool).await.unwrap();
    let s = snapshot.budget_settings.unwrap();
    assert_eq!(
        (s.outage_mode, s.lease_ttl_s, s.output_estimate_max_tokens),
        (pb::OutageMode::Open as i32, 60, 4096)
    );
}

#[tokio::test]
async fn explain_shows_every_applicable_cap_and_which_blocks() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;
    admin
        .create_group(pb::CreateGroupRequest {
            name: "ops".to_owned(),
            allowed_models: vec![],
        })
        .await
        .unwrap();
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
    // Alice signed in with `ops` from the IdP (a group she is not a member of otherwise).
    let pool = db.pool().await;
    sqlx::query("INSERT INTO sessions (id, principal_id, email, name, groups) VALUES ($1, $2, 'alice@example.com', 'Alice', '{ops}')")
        .bind(Uuid::now_v7())
        .bind(Uuid::parse_str(&alice.id).unwrap())
        .execute(&pool)
        .await
        .unwrap();

    let mut spend = spend_admin(&cp).await;
    set_budget(
        &mut spend,
        pb::BudgetScope::Org,
        "",
        pb::BudgetPeriod::Monthly,
        500_000_000,
    )
    .await;
    set_budget(
        &mut spend,
        pb::BudgetScope::Group,
        "eng",
        pb::BudgetPeriod::Daily,
        20_000_000,
    )
    .await;
    set_budget(
        &mut spend,
        pb::BudgetScope::Group,
        "ops",
        pb::BudgetPeriod::Weekly,
        50_000_000,
    )
    .await;
    let user = set_budget(
        &mut spend,
        pb::BudgetScope::User,
        "alice@example.com",
        pb::BudgetPeriod::Daily,
        1_000_000,
    )
    .await;
    set_budget(
        &mut spend,
        pb::BudgetScope::Key,
        &key_id,
        pb::BudgetPeriod::Daily,
        3_000_000,
    )
    .await;

    // Alice has spent her whole daily user cap.
    let mut sync = cp.sync().await;
    sync.report_usage(pb::UsageBatch {
        records: vec![usage(
            "dp-1",
            1_000_000,
            &[daily_counter(&user, Utc::now()).to_pb()],
        )],
    })
    .await
    .unwrap();

    let e = spend
        .explain_budget(pb::ExplainBudgetRequest {
            user: "alice@example.com".to_owned(),
            api_key_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.principal_id, alice.id);
    assert_eq!(e.group_names, vec!["eng", "ops"]);
    assert_eq!(e.standings.len(), 5);
    assert!(e.blocked);
    let blocking: Vec<_> = e.standings.iter().filter(|s| s.blocks).collect();
    assert_eq!(blocking.len(), 1);
    assert_eq!(blocking[0].budget.as_ref().unwrap().id, user.id);
    assert_eq!(blocking[0].spent_micro_usd, 1_000_000);
    assert_eq!(blocking[0].remaining_micro_usd, 0);
    assert!(
        blocking[0]
            .explanation
            .starts_with("user alice@example.com daily: $1.00 of $1.00 used"),
        "{}",
        blocking[0].explanation
    );
    assert!(blocking[0].explanation.contains("blocks"));
    let eng = e
        .standings
        .iter()
        .find(|s| s.budget.as_ref().unwrap().scope_name == "eng")
        .unwrap();
    assert!(!eng.blocks);
    assert!(
        eng.explanation
            .starts_with("group eng (shared pool) daily: $0.00 of $20.00 used"),
        "{}",
        eng.explanation
    );

    // By key: the key's caps and its owner's (member groups only: keys carry no session groups).
    let e = spend
        .explain_budget(pb::ExplainBudgetRequest {
            user: String::new(),
            api_key_id: key_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.group_names, vec!["eng"]);
    assert_eq!(e.standings.len(), 4);

    let err = spend
        .explain_budget(pb::ExplainBudgetRequest {
            user: "nobody@example.com".to_owned(),
            api_key_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn spend_report_groups_cost_by_user_group_model_and_day() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let eng = seed_catalogue(&mut admin).await;
    let ops = admin
        .create_group(pb::CreateGroupRequest {
            name: "ops".to_owned(),
            allowed_models: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let alice = create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Alice",
        "alice@example.com",
        &["eng", "ops"],
    )
    .await;
    let bob = create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Bob",
        "bob@example.com",
        &["eng"],
    )
    .await;
    let day = |d: u32| {
        Utc.with_ymd_and_hms(2026, 11, d, 9, 0, 0)
            .unwrap()
            .timestamp_millis()
    };
    let record = |who: &pb::PrincipalInfo, groups: Vec<String>, model: &str, at: i64, cost: u64| {
        let mut r = usage("dp-1", cost, &[]);
        r.principal_id = who.id.clone();
        r.group_ids = groups;
        r.model = model.to_owned();
        r.started_at_unix_ms = at;
        r
    };
    let mut sync = cp.sync().await;
    sync.report_usage(pb::UsageBatch {
        records: vec![
            record(
                &alice,
                vec![eng.id.clone(), ops.id.clone()],
                "claude-test",
                day(20),
                100,
            ),
            record(
                &alice,
                vec![eng.id.clone(), ops.id.clone()],
                "claude-other",
                day(21),
                200,
            ),
            record(&bob, vec![eng.id.clone()], "claude-test", day(21), 400),
            record(&bob, vec![eng.id.clone()], "claude-test", day(25), 800),
        ],
    })
    .await
    .unwrap();
    let mut spend = spend_admin(&cp).await;
    let range = |group_by: Vec<pb::SpendDimension>| pb::SpendReportRequest {
        from_unix_s: day(20) / 1000 - 3600,
        to_unix_s: day(24) / 1000,
        group_by: group_by.into_iter().map(|d| d as i32).collect(),
        ..Default::default()
    };
    let rows = |r: pb::SpendReportResponse| -> Vec<(Vec<String>, u64, u64)> {
        r.rows
            .into_iter()
            .map(|row| (row.dimensions, row.requests, row.cost_micro_usd))
            .collect()
    };

    let by_user = spend
        .spend_report(range(vec![pb::SpendDimension::User]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_user.total_cost_micro_usd, 700);
    assert_eq!(
        rows(by_user),
        vec![
            (vec!["alice@example.com".to_owned()], 2, 300),
            (vec!["bob@example.com".to_owned()], 1, 400)
        ]
    );
    let by_group = spend
        .spend_report(range(vec![pb::SpendDimension::Group]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_group.total_cost_micro_usd, 700);
    assert_eq!(
        rows(by_group),
        vec![
            (vec!["eng".to_owned()], 3, 700),
            (vec!["ops".to_owned()], 2, 300)
        ]
    );
    let series = spend
        .spend_report(pb::SpendReportRequest {
            user: "alice@example.com".to_owned(),
            ..range(vec![pb::SpendDimension::Day, pb::SpendDimension::Model])
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rows(series),
        vec![
            (
                vec!["2026-11-20".to_owned(), "claude-test".to_owned()],
                1,
                100
            ),
            (
                vec!["2026-11-21".to_owned(), "claude-other".to_owned()],
                1,
                200
            ),
        ]
    );
    let ops_only = spend
        .spend_report(pb::SpendReportRequest {
            group: "ops".to_owned(),
            ..range(vec![pb::SpendDimension::Group])
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rows(ops_only), vec![(vec!["ops".to_owned()], 2, 300)]);
    let err = spend
        .spend_report(pb::SpendReportRequest {
            group: "nope".to_owned(),
            ..range(vec![])
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Bob's month-to-date summary through `Sync`.
    let summary = sync
        .spend_summary(pb::SpendSummaryRequest {
            principal_id: bob.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(summary.month_micro_usd <= 1200);
}
