//! Spend caps end to end: real Postgres, one control plane, several data planes, prices set
//! through `tollgate admin`, a fake upstream whose usage (and so every request's cost) is
//! known in advance.
//!
//! Every test prices `claude-sonnet-5` at $20/MTok input and $80/MTok output and has the fake
//! upstream report 300 input and 50 output tokens, so each request costs exactly
//! 300×20 + 50×80 = 10,000 micro-USD ($0.01). The request body is exactly 300 bytes and the
//! spend settings estimate 1 byte per input token and at most 50 output tokens, so each
//! reservation is exactly the actual cost: the cap is never exceeded (docs/spend.md, the
//! overshoot bound with every reservation covering its request).

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_cli::admin::{execute, parse_args};
use tollgate_e2e::ledger;
use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{Reply, Stack};

use crate::support::eventually;

/// Micro-USD per request (see the module doc).
pub const COST: u64 = 10_000;
pub const INPUT_TOKENS: u64 = 300;
pub const OUTPUT_TOKENS: u64 = 50;
pub const ALICE: &str = "alice@example.com";

/// Runs `tollgate admin <words>` against the stack and returns what it prints.
pub async fn admin(stack: &Stack, words: &[&str]) -> anyhow::Result<String> {
    let args = parse_args(words.iter().copied())?;
    let mut client = stack.admin().await?;
    execute(&mut client, args.command, args.format).await
}

/// A Messages request body of exactly 300 bytes (= 300 estimated input tokens at 1 byte per
/// token) with `max_tokens` above the 50-token output estimate bound.
pub fn exact_body(stream: bool) -> String {
    let body = |content: &str| {
        json!({
            "model": SONNET,
            "max_tokens": 1024,
            "stream": stream,
            "messages": [{"role": "user", "content": content}],
        })
        .to_string()
    };
    let bare = body("").len();
    let body = body(&"x".repeat(300usize.saturating_sub(bare)));
    assert_eq!(body.len(), 300, "{body}");
    body
}

/// What a response's usage costs at the test prices (what the client saw).
pub fn client_cost(v: &Value) -> u64 {
    let input = v["usage"]["input_tokens"].as_u64().unwrap_or_default();
    let output = v["usage"]["output_tokens"].as_u64().unwrap_or_default();
    (input * 20_000_000 + output * 80_000_000).div_ceil(1_000_000)
}

/// The priced model, the estimate settings, the fake's fixed usage and a daily cap of
/// `requests` requests on alice. Returns the cap's id.
pub async fn alice_cap(stack: &Stack, requests: u64, settings: &[&str]) -> String {
    admin(
        stack,
        &[
            "prices",
            "set",
            SONNET,
            "--input",
            "20",
            "--output",
            "80.00",
            "--cache-write-5m",
            "25",
            "--cache-write-1h",
            "40",
            "--cache-read",
            "2",
            "--source",
            "e2e fixed price",
        ],
    )
    .await
    .unwrap();
    let mut words = vec![
        "budget",
        "settings",
        "set",
        "--input-bytes-per-token",
        "1",
        "--output-estimate-max-tokens",
        "50",
    ];
    words.extend_from_slice(settings);
    admin(stack, &words).await.unwrap();
    let cents = requests * COST / 10_000;
    let limit = format!("{}.{:02}", cents / 100, cents % 100);
    let out = admin(
        stack,
        &[
            "--format",
            "json",
            "budget",
            "set",
            "--user",
            ALICE,
            "--period",
            "daily",
            "--limit-usd",
            &limit,
        ],
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["scope"], "user", "{out}");
    stack
        .fake
        .reply_with(Reply::message(SONNET, "ok", INPUT_TOKENS, OUTPUT_TOKENS));
    v[0]["id"].as_str().unwrap().to_owned()
}

