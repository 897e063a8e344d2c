//! The fast fake upstream: an Anthropic-shaped `POST /v1/messages` that does as little work as
//! possible, run in its own process (`tollgate-load upstream`) so it never shares a runtime with
//! the load generator.
//!
//! Non-streaming requests get one fixed JSON message with `usage`. Streaming requests
//! (`"stream": true`) get a fixed SSE: `message_start`, `content_block_start` and `ping` at once,
//! then — after a pause (`--stream-gap-ms`, or `"metadata": {"user_id": "gap_ms=N"}` in the
//! request) — the delta, `content_block_stop`, `message_delta` and `message_stop`. The pause makes
//! buffering visible: a proxy that holds events back delays the first one by the whole pause.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::cli::UpstreamArgs;
use crate::process::ChildGuard;

const MESSAGE_JSON: &str = concat!(
    r#"{"id":"msg_01LoadHarness","type":"message","role":"assistant","model":"claude-sonnet-5","#,
    r#""content":[{"type":"text","text":"pong"}],"stop_reason":"end_turn","stop_sequence":null,"#,
    r#""usage":{"input_tokens":12,"output_tokens":4,"cache_creation_input_tokens":0,"#,
    r#""cache_read_input_tokens":0}}"#
);

const SSE_HEAD: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_01LoadHarness","type":"message","#,
    r#""role":"assistant","model":"claude-sonnet-5","content":[],"stop_reason":null,"#,
    r#""stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1,"#,
    r#""cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    "\n\n",
    "event: ping\n",
    r#"data: {"type":"ping"}"#,
    "\n\n",
);

const SSE_TAIL: &str = concat!(
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"pong"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"#,
    r#""usage":{"output_tokens":4}}"#,
    "\n\n",
    "event: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n",
);

type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Deserialize, Default)]
struct FakeRequest {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

impl FakeRequest {
    fn gap(&self, default: Duration) -> Duration {
        self.metadata
            .as_ref()
            .and_then(|m| m.user_id.as_deref())
            .and_then(|u| u.strip_prefix("gap_ms="))
            .and_then(|ms| ms.parse().ok())
            .map_or(default, Duration::from_millis)
    }
}

/// Entry point of the hidden `upstream` subcommand: serves until stdin closes (the harness
/// holds the other end, so the fake dies with the harness) or SIGTERM.
pub fn serve(args: &UpstreamArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("cannot build the upstream runtime")?;
    let result = runtime.block_on(serve_until_stdin_closes(args));
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn serve_until_stdin_closes(args: &UpstreamArgs) -> Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening {addr}");
    let gap = Duration::from_millis(args.stream_gap_ms);
    let builder = auto::Builder::new(TokioExecutor::new());
    let stdin_closed = stdin_eof();
    tokio::pin!(stdin_closed);
    loop {
        tokio::select! {
            () = &mut stdin_closed => return Ok(()),
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        eprintln!("accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, gap));
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        }
    }
}

/// Resolves when stdin reaches EOF or fails (read on a plain thread: it blocks).
async fn stdin_eof() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = std::thread::Builder::new()
        .name(String::from("stdin-watch"))
        .spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            let _ = tx.send(());
        });
    if watcher.is_ok() {
        let _ = rx.await;
    } else {
        std::future::pending::<()>().await;
    }
}

async fn handle(
    req: Request<Incoming>,
    default_gap: Duration,
) -> Result<Response<FakeBody>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != "/v1/messages" {
        return Ok(error(StatusCode::NOT_FOUND, "not_found_error"));
    }
    let Ok(body) = req.into_body().collect().await else {
        return Ok(error(StatusCode::BAD_REQUEST, "invalid_request_error"));
    };
    let parsed: FakeRequest = serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
    if !parsed.stream {
        return Ok(respond(
            "application/json",
            Full::new(Bytes::from_static(MESSAGE_JSON.as_bytes())).boxed_unsync(),
        ));
    }
    let gap = parsed.gap(default_gap);
    let events = futures_util::stream::unfold(0u8, move |step| async move {
        match step {
            0 => Some((Ok(Frame::data(Bytes::from_static(SSE_HEAD.as_bytes()))), 1)),
            1 => {
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                Some((Ok(Frame::data(Bytes::from_static(SSE_TAIL.as_bytes()))), 2))
            }
            _ => None,
        }
    });
    Ok(respond(
        "text/event-stream",
        StreamBody::new(events).boxed_unsync(),
    ))
}

fn respond(content_type: &'static str, body: FakeBody) -> Response<FakeBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        "request-id",
        header::HeaderValue::from_static("req_01LoadHarness"),
    );
    response
}

fn error(status: StatusCode, kind: &'static str) -> Response<FakeBody> {
    let text =
        format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"fake upstream"}}}}"#);
    let mut response = respond(
        "application/json",
        Full::new(Bytes::from(text)).boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

/// The fake upstream as a child process of the harness.
pub struct UpstreamProcess {
    pub guard: ChildGuard,
    pub addr: SocketAddr,
}

/// Re-executes this binary as `tollgate-load upstream` and waits for its listening address.
pub async fn spawn_upstream_process(
    log_dir: &Path,
    stream_gap_ms: u64,
    threads: usize,
) -> Result<UpstreamProcess> {
    let exe = std::env::current_exe().context("cannot find the harness executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["upstream", "--listen", "127.0.0.1:0"])
        .arg("--stream-gap-ms")
        .arg(stream_gap_ms.to_string())
        .arg("--threads")
        .arg(threads.to_string());
    let (mut guard, stdout) = ChildGuard::spawn_piped("fake-upstream", cmd, log_dir)?;
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = match tokio::time::timeout(Duration::from_secs(10), first_line).await {
        Ok(Ok(Ok(line))) => line,
        _ => {
            guard.ensure_running()?;
            bail!("the fake upstream did not report its address within 10 s");
        }
    };
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("unexpected first line from the fake upstream: {line:?}"))?;
    Ok(UpstreamProcess { guard, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_bodies_are_valid() {
        let message: serde_json::Value = serde_json::from_str(MESSAGE_JSON).unwrap();
        assert_eq!(message["usage"]["output_tokens"], 4);
        for event in SSE_HEAD.split("\n\n").chain(SSE_TAIL.split("\n\n")) {
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                serde_json::from_str::<serde_json::Value>(data).unwrap();
            }
        }
        assert!(SSE_TAIL.trim_end().ends_with(r#"{"type":"message_stop"}"#));
    }

    #[test]
    fn gap_comes_from_metadata_or_default() {
        let default = Duration::from_millis(20);
        let req: FakeRequest =
            serde_json::from_str(r#"{"stream":true,"metadata":{"user_id":"gap_ms=1500"}}"#)
                .unwrap();
        assert_eq!(req.gap(default), Duration::from_millis(1500));
        let req: FakeRequest = serde_json::from_str(r#"{"stream":true}"#).unwrap();
        assert_eq!(req.gap(default), default);
    }
}
