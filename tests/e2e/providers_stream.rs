//! Bedrock's AWS event stream translated to Anthropic SSE end to end: byte-level splits,
//! corrupted CRCs, exception frames and long silences.

use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::Stack;
use tollgate_e2e::fake_bedrock::{BedrockReply, EventStream};
use tollgate_e2e::stack::target;

use crate::providers_common::*;
use crate::support::sse_events;

/// `(event, parsed data)` without pings, and without Bedrock's invocation metrics.
fn normalised(body: &str) -> Vec<(String, Value)> {
    sse_events(body)
        .into_iter()
        .filter(|(e, _)| e != "ping")
        .map(|(e, d)| {
            let mut v: Value = serde_json::from_str(&d).unwrap_or_else(|_| panic!("not JSON: {d}"));
            if let Some(o) = v.as_object_mut() {
                o.remove("amazon-bedrock-invocationMetrics");
            }
            (e, v)
        })
        .collect()
}

async fn bedrock_stack() -> (Stack, Clouds) {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    stack
        .set_route(CLIENT_MODEL, vec![target("bedrock", BEDROCK_MODEL, None)])
        .await
        .unwrap();
    (stack, clouds)
}

#[tokio::test]
async fn bedrock_event_stream_in_one_byte_writes_yields_the_same_sse() {
    let (stack, clouds) = bedrock_stack().await;
    let dp = stack.data_plane().await.unwrap();
    let deltas = ["Split ", "at ", "every ", "byte"];

    clouds
        .bedrock
        .reply_with(BedrockReply::Stream(EventStream::standard(30, &deltas, 9)));
    let whole = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    assert_eq!(whole.status(), 200);
    let whole = whole.text().await.unwrap();

    clouds.bedrock.reply_with(BedrockReply::Stream(
        EventStream::standard(30, &deltas, 9).split_into(1, Duration::from_micros(300)),
    ));
    let split = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    assert_eq!(split.status(), 200);
    let split = split.text().await.unwrap();

    assert_eq!(
        assert_anthropic_stream(&split, CLIENT_MODEL),
        "Split at every byte"
    );
    assert_eq!(normalised(&whole), normalised(&split));
    assert_eq!(clouds.bedrock.completed_streams(), 2);

    let pool = stack.db.pool().await.unwrap();
    assert!(
        crate::support::eventually(Duration::from_secs(10), || async {
            let rows = usage_by_provider(&pool).await;
            rows.len() == 2 && rows.iter().all(|r| r.3 == 30 && r.4 == 9)
        })
        .await,
        "both streams metered from the decoded events"
    );
    pool.close().await;
    stack.finish().await;
}

#[tokio::test]
async fn corrupted_bedrock_frame_ends_the_stream_with_an_error_event() {
    let (stack, clouds) = bedrock_stack().await;
    let dp = stack.data_plane().await.unwrap();
    clouds.bedrock.reply_with(BedrockReply::Stream(
        EventStream::standard(5, &["one ", "two ", "three"], 3).corrupt_at(3),
    ));
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let events = sse_events(&body);
    for (event, data) in &events {
        let v: Value = serde_json::from_str(data).unwrap_or_else(|_| panic!("garbage: {body}"));
        assert_eq!(v["type"], event.as_str());
    }
    assert_eq!(events.first().unwrap().0, "message_start");
    assert_eq!(events.last().unwrap().0, "error", "{body}");
    assert!(!events.iter().any(|(e, _)| e == "message_stop"));
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert!(
        !names.contains(&"content_block_delta") || text_of(&events) == "one ",
        "nothing from or after the corrupted frame: {body}"
    );
    stack.finish().await;
}

#[tokio::test]
async fn bedrock_exception_frame_becomes_an_anthropic_error_event() {
    let (stack, clouds) = bedrock_stack().await;
    let dp = stack.data_plane().await.unwrap();
    clouds.bedrock.reply_with(BedrockReply::Stream(
        EventStream::standard(5, &["a", "b"], 3).exception_after(
            3,
            "throttlingException",
            "Too many tokens, please wait before trying again.",
        ),
    ));
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let events = sse_events(&body);
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error", "{body}");
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{data}");
    stack.finish().await;
}

#[tokio::test]
async fn data_plane_sends_pings_while_bedrock_is_silent() {
    let (stack, clouds) = bedrock_stack().await;
    let dp = stack.data_plane_with(fast_knobs).await.unwrap();
    clouds.bedrock.reply_with(BedrockReply::Stream(
        EventStream::standard(5, &["before ", "after"], 3)
            .pause_before(3, Duration::from_millis(2000)),
    ));
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert_eq!(assert_anthropic_stream(&body, CLIENT_MODEL), "before after");
    let events = sse_events(&body);
    let first_delta = events
        .iter()
        .position(|(e, _)| e == "content_block_delta")
        .unwrap();
    let second_delta = events
        .iter()
        .rposition(|(e, _)| e == "content_block_delta")
        .unwrap();
    let pings = events[first_delta..second_delta]
        .iter()
        .filter(|(e, _)| e == "ping")
        .count();
    assert!(
        pings >= 2,
        "pings during 2 s of silence with a 300 ms interval: {body}"
    );
    stack.finish().await;
}
