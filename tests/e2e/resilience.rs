use std::time::{Duration, Instant};

use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{Reply, Stack};
use tollgate_proto::v1 as pb;

use crate::support::{eventually, message_body, post_messages, usage_rows};

#[tokio::test]
async fn data_plane_keeps_serving_while_the_control_plane_is_down_and_ships_usage_later() {
    let mut stack = Stack::start().await.unwrap();
    stack.fake.reply_with(Reply::message(SONNET, "hi", 3, 2));
    let dp = stack.data_plane().await.unwrap();
    stack.stop_control_plane().await;
    for _ in 0..5 {
        let resp = post_messages(&dp.url, &stack.alice_key, message_body(SONNET, false)).await;
        assert_eq!(resp.status(), 200);
    }
    let resp = post_messages(&dp.url, "tg_unknown", message_body(SONNET, false)).await;
    assert_eq!(resp.status(), 401, "the last good policy is still enforced");

    stack.restart_control_plane().await.unwrap();
    let pool = stack.db.pool().await.unwrap();
    let shipped = eventually(Duration::from_secs(20), || async {
        usage_rows(&pool).await.len() == 5
    })
    .await;
    assert!(
        shipped,
        "usage recorded while the control plane was down arrives afterwards"
    );
    pool.close().await;
    stack.finish().await;
}

#[tokio::test]
async fn admin_change_reaches_every_data_plane_and_versions_increase() {
    let stack = Stack::start().await.unwrap();
    let one = stack.data_plane().await.unwrap();
    let two = stack.data_plane().await.unwrap();
    let before = stack.policy_version().await.unwrap();
    let started = Instant::now();
    stack
        .admin()
        .await
        .unwrap()
        .upsert_model(pb::UpsertModelRequest {
            id: "claude-haiku-4-5".into(),
            display_name: "Claude Haiku 4.5".into(),
            max_input_tokens: 0,
        })
        .await
        .unwrap();
    let after = stack.policy_version().await.unwrap();
    assert!(after > before);
    for dp in [&one, &two] {
        assert!(
            dp.handle()
                .wait_for_snapshot_version(after, Duration::from_secs(5))
                .await,
            "data plane reaches version {after}"
        );
    }
    eprintln!(
        "policy change propagated to two data planes in {:?}",
        started.elapsed()
    );
    stack.finish().await;
}
