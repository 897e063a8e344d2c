use std::time::Duration;

use tollgate_e2e::{Reply, Stack};
use tollgate_proto::v1 as pb;

use crate::support::{error_of, eventually, message_body, post_messages};

#[tokio::test]
async fn key_is_accepted_unknown_key_refused_and_revocation_applies_without_restart() {
    let stack = Stack::start().await.unwrap();
    stack
        .fake
        .reply_with(Reply::message("claude-sonnet-5", "hi", 10, 2));
    let dp = stack.data_plane().await.unwrap();
    let (key_id, key) = stack.create_key("alice@example.com").await.unwrap();
    let ok = eventually(Duration::from_secs(5), || async {
        post_messages(&dp.url, &key, message_body("claude-sonnet-5", false))
            .await
            .status()
            == 200
    })
    .await;
    assert!(ok, "a new key is accepted once its snapshot arrives");

    let resp = post_messages(
        &dp.url,
        "tg_not_a_key",
        message_body("claude-sonnet-5", false),
    )
    .await;
    error_of(resp, 401, "authentication_error").await;

    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", dp.url))
        .body(message_body("claude-sonnet-5", false))
        .send()
        .await
        .unwrap();
    error_of(resp, 401, "authentication_error").await;

    // Bearer works as well as x-api-key.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", dp.url))
        .bearer_auth(&stack.alice_key)
        .body(message_body("claude-sonnet-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    stack
        .admin()
        .await
        .unwrap()
        .revoke_api_key(pb::RevokeApiKeyRequest { id: key_id })
        .await
        .unwrap();
    let refused = eventually(Duration::from_secs(5), || async {
        post_messages(&dp.url, &key, message_body("claude-sonnet-5", false))
            .await
            .status()
            == 401
    })
    .await;
    assert!(
        refused,
        "revoked key is refused without restarting anything"
    );
    // Other keys are unaffected.
    let resp = post_messages(
        &dp.url,
        &stack.alice_key,
        message_body("claude-sonnet-5", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    stack.finish().await;
}

#[tokio::test]
async fn expired_key_is_refused_with_no_retry() {
    let stack = Stack::start().await.unwrap();
    let dp = stack.data_plane().await.unwrap();
    let resp = stack
        .admin()
        .await
        .unwrap()
        .create_api_key(pb::CreateApiKeyRequest {
            principal: "ci-bot".into(),
            name: "short".into(),
            expires_at_unix_s: chrono_now() + 1,
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = post_messages(
        &dp.url,
        &resp.secret,
        message_body("claude-sonnet-5", false),
    )
    .await;
    assert_eq!(resp.headers()["x-should-retry"], "false");
    error_of(resp, 401, "authentication_error").await;
    stack.finish().await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
