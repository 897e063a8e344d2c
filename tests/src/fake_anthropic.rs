//! A fake Anthropic Messages API upstream on 127.0.0.1 that records what it received and
//! answers with scripted JSON or SSE, framed exactly as the real API frames it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the fake answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body with a status.
    Json { status: u16, body: String },
    /// SSE events `(event name, data json)`, each written as its own chunk after `gap`.
    Sse {
        events: Vec<(String, String)>,
        gap: Duration,
    },
}

impl Reply {
    /// A realistic streamed message: `message_start`, `ping`, a text block in `deltas` pieces,
    /// `message_delta` with the output usage, `message_stop`.
    pub fn stream(model: &str, input_tokens: u64, deltas: &[&str], output_tokens: u64) -> Self {
        let mut events = vec![
            (
                "message_start".to_owned(),
                format!(
                    r#"{{"type":"message_start","message":{{"id":"msg_fake01","type":"message","role":"assistant","model":"{model}","content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":{input_tokens},"cache_creation_input_tokens":7,"cache_read_input_tokens":11,"cache_creation":{{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":4}},"output_tokens":1}}}}}}"#
                ),
            ),
            ("ping".to_owned(), r#"{"type": "ping"}"#.to_owned()),
            (
                "content_block_start".to_owned(),
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
                    .to_owned(),
            ),
        ];
        for d in deltas {
            let text = serde_json::to_string(d).unwrap_or_default();
            events.push((
                "content_block_delta".to_owned(),
                format!(
                    r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{text}}}}}"#
                ),
            ));
        }
        events.push((
            "content_block_stop".to_owned(),
            r#"{"type":"content_block_stop","index":0}"#.to_owned(),
        ));
        events.push((
            "message_delta".to_owned(),
            format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{output_tokens}}}}}"#
            ),
        ));
        events.push((
            "message_stop".to_owned(),
            r#"{"type":"message_stop"}"#.to_owned(),
        ));
        Reply::Sse {
            events,
            gap: Duration::from_millis(5),
        }
    }

    /// A non-streamed message with usage.
    pub fn message(model: &str, text: &str, input_tokens: u64, output_tokens: u64) -> Self {
        let text = serde_json::to_string(text).unwrap_or_default();
        Reply::Json {
            status: 200,
            body: format!(
                r#"{{"id":"msg_fake02","type":"message","role":"assistant","model":"{model}","content":[{{"type":"text","text":{text}}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":{input_tokens},"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":{output_tokens}}}}}"#
            ),
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Recorded>,
    reply: Option<Reply>,
    /// SSE streams written to their last event.
    completed_streams: usize,
}

/// The running fake. Stopped when `shutdown` (given at start) is cancelled.
#[derive(Debug, Clone)]
pub struct FakeAnthropic {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeAnthropic {
    pub async fn start(shutdown: CancellationToken) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let fake = FakeAnthropic { addr, state };
        let server = fake.clone();
        crate::http_server::spawn(listener, shutdown, move |req| {
            let fake = server.clone();
            async move { fake.handle(req).await }
        });
        Ok(fake)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the reply for every following request.
    pub fn reply_with(&self, reply: Reply) {
        if let Ok(mut s) = self.state.lock() {
            s.reply = Some(reply);
        }
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    pub fn completed_streams(&self) -> usize {
        self.state.lock().map(|s| s.completed_streams).unwrap_or(0)
    }

    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Response<BoxBody<Bytes, Infallible>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let reply = {
            let Ok(mut s) = self.state.lock() else {
                return plain(500, "poisoned");
            };
            s.received.push(Recorded {
                method: parts.method,
                path_and_query: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: parts.headers,
                body,
            });
            s.reply.clone()
        };
        match reply {
            None => plain(
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"no reply scripted"}}"#,
            ),
            Some(Reply::Json { status, body }) => plain(status, &body),
            Some(Reply::Sse { events, gap }) => self.sse(events, gap),
        }
    }

    fn sse(
        &self,
        events: Vec<(String, String)>,
        gap: Duration,
    ) -> Response<BoxBody<Bytes, Infallible>> {
        let state = self.state.clone();
        let total = events.len();
        let stream = futures_util::stream::iter(events.into_iter().enumerate()).then(
            move |(i, (name, data))| {
                let state = state.clone();
                async move {
                    tokio::time::sleep(gap).await;
                    if i + 1 == total
                        && let Ok(mut s) = state.lock()
                    {
                        s.completed_streams += 1;
                    }
                    Ok::<_, Infallible>(Frame::data(Bytes::from(format!(
                        "event: {name}\ndata: {data}\n\n"
                    ))))
                }
            },
        );
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            http::HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(
            "request-id",
            http::HeaderValue::from_static("req_fake_upstream"),
        );
        h.insert(
            "anthropic-ratelimit-requests-remaining",
            http::HeaderValue::from_static("99"),
        );
        resp
    }
}

fn plain(status: u16, body: &str) -> Response<BoxBody<Bytes, Infallible>> {
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(body.to_owned()))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        "request-id",
        http::HeaderValue::from_static("req_fake_upstream"),
    );
    resp.headers_mut().insert(
        "anthropic-ratelimit-tokens-remaining",
        http::HeaderValue::from_static("1000"),
    );
    resp
}
