//! Failover between providers before the first byte, never after it; `x-should-retry`;
//! circuit breakers that open on a broken target and recover.

use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::Stack;
use tollgate_e2e::fake_bedrock::{BedrockReply, EventStream};
use tollgate_e2e::fake_cloud::CloudReply;
use tollgate_e2e::stack::target;
use tollgate_proto::v1 as pb;

use crate::providers_common::*;
use crate::support::{error_of, eventually, sse_events};

async fn routed(first: &str, second: &str) -> (Stack, Clouds) {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    stack
        .set_route(
            CLIENT_MODEL,
            vec![
                target(first, upstream_of(first), Some(0)),
                target(second, upstream_of(second), Some(1)),
            ],
        )
        .await
        .unwrap();
    (stack, clouds)
}

#[tokio::test]
async fn bedrock_503_before_the_first_byte_fails_over_to_vertex_exactly_once() {
    let (stack, clouds) = routed("bedrock", "vertex").await;
    clouds
        .bedrock
        .reply_with(BedrockReply::service_unavailable());
    let dp = stack.data_plane().await.unwrap();

    assert_eq!(
        streamed_text(&dp.url, &stack.bot_key).await,
        "Hello from Vertex"
    );
    assert_eq!(clouds.bedrock.accepted().len(), 1, "one attempt at Bedrock");
    assert_eq!(clouds.vertex.accepted().len(), 1, "one attempt at Vertex");

    let pool = stack.db.pool().await.unwrap();
    let vertex_id = clouds.id("vertex").to_owned();
    let bedrock_id = clouds.id("bedrock").to_owned();
    assert!(
        eventually(Duration::from_secs(10), || async {
            let rows = usage_by_provider(&pool).await;
            rows.iter().any(|r| {
                r.0 == vertex_id && r.1 == VERTEX_MODEL && r.2 == 200 && r.3 == 13 && r.4 == 7
            })
        })
        .await,
        "the answer is metered to Vertex: {:?}",
        usage_by_provider(&pool).await
    );
    let rows = usage_by_provider(&pool).await;
    assert_eq!(
        rows.iter().filter(|r| r.3 > 0 || r.4 > 0).count(),
        1,
        "metered once: {rows:?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r.0 == bedrock_id)
            .all(|r| r.3 == 0 && r.4 == 0),
        "the failed Bedrock attempt bills nothing: {rows:?}"
    );
    pool.close().await;
    stack.finish().await;
}

#[tokio::test]
async fn foundry_529_before_the_first_byte_fails_over_to_bedrock() {
    let (stack, clouds) = routed("foundry", "bedrock").await;
    clouds.foundry.reply_with(CloudReply::anthropic_error(
        529,
        "overloaded_error",
        "Overloaded",
    ));
    let dp = stack.data_plane().await.unwrap();
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from Bedrock");
    assert_eq!(v["model"], CLIENT_MODEL);
    assert_eq!(clouds.foundry.accepted().len(), 1);
    assert_eq!(clouds.bedrock.accepted().len(), 1);
    stack.finish().await;
}

#[tokio::test]
async fn x_should_retry_false_from_the_first_target_stops_failover() {
    let (stack, clouds) = routed("foundry", "vertex").await;
    clouds.foundry.reply_with(
        CloudReply::anthropic_error(529, "overloaded_error", "Overloaded")
            .with_header("x-should-retry", "false"),
    );
    let dp = stack.data_plane().await.unwrap();
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, false),
    )
    .await;
    error_of(resp, 529, "overloaded_error").await;
    assert_eq!(clouds.foundry.accepted().len(), 1);
    assert_eq!(clouds.vertex.accepted().len(), 0, "no failover");
    stack.finish().await;
}

#[tokio::test]
async fn failure_after_the_first_byte_is_not_retried_and_ends_with_an_error_event() {
    let (stack, clouds) = routed("bedrock", "vertex").await;
    clouds.bedrock.reply_with(BedrockReply::Stream(
        EventStream::standard(5, &["partial ", "answer"], 3).exception_after(
            3,
            "serviceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
    ));
    let dp = stack.data_plane().await.unwrap();
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let events = sse_events(&body);
    assert_eq!(events.last().unwrap().0, "error", "{body}");
    assert_eq!(text_of(&events), "partial ");
    let (_, data) = events.last().unwrap();
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error", "{data}");
    assert_eq!(clouds.bedrock.accepted().len(), 1);
    assert_eq!(
        clouds.vertex.accepted().len(),
        0,
        "no retry after bytes flowed"
    );
    stack.finish().await;
}

#[tokio::test]
async fn slow_first_byte_times_out_and_fails_over() {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    let mut first = target("bedrock", BEDROCK_MODEL, Some(0));
    first.timeouts = Some(pb::Timeouts {
        connect_ms: 0,
        first_byte_ms: 500,
        idle_ms: 0,
    });
    stack
        .set_route(
            CLIENT_MODEL,
            vec![first, target("vertex", VERTEX_MODEL, Some(1))],
        )
        .await
        .unwrap();
    clouds.bedrock.set_headers_delay(Duration::from_secs(5));
    let dp = stack.data_plane().await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        streamed_text(&dp.url, &stack.bot_key).await,
        "Hello from Vertex"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    stack.finish().await;
}

fn bedrock_state(targets: &[pb::TargetStatus], bedrock_id: &str) -> Option<pb::BreakerState> {
    targets
        .iter()
        .find(|t| t.provider_id == bedrock_id || t.provider_name == "bedrock")
        .and_then(|t| t.health.as_ref())
        .and_then(|h| pb::BreakerState::try_from(h.state).ok())
}

#[tokio::test]
async fn broken_target_opens_its_breaker_and_recovers_after_the_cooldown() {
    let (stack, clouds) = routed("bedrock", "vertex").await;
    clouds
        .bedrock
        .reply_with(BedrockReply::service_unavailable());
    let dp = stack.data_plane_with(fast_knobs).await.unwrap();

    for _ in 0..5 {
        let resp = claude_code_request(
            &dp.url,
            &stack.bot_key,
            claude_code_body(CLIENT_MODEL, false),
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        clouds.bedrock.accepted().len(),
        2,
        "after 2 failures the breaker is open and Bedrock is skipped"
    );
    assert_eq!(clouds.vertex.accepted().len(), 5);

    let bedrock_id = clouds.id("bedrock").to_owned();
    let open = eventually(Duration::from_secs(15), || {
        let stack = &stack;
        let bedrock_id = bedrock_id.clone();
        async move {
            let targets = stack.provider_status().await.unwrap_or_default();
            bedrock_state(&targets, &bedrock_id) == Some(pb::BreakerState::Open)
        }
    })
    .await;
    assert!(
        open,
        "`providers status` shows the open breaker: {:?}",
        stack.provider_status().await
    );

    // Bedrock heals; after the cooldown one probe goes through and closes the breaker.
    clouds
        .bedrock
        .reply_with(BedrockReply::message("Hello from Bedrock again", 3, 2));
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from Bedrock again");
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, false),
    )
    .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from Bedrock again");
    assert_eq!(clouds.vertex.accepted().len(), 5, "Vertex no longer needed");

    let closed = eventually(Duration::from_secs(15), || {
        let stack = &stack;
        let bedrock_id = bedrock_id.clone();
        async move {
            let targets = stack.provider_status().await.unwrap_or_default();
            bedrock_state(&targets, &bedrock_id) == Some(pb::BreakerState::Closed)
        }
    })
    .await;
    assert!(closed, "the breaker closes again");
    stack.finish().await;
}
