//! The data plane against an in-process control plane and upstream.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test fixtures and helpers fail loudly"
)]

mod journal;
mod protection;
mod rate_limits;
mod routing;
mod shutdown;
mod signed_in;
mod snapshot_cache;
mod spend;
mod support;
mod telemetry;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tollgate_data_plane::{DataPlaneConfig, DataPlaneHandle};
use tollgate_proto::v1 as pb;

use support::{
    FakeControlPlane, FakeUpstream, PROMPT_TOO_LONG, PROVIDER_KEY, send, snapshot, sse_events,
};

const ADA: (&str, &str) = ("x-api-key", "tg_ada");

struct Setup {
    cp: FakeControlPlane,
    upstream: FakeUpstream,
    dp: DataPlaneHandle,
    shutdown: CancellationToken,
    _cp_stop: CancellationToken,
}

fn config(cp_url: String) -> DataPlaneConfig {
    let mut config = DataPlaneConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        cp_url,
        SecretString::from(support::SYNC_TOKEN),
    );
    config.data_plane_id = "dp-test".into();
    config.max_body_bytes = 64 * 1024;
    config.usage_flush_interval = Duration::from_millis(50);
    config.shutdown_drain_timeout = Duration::from_secs(2);
    config
}

async fn setup(event_pause: Duration) -> Setup {
    setup_with(event_pause, |_| {}, |_| {}).await
}

/// Like [`setup`], with the first snapshot and the data plane's configuration edited.
async fn setup_with(
    event_pause: Duration,
    edit_snapshot: impl FnOnce(&mut pb::Snapshot),
    edit_config: impl FnOnce(&mut DataPlaneConfig),
) -> Setup {
    let cp = FakeControlPlane::new();
    let cp_stop = CancellationToken::new();
    let cp_url = cp.serve(cp_stop.clone()).await;
    let upstream = FakeUpstream::start(event_pause).await;
    let mut first = snapshot(1, &upstream.base_url);
    edit_snapshot(&mut first);
    cp.publish(first);
    let shutdown = CancellationToken::new();
    let mut config = config(cp_url);
    edit_config(&mut config);
    let dp = tollgate_data_plane::spawn(config, shutdown.clone())
        .await
        .unwrap();
    assert!(
        dp.wait_for_snapshot_version(1, Duration::from_secs(10))
            .await
    );
    Setup {
        cp,
        upstream,
        dp,
        shutdown,
        _cp_stop: cp_stop,
    }
}

impl Setup {
    async fn stop(self) {
        self.shutdown.cancel();
        self.dp.wait().await.unwrap();
    }
}

fn stream_request(model: &str) -> String {
    format!(
        r#"{{"model": "{model}","max_tokens":32000,"stream":true,"system":[{{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1"}}],"messages":[{{"role":"user","content":"hi"}}],"metadata":{{"user_id":"{{\"device\":1}}"}}}}"#
    )
}

#[tokio::test]
async fn relays_sse_from_the_upstream_with_header_hygiene_and_meters_it() {
    let s = setup(Duration::ZERO).await;
    let body = stream_request("claude-sonnet-5");
    let headers = [
        ("authorization", "Bearer tg_ada"),
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        ),
        ("anthropic-dangerous-direct-browser-access", "true"),
        ("x-app", "cli"),
        ("x-claude-code-session-id", "session-1"),
        ("x-stainless-lang", "js"),
        ("user-agent", "claude-cli/2.1.328 (external, cli)"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
    ];
    let answer = send(
        s.dp.addr,
        "POST",
        "/v1/messages?beta=true",
        &headers,
        &body,
        false,
    )
    .await;

    // What the client saw: the upstream's events, byte for byte except the model, which
    // reports the id the client asked for, with our headers.
    assert_eq!(answer.status, 200);
    let expected = sse_events().concat().replace(
        "\"model\":\"claude-sonnet-5-20990101\"",
        "\"model\":\"claude-sonnet-5\"",
    );
    assert_eq!(std::str::from_utf8(&answer.body).unwrap(), expected);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    assert_eq!(answer.headers["upstream-request-id"], "req_fake");
    let request_id = answer.headers["request-id"].to_str().unwrap().to_owned();
    assert_ne!(request_id, "req_fake");
    assert!(
        answer
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("anthropic-ratelimit-"))
    );
    assert!(answer.headers.get("anthropic-organization-id").is_none());

    // What the provider received.
    let received = s.upstream.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.headers["x-api-key"], PROVIDER_KEY);
    for dropped in [
        "authorization",
        "x-app",
        "x-claude-code-session-id",
        "anthropic-dangerous-direct-browser-access",
    ] {
        assert!(
            r.headers.get(dropped).is_none(),
            "{dropped} must not reach the provider"
        );
    }
    assert_eq!(
        r.headers["anthropic-beta"],
        "claude-code-20250219,interleaved-thinking-2025-05-14"
    );
    assert_eq!(r.headers["x-stainless-lang"], "js");
    assert_eq!(r.headers["accept-encoding"], "identity");
    // Only the model string changed.
    let expected = body.replace("\"claude-sonnet-5\"", "\"claude-sonnet-5-20990101\"");
    assert_eq!(r.body, expected.as_bytes());

    // What the control plane was told.
    let usage = s.cp.wait_for_usage(1).await;
    let u = &usage[0];
    assert_eq!(u.request_id, request_id);
    assert_eq!(u.outcome, pb::UsageOutcome::Complete as i32);
    assert_eq!(
        (u.model.as_str(), u.upstream_model.as_str()),
        ("claude-sonnet-5", "claude-sonnet-5-20990101")
    );
    assert_eq!(
        (
            u.api_key_id.as_str(),
            u.principal_id.as_str(),
            u.provider_id.as_str()
        ),
        ("k-ada", "u-ada", "p-up")
    );
    assert_eq!(
        (
            u.data_plane_id.as_str(),
            u.endpoint.as_str(),
            u.stream,
            u.status
        ),
        ("dp-test", "messages", true, 200)
    );
    assert_eq!(
        (
            u.input_tokens,
            u.output_tokens,
            u.cache_creation_5m_tokens,
            u.cache_creation_1h_tokens,
            u.cache_read_tokens
        ),
        (25, 42, 100, 200, 1200)
    );
    s.stop().await;
}

