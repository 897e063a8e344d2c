//! Rate limits end to end: real Postgres, one control plane on a manual clock (token
//! buckets refill and concurrency leases expire only when the test moves it), several data
//! planes, limits set through `tollgate admin limits`, and the official Python SDK.

use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use serde_json::Value;
use tollgate_control_plane::Clock;
use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{CountingProxy, Reply, Stack, python};

use crate::spend::{ALICE, Answer, INPUT_TOKENS, OUTPUT_TOKENS, admin, exact_body, send};
use crate::support::eventually;

/// A Monday morning, far from any minute boundary that would matter.
fn start_clock() -> Clock {
    Clock::manual(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap())
}

async fn stack_on_manual_clock() -> (Stack, Clock) {
    let clock = start_clock();
    let stack = Stack::start_with_clock(clock.clone()).await.unwrap();
    stack
        .fake
        .reply_with(Reply::message(SONNET, "ok", INPUT_TOKENS, OUTPUT_TOKENS));
    (stack, clock)
}

fn assert_rate_limited(a: &Answer) {
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.body["type"], "error", "{a:?}");
    assert_eq!(a.body["error"]["type"], "rate_limit_error", "{a:?}");
    assert_eq!(a.header("x-should-retry"), "true", "{a:?}");
    assert!(
        a.header("anthropic-ratelimit-unified-status").is_empty(),
        "a rate limit is not a spend cap: {a:?}"
    );
}

fn count(answers: &[Answer], status: u16) -> usize {
    answers.iter().filter(|a| a.status == status).count()
}

/// Sends `n` concurrent requests to each data plane URL.
async fn burst(urls: &[&str], key: &str, n: usize) -> Vec<Answer> {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for url in urls {
        for _ in 0..n {
            let (client, url, key) = (client.clone(), (*url).to_owned(), key.to_owned());
            tasks.push(tokio::spawn(async move {
                send(&client, &url, &key, false).await
            }));
        }
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_minute_hold_across_two_data_planes_and_refill_with_the_clock() {
    const RPM: usize = 10;
    let (stack, clock) = stack_on_manual_clock().await;
    let out = admin(
        &stack,
        &[
            "--format", "json", "limits", "set", "--user", ALICE, "--rpm", "10",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("requests_per_minute"), "{out}");
    let a = stack.data_plane_named("dp-a").await.unwrap();
    let b = stack.data_plane_named("dp-b").await.unwrap();

    // A burst at one instant: exactly the bucket's capacity is admitted, over both planes.
    let answers = burst(&[&a.url, &b.url], &stack.alice_key, 20).await;
    assert_eq!(count(&answers, 200), RPM, "{answers:?}");
    assert_eq!(count(&answers, 429), 40 - RPM, "{answers:?}");
    assert_eq!(
        stack.fake.received().len(),
        RPM,
        "refusals never go upstream"
    );
    for refused in answers.iter().filter(|a| a.status == 429) {
        assert_rate_limited(refused);
        // One request refills in 60 s / 10.
        assert_eq!(refused.header("retry-after"), "6", "{refused:?}");
        assert_eq!(refused.header("retry-after-ms"), "6000", "{refused:?}");
        assert_eq!(
            refused.header("anthropic-ratelimit-requests-limit"),
            "10",
            "{refused:?}"
        );
        assert_eq!(
            refused.header("anthropic-ratelimit-requests-remaining"),
            "0",
            "{refused:?}"
        );
        let message = refused.body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("10 requests per minute"), "{message}");
    }
    let ok = answers.iter().find(|a| a.status == 200).unwrap();
    assert_eq!(
        ok.header("anthropic-ratelimit-requests-limit"),
        "10",
        "{ok:?}"
    );

    // Six seconds later exactly one more fits.
    clock.advance(chrono::Duration::seconds(6));
    let answers = burst(&[&a.url, &b.url], &stack.alice_key, 2).await;
    assert_eq!(count(&answers, 200), 1, "{answers:?}");

    // After a whole minute the bucket is full again.
    clock.advance(chrono::Duration::seconds(60));
    let answers = burst(&[&a.url, &b.url], &stack.alice_key, 10).await;
    assert_eq!(count(&answers, 200), RPM, "{answers:?}");
    assert_eq!(stack.fake.received().len(), 2 * RPM + 1);

    // Other users are not limited by alice's limit.
    let bot = burst(&[&a.url], &stack.bot_key, 15).await;
    assert_eq!(count(&bot, 200), 15, "{bot:?}");

    // Explain shows the user's limit and that it blocks now.
    let explained = admin(&stack, &["limits", "explain", "--user", ALICE])
        .await
        .unwrap();
    assert!(explained.contains("requests"), "{explained}");
    drop((a, b));
    stack.finish().await;
}

/// A stream that takes `secs` seconds (one event a second).
fn slow_stream(secs: usize) -> Reply {
    let mut slow = Reply::stream(SONNET, INPUT_TOKENS, &vec!["a"; secs], OUTPUT_TOKENS);
    if let Reply::Sse { gap, .. } = &mut slow {
        *gap = Duration::from_secs(1);
    }
    slow
}

/// Starts a streamed request in the background; the task ends when the stream has been
/// read to the end (or the client gives up after `read_for`).
fn stream_in_background(url: &str, key: &str, read_for: Duration) -> tokio::task::JoinHandle<()> {
    let (url, key) = (url.to_owned(), key.to_owned());
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let sent = client
            .post(format!("{url}/v1/messages"))
            .header("x-api-key", key)
            .header("content-type", "application/json")
            .body(exact_body(true))
            .send()
            .await;
        if let Ok(resp) = sent {
            let _ = tokio::time::timeout(read_for, resp.bytes()).await;
        }
    })
}

