//! Real clients against a spent cap: the `claude` CLI and the official Python SDK show the
//! cap message and do not retry; `/api/oauth/usage` and `tollgate admin spend report`.

use std::collections::HashSet;

use serde_json::Value;
use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{CountingProxy, Stack, claude_cli, python};

use crate::spend::{ALICE, COST, admin, alice_cap, assert_cap_refusal, send, stored};

/// A stack whose user alice has spent her whole daily cap (one request's worth) through a
/// data plane; returns the stack and the data plane's URL.
async fn spent_cap() -> (Stack, tollgate_e2e::StackDataPlane) {
    let stack = Stack::start().await.unwrap();
    alice_cap(&stack, 1, &[]).await;
    let dp = stack.data_plane().await.unwrap();
    let client = reqwest::Client::new();
    assert_eq!(
        send(&client, &dp.url, &stack.alice_key, false).await.status,
        200
    );
    let refused = send(&client, &dp.url, &stack.alice_key, false).await;
    assert_cap_refusal(&refused, "user_spend_cap_reached");
    (stack, dp)
}

/// The SDK's attempt counter (`x-stainless-retry-count`), 0 when absent.
fn retry_count(p: &tollgate_e2e::counting_proxy::Passed) -> u32 {
    p.headers
        .get("x-stainless-retry-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn claude_cli_shows_the_cap_message_and_does_not_retry() {
    let (stack, dp) = spent_cap().await;
    let proxy = CountingProxy::start(&dp.url, stack.child_token())
        .await
        .unwrap();
    let run = claude_cli::print_mode(&proxy.url(), &stack.alice_key, SONNET, "say hi")
        .await
        .unwrap();
    let shown = format!("{}{}", run.stdout, run.stderr);
    let messages = proxy.messages();
    eprintln!(
        "claude -p against a spent cap: success={} output={shown:?}; /v1/messages requests \
         that reached the data plane: {} (statuses {:?}, x-stainless-retry-count {:?}); every \
         request: {:?}",
        run.success,
        messages.len(),
        messages.iter().map(|m| m.status).collect::<Vec<_>>(),
        messages.iter().map(retry_count).collect::<Vec<_>>(),
        proxy
            .passed()
            .iter()
            .map(|p| format!("{} {} -> {}", p.method, p.path_and_query, p.status))
            .collect::<Vec<_>>(),
    );
    assert!(shown.contains("daily spend cap"), "{shown}");
    assert!(shown.contains("resets at"), "{shown}");
    assert!(!run.success, "the prompt cannot complete");
    assert!(!messages.is_empty(), "the client tried");
    assert!(messages.iter().all(|m| m.status == 429));
    assert!(
        messages.iter().all(|m| retry_count(m) == 0),
        "no request is a retry"
    );
    let bodies: HashSet<&[u8]> = messages.iter().map(|m| m.body.as_ref()).collect();
    assert_eq!(bodies.len(), messages.len(), "no request was sent twice");
    stack.finish().await;
}

const SDK_SCRIPT: &str = r#"
import anthropic
client = anthropic.Anthropic()  # default retries: 429s are retried unless x-should-retry: false
try:
    client.messages.create(model="claude-sonnet-5", max_tokens=64,
        messages=[{"role": "user", "content": "hello"}])
    print("NOT-RAISED")
except anthropic.RateLimitError as e:
    kind = e.body.get("error", {}).get("type") if isinstance(e.body, dict) else e.body
    print("RATE_LIMITED", e.status_code, kind, e.response.headers.get("x-should-retry"))
"#;

#[tokio::test]
async fn python_sdk_gets_a_billing_rate_limit_error_and_does_not_retry() {
    let (stack, dp) = spent_cap().await;
    let proxy = CountingProxy::start(&dp.url, stack.child_token())
        .await
        .unwrap();
    let out = python::run_script(SDK_SCRIPT, &proxy.url(), &stack.alice_key)
        .await
        .unwrap();
    assert_eq!(out.trim(), "RATE_LIMITED 429 billing_error false");
    assert_eq!(
        proxy.messages().len(),
        1,
        "the SDK (max_retries=2) sent the request once"
    );
    stack.finish().await;
}

#[tokio::test]
async fn usage_endpoint_shows_the_cap_and_the_csv_report_the_cost_per_user() {
    let stack = Stack::start().await.unwrap();
    let budget_id = alice_cap(&stack, 10, &[]).await;
    let dp = stack.data_plane().await.unwrap();
    let client = reqwest::Client::new();
    for _ in 0..8 {
        let a = send(&client, &dp.url, &stack.alice_key, false).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(
            matches!(
                a.header("anthropic-ratelimit-unified-status"),
                "allowed" | "allowed_warning"
            ),
            "utilisation headers on every success under a cap: {a:?}"
        );
    }
    let pool = stack.db.pool().await.unwrap();
    assert_eq!(stored(&pool, 8).await, 8 * COST);
    let now = now_unix_s();

    let csv = admin(
        &stack,
        &["spend", "report", "--by", "user", "--format", "csv"],
    )
    .await
    .unwrap();
    eprintln!("{csv}");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let alice = rows.iter().find(|r| r[col("user")] == ALICE).unwrap();
    assert_eq!(alice[col("requests")], "8");
    assert_eq!(alice[col("cost_usd")], "0.08");
    assert_eq!(alice[col("cost_micro_usd")], (8 * COST).to_string());

    let daily = admin(
        &stack,
        &["--format", "json", "spend", "daily", "--user", ALICE],
    )
    .await
    .unwrap();
    let days: Value = serde_json::from_str(&daily).unwrap();
    let today = &days.as_array().unwrap().last().unwrap();
    assert_eq!(today["day"], &iso_utc(now / 86_400 * 86_400)[..10]);
    assert_eq!(today["cost_micro_usd"], 8 * COST);

    let explain = admin(&stack, &["budget", "explain", "--user", ALICE])
        .await
        .unwrap();
    eprintln!("{explain}");
    assert!(explain.contains("none blocks"), "{explain}");
    let explain = admin(
        &stack,
        &["--format", "json", "budget", "explain", "--user", ALICE],
    )
    .await
    .unwrap();
    let standing = &serde_json::from_str::<Value>(&explain).unwrap()[0];
    assert_eq!(standing["budget_id"], budget_id.as_str(), "{explain}");
    assert_eq!(standing["spent_usd"], "0.08", "{explain}");
    assert_eq!(standing["limit_usd"], "0.10", "{explain}");
    assert_eq!(standing["blocks"], "-", "{explain}");

    // Every request is stored (above): the usage endpoint shows the ledger's 80%.
    let resp = client
        .get(format!("{}/api/oauth/usage", dp.url))
        .header("authorization", format!("Bearer {}", stack.alice_key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    eprintln!("/api/oauth/usage: {v}");
    let tomorrow = (now / 86_400 + 1) * 86_400;
    let limits = v["limits"].as_array().unwrap();
    assert_eq!(limits.len(), 1, "{v}");
    let l = &limits[0];
    assert_eq!(l["kind"], "spend");
    assert_eq!(l["group"], "daily");
    assert_eq!(l["percent"], 80, "{v}");
    assert_eq!(l["severity"], "warning", "80% is past 75%: {v}");
    assert_eq!(l["is_active"], true);
    assert_eq!(l["resets_at"], iso_utc(tomorrow), "{v}");
    let e = &v["extra_usage"];
    assert_eq!(e["is_enabled"], true);
    assert_eq!(e["monthly_limit"], 10, "the daily cap in cents: {v}");
    assert_eq!(e["used_credits"], 8, "{v}");
    assert_eq!(e["utilization"], 80, "{v}");
    assert_eq!(e["currency"], "USD");

    // A caller under no cap: no limits, month/day/week-to-date spend without limits.
    let resp = client
        .get(format!("{}/api/oauth/usage", dp.url))
        .header("x-api-key", &stack.bot_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    eprintln!("/api/oauth/usage without a cap: {v}");
    assert_eq!(v["limits"], serde_json::json!([]), "{v}");
    let e = &v["extra_usage"];
    assert_eq!(e["is_enabled"], true, "{v}");
    assert!(e["monthly_limit"].is_null(), "{v}");
    assert!(e["utilization"].is_null(), "{v}");
    assert_eq!(e["used_credits"], 0, "{v}");
    for period in ["daily", "weekly"] {
        assert!(e[period]["limit"].is_null(), "{v}");
        assert_eq!(e[period]["used_credits"], 0, "{v}");
        assert!(e[period]["utilization"].is_null(), "{v}");
    }

    pool.close().await;
    stack.finish().await;
}

fn now_unix_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or_default())
        .unwrap_or_default()
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ`.
fn iso_utc(unix_s: i64) -> String {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    let (y, m, d) = tollgate_policy::civil_from_unix_s(days * 86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