#[tokio::test]
async fn refuses_what_policy_and_limits_refuse() {
    let s = setup(Duration::ZERO).await;
    let addr = s.dp.addr;
    let body = stream_request("claude-sonnet-5");

    let unknown = send(
        addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", "tg_nobody")],
        &body,
        false,
    )
    .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json()["error"]["type"], "authentication_error");

    let denied = send(
        addr,
        "POST",
        "/v1/messages",
        &[ADA],
        &stream_request("claude-opus-4-8"),
        false,
    )
    .await;
    assert_eq!(denied.status, 400);
    assert!(
        denied.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("claude-opus-4-8")
    );

    let malformed = send(addr, "POST", "/v1/messages", &[ADA], "{\"model\":", false).await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["type"], "invalid_request_error");

    let huge = format!(
        r#"{{"model":"claude-sonnet-5","pad":"{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let too_large = send(addr, "POST", "/v1/messages", &[ADA], &huge, false).await;
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.json()["error"]["type"], "request_too_large");

    for answer in [&unknown, &denied, &malformed, &too_large] {
        assert!(answer.headers.contains_key("request-id"));
    }
    assert!(
        s.upstream.received().is_empty(),
        "nothing refused reaches the provider"
    );
    s.stop().await;
}

#[tokio::test]
async fn passes_anthropic_4xx_through_and_answers_json_and_count_tokens() {
    let s = setup(Duration::ZERO).await;
    let addr = s.dp.addr;
    let failing = r#"{"model":"claude-haiku-5","max_tokens":10,"please_fail":true,"messages":[]}"#;
    let answer = send(addr, "POST", "/v1/messages", &[ADA], failing, false).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body, PROMPT_TOO_LONG.as_bytes());

    let plain = r#"{"model":"claude-haiku-5","max_tokens":10,"messages":[]}"#;
    let answer = send(addr, "POST", "/v1/messages", &[ADA], plain, true).await;
    assert_eq!(answer.status, 200, "h2c works too");
    assert_eq!(answer.json()["usage"]["output_tokens"], 6);
    // The route's upstream model equals the client's: the body is forwarded unchanged.
    assert_eq!(s.upstream.received()[1].body, plain.as_bytes());

    let count = send(
        addr,
        "POST",
        "/v1/messages/count_tokens",
        &[ADA],
        plain,
        false,
    )
    .await;
    assert_eq!(count.json()["input_tokens"], 77);

    let usage = s.cp.wait_for_usage(2).await;
    assert_eq!(usage[0].outcome, pb::UsageOutcome::UpstreamError as i32);
    assert_eq!(usage[0].status, 400);
    assert_eq!(usage[1].outcome, pb::UsageOutcome::Complete as i32);
    assert_eq!(
        (
            usage[1].input_tokens,
            usage[1].output_tokens,
            usage[1].cache_read_tokens
        ),
        (11, 6, 5)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.cp.usage().len(), 2, "count_tokens is not a usage record");
    s.stop().await;
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_still_metered() {
    let s = setup(Duration::from_millis(40)).await;
    let body = stream_request("claude-sonnet-5");
    let mut socket = TcpStream::connect(s.dp.addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-api-key: tg_ada\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("message_start") {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(socket); // the client leaves after the first event

    let usage = s.cp.wait_for_usage(1).await;
    assert_eq!(
        usage[0].outcome,
        pb::UsageOutcome::ClientDisconnected as i32
    );
    assert_eq!(
        (usage[0].input_tokens, usage[0].output_tokens),
        (25, 42),
        "billed as the provider bills"
    );
    assert_eq!(s.upstream.completed_streams(), 1);
    s.stop().await;
}

#[tokio::test]
async fn client_leaving_before_the_answer_starts_is_still_metered() {
    let s = setup(Duration::ZERO).await;
    let body = r#"{"model":"claude-haiku-5","max_tokens":10,"delay_ms":300,"messages":[]}"#;
    let mut socket = TcpStream::connect(s.dp.addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-api-key: tg_ada\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(socket); // gone while the provider is still working on the answer

    let usage = s.cp.wait_for_usage(1).await;
    assert_eq!(
        usage[0].outcome,
        pb::UsageOutcome::ClientDisconnected as i32
    );
    assert_eq!((usage[0].input_tokens, usage[0].output_tokens), (11, 6));
    s.stop().await;
}

#[tokio::test]
async fn ignores_invalid_snapshots_and_lists_models() {
    let s = setup(Duration::ZERO).await;
    let mut invalid = snapshot(2, &s.upstream.base_url);
    invalid.routes[0].targets[0].provider_id = "p-missing".into();
    s.cp.publish(invalid);
    assert!(
        !s.dp
            .wait_for_snapshot_version(2, Duration::from_millis(300))
            .await
    );
    assert_eq!(s.dp.snapshot_version(), Some(1));

    let mut next = snapshot(3, &s.upstream.base_url);
    next.groups[0].allowed_models = vec!["claude-demo".into()];
    s.cp.publish(next);
    assert!(
        s.dp.wait_for_snapshot_version(3, Duration::from_secs(5))
            .await
    );
    let models = send(s.dp.addr, "GET", "/v1/models?limit=1000", &[ADA], "", false).await;
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["claude-demo"]);
    s.stop().await;
}

#[tokio::test]
async fn not_ready_until_a_snapshot_arrives() {
    // A control plane that never answers: the data plane starts anyway and says so.
    let dp_stop = CancellationToken::new();
    let dp = tollgate_data_plane::spawn(config("http://127.0.0.1:9".into()), dp_stop.clone())
        .await
        .unwrap();
    let answer = send(dp.addr, "POST", "/v1/messages", &[ADA], "{}", false).await;
    assert_eq!(answer.status, 503);
    let hello = send(dp.addr, "HEAD", "/api/hello", &[], "", false).await;
    assert_eq!(hello.status, 200);
    dp_stop.cancel();
    dp.wait().await.unwrap();
}

#[tokio::test]
async fn spools_undelivered_usage_and_resends_it_at_start() {
    let dir = std::env::temp_dir().join(format!("tollgate-dp-spool-{}", uuid::Uuid::now_v7()));
    let spool: PathBuf = dir.join("usage.jsonl");
    let cp = FakeControlPlane::new();
    let cp_stop = CancellationToken::new();
    let cp_url = cp.serve(cp_stop.clone()).await;
    cp.publish(snapshot(1, "http://127.0.0.1:9"));
    cp.refuse_usage(true);

    let mut cfg = config(cp_url.clone());
    cfg.spool_path = Some(spool.clone());
    cfg.shutdown_drain_timeout = Duration::from_millis(500);
    let stop = CancellationToken::new();
    let dp = tollgate_data_plane::spawn(cfg.clone(), stop.clone())
        .await
        .unwrap();
    assert!(
        dp.wait_for_snapshot_version(1, Duration::from_secs(10))
            .await
    );
    let demo =
        r#"{"model":"claude-demo","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    let answer = send(dp.addr, "POST", "/v1/messages", &[ADA], demo, false).await;
    assert_eq!(answer.status, 200);
    let request_id = answer.headers["request-id"].to_str().unwrap().to_owned();
    stop.cancel();
    dp.wait().await.unwrap();
    let spooled = std::fs::read_to_string(&spool).unwrap();
    assert_eq!(spooled.lines().count(), 1);
    assert!(spooled.contains(&request_id));
    assert!(cp.usage().is_empty());

    cp.refuse_usage(false);
    let stop = CancellationToken::new();
    let dp = tollgate_data_plane::spawn(cfg, stop.clone()).await.unwrap();
    let usage = cp.wait_for_usage(1).await;
    assert_eq!(usage[0].request_id, request_id);
    let spool_len = || std::fs::metadata(&spool).unwrap().len();
    for _ in 0..100 {
        if spool_len() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(spool_len(), 0, "the journal is emptied once delivered");
    stop.cancel();
    dp.wait().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn retries_usage_until_the_control_plane_takes_it() {
    let s = setup(Duration::ZERO).await;
    s.cp.refuse_usage(true);
    let demo =
        r#"{"model":"claude-demo","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    for _ in 0..3 {
        let answer = send(s.dp.addr, "POST", "/v1/messages", &[ADA], demo, false).await;
        assert_eq!(answer.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(s.cp.usage().is_empty());
    s.cp.refuse_usage(false);
    let usage = s.cp.wait_for_usage(3).await;
    assert_eq!(usage.len(), 3, "each record exactly once");
    let mut ids: Vec<&str> = usage.iter().map(|u| u.request_id.as_str()).collect();
    let sent_order = ids.clone();
    ids.sort_unstable();
    assert_eq!(ids, sent_order, "UUIDv7 ids arrive in request order");
    s.stop().await;
}
