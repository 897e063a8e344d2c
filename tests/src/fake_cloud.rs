//! Pieces the fake cloud providers share (Bedrock, Vertex, Foundry): Anthropic-shaped
//! answers (message JSON, stream events, SSE), scripted replies, and what was received.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use crate::http_server::TestResponse;

/// What a fake answers one request with.
#[derive(Debug, Clone)]
pub enum CloudReply {
    /// A successful message: Message JSON, or the standard stream events for a stream.
    Message {
        text: String,
        input_tokens: u64,
        output_tokens: u64,
    },
    /// A stream of these Anthropic event JSONs (each with its `type`); a non-stream request
    /// gets a 500 (script the JSON with [`CloudReply::Raw`]).
    Events(Vec<Value>),
    /// An error or any other raw answer.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

impl CloudReply {
    pub fn message(text: &str, input_tokens: u64, output_tokens: u64) -> Self {
        CloudReply::Message {
            text: text.to_owned(),
            input_tokens,
            output_tokens,
        }
    }

    /// An Anthropic error envelope with `status` and `kind`.
    pub fn anthropic_error(status: u16, kind: &str, message: &str) -> Self {
        CloudReply::Raw {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({"type": "error", "error": {"type": kind, "message": message}}).to_string(),
        }
    }

    /// Adds a response header (e.g. `x-should-retry: false`, `retry-after`).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let CloudReply::Raw { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}

/// Replies in order, then `default` for every further request.
#[derive(Debug, Clone)]
pub struct Script {
    pub queue: VecDeque<CloudReply>,
    pub default: CloudReply,
    /// Wait before the response headers (a slow first byte).
    pub headers_delay: Duration,
    /// Between two stream events.
    pub gap: Duration,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            queue: VecDeque::new(),
            default: CloudReply::message("Hello from the fake provider", 12, 5),
            headers_delay: Duration::ZERO,
            gap: Duration::from_millis(5),
        }
    }
}

impl Script {
    pub fn take_next(&mut self) -> CloudReply {
        self.queue
            .pop_front()
            .unwrap_or_else(|| self.default.clone())
    }
}

/// One request a fake received, and what it decided.
#[derive(Debug, Clone)]
pub struct CloudRequest {
    pub method: Method,
    /// The path as it arrived (percent-encoding kept).
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `None` when accepted; else the status and reason the fake refused it with.
    pub rejected: Option<(u16, String)>,
}

impl CloudRequest {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn accepted(&self) -> bool {
        self.rejected.is_none()
    }
}

/// A non-streamed Message.
pub fn message_json(
    id: &str,
    model: &str,
    text: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens
        }
    })
}

/// The events of a streamed message whose text arrives in `deltas`; with `ping` after
/// `message_start` (as Anthropic, Vertex and Foundry send; Bedrock sends none).
pub fn stream_events(
    id: &str,
    model: &str,
    input_tokens: u64,
    deltas: &[&str],
    output_tokens: u64,
    ping: bool,
) -> Vec<Value> {
    let mut events = vec![json!({
        "type": "message_start",
        "message": {
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1}
        }
    })];
    if ping {
        events.push(json!({"type": "ping"}));
    }
    events.push(json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}));
    for d in deltas {
        events.push(json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": d}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta",
                       "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                       "usage": {"output_tokens": output_tokens}}));
    events.push(json!({"type": "message_stop"}));
    events
}

/// Splits a text into a few deltas (so streams have several events).
pub fn deltas_of(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(6);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (a, b) = rest.split_at(cut);
        out.push(a);
        rest = b;
    }
    out
}

/// One SSE block for an event JSON (`event:` = its `type`).
pub fn sse_block(event: &Value) -> String {
    let name = event["type"].as_str().unwrap_or("message");
    format!("event: {name}\ndata: {event}\n\n")
}