async fn admitted_within(url: &str, key: &str, limit: Duration) -> bool {
    let client = reqwest::Client::new();
    eventually(limit, || async {
        let a = send(&client, url, key, false).await;
        if a.status == 200 {
            return true;
        }
        assert_rate_limited(&a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        false
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_slots_are_freed_on_end_error_disconnect_and_crash() {
    let (stack, clock) = stack_on_manual_clock().await;
    admin(&stack, &["budget", "settings", "set", "--lease-ttl-s", "2"])
        .await
        .unwrap();
    admin(
        &stack,
        &["limits", "set", "--user", ALICE, "--concurrency", "1"],
    )
    .await
    .unwrap();
    let a = stack
        .data_plane_with(|c| {
            c.data_plane_id = "dp-a".into();
            c.disconnect_drain_timeout = Duration::from_millis(500);
        })
        .await
        .unwrap();
    let b = stack.data_plane_named("dp-b").await.unwrap();
    let client = reqwest::Client::new();
    let key = stack.alice_key.clone();

    // Normal end: one after the other on one plane (the freed slot is reused at once), and
    // on the other plane as soon as the first has handed the slot back (milliseconds: the
    // limit was fully leased out).
    for _ in 0..3 {
        let ok = send(&client, &a.url, &key, false).await;
        assert_eq!(ok.status, 200, "{ok:?}");
    }
    assert!(admitted_within(&b.url, &key, Duration::from_secs(5)).await);
    assert!(admitted_within(&a.url, &key, Duration::from_secs(5)).await);

    // While a stream is in flight on one plane the other refuses; after it ends, admits.
    stack.fake.reply_with(slow_stream(3));
    let before = stack.fake.received().len();
    let streaming = stream_in_background(&a.url, &key, Duration::from_secs(30));
    assert!(
        eventually(Duration::from_secs(10), || async {
            stack.fake.received().len() > before
        })
        .await
    );
    stack
        .fake
        .reply_with(Reply::message(SONNET, "ok", INPUT_TOKENS, OUTPUT_TOKENS));
    let busy = send(&client, &b.url, &key, false).await;
    assert_rate_limited(&busy);
    let message = busy.body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("at most 1 at once"), "{message}");
    streaming.await.unwrap();
    assert!(admitted_within(&b.url, &key, Duration::from_secs(10)).await);

    // Upstream error: the slot is freed with the error answer.
    stack.fake.reply_with(Reply::Json {
        status: 400,
        body: r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}"#.into(),
    });
    let failed = send(&client, &a.url, &key, false).await;
    assert_eq!(failed.status, 400, "{failed:?}");
    stack
        .fake
        .reply_with(Reply::message(SONNET, "ok", INPUT_TOKENS, OUTPUT_TOKENS));
    assert!(admitted_within(&b.url, &key, Duration::from_secs(5)).await);

    // Client disconnect mid-stream: the plane drains the upstream briefly, then frees it.
    stack.fake.reply_with(slow_stream(20));
    let before = stack.fake.received().len();
    let abandoned = stream_in_background(&a.url, &key, Duration::from_millis(1500));
    assert!(
        eventually(Duration::from_secs(10), || async {
            stack.fake.received().len() > before
        })
        .await
    );
    stack
        .fake
        .reply_with(Reply::message(SONNET, "ok", INPUT_TOKENS, OUTPUT_TOKENS));
    abandoned.await.unwrap();
    assert!(
        admitted_within(&b.url, &key, Duration::from_secs(15)).await,
        "the abandoned stream's slot was freed after the drain timeout"
    );

    // Crash: a killed plane's slot comes back when its lease expires at the control plane.
    let mut doomed = stack.killable_data_plane("dp-doomed").await.unwrap();
    stack.fake.reply_with(slow_stream(30));
    let before = stack.fake.received().len();
    let stuck = stream_in_background(&doomed.url, &key, Duration::from_secs(60));
    assert!(
        eventually(Duration::from_secs(10), || async {
            stack.fake.received().len() > before
        })
        .await
    );
    stack
        .fake
        .reply_with(Reply::message(SONNET, "ok", INPUT_TOKENS, OUTPUT_TOKENS));
    doomed.kill().await;
    stuck.abort();
    let blocked = send(&client, &b.url, &key, false).await;
    assert_rate_limited(&blocked);
    // The control plane's clock passes the lease TTL (2 s): the dead plane's slot is free.
    clock.advance(chrono::Duration::seconds(10));
    assert!(
        admitted_within(&b.url, &key, Duration::from_secs(15)).await,
        "the crashed plane's slot expired with its lease"
    );
    drop((a, b));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_cap_and_a_rate_limit_answer_differently() {
    let (stack, _clock) = stack_on_manual_clock().await;
    admin(&stack, &["limits", "set", "--user", ALICE, "--rpm", "1"])
        .await
        .unwrap();
    let dp = stack.data_plane().await.unwrap();
    let client = reqwest::Client::new();
    let first = send(&client, &dp.url, &stack.alice_key, false).await;
    assert_eq!(first.status, 200, "{first:?}");
    let second = send(&client, &dp.url, &stack.alice_key, false).await;
    assert_rate_limited(&second);
    assert_eq!(second.header("retry-after"), "60", "{second:?}");

    // Deleting the limit lifts it for every data plane.
    let listed = admin(&stack, &["--format", "json", "limits", "list"])
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&listed).unwrap();
    let id = v[0]["id"].as_str().unwrap().to_owned();
    admin(&stack, &["limits", "delete", &id]).await.unwrap();
    stack.await_policy(&[dp.handle()]).await.unwrap();
    let third = send(&client, &dp.url, &stack.alice_key, false).await;
    assert_eq!(third.status, 200, "{third:?}");
    stack.finish().await;
}

/// A stack where alice has used her whole 60-per-minute bucket (one request refills in
/// 1 s, which clients wait as `retry-after-ms` says), a counting proxy in front of its data
/// plane for the client under test, and a task that moves the control plane's clock a
/// minute on once the proxy has seen the client refused (it answers whether it was).
async fn drained_bucket_refilled_after_a_refusal() -> (
    Stack,
    tollgate_e2e::StackDataPlane,
    CountingProxy,
    tokio::task::JoinHandle<bool>,
) {
    let (stack, clock) = stack_on_manual_clock().await;
    admin(&stack, &["limits", "set", "--user", ALICE, "--rpm", "60"])
        .await
        .unwrap();
    let dp = stack.data_plane().await.unwrap();
    let used = burst(&[&dp.url], &stack.alice_key, 60).await;
    assert_eq!(count(&used, 200), 60, "{used:?}");
    let proxy = CountingProxy::start(&dp.url, stack.child_token())
        .await
        .unwrap();
    let refill = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let refused = eventually(Duration::from_secs(60), || async {
                proxy.messages().iter().any(|p| p.status == 429)
            })
            .await;
            clock.advance(chrono::Duration::seconds(60));
            refused
        })
    };
    (stack, dp, proxy, refill)
}