/// What one `/v1/messages` answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// POSTs the exact body to `{base}/v1/messages` with alice's key.
pub async fn send(client: &reqwest::Client, base: &str, key: &str, stream: bool) -> Answer {
    let resp = client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(exact_body(stream))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

/// Asserts a spend-cap refusal as Claude Code needs it (protocol §D).
pub fn assert_cap_refusal(a: &Answer, reason: &str) {
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.body["type"], "error", "{a:?}");
    assert_eq!(a.body["error"]["type"], "billing_error", "{a:?}");
    assert_eq!(a.header("x-should-retry"), "false", "{a:?}");
    assert_eq!(
        a.header("anthropic-ratelimit-unified-overage-disabled-reason"),
        reason,
        "{a:?}"
    );
    assert_eq!(
        a.header("anthropic-ratelimit-unified-status"),
        "rejected",
        "{a:?}"
    );
}

/// Waits until alice has `n` stored usage records; returns their total cost.
pub async fn stored(pool: &sqlx::PgPool, n: u64) -> u64 {
    let done = eventually(Duration::from_secs(30), || async {
        ledger::usage_cost(pool, ALICE).await.unwrap().0 >= n
    })
    .await;
    let (count, sum) = ledger::usage_cost(pool, ALICE).await.unwrap();
    assert!(
        done && count == n,
        "stored usage records: {count}, expected {n}"
    );
    sum
}

