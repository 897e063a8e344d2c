//! PostgreSQL goes away and comes back under a running control plane and data plane (a private
//! cluster this test stops and restarts on the same port): requests keep being served on the
//! last policy, admin writes fail with `unavailable` and leave nothing behind, the control plane
//! reconnects without a restart, and every request served meanwhile is recorded exactly once.

use std::time::Duration;

use tollgate_e2e::postgres::OwnedCluster;
use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{Reply, Stack};
use tollgate_proto::v1 as pb;

use crate::support::{eventually, message_body, post_messages, usage_rows};

fn haiku() -> pb::UpsertModelRequest {
    pb::UpsertModelRequest {
        id: "claude-haiku-4-5".into(),
        display_name: "Claude Haiku 4.5".into(),
        max_input_tokens: 200_000,
    }
}

#[tokio::test]
async fn a_postgres_restart_loses_no_usage_and_admin_writes_fail_cleanly_meanwhile() {
    let mut cluster = OwnedCluster::start("tollgate-pg-outage-").await.unwrap();
    let stack = Stack::start_on_server(&cluster.admin_url()).await.unwrap();
    stack.fake.reply_with(Reply::message(SONNET, "hi", 3, 2));
    let dp = stack.data_plane().await.unwrap();
    let mut served = 0;
    for _ in 0..3 {
        let resp = post_messages(&dp.url, &stack.alice_key, message_body(SONNET, false)).await;
        assert_eq!(resp.status(), 200);
        served += 1;
    }

    cluster.stop().await.unwrap();
    // Requests go on, on the last policy, while their usage waits for the database.
    for _ in 0..4 {
        let resp = post_messages(&dp.url, &stack.alice_key, message_body(SONNET, true)).await;
        assert_eq!(resp.status(), 200);
        let _ = resp.text().await.unwrap();
        served += 1;
    }
    // An admin write fails, clearly and in bounded time.
    let mut admin = stack.admin().await.unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(30), admin.upsert_model(haiku()))
        .await
        .expect("an admin write during the outage answers within the pool's timeout")
        .expect_err("no database, no change");
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert!(failed.message().contains("database"), "{failed:?}");

    cluster.restart().await.unwrap();
    // The same control plane (not restarted) serves admin writes again…
    let recovered = eventually(Duration::from_secs(30), || {
        let mut admin = admin.clone();
        async move { admin.list_models(pb::ListModelsRequest {}).await.is_ok() }
    })
    .await;
    assert!(recovered, "the control plane reconnects without a restart");
    let models = admin
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    assert!(
        !models.iter().any(|m| m.id == "claude-haiku-4-5"),
        "the failed write left nothing behind"
    );
    admin.upsert_model(haiku()).await.unwrap();

    // …and every request served is recorded exactly once.
    let pool = stack.db.pool().await.unwrap();
    let complete = eventually(Duration::from_secs(30), || async {
        usage_rows(&pool).await.len() >= served
    })
    .await;
    let rows = usage_rows(&pool).await;
    assert!(complete, "{} of {served} usage records", rows.len());
    let mut ids: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), served, "one record per served request");
    assert_eq!(rows.len(), served);

    // The audit chain is intact across the outage.
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_entries")
        .fetch_one(&pool)
        .await
        .unwrap();
    let head: i64 = sqlx::query_scalar("SELECT seq FROM audit_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(entries, head, "no gap or half-written audit entry");
    pool.close().await;
    stack.finish().await;
    cluster.stop().await.unwrap();
}
