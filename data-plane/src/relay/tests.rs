use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::*;

fn body_of(chunks: Vec<Result<&'static [u8], &'static str>>) -> UpstreamBody {
    let frames = chunks.into_iter().map(|c| {
        c.map(|b| Frame::data(Bytes::from_static(b)))
            .map_err(|e| -> BoxError { e.into() })
    });
    StreamBody::new(stream::iter(frames)).boxed_unsync()
}

/// A body that yields `first`, then stays silent forever.
fn stalled(first: &'static [u8]) -> UpstreamBody {
    let frames = stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(first)))])
        .chain(stream::pending());
    StreamBody::new(frames).boxed_unsync()
}

async fn collect(body: impl Body<Data = Bytes, Error = BoxError>) -> (String, Option<String>) {
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => out.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..])),
            Err(e) => return (String::from_utf8(out).unwrap(), Some(e.to_string())),
        }
    }
    (String::from_utf8(out).unwrap(), None)
}

use futures_util::StreamExt;

const START: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":3}}}\n\n";

#[tokio::test]
async fn a_failure_after_bytes_flowed_ends_the_stream_with_an_error_event() {
    let inner = body_of(vec![
        Ok(START),
        Ok(b"event: ping\ndata: {\"type\":\"ping\"}\n\n"),
        Err("reset"),
    ]);
    let guard = StreamGuard::new(inner, Framing::Sse, Duration::from_secs(60), None);
    let (text, error) = collect(guard).await;
    assert_eq!(
        error, None,
        "the client gets a clean end, not a cut connection"
    );
    assert!(text.ends_with("\n\n"));
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\ndata: {"), "{last}");
    assert!(last.contains("\"api_error\""));
}

#[tokio::test]
async fn a_half_sent_event_is_closed_before_the_error_event() {
    let inner = body_of(vec![
        Ok(b"event: content_block_delta\ndata: {\"ty"),
        Err("reset"),
    ]);
    let guard = StreamGuard::new(inner, Framing::Sse, Duration::from_secs(60), None);
    let (text, _) = collect(guard).await;
    assert!(text.contains("{\"ty\n\nevent: error\n"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_stream_open_when_the_drain_period_ends_gets_an_overloaded_error_event() {
    let drain_over = CancellationToken::new();
    let guard = StreamGuard::new(stalled(START), Framing::Sse, Duration::from_secs(300), None)
        .ending_at(drain_over.clone());
    let ends = tokio::spawn(collect(guard));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !ends.is_finished(),
        "the stream runs until the drain period ends"
    );
    drain_over.cancel();
    let (text, error) = ends.await.unwrap();
    assert_eq!(error, None, "a clean end, not a cut connection");
    assert!(text.starts_with("event: message_start"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\ndata: {"), "{last}");
    assert!(last.contains("\"overloaded_error\""), "{last}");
    assert!(last.contains("shutting down"), "{last}");

    // An opaque (JSON) answer cannot carry the event: it is aborted.
    let drain_over = CancellationToken::new();
    drain_over.cancel();
    let opaque = StreamGuard::new(
        stalled(b"{\"id\":"),
        Framing::Opaque,
        Duration::from_secs(300),
        None,
    )
    .ending_at(drain_over);
    let (_, error) = collect(opaque).await;
    assert!(error.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_silent_upstream_is_cut_after_the_idle_timeout() {
    let guard = StreamGuard::new(stalled(START), Framing::Sse, Duration::from_secs(30), None);
    let (text, error) = collect(guard).await;
    assert_eq!(error, None);
    assert!(text.contains("event: error"));
    assert!(text.contains("timeout_error"));

    let opaque = StreamGuard::new(
        stalled(b"{\"id\":"),
        Framing::Opaque,
        Duration::from_secs(30),
        None,
    );
    let (_, error) = collect(opaque).await;
    assert!(error.unwrap().contains("sent nothing"));
}

#[tokio::test(start_paused = true)]
async fn pings_fill_silence_at_event_boundaries_only() {
    let guard = StreamGuard::new(
        stalled(START),
        Framing::Sse,
        Duration::from_secs(35),
        Some(Duration::from_secs(10)),
    );
    let (text, _) = collect(guard).await;
    let pings = text.matches("event: ping").count();
    assert_eq!(
        pings, 3,
        "pings at 10, 20 and 30 s, then the idle cut at 35 s: {text}"
    );

    let mid_event = StreamGuard::new(
        stalled(b"event: content_block_delta\ndata: {"),
        Framing::Sse,
        Duration::from_secs(35),
        Some(Duration::from_secs(10)),
    );
    let (text, _) = collect(mid_event).await;
    assert_eq!(
        text.matches("event: ping").count(),
        0,
        "never inside an event"
    );
}

#[tokio::test]
async fn the_stream_reports_the_model_the_client_asked_for() {
    // message_start split across chunks.
    let (head, tail) = START.split_at(40);
    let inner = body_of(vec![
        Ok(head),
        Ok(tail),
        Ok(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
    ]);
    let (text, _) = collect(ModelRewrite::new(inner, Framing::Sse, "claude-sonnet-5")).await;
    assert!(text.starts_with("event: message_start\ndata: "));
    assert!(text.contains("\"model\":\"claude-sonnet-5\""));
    assert!(!text.contains("20250929"));
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

#[tokio::test]
async fn an_answer_already_naming_the_model_is_untouched() {
    let inner = body_of(vec![Ok(START)]);
    let (text, _) = collect(ModelRewrite::new(
        inner,
        Framing::Sse,
        "claude-sonnet-4-5-20250929",
    ))
    .await;
    assert_eq!(text.as_bytes(), START);

    let json: &[u8] = br#"{"id":"msg_1","type":"message","model":"m","content":[]}"#;
    let (text, _) = collect(ModelRewrite::new(
        body_of(vec![Ok(json)]),
        Framing::Opaque,
        "m",
    ))
    .await;
    assert_eq!(text.as_bytes(), json);
}

#[tokio::test]
async fn a_json_answer_reports_the_client_model() {
    let inner = body_of(vec![
        Ok(br#"{"id":"msg_bdrk_1","type":"message","role":"assistant","#),
        Ok(br#""model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":1}}"#),
    ]);
    let (text, _) = collect(ModelRewrite::new(inner, Framing::Opaque, "sonnet")).await;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["model"], "sonnet");
    assert_eq!(value["content"][0]["text"], "hi");
    assert_eq!(value["usage"]["input_tokens"], 1);
}

#[tokio::test]
async fn an_opaque_failure_is_reported_after_the_held_bytes() {
    let inner = body_of(vec![Ok(b"{\"id\":"), Err("reset")]);
    let (text, error) = collect(ModelRewrite::new(inner, Framing::Opaque, "m")).await;
    assert_eq!(text, "{\"id\":");
    assert!(error.is_some(), "a cut JSON answer must not look complete");
}
