//! Rate limits on the data plane: requests and tokens per minute, concurrency, upstream
//! ceilings, against the in-memory control plane (whose bucket clock the tests move on).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_data_plane::Clock;
use tollgate_policy::unix_s_from_civil;
use tollgate_proto::v1 as pb;

use super::support::{Answer, Bucket, price, send};
use super::{ADA, Setup, setup_with, stream_request};

fn limit(
    id: &str,
    scope: pb::RateLimitScope,
    scope_id: &str,
    kind: pb::RateLimitKind,
    n: u64,
) -> pb::RateLimit {
    pb::RateLimit {
        id: id.into(),
        scope: scope as i32,
        scope_id: scope_id.into(),
        per_member: false,
        model: String::new(),
        kind: kind as i32,
        limit: n,
    }
}

fn bucket(limit_id: &str) -> Bucket {
    (limit_id.to_owned(), String::new())
}

fn settings() -> pb::BudgetSettings {
    pb::BudgetSettings {
        outage_mode: pb::OutageMode::Closed as i32,
        lease_ttl_s: 30,
        input_bytes_per_token: 3,
        output_estimate_max_tokens: 0,
    }
}

/// A data plane under `limits` (and the snapshot edits of `edit`).
async fn limited_with(
    limits: Vec<pb::RateLimit>,
    event_pause: Duration,
    edit: impl FnOnce(&mut pb::Snapshot),
) -> Setup {
    setup_with(
        event_pause,
        |s| {
            s.rate_limits = limits;
            s.budget_settings = Some(settings());
            edit(s);
        },
        |_| {},
    )
    .await
}

async fn limited(limits: Vec<pb::RateLimit>) -> Setup {
    limited_with(limits, Duration::ZERO, |_| {}).await
}

