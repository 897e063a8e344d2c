use tollgate_e2e::stack::{OPUS, OPUS_UPSTREAM, SONNET};
use tollgate_e2e::{Reply, Stack};

use crate::support::{client, sse_events};

/// A Claude Code-shaped body: fields a closed schema would reject, odd spacing, a `system`
/// array whose bytes must survive untouched.
fn claude_code_body(model: &str) -> String {
    format!(
        r#"{{"model": "{model}",  "max_tokens":32000,"stream":true,
 "system":[{{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.328;"}}],
 "messages":[{{"role":"system","content":"odd"}},{{"role":"user","content":"héllo \u00e9"}}],
 "tools":[{{"name":"Bash","input_schema":{{"type":"object"}},"defer_loading":true}}],
 "thinking":{{"type":"adaptive","display":"summarized"}},"output_config":{{"effort":"high"}},
 "context_management":{{"edits":[]}},"safeguards":[],"tags":["a"],
 "metadata":{{"user_id":"{{\"device_id\":\"abc\"}}"}}}}"#
    )
}

#[tokio::test]
async fn sse_is_relayed_event_for_event_and_the_request_reaches_upstream_unchanged() {
    let stack = Stack::start().await.unwrap();
    let reply = Reply::stream(SONNET, 25, &["Hel", "lo", " there"], 9);
    let Reply::Sse { events: sent, .. } = reply.clone() else {
        unreachable!()
    };
    stack.fake.reply_with(reply);
    let dp = stack.data_plane().await.unwrap();

    let body = claude_code_body(SONNET);
    let resp = client()
        .post(format!("{}/v1/messages?beta=true", dp.url))
        .header("authorization", format!("Bearer {}", stack.alice_key))
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .header("content-type", "application/json")
        .header("x-app", "cli")
        .header("x-claude-code-session-id", "sess-1")
        .header("anthropic-dangerous-direct-browser-access", "true")
        .header("x-stainless-lang", "js")
        .header("user-agent", "claude-cli/2.1.328 (external, cli)")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(resp.headers().contains_key("request-id"));
    assert!(
        !resp
            .headers()
            .keys()
            .any(|k| k.as_str().starts_with("anthropic-ratelimit-")),
        "upstream rate-limit headers are stripped"
    );
    let text = resp.text().await.unwrap();
    assert_eq!(sse_events(&text), sent, "identical event sequence");

    let got = stack.fake.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.body, body.as_bytes(), "body forwarded byte for byte");
    assert!(req.path_and_query.starts_with("/v1/messages"));
    let h = &req.headers;
    assert_eq!(h["x-api-key"], "sk-upstream-secret");
    assert!(!h.contains_key("authorization"));
    assert!(!h.contains_key("x-app"));
    assert!(!h.contains_key("x-claude-code-session-id"));
    assert!(!h.contains_key("anthropic-dangerous-direct-browser-access"));
    assert_eq!(h["anthropic-version"], "2023-06-01");
    assert_eq!(
        h["anthropic-beta"],
        "claude-code-20250219,interleaved-thinking-2025-05-14"
    );
    assert_eq!(h["x-stainless-lang"], "js");
    assert_eq!(h["user-agent"], "claude-cli/2.1.328 (external, cli)");
    stack.finish().await;
}

#[tokio::test]
async fn routed_model_id_is_spliced_and_every_other_byte_kept() {
    let stack = Stack::start().await.unwrap();
    stack
        .fake
        .reply_with(Reply::message(OPUS_UPSTREAM, "hi", 3, 4));
    let dp = stack.data_plane().await.unwrap();
    let body = claude_code_body(OPUS).replace("\"stream\":true", "\"stream\":false");
    let resp = client()
        .post(format!("{}/v1/messages", dp.url))
        .header("x-api-key", &stack.bot_key)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = stack.fake.received();
    let expected = body.replacen(OPUS, OPUS_UPSTREAM, 1);
    assert_eq!(String::from_utf8_lossy(&got[0].body), expected);
    stack.finish().await;
}

#[tokio::test]
async fn upstream_errors_in_the_anthropic_envelope_reach_the_client_verbatim() {
    let stack = Stack::start().await.unwrap();
    let upstream = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#;
    stack.fake.reply_with(Reply::Json {
        status: 400,
        body: upstream.to_owned(),
    });
    let dp = stack.data_plane().await.unwrap();
    let resp = crate::support::post_messages(
        &dp.url,
        &stack.alice_key,
        crate::support::message_body(SONNET, false),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.text().await.unwrap(), upstream);
    stack.finish().await;
}