/// A JSON (or any) response.
pub fn raw_response(status: u16, headers: &[(String, String)], body: String) -> TestResponse {
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(body))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    resp
}

pub fn json_response(status: u16, body: &Value) -> TestResponse {
    raw_response(status, &[], body.to_string())
}

/// An SSE response writing each event as its own chunk, `gap` apart; `on_end` runs after
/// the last one was produced.
pub fn sse_response(
    events: Vec<Value>,
    gap: Duration,
    extra_headers: &[(&str, &str)],
    on_end: impl Fn() + Send + Sync + 'static,
) -> TestResponse {
    let total = events.len();
    let on_end = std::sync::Arc::new(on_end);
    let stream =
        futures_util::stream::iter(events.into_iter().enumerate()).then(move |(i, event)| {
            let on_end = on_end.clone();
            async move {
                tokio::time::sleep(gap).await;
                if i + 1 == total {
                    on_end();
                }
                Ok::<_, Infallible>(Frame::data(Bytes::from(sse_block(&event))))
            }
        });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    for (k, v) in extra_headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    resp
}

/// The `application/x-www-form-urlencoded` pairs of a body.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let replaced = s.replace('+', " ");
    String::from_utf8_lossy(&crate::sigv4_verify::percent_decode(&replaced)).into_owned()
}

/// How an Anthropic-shaped fake frames its answers.
#[derive(Debug, Clone, Copy)]
pub struct Style<'a> {
    /// Message id.
    pub id: &'a str,
    /// The `model` the answer reports.
    pub model: &'a str,
    /// Between two stream events.
    pub gap: Duration,
    /// A `ping` after `message_start`.
    pub ping: bool,
    pub headers: &'a [(&'a str, &'a str)],
}

/// Answers a request per Anthropic's Messages API rules common to the Anthropic-shaped
/// upstreams (Foundry, Bedrock Messages, Vertex): the reply as JSON, or as SSE when `stream`.
pub fn anthropic_answer(
    reply: CloudReply,
    stream: bool,
    style: Style<'_>,
    on_end: impl Fn() + Send + Sync + 'static,
) -> TestResponse {
    let Style {
        id,
        model,
        gap,
        ping,
        headers: extra_headers,
    } = style;
    match reply {
        CloudReply::Message {
            text,
            input_tokens,
            output_tokens,
        } => {
            if stream {
                let events = stream_events(
                    id,
                    model,
                    input_tokens,
                    &deltas_of(&text),
                    output_tokens,
                    ping,
                );
                sse_response(events, gap, extra_headers, on_end)
            } else {
                let mut resp = json_response(
                    200,
                    &message_json(id, model, &text, input_tokens, output_tokens),
                );
                for (k, v) in extra_headers {
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        resp.headers_mut().insert(k, v);
                    }
                }
                resp
            }
        }
        CloudReply::Events(events) if stream => sse_response(events, gap, extra_headers, on_end),
        CloudReply::Events(_) => json_response(
            500,
            &json!({"type": "error", "error": {"type": "api_error",
                    "message": "fake: events scripted for a non-stream request"}}),
        ),
        CloudReply::Raw {
            status,
            headers,
            body,
        } => raw_response(status, &headers, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_events_are_well_formed_sse() {
        let events = stream_events("msg_1", "claude-x", 3, &deltas_of("Hello world!"), 4, true);
        let sse: String = events.iter().map(sse_block).collect();
        assert!(sse.starts_with("event: message_start\ndata: {"));
        assert!(sse.contains("event: ping\n"));
        assert!(sse.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
        let text: String = events
            .iter()
            .filter_map(|e| e["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "Hello world!");
    }

    #[test]
    fn form_bodies_decode() {
        let pairs = form_pairs(
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c",
        );
        assert_eq!(
            pairs,
            [
                (
                    "grant_type".to_owned(),
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()
                ),
                ("assertion".to_owned(), "a.b.c".to_owned())
            ]
        );
    }
}
