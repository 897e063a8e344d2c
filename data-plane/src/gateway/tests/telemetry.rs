//! Usage log lines and content capture, read from the `tracing` events the gateway emits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

use super::*;

/// One event: its target and fields (as text).
#[derive(Debug, Clone)]
struct Event {
    target: String,
    fields: BTreeMap<String, String>,
}

/// Collects the events of the targets it is given.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        if !target.starts_with("tollgate::") {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Event {
            target: target.to_owned(),
            fields,
        });
    }
}

impl Events {
    fn of(&self, target: &str) -> Vec<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.target == target)
            .cloned()
            .collect()
    }
}

/// Runs one Messages call through a gateway whose snapshot sets `content_capture`;
/// returns the request id, the body the client got and the events.
async fn call_capturing(content_capture: bool, stream: bool) -> (String, String, Events) {
    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    // Another test thread may have cached "no interest" for a callsite before this
    // subscriber existed; recompute so every `tollgate::*` event reaches it.
    tracing::callsite::rebuild_interest_cache();
    let mut snapshot = sample_snapshot();
    snapshot.content_capture = content_capture;
    let (gw, mut q) = gateway(Some(snapshot), 1024);
    let body = if stream {
        MESSAGE.replace("\"max_tokens\"", "\"stream\":true,\"max_tokens\"")
    } else {
        MESSAGE.to_owned()
    };
    let response = gw
        .handle(request("POST", "/v1/messages", &[ADA], &body))
        .await;
    let id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let relayed = response.into_body().collect().await.unwrap().to_bytes();
    q.recv().await.unwrap();
    (id, String::from_utf8(relayed.to_vec()).unwrap(), events)
}

#[tokio::test]
async fn a_metered_request_logs_one_usage_line_with_user_and_outcome() {
    for stream in [false, true] {
        let (id, _, events) = call_capturing(false, stream).await;
        let usage = events.of("tollgate::usage");
        assert_eq!(usage.len(), 1, "{usage:?}");
        let f = &usage[0].fields;
        assert_eq!(f["request_id"], id);
        assert_eq!(f["user.email"], "ada@example.com");
        assert_eq!(f["principal_id"], "user-k-ada");
        assert_eq!(f["api_key"], "laptop");
        assert_eq!(f["groups"], "eng");
        assert_eq!(f["model"], "claude-sonnet-5");
        assert_eq!(f["provider"], "demo");
        assert_eq!(f["outcome"], "complete");
        assert_eq!(f["status"], "200");
        assert_eq!(f["stream"], stream.to_string());
        for field in [
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cost_micro_usd",
            "duration_ms",
            "ttft_ms",
        ] {
            assert!(f.contains_key(field), "{field} missing from {f:?}");
        }
        assert!(!f.values().any(|v| v.contains("tg_ada")), "no secret");
        assert!(!f.values().any(|v| v.contains("hello there")), "no content");
    }
}

#[tokio::test]
async fn content_capture_off_logs_no_content() {
    let (_, _, events) = call_capturing(false, true).await;
    assert!(events.of("tollgate::content").is_empty());
}

#[tokio::test]
async fn content_capture_on_logs_the_prompt_and_the_relayed_answer() {
    for stream in [false, true] {
        let (id, relayed, events) = call_capturing(true, stream).await;
        let content = events.of("tollgate::content");
        assert_eq!(content.len(), 1, "{content:?}");
        let f = &content[0].fields;
        assert_eq!(f["request_id"], id);
        assert_eq!(f["user.email"], "ada@example.com");
        assert_eq!(f["model"], "claude-sonnet-5");
        assert!(f["request_body"].contains("hello there"));
        assert_eq!(f["response_body"], relayed, "the bytes the client got");
        assert_eq!(f["request_body_truncated"], "false");
        assert_eq!(f["response_body_truncated"], "false");
        assert!(!f.values().any(|v| v.contains("tg_ada")), "no secret");
    }
}

#[tokio::test]
async fn rejections_log_one_usage_line_with_their_outcome() {
    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    // Another test thread may have cached "no interest" for a callsite before this
    // subscriber existed; recompute so every `tollgate::*` event reaches it.
    tracing::callsite::rebuild_interest_cache();
    let (gw, _q) = gateway(Some(sample_snapshot()), 1024);
    let response = gw
        .handle(request(
            "POST",
            "/v1/messages",
            &[("x-api-key", "tg_wrong")],
            MESSAGE,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let denied = MESSAGE.replace("claude-sonnet-5", "claude-opus-4-8");
    let response = gw
        .handle(request("POST", "/v1/messages", &[ADA], &denied))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let usage = events.of("tollgate::usage");
    assert_eq!(usage.len(), 2, "{usage:?}");
    assert_eq!(usage[0].fields["request_id"], id);
    assert_eq!(usage[0].fields["outcome"], "unauthenticated");
    assert_eq!(usage[0].fields["status"], "401");
    assert!(!usage[0].fields.values().any(|v| v.contains("tg_wrong")));
    assert_eq!(usage[1].fields["outcome"], "invalid_request");
    assert_eq!(usage[1].fields["user.email"], "ada@example.com");
    assert_eq!(usage[1].fields["model"], "claude-opus-4-8");
    assert!(events.of("tollgate::content").is_empty());
}
