use tollgate_e2e::{Reply, Stack};

use crate::support::{client, error_of, post_messages};

#[tokio::test]
async fn bad_requests_get_clean_anthropic_errors() {
    let stack = Stack::start().await.unwrap();
    stack
        .fake
        .reply_with(Reply::message("claude-sonnet-5", "hi", 1, 1));
    let dp = stack
        .data_plane_with(|c| c.max_body_bytes = 64 * 1024)
        .await
        .unwrap();
    let key = &stack.alice_key;

    let resp = post_messages(&dp.url, key, "{\"model\": \"claude-sonnet-5\", ".into()).await;
    error_of(resp, 400, "invalid_request_error").await;

    let resp = post_messages(&dp.url, key, r#"{"max_tokens": 5, "messages": []}"#.into()).await;
    let msg = error_of(resp, 400, "invalid_request_error").await;
    assert!(msg.contains("model"), "{msg}");

    let resp = post_messages(&dp.url, key, r#"{"model": 42, "messages": []}"#.into()).await;
    error_of(resp, 400, "invalid_request_error").await;

    let huge = format!(
        r#"{{"model":"claude-sonnet-5","max_tokens":5,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(200 * 1024)
    );
    let resp = post_messages(&dp.url, key, huge).await;
    error_of(resp, 413, "request_too_large").await;

    let resp = client()
        .get(format!("{}/v1/nope", dp.url))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    error_of(resp, 404, "not_found_error").await;

    assert!(
        stack.fake.received().is_empty(),
        "no bad request reached the provider"
    );
    // The gateway still serves good requests afterwards.
    let resp = post_messages(
        &dp.url,
        key,
        crate::support::message_body("claude-sonnet-5", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    stack.finish().await;
}
