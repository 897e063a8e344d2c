//! The load generator's HTTP/1.1 client: one hyper connection per task, keep-alive, no pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// The model every request asks for.
pub const MODEL: &str = "claude-sonnet-5";

/// No single request may take longer than this; the harness counts it as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Direct,
    Nginx,
    DataPlane,
}

impl TargetKind {
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Direct => "direct → fake",
            TargetKind::Nginx => "nginx → fake",
            TargetKind::DataPlane => "data plane → fake",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub kind: TargetKind,
    pub addr: SocketAddr,
}

/// The request, built identically for every target (only `host` differs).
#[derive(Debug)]
pub struct RequestTemplate {
    api_key: HeaderValue,
    body: Bytes,
}

impl RequestTemplate {
    /// A small non-streaming or streaming Messages request; `gap_ms` asks the fake upstream for
    /// a specific pause inside the stream.
    pub fn new(api_key: &str, stream: bool, gap_ms: Option<u64>) -> Result<Arc<RequestTemplate>> {
        let mut body = serde_json::json!({
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "ping"}],
        });
        if stream {
            body["stream"] = serde_json::Value::Bool(true);
        }
        if let Some(ms) = gap_ms {
            body["metadata"] = serde_json::json!({ "user_id": format!("gap_ms={ms}") });
        }
        Ok(Arc::new(RequestTemplate {
            api_key: HeaderValue::from_str(api_key).context("api key is not a header value")?,
            body: Bytes::from(serde_json::to_vec(&body)?),
        }))
    }

    fn build(&self, host: &HeaderValue) -> Result<Request<Full<Bytes>>> {
        Ok(Request::builder()
            .method(Method::POST)
            .uri("/v1/messages")
            .header(HOST, host)
            .header(CONTENT_TYPE, "application/json")
            .header("anthropic-version", "2023-06-01")
            .header("x-api-key", &self.api_key)
            .body(Full::new(self.body.clone()))?)
    }
}

/// What one exchange took.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    pub status: u16,
    /// Request start → first body bytes (for SSE: the first event).
    pub first_byte: Duration,
    /// Request start → end of the body.
    pub total: Duration,
    /// First body bytes → end of the body.
    pub body_span: Duration,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Connection> {
        let connect = async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            anyhow::Ok(sender)
        };
        let sender = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .with_context(|| format!("connecting to {addr} timed out"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        Ok(Connection {
            sender,
            host: HeaderValue::from_str(&addr.to_string())?,
        })
    }

    /// Sends the template's request and reads the whole response, timing it from `start`.
    pub async fn exchange(
        &mut self,
        template: &RequestTemplate,
        start: Instant,
    ) -> Result<Exchange> {
        self.exchange_observed(template, start, REQUEST_TIMEOUT, || {})
            .await
    }

    /// Like [`Connection::exchange`], with its own time limit, calling `on_first_byte` when the
    /// first body bytes arrive.
    pub async fn exchange_observed(
        &mut self,
        template: &RequestTemplate,
        start: Instant,
        limit: Duration,
        on_first_byte: impl FnOnce(),
    ) -> Result<Exchange> {
        tokio::time::timeout(limit, self.exchange_inner(template, start, on_first_byte))
            .await
            .context("request timed out")?
    }

    async fn exchange_inner(
        &mut self,
        template: &RequestTemplate,
        start: Instant,
        on_first_byte: impl FnOnce(),
    ) -> Result<Exchange> {
        self.sender.ready().await.context("connection closed")?;
        let request = template.build(&self.host)?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut first = None;
        let mut on_first_byte = Some(on_first_byte);
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if first.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                first = Some(Instant::now());
                if let Some(notify) = on_first_byte.take() {
                    notify();
                }
            }
        }
        let end = Instant::now();
        let first = first.unwrap_or(end);
        Ok(Exchange {
            status,
            first_byte: first - start,
            total: end - start,
            body_span: end - first,
        })
    }

    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// One request on a fresh connection; its status.
pub async fn request_once(addr: SocketAddr, template: &RequestTemplate) -> Result<u16> {
    let mut conn = Connection::open(addr).await?;
    Ok(conn.exchange(template, Instant::now()).await?.status)
}

/// Sends until the answer is 200, for at most `within`.
pub async fn wait_for_ok(
    addr: SocketAddr,
    template: &RequestTemplate,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        match request_once(addr, template).await {
            Ok(200) => return Ok(()),
            Ok(status) => last = format!("status {status}"),
            Err(err) => last = format!("{err:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{addr} did not answer 200 within {within:?} (last: {last})")
}