/// A JSON (non-streamed) Messages request, padded to about `bytes` bytes; the fake upstream
/// answers it with 11 input and 6 output tokens (and 5 cache reads).
fn json_request(model: &str, bytes: usize) -> String {
    let head =
        format!(r#"{{"model":"{model}","max_tokens":64,"messages":[{{"role":"user","content":""#);
    let tail = r#""}]}"#;
    let pad = "x".repeat(bytes.saturating_sub(head.len() + tail.len()));
    format!("{head}{pad}{tail}")
}

/// Like [`json_request`], with the upstream taking `delay_ms` before it answers.
fn slow_request(model: &str, delay_ms: u64) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":64,"delay_ms":{delay_ms},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

async fn post(s: &Setup, body: &str) -> Answer {
    send(s.dp.addr, "POST", "/v1/messages", &[ADA], body, false).await
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers.get(name).map(|v| v.to_str().unwrap())
}

/// Waits until the fake upstream has received `n` requests.
async fn wait_for_received(s: &Setup, n: usize) {
    for _ in 0..500 {
        if s.upstream.received().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the upstream received {} requests, expected {n}",
        s.upstream.received().len()
    );
}

#[tokio::test]
async fn a_requests_per_minute_limit_refuses_the_next_request_with_rate_limit_error_until_it_refills()
 {
    let s = limited(vec![limit(
        "rl-rpm",
        pb::RateLimitScope::User,
        "u-ada",
        pb::RateLimitKind::RequestsPerMinute,
        3,
    )])
    .await;
    let body = json_request("claude-sonnet-5", 200);
    for _ in 0..3 {
        let a = post(&s, &body).await;
        assert_eq!(a.status, 200);
        assert_eq!(header(&a, "anthropic-ratelimit-requests-limit"), Some("3"));
    }
    let a = post(&s, &body).await;
    assert_eq!(a.status, 429);
    let json = a.json();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "rate_limit_error");
    assert_eq!(
        json["error"]["message"],
        "Rate limit reached: 3 requests per minute for user ada@example.com; retry in 20 s."
    );
    assert_eq!(header(&a, "retry-after"), Some("20"));
    assert_eq!(header(&a, "retry-after-ms"), Some("20000"));
    assert_eq!(header(&a, "x-should-retry"), Some("true"));
    assert_eq!(header(&a, "anthropic-ratelimit-requests-limit"), Some("3"));
    assert_eq!(
        header(&a, "anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    let reset = header(&a, "anthropic-ratelimit-requests-reset").unwrap();
    assert!(reset.ends_with('Z') && reset.contains('T'), "{reset}");
    assert_eq!(
        a.headers.get_all("retry-after").iter().count(),
        1,
        "one retry-after"
    );
    assert!(
        header(&a, "anthropic-ratelimit-unified-status").is_none(),
        "not a spend refusal"
    );
    assert_eq!(
        s.upstream.received().len(),
        3,
        "the refused request never went upstream"
    );

    // A minute later the bucket is full again.
    s.cp.advance_rate_clock(Duration::from_secs(60));
    assert_eq!(post(&s, &body).await.status, 200);
    assert_eq!(s.upstream.received().len(), 4);
    // Only the admitted requests are metered.
    assert_eq!(s.cp.wait_for_usage(4).await.len(), 4);
    s.stop().await;
}

#[tokio::test]
async fn a_spend_capped_user_gets_billing_error_not_rate_limit_error() {
    let noon = unix_s_from_civil(2026, 11, 22) + 43_200;
    let day_start = noon - noon.rem_euclid(86_400);
    let clock = Clock::manual(noon);
    let s = setup_with(
        Duration::ZERO,
        |snap| {
            snap.rate_limits = vec![limit(
                "rl-rpm",
                pb::RateLimitScope::User,
                "u-ada",
                pb::RateLimitKind::RequestsPerMinute,
                100,
            )];
            snap.budgets = vec![pb::Budget {
                id: "b-ada".into(),
                scope: pb::BudgetScope::User as i32,
                scope_id: "u-ada".into(),
                period: pb::BudgetPeriod::Daily as i32,
                limit_micro_usd: 1_000_000,
                per_member: false,
                alert_thresholds_percent: vec![],
            }];
            snap.budget_settings = Some(settings());
        },
        |c| c.clock = clock,
    )
    .await;
    s.cp.set_spent(("b-ada".into(), String::new(), day_start), 2_000_000);
    let a = post(&s, &json_request("claude-sonnet-5", 200)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.json()["error"]["type"], "billing_error");
    assert_eq!(header(&a, "x-should-retry"), Some("false"));
    assert_eq!(
        header(&a, "anthropic-ratelimit-unified-overage-disabled-reason"),
        Some("user_spend_cap_reached")
    );
    assert!(header(&a, "anthropic-ratelimit-requests-limit").is_none());
    assert!(s.upstream.received().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_prompt_larger_than_the_input_tokens_per_minute_is_refused_for_good() {
    let s = limited(vec![limit(
        "rl-itpm",
        pb::RateLimitScope::Org,
        "",
        pb::RateLimitKind::InputTokensPerMinute,
        100,
    )])
    .await;
    // ~600 bytes at 3 bytes per token: 200 tokens, twice the limit.
    let a = post(&s, &json_request("claude-sonnet-5", 600)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.json()["error"]["type"], "rate_limit_error");
    assert_eq!(header(&a, "x-should-retry"), Some("false"));
    let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("100 input tokens per minute for the organisation"),
        "{message}"
    );
    assert_eq!(
        header(&a, "anthropic-ratelimit-input-tokens-limit"),
        Some("100")
    );
    assert_eq!(header(&a, "anthropic-ratelimit-tokens-limit"), Some("100"));
    assert!(s.upstream.received().is_empty());
    assert!(
        s.cp.rate_calls().is_empty(),
        "refused without asking the control plane"
    );
    // A small request still fits.
    assert_eq!(
        post(&s, &json_request("claude-sonnet-5", 150)).await.status,
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn token_limits_settle_with_the_reported_usage_so_later_requests_fit() {
    let s = limited(vec![limit(
        "rl-itpm",
        pb::RateLimitScope::User,
        "u-ada",
        pb::RateLimitKind::InputTokensPerMinute,
        1_000,
    )])
    .await;
    // Each request reserves ~600 input tokens; the upstream reports 11 (cache reads are
    // not counted). Without the refund the second would not fit.
    let body = json_request("claude-sonnet-5", 1_800);
    for _ in 0..3 {
        let a = post(&s, &body).await;
        assert_eq!(a.status, 200, "{:?}", a.json());
        assert_eq!(
            header(&a, "anthropic-ratelimit-input-tokens-limit"),
            Some("1000")
        );
    }
    s.cp.wait_for_usage(3).await;
    let cp = s.cp.clone();
    s.stop().await;
    // At shutdown every unused token went back: the bucket is down by what was used.
    assert_eq!(cp.bucket_level(&bucket("rl-itpm")), Some(1_000 - 3 * 11));
}

#[tokio::test]
async fn a_streamed_answer_settles_input_with_cache_writes_and_output_tokens() {
    let s = limited(vec![
        limit(
            "rl-itpm",
            pb::RateLimitScope::Key,
            "k-ada",
            pb::RateLimitKind::InputTokensPerMinute,
            100_000,
        ),
        limit(
            "rl-otpm",
            pb::RateLimitScope::Key,
            "k-ada",
            pb::RateLimitKind::OutputTokensPerMinute,
            100_000,
        ),
    ])
    .await;
    let a = post(&s, &stream_request("claude-sonnet-5")).await;
    assert_eq!(a.status, 200);
    s.cp.wait_for_usage(1).await;
    let cp = s.cp.clone();
    s.stop().await;
    // 25 uncached input + 100 + 200 cache writes; 42 output.
    assert_eq!(cp.bucket_level(&bucket("rl-itpm")), Some(100_000 - 325));
    assert_eq!(cp.bucket_level(&bucket("rl-otpm")), Some(100_000 - 42));
}

fn one_at_a_time() -> pb::RateLimit {
    limit(
        "rl-conc",
        pb::RateLimitScope::Key,
        "k-ada",
        pb::RateLimitKind::ConcurrentRequests,
        1,
    )
}

#[tokio::test]
async fn a_concurrency_slot_is_freed_when_the_response_ends_or_the_upstream_fails() {
    let s = limited_with(vec![one_at_a_time()], Duration::ZERO, |snap| {
        let route = snap
            .routes
            .iter_mut()
            .find(|r| r.model == "claude-haiku-5")
            .unwrap();
        route.targets[0].upstream_model = "status-503".into();
    })
    .await;
    let body = json_request("claude-sonnet-5", 200);
    assert_eq!(post(&s, &body).await.status, 200);
    assert_eq!(post(&s, &body).await.status, 200);
    let failing = r#"{"model":"claude-sonnet-5","max_tokens":10,"please_fail":true,"messages":[]}"#;
    assert_eq!(post(&s, failing).await.status, 400);
    assert_eq!(post(&s, &body).await.status, 200);
    // A retryable upstream error with no target left.
    let a = post(&s, &json_request("claude-haiku-5", 200)).await;
    assert_eq!(a.status, 502, "{:?}", a.json());
    assert_eq!(post(&s, &body).await.status, 200);
    let cp = s.cp.clone();
    s.stop().await;
    assert_eq!(
        cp.slots_held("dp-test", &bucket("rl-conc")),
        0,
        "released at shutdown"
    );
}

#[tokio::test]
async fn a_second_request_in_flight_is_refused_until_the_first_ends() {
    let s = limited(vec![one_at_a_time()]).await;
    let addr = s.dp.addr;
    let slow = slow_request("claude-sonnet-5", 600);
    let first =
        tokio::spawn(async move { send(addr, "POST", "/v1/messages", &[ADA], &slow, false).await });
    wait_for_received(&s, 1).await;
    let a = post(&s, &json_request("claude-sonnet-5", 200)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.json()["error"]["type"], "rate_limit_error");
    assert_eq!(
        a.json()["error"]["message"],
        "Too many requests in flight: at most 1 at once for this API key; retry when one \
         finishes."
    );
    assert_eq!(header(&a, "retry-after"), Some("1"));
    assert_eq!(header(&a, "x-should-retry"), Some("true"));
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(
        post(&s, &json_request("claude-sonnet-5", 200)).await.status,
        200
    );
    assert_eq!(s.upstream.received().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_frees_its_concurrency_slot() {
    let s = limited_with(vec![one_at_a_time()], Duration::from_millis(40), |_| {}).await;
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
    drop(socket);
    let usage = s.cp.wait_for_usage(1).await;
    assert_eq!(
        usage[0].outcome,
        pb::UsageOutcome::ClientDisconnected as i32
    );
    let a = post(&s, &json_request("claude-sonnet-5", 200)).await;
    assert_eq!(a.status, 200, "the slot was freed: {:?}", a.json());
    s.stop().await;
}

#[tokio::test]
async fn the_control_plane_down_fails_rate_limits_closed_with_a_short_retry() {
    let s = limited(vec![limit(
        "rl-rpm",
        pb::RateLimitScope::Group,
        "g-eng",
        pb::RateLimitKind::RequestsPerMinute,
        1_000,
    )])
    .await;
    s.cp.spend_unavailable(true);
    let a = post(&s, &json_request("claude-sonnet-5", 200)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.json()["error"]["type"], "rate_limit_error");
    assert_eq!(
        a.json()["error"]["message"],
        "Tollgate cannot check your rate limits right now (control plane unreachable); \
         retrying shortly."
    );
    assert_eq!(header(&a, "retry-after"), Some("5"));
    assert_eq!(header(&a, "x-should-retry"), Some("true"));
    assert!(s.upstream.received().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_per_member_group_limit_for_one_model_names_both() {
    let mut rpm = limit(
        "rl-eng",
        pb::RateLimitScope::Group,
        "g-eng",
        pb::RateLimitKind::RequestsPerMinute,
        1,
    );
    rpm.per_member = true;
    rpm.model = "claude-sonnet-5".into();
    let s = limited(vec![rpm]).await;
    assert_eq!(
        post(&s, &json_request("claude-sonnet-5", 200)).await.status,
        200
    );
    // Another model is not counted.
    assert_eq!(
        post(&s, &json_request("claude-haiku-5", 200)).await.status,
        200
    );
    let a = post(&s, &json_request("claude-sonnet-5", 200)).await;
    assert_eq!(a.status, 429);
    assert_eq!(
        a.json()["error"]["message"],
        "Rate limit reached: 1 request per minute for group eng (per member) for \
         claude-sonnet-5; retry in 60 s."
    );
    s.stop().await;
}

/// Routes `claude-sonnet-5` to two upstream models of the fake upstream, in order.
fn two_targets(s: &mut pb::Snapshot) {
    let route = s
        .routes
        .iter_mut()
        .find(|r| r.model == "claude-sonnet-5")
        .unwrap();
    route.targets = ["model-a", "model-b"]
        .iter()
        .enumerate()
        .map(|(i, m)| pb::RouteTarget {
            provider_id: "p-up".into(),
            upstream_model: (*m).into(),
            weight: 1,
            priority: u32::try_from(i).unwrap(),
            price: Some(price()),
            ..Default::default()
        })
        .collect();
}

fn ceiling(
    id: &str,
    provider: &str,
    model: &str,
    kind: pb::RateLimitKind,
    n: u64,
) -> pb::RateLimit {
    let mut l = limit(id, pb::RateLimitScope::Provider, provider, kind, n);
    l.model = model.into();
    l
}

#[tokio::test]
async fn a_target_at_its_concurrency_ceiling_is_skipped_for_the_next() {
    let s = limited_with(
        vec![ceiling(
            "rl-a",
            "p-up",
            "model-a",
            pb::RateLimitKind::ConcurrentRequests,
            1,
        )],
        Duration::ZERO,
        two_targets,
    )
    .await;
    let addr = s.dp.addr;
    let slow = slow_request("claude-sonnet-5", 600);
    let first =
        tokio::spawn(async move { send(addr, "POST", "/v1/messages", &[ADA], &slow, false).await });
    wait_for_received(&s, 1).await;
    let a = post(&s, &json_request("claude-sonnet-5", 200)).await;
    assert_eq!(a.status, 200);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(s.upstream.models(), ["model-a", "model-b"]);
    // The ceiling's slot was freed with the first answer.
    assert_eq!(
        post(&s, &json_request("claude-sonnet-5", 200)).await.status,
        200
    );
    assert_eq!(s.upstream.models(), ["model-a", "model-b", "model-a"]);
    let usage = s.cp.wait_for_usage(3).await;
    let mut served: Vec<_> = usage.iter().map(|r| r.upstream_model.as_str()).collect();
    served.sort_unstable();
    assert_eq!(served, ["model-a", "model-a", "model-b"]);
    s.stop().await;
}

#[tokio::test]
async fn every_target_at_its_ceiling_answers_529_overloaded() {
    let s = limited_with(
        vec![ceiling(
            "rl-up",
            "p-up",
            "",
            pb::RateLimitKind::ConcurrentRequests,
            1,
        )],
        Duration::ZERO,
        two_targets,
    )
    .await;
    let addr = s.dp.addr;
    let slow = slow_request("claude-sonnet-5", 600);
    let first =
        tokio::spawn(async move { send(addr, "POST", "/v1/messages", &[ADA], &slow, false).await });
    wait_for_received(&s, 1).await;
    let a = post(&s, &json_request("claude-sonnet-5", 200)).await;
    assert_eq!(a.status.as_u16(), 529);
    assert_eq!(a.json()["error"]["type"], "overloaded_error");
    assert_eq!(
        a.json()["error"]["message"],
        "every provider for this model is at its configured capacity; retry shortly"
    );
    assert_eq!(header(&a, "retry-after"), Some("1"));
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(s.upstream.received().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_demo_target_has_ceilings_too() {
    let s = limited(vec![ceiling(
        "rl-demo",
        "p-demo",
        "",
        pb::RateLimitKind::RequestsPerMinute,
        1,
    )])
    .await;
    let body = json_request("claude-demo", 200);
    assert_eq!(post(&s, &body).await.status, 200);
    let a = post(&s, &body).await;
    assert_eq!(a.status.as_u16(), 529);
    assert_eq!(a.json()["error"]["type"], "overloaded_error");
    assert_eq!(header(&a, "retry-after"), Some("60"));
    s.cp.advance_rate_clock(Duration::from_secs(60));
    assert_eq!(post(&s, &body).await.status, 200);
    s.stop().await;
}