fn statuses(proxy: &CountingProxy) -> Vec<u16> {
    proxy.messages().iter().map(|p| p.status).collect()
}

const SDK_SCRIPT: &str = r#"
import anthropic
client = anthropic.Anthropic(max_retries=4)
msg = client.messages.create(model="claude-sonnet-5", max_tokens=64,
    messages=[{"role": "user", "content": "hello"}])
print("OK", msg.content[0].text)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_retries_after_a_rate_limit_and_succeeds_once_the_bucket_refills() {
    let (stack, _dp, proxy, refill) = drained_bucket_refilled_after_a_refusal().await;
    let out = python::run_script(SDK_SCRIPT, &proxy.url(), &stack.alice_key)
        .await
        .unwrap();
    assert_eq!(out.trim(), "OK ok");
    assert!(refill.await.unwrap(), "the SDK was refused first");
    let statuses = statuses(&proxy);
    assert_eq!(statuses.first(), Some(&429), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_cli_retries_a_rate_limit_on_its_own_and_completes() {
    let (stack, _dp, proxy, refill) = drained_bucket_refilled_after_a_refusal().await;
    let run =
        tollgate_e2e::claude_cli::print_mode(&proxy.url(), &stack.alice_key, SONNET, "say hi")
            .await
            .unwrap();
    let statuses = statuses(&proxy);
    eprintln!("claude -p under a rate limit: {run:?}; statuses {statuses:?}");
    assert!(refill.await.unwrap(), "claude was refused first");
    assert!(run.success, "{run:?}");
    assert!(run.stdout.contains("ok"), "{run:?}");
    assert_eq!(statuses.first(), Some(&429), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    stack.finish().await;
}