/// Asserts the ledger invariant for one cap: counter = Σ charges = Σ usage costs.
pub async fn assert_ledger_balances(pool: &sqlx::PgPool, budget_id: &str, records: u64) -> u64 {
    let usage_sum = stored(pool, records).await;
    let charged = eventually(Duration::from_secs(10), || async {
        ledger::counter_spent(pool, budget_id).await.unwrap() == usage_sum
    })
    .await;
    let spent = ledger::counter_spent(pool, budget_id).await.unwrap();
    let (charge_rows, charge_sum) = ledger::charges(pool, budget_id).await.unwrap();
    assert!(
        charged,
        "spend_counters.spent {spent} = Σ usage_records.cost {usage_sum}"
    );
    assert_eq!(charge_sum, spent, "Σ usage_charges = spend_counters.spent");
    assert_eq!(charge_rows, records, "one charge per stored request");
    spent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_over_three_data_planes_never_exceed_the_cap() {
    const CAP_REQUESTS: u64 = 10;
    const SENT: usize = 200;
    let stack = Stack::start().await.unwrap();
    let budget_id = alice_cap(&stack, CAP_REQUESTS, &[]).await;
    let mut dps = Vec::new();
    for id in ["dp-a", "dp-b", "dp-c"] {
        dps.push(stack.data_plane_named(id).await.unwrap());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let answers = futures_util::future::join_all((0..SENT).map(|i| {
        let client = client.clone();
        let url = dps[i % dps.len()].url.clone();
        let key = stack.alice_key.clone();
        async move { send(&client, &url, &key, false).await }
    }))
    .await;

    let admitted: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    for a in &refused {
        assert_cap_refusal(a, "user_spend_cap_reached");
    }
    for a in &admitted {
        assert_eq!(client_cost(&a.body), COST, "{a:?}");
    }
    if let Some(a) = refused.first() {
        eprintln!("a refusal: {:?} {}", a.headers, a.body);
    }
    let admitted = admitted.len() as u64;
    eprintln!(
        "{SENT} concurrent requests over 3 data planes, cap = {CAP_REQUESTS} requests: \
         {admitted} admitted, {} refused with 429 billing_error",
        refused.len()
    );
    // Bound: every reservation equals its request's actual cost, so the spend of the window
    // can never pass the limit: admitted × cost ≤ limit.
    assert!(
        admitted <= CAP_REQUESTS,
        "admitted {admitted} > {CAP_REQUESTS}"
    );
    // Fragmentation: a data plane can strand less than one request's worth of headroom, so
    // at most one request per data plane is lost to it.
    assert!(
        admitted >= CAP_REQUESTS - 3,
        "admitted {admitted} < {CAP_REQUESTS} - 3 (one per data plane)"
    );

    let pool = stack.db.pool().await.unwrap();
    let spent = assert_ledger_balances(&pool, &budget_id, admitted).await;
    assert_eq!(spent, admitted * COST);
    assert!(spent <= CAP_REQUESTS * COST, "spent {spent} over the limit");
    pool.close().await;
    for mut dp in dps {
        dp.stop().await;
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_data_planes_lease_expires_and_the_budget_is_usable_elsewhere() {
    let stack = Stack::start().await.unwrap();
    // The cap covers exactly one request; leases live 2 s without renewal.
    let budget_id = alice_cap(&stack, 1, &["--lease-ttl-s", "2"]).await;
    let mut doomed = stack.killable_data_plane("dp-doomed").await.unwrap();
    let survivor = stack.data_plane_named("dp-survivor").await.unwrap();
    let client = reqwest::Client::new();

    // A slow stream on the doomed data plane holds the whole cap as a reservation.
    let mut slow = Reply::stream(SONNET, INPUT_TOKENS, &["a"; 10], OUTPUT_TOKENS);
    if let Reply::Sse { gap, .. } = &mut slow {
        *gap = Duration::from_secs(1);
    }
    stack.fake.reply_with(slow);
    let in_flight = {
        let (client, url, key) = (client.clone(), doomed.url.clone(), stack.alice_key.clone());
        tokio::spawn(async move {
            let sent = client
                .post(format!("{url}/v1/messages"))
                .header("x-api-key", key)
                .header("content-type", "application/json")
                .body(exact_body(true))
                .send()
                .await;
            if let Ok(resp) = sent {
                let _ = resp.bytes().await;
            }
        })
    };
    let reached = eventually(Duration::from_secs(10), || async {
        !stack.fake.received().is_empty()
    })
    .await;
    assert!(reached, "the doomed data plane forwarded its request");
    stack
        .fake
        .reply_with(Reply::message(SONNET, "ok", INPUT_TOKENS, OUTPUT_TOKENS));
    let pool = stack.db.pool().await.unwrap();
    let held = ledger::leases(&pool, &budget_id).await.unwrap();
    assert!(
        held.iter()
            .any(|(dp, granted, _, live)| dp == "dp-doomed" && *granted >= COST && *live),
        "the doomed data plane holds a live lease: {held:?}"
    );

    let blocked = send(&client, &survivor.url, &stack.alice_key, false).await;
    assert_cap_refusal(&blocked, "user_spend_cap_reached");

    doomed.kill().await;
    in_flight.abort();
    let usable = eventually(Duration::from_secs(20), || async {
        let a = send(&client, &survivor.url, &stack.alice_key, false).await;
        if a.status == 200 {
            return true;
        }
        assert_cap_refusal(&a, "user_spend_cap_reached");
        tokio::time::sleep(Duration::from_millis(200)).await;
        false
    })
    .await;
    assert!(
        usable,
        "after the killed data plane's lease expired the survivor can spend the cap"
    );
    let after = ledger::leases(&pool, &budget_id).await.unwrap();
    eprintln!("leases after the kill: {after:?}");
    assert!(
        after
            .iter()
            .any(|(dp, _, consumed, live)| dp == "dp-doomed" && *consumed == 0 && !*live),
        "the killed data plane's lease expired unused: {after:?}"
    );
    // Only the survivor's request was billed: the killed one never reported usage.
    let spent = assert_ledger_balances(&pool, &budget_id, 1).await;
    assert_eq!(spent, COST);
    pool.close().await;
    stack.finish().await;
}

#[tokio::test]
async fn admin_cli_manages_prices_caps_and_spend_settings() {
    let stack = Stack::start().await.unwrap();
    let json = |out: &str| -> Value { serde_json::from_str(out).unwrap() };
    alice_cap(&stack, 10, &[]).await;

    // Prices: the override shows in dollars per MTok next to the catalogue.
    let prices = json(
        &admin(&stack, &["--format", "json", "prices", "list"])
            .await
            .unwrap(),
    );
    let sonnet = prices
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == SONNET)
        .unwrap();
    assert_eq!(sonnet["origin"], "override", "{sonnet}");
    assert_eq!(sonnet["input"], "20.00");
    assert_eq!(sonnet["output"], "80.00");
    assert_eq!(sonnet["cache_read"], "2.00");
    assert!(
        prices
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["origin"] == "catalogue"),
        "the catalogue ships with the control plane"
    );
    let table = admin(&stack, &["prices", "list"]).await.unwrap();
    assert!(table.contains("USD per million tokens"), "{table}");

    let fixed = json(
        &admin(
            &stack,
            &[
                "--format",
                "json",
                "prices",
                "fallback",
                "fixed",
                "--input",
                "5",
                "--output",
                "25",
                "--cache-write-5m",
                "6.25",
                "--cache-write-1h",
                "10",
                "--cache-read",
                "0.5",
            ],
        )
        .await
        .unwrap(),
    );
    assert_eq!(fixed[0]["rule"], "fixed", "{fixed}");
    assert_eq!(fixed[0]["cache_write_5m"], "6.25");
    let shown = json(
        &admin(&stack, &["--format", "json", "prices", "fallback", "show"])
            .await
            .unwrap(),
    );
    assert_eq!(shown, fixed);
    let multiplier = json(
        &admin(
            &stack,
            &["--format", "json", "prices", "multiplier", "fake", "11000"],
        )
        .await
        .unwrap(),
    );
    assert_eq!(multiplier[0]["provider"], "fake", "{multiplier}");
    assert_eq!(multiplier[0]["multiplier_bps"], 11_000);
    admin(&stack, &["prices", "delete", SONNET]).await.unwrap();
    let prices = json(
        &admin(&stack, &["--format", "json", "prices", "list"])
            .await
            .unwrap(),
    );
    assert!(
        prices
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["origin"] != "override"),
        "{prices}"
    );

    // Caps: a per-member group cap beside alice's own; list, then delete.
    let group = json(
        &admin(
            &stack,
            &[
                "--format",
                "json",
                "budget",
                "set",
                "--group",
                "eng",
                "--period",
                "weekly",
                "--limit-usd",
                "20.00",
                "--per-member",
                "--alert",
                "80,100",
            ],
        )
        .await
        .unwrap(),
    );
    assert_eq!(group[0]["sharing"], "per member", "{group}");
    assert_eq!(group[0]["limit_usd"], "20.00");
    assert_eq!(group[0]["alerts_percent"], "80,100");
    let listed = json(
        &admin(&stack, &["--format", "json", "budget", "list"])
            .await
            .unwrap(),
    );
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let explain = admin(&stack, &["budget", "explain", "--user", ALICE])
        .await
        .unwrap();
    assert!(explain.contains("per member"), "{explain}");
    assert!(explain.contains("groups: eng"), "{explain}");
    let id = group[0]["id"].as_str().unwrap();
    admin(&stack, &["budget", "delete", id]).await.unwrap();
    let listed = json(
        &admin(&stack, &["--format", "json", "budget", "list"])
            .await
            .unwrap(),
    );
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Settings: partial updates, the webhook secret is write-only.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "whsec-test\n").unwrap();
    let settings = admin(
        &stack,
        &[
            "--format",
            "json",
            "budget",
            "settings",
            "set",
            "--lease-ttl-s",
            "7",
            "--webhook-url",
            "http://127.0.0.1:9/hook",
            "--webhook-secret-file",
            secret.to_str().unwrap(),
        ],
    )
    .await
    .unwrap();
    assert!(!settings.contains("whsec-test"), "{settings}");
    let value = |settings: &Value, name: &str| {
        settings
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["setting"] == name)
            .map(|r| r["value"].clone())
            .unwrap()
    };
    let settings = json(&settings);
    assert_eq!(value(&settings, "lease_ttl_s"), 7);
    assert_eq!(
        value(&settings, "input_bytes_per_token"),
        1,
        "kept from before"
    );
    assert_eq!(value(&settings, "output_estimate_max_tokens"), 50);
    assert_eq!(value(&settings, "webhook_url"), "http://127.0.0.1:9/hook");
    assert_eq!(value(&settings, "webhook_secret_set"), "true");
    let cleared = json(
        &admin(
            &stack,
            &[
                "--format",
                "json",
                "budget",
                "settings",
                "set",
                "--clear-webhook",
            ],
        )
        .await
        .unwrap(),
    );
    assert_eq!(value(&cleared, "webhook_url"), "-");
    assert_eq!(value(&cleared, "webhook_secret_set"), "false");
    assert_eq!(value(&cleared, "outage_mode"), "closed");
    stack.finish().await;
}
