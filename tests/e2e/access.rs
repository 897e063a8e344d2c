use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::{Reply, Stack};
use tollgate_proto::v1 as pb;

use crate::support::{client, error_of, eventually, message_body, post_messages};

#[tokio::test]
async fn model_outside_the_callers_groups_is_refused_naming_the_model() {
    let stack = Stack::start().await.unwrap();
    stack
        .fake
        .reply_with(Reply::message("claude-opus-4-8", "hi", 1, 1));
    let dp = stack.data_plane().await.unwrap();
    let resp = post_messages(
        &dp.url,
        &stack.alice_key,
        message_body("claude-opus-4-8", false),
    )
    .await;
    let msg = error_of(resp, 400, "invalid_request_error").await;
    assert!(msg.contains("claude-opus-4-8"), "{msg}");
    let resp = post_messages(&dp.url, &stack.alice_key, message_body("gpt-9", false)).await;
    let msg = error_of(resp, 400, "invalid_request_error").await;
    assert!(msg.contains("gpt-9"), "{msg}");
    assert!(
        stack.fake.received().is_empty(),
        "nothing reached the provider"
    );

    // Granting the model takes effect live.
    stack
        .admin()
        .await
        .unwrap()
        .set_group_models(pb::SetGroupModelsRequest {
            group: "eng".into(),
            allowed_models: vec!["claude-sonnet-5".into(), "claude-opus-4-8".into()],
        })
        .await
        .unwrap();
    let granted = eventually(Duration::from_secs(5), || async {
        post_messages(
            &dp.url,
            &stack.alice_key,
            message_body("claude-opus-4-8", false),
        )
        .await
        .status()
            == 200
    })
    .await;
    assert!(granted);
    stack.finish().await;
}

#[tokio::test]
async fn models_endpoint_lists_only_the_callers_models() {
    let stack = Stack::start().await.unwrap();
    let dp = stack.data_plane().await.unwrap();
    let list = |key: String| {
        let url = format!("{}/v1/models?limit=1000", dp.url);
        async move {
            let resp = client()
                .get(url)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(stack.alice_key.clone()).await, ["claude-sonnet-5"]);
    assert_eq!(
        list(stack.bot_key.clone()).await,
        ["claude-opus-4-8", "claude-sonnet-5"]
    );
    let hello = client()
        .head(format!("{}/api/hello", dp.url))
        .send()
        .await
        .unwrap();
    assert!(hello.status().is_success());
    stack.finish().await;
}
