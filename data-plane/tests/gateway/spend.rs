//! Spend caps on the data plane: leased slices, Claude Code's headers and 429, outage
//! modes, settlement and `/api/oauth/usage`, against the in-memory control plane.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_data_plane::Clock;
use tollgate_policy::unix_s_from_civil;
use tollgate_proto::v1 as pb;

use super::support::{Answer, Key, send, snapshot};
use super::{ADA, Setup, setup_with, stream_request};

/// Cost of the fake upstream's stream at the test price, in micro-USD.
const STREAM_COST: u64 = 2_640;
const DOLLAR: u64 = 1_000_000;

/// 2026-11-22 12:00:00 UTC (a Sunday).
fn noon() -> i64 {
    unix_s_from_civil(2026, 11, 22) + 43_200
}

fn day_start(unix_s: i64) -> i64 {
    unix_s - unix_s.rem_euclid(86_400)
}

fn budget(
    id: &str,
    scope: pb::BudgetScope,
    scope_id: &str,
    period: pb::BudgetPeriod,
    limit: u64,
) -> pb::Budget {
    pb::Budget {
        id: id.into(),
        scope: scope as i32,
        scope_id: scope_id.into(),
        period: period as i32,
        limit_micro_usd: limit,
        per_member: false,
        alert_thresholds_percent: vec![50, 80, 100],
    }
}

fn ada_daily(limit: u64) -> pb::Budget {
    budget(
        "b-ada",
        pb::BudgetScope::User,
        "u-ada",
        pb::BudgetPeriod::Daily,
        limit,
    )
}

fn counter(budget_id: &str, window_start: i64) -> Key {
    (budget_id.to_owned(), String::new(), window_start)
}

async fn capped(budgets: Vec<pb::Budget>, outage: pb::OutageMode, clock: &Clock) -> Setup {
    capped_paused(budgets, outage, clock, Duration::ZERO).await
}

async fn capped_paused(
    budgets: Vec<pb::Budget>,
    outage: pb::OutageMode,
    clock: &Clock,
    event_pause: Duration,
) -> Setup {
    let clock = clock.clone();
    setup_with(
        event_pause,
        |s| {
            s.budgets = budgets;
            s.budget_settings = Some(pb::BudgetSettings {
                outage_mode: outage as i32,
                lease_ttl_s: 30,
                input_bytes_per_token: 3,
                output_estimate_max_tokens: 0,
            });
        },
        |c| c.clock = clock,
    )
    .await
}

/// A streamed Messages request reserving `max_tokens` of output.
fn ask(max_tokens: u64) -> String {
    format!(
        r#"{{"model":"claude-sonnet-5","max_tokens":{max_tokens},"stream":true,"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

async fn post(s: &Setup, body: &str) -> Answer {
    send(s.dp.addr, "POST", "/v1/messages", &[ADA], body, false).await
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers
        .get(format!("anthropic-ratelimit-unified-{name}"))
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn far_from_the_cap_requests_spend_the_held_slice_and_settle_the_real_cost() {
    let clock = Clock::manual(noon());
    let s = capped(vec![ada_daily(10 * DOLLAR)], pb::OutageMode::Closed, &clock).await;
    for _ in 0..5 {
        let a = post(&s, &ask(1_000)).await;
        assert_eq!(a.status, 200);
        assert_eq!(header(&a, "status"), Some("allowed"));
        assert_eq!(header(&a, "overage-status"), Some("allowed"));
        assert_eq!(header(&a, "representative-claim"), Some("overage"));
        assert_eq!(header(&a, "overage-utilization"), Some("0.00"));
        let reset = (day_start(noon()) + 86_400).to_string();
        assert_eq!(header(&a, "reset"), Some(reset.as_str()));
        assert_eq!(header(&a, "overage-reset"), Some(reset.as_str()));
        assert_eq!(header(&a, "overage-surpassed-threshold"), None);
    }
    assert_eq!(s.cp.grant_calls(), 1, "one slice covers all five requests");
    // An upstream refusal that reports no usage costs nothing and releases its estimate.
    let failing =
        r#"{"model":"claude-sonnet-5","max_tokens":1000,"please_fail":true,"messages":[]}"#;
    let a = post(&s, failing).await;
    assert_eq!(a.status, 400);
    assert_eq!(header(&a, "status"), None, "no spend headers on an error");

    let usage = s.cp.wait_for_usage(6).await;
    let (failed, usage): (Vec<_>, Vec<_>) = usage
        .into_iter()
        .partition(|r| r.outcome == pb::UsageOutcome::UpstreamError as i32);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].cost_micro_usd, 0);
    let key = counter("b-ada", day_start(noon()));
    for r in &usage {
        assert_eq!(r.cost_micro_usd, STREAM_COST);
        assert_eq!(r.charges.len(), 1);
        assert_eq!(super::support::key(&r.charges[0]), key);
        assert_eq!(r.group_ids, ["g-eng"]);
        assert_eq!(r.price_source, "catalogue:claude-sonnet-5");
    }
    let cp = s.cp.clone();
    s.stop().await;
    // Settled at the real cost; the rest of the slice went back at shutdown.
    assert_eq!(cp.spent(&key), 5 * STREAM_COST);
    let lease = cp.lease_of("dp-test", &key).unwrap();
    assert_eq!(
        (lease.granted, lease.consumed),
        (5 * STREAM_COST, 5 * STREAM_COST)
    );
}

#[tokio::test]
async fn concurrent_requests_on_a_fresh_counter_share_one_lease_call() {
    let clock = Clock::manual(noon());
    let s = capped(vec![ada_daily(10 * DOLLAR)], pb::OutageMode::Closed, &clock).await;
    let body = ask(1_000);
    let answers = futures_util::future::join_all((0..20).map(|_| post(&s, &body))).await;
    assert!(answers.iter().all(|a| a.status == 200));
    // The first caller's slice ($0.50) covers the other 19, which waited for it.
    assert_eq!(s.cp.grant_calls(), 1);
    s.stop().await;
}

#[tokio::test]
async fn the_lease_keeper_renews_a_slice_in_use_and_hands_an_idle_one_back() {
    let clock = Clock::manual(noon());
    // A 3 s lease TTL: the keeper runs every second.
    let s = setup_with(
        Duration::ZERO,
        |snap| {
            snap.budgets = vec![ada_daily(10 * DOLLAR)];
            snap.budget_settings = Some(pb::BudgetSettings {
                lease_ttl_s: 3,
                ..Default::default()
            });
        },
        |c| c.clock = clock.clone(),
    )
    .await;
    assert_eq!(post(&s, &ask(1_000)).await.status, 200);
    s.cp.wait_for_usage(1).await;
    let key = counter("b-ada", day_start(noon()));
    let mut released = false;
    for _ in 0..200 {
        let lease = s.cp.lease_of("dp-test", &key).unwrap();
        if lease.granted == lease.consumed {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(released, "the idle slice went back without a shutdown");
    let calls = s.cp.lease_calls();
    let is_renewal = |c: &&pb::LeaseRequest| {
        c.asks
            .iter()
            .all(|a| a.need_micro_usd == 0 && a.want_micro_usd == 0 && a.release_micro_usd == 0)
    };
    assert!(calls.iter().any(|c| is_renewal(&c)), "renewed while in use");
    assert_eq!(s.cp.spent(&key), STREAM_COST);
    s.stop().await;
}

#[tokio::test]
async fn a_reached_cap_refuses_with_billing_error_and_claude_code_headers() {
    let clock = Clock::manual(noon());
    let pool = budget(
        "b-eng",
        pb::BudgetScope::Group,
        "g-eng",
        pb::BudgetPeriod::Daily,
        DOLLAR,
    );
    let s = capped(vec![pool], pb::OutageMode::Closed, &clock).await;
    s.cp.set_spent(counter("b-eng", day_start(noon())), DOLLAR);

    let a = post(&s, &ask(1_000)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers["x-should-retry"], "false");
    assert_eq!(a.headers["retry-after"], "43200");
    let reset = (day_start(noon()) + 86_400).to_string();
    assert_eq!(header(&a, "status"), Some("rejected"));
    assert_eq!(header(&a, "reset"), Some(reset.as_str()));
    assert_eq!(header(&a, "overage-reset"), Some(reset.as_str()));
    assert_eq!(header(&a, "overage-utilization"), Some("1.00"));
    assert_eq!(header(&a, "overage-surpassed-threshold"), Some("1"));
    assert_eq!(header(&a, "overage-period"), Some("daily"));
    assert_eq!(
        header(&a, "overage-disabled-reason"),
        Some("group_spend_cap_reached")
    );
    assert_eq!(header(&a, "overage-scope"), Some("group_pool"));
    assert_eq!(header(&a, "representative-claim"), None);
    assert_eq!(header(&a, "overage-status"), None);
    let json = a.json();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "billing_error");
    assert_eq!(
        json["error"]["message"],
        "You have reached your daily spend cap (group eng, $1.00); it resets at 2026-11-23 \
         00:00 UTC — ask your Tollgate admin if you need more before then."
    );
    assert!(s.upstream.received().is_empty(), "refused before proxying");

    // count_tokens is never capped.
    let a = send(
        s.dp.addr,
        "POST",
        "/v1/messages/count_tokens",
        &[ADA],
        &ask(1_000),
        false,
    )
    .await;
    assert_eq!(a.status, 200);

    // A user cap says so, and is not a group pool.
    let mut next = snapshot(2, &s.upstream.base_url);
    next.budgets = vec![ada_daily(DOLLAR)];
    s.cp.publish(next);
    assert!(
        s.dp.wait_for_snapshot_version(2, Duration::from_secs(10))
            .await
    );
    s.cp.set_spent(counter("b-ada", day_start(noon())), 2 * DOLLAR);
    let a = post(&s, &ask(1_000)).await;
    assert_eq!(a.status, 429);
    assert_eq!(
        header(&a, "overage-disabled-reason"),
        Some("user_spend_cap_reached")
    );
    assert_eq!(header(&a, "overage-utilization"), Some("2.00"));
    assert_eq!(header(&a, "overage-scope"), None);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You have reached your daily spend cap (personal, $1.00)")
    );
    s.stop().await;
}

#[tokio::test]
async fn past_75_and_95_percent_success_headers_warn_and_a_new_day_uses_a_new_counter() {
    let clock = Clock::manual(noon());
    let s = capped(vec![ada_daily(10 * DOLLAR)], pb::OutageMode::Closed, &clock).await;
    let today = counter("b-ada", day_start(noon()));
    s.cp.set_spent(today.clone(), 8 * DOLLAR);
    let a = post(&s, &ask(1_000)).await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "status"), Some("allowed_warning"));
    assert_eq!(header(&a, "overage-status"), Some("allowed_warning"));
    assert_eq!(header(&a, "overage-utilization"), Some("0.80"));
    assert_eq!(header(&a, "overage-surpassed-threshold"), Some("0.75"));

    clock.advance(86_400);
    let tomorrow = counter("b-ada", day_start(noon()) + 86_400);
    s.cp.set_spent(tomorrow.clone(), 9_600_000);
    let a = post(&s, &ask(1_000)).await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "overage-utilization"), Some("0.96"));
    assert_eq!(header(&a, "overage-surpassed-threshold"), Some("0.95"));
    let reset = (day_start(noon()) + 2 * 86_400).to_string();
    assert_eq!(header(&a, "reset"), Some(reset.as_str()));

    let usage = s.cp.wait_for_usage(2).await;
    let charged: Vec<Key> = usage
        .iter()
        .map(|r| super::support::key(&r.charges[0]))
        .collect();
    assert_eq!(charged, [today.clone(), tomorrow.clone()]);
    assert_eq!(
        s.cp.grant_calls(),
        2,
        "the new day's counter needed a slice of its own"
    );
    let cp = s.cp.clone();
    s.stop().await;
    assert_eq!(cp.spent(&today), 8 * DOLLAR + STREAM_COST);
    assert_eq!(cp.spent(&tomorrow), 9_600_000 + STREAM_COST);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_billed_for_what_the_upstream_reported() {
    let clock = Clock::manual(noon());
    let s = capped_paused(
        vec![ada_daily(10 * DOLLAR)],
        pb::OutageMode::Closed,
        &clock,
        Duration::from_millis(40),
    )
    .await;
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
    assert_eq!(
        usage[0].cost_micro_usd, STREAM_COST,
        "the whole answer, as billed"
    );
    let cp = s.cp.clone();
    s.stop().await;
    assert_eq!(cp.spent(&counter("b-ada", day_start(noon()))), STREAM_COST);
}

#[tokio::test]
async fn control_plane_down_in_closed_mode_serves_what_leases_cover_then_refuses() {
    let clock = Clock::manual(noon());
    let s = capped(vec![ada_daily(10 * DOLLAR)], pb::OutageMode::Closed, &clock).await;
    assert_eq!(post(&s, &ask(1_000)).await.status, 200);
    s.cp.spend_unavailable(true);
    // Covered by the slice already held ($0.50 = limit / 20).
    assert_eq!(post(&s, &ask(1_000)).await.status, 200);
    // Needs more than the slice holds: fails closed.
    let a = post(&s, &ask(40_000)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers["x-should-retry"], "false");
    assert_eq!(a.headers["retry-after"], "60");
    assert_eq!(header(&a, "status"), Some("rejected"));
    assert_eq!(header(&a, "overage-disabled-reason"), Some("fetch_error"));
    assert_eq!(header(&a, "representative-claim"), None);
    assert_eq!(a.json()["error"]["type"], "billing_error");
    assert_eq!(
        a.json()["error"]["message"],
        "Tollgate cannot check your spend cap right now (control plane unreachable); try \
         again in a minute."
    );
    let usage = s.cp.wait_for_usage(2).await;
    assert_eq!(
        usage.len(),
        2,
        "both admitted requests metered, the refused one not"
    );
    assert_eq!(s.upstream.received().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn control_plane_down_in_open_mode_admits_and_meters() {
    let clock = Clock::manual(noon());
    let s = capped(vec![ada_daily(10 * DOLLAR)], pb::OutageMode::Open, &clock).await;
    s.cp.spend_unavailable(true);
    let a = post(&s, &ask(1_000)).await;
    assert_eq!(a.status, 200);
    let usage = s.cp.wait_for_usage(1).await;
    assert_eq!(usage[0].cost_micro_usd, STREAM_COST);
    assert_eq!(
        super::support::key(&usage[0].charges[0]),
        counter("b-ada", day_start(noon()))
    );
    s.stop().await;
}

#[tokio::test]
async fn a_control_plane_that_refuses_the_lease_is_not_an_outage_even_in_open_mode() {
    let clock = Clock::manual(noon());
    let s = capped(vec![ada_daily(10 * DOLLAR)], pb::OutageMode::Open, &clock).await;
    s.cp.refuse_leases(true);
    let a = post(&s, &ask(1_000)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers["x-should-retry"], "false");
    assert_eq!(header(&a, "overage-disabled-reason"), Some("fetch_error"));
    // A refusal does not mark the control plane down: once it accepts, requests pass.
    s.cp.refuse_leases(false);
    let a = post(&s, &ask(1_000)).await;
    assert_eq!(a.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn usage_endpoint_reports_every_cap_or_month_to_date_spend() {
    let clock = Clock::manual(noon());
    let org = budget(
        "b-org",
        pb::BudgetScope::Org,
        "",
        pb::BudgetPeriod::Monthly,
        100 * DOLLAR,
    );
    let s = capped(
        vec![org, ada_daily(10 * DOLLAR)],
        pb::OutageMode::Closed,
        &clock,
    )
    .await;
    s.cp.set_spent(counter("b-ada", day_start(noon())), 8 * DOLLAR);
    s.cp.set_spent(
        counter("b-org", unix_s_from_civil(2026, 11, 1)),
        25 * DOLLAR,
    );
    let a = send(
        s.dp.addr,
        "GET",
        "/api/oauth/usage",
        &[("authorization", "Bearer tg_ada")],
        "",
        false,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        serde_json::json!({
            "extra_usage": {
                "is_enabled": true,
                "monthly_limit": 10_000,
                "used_credits": 2_500,
                "utilization": 25,
                "currency": "USD",
            },
            "limits": [
                {"kind": "spend", "group": "monthly", "percent": 25,
                 "resets_at": "2026-12-01T00:00:00Z", "severity": "normal", "is_active": true},
                {"kind": "spend", "group": "daily", "percent": 80,
                 "resets_at": "2026-11-23T00:00:00Z", "severity": "warning", "is_active": true},
            ],
        })
    );
    let unauthenticated = send(s.dp.addr, "GET", "/api/oauth/usage", &[], "", false).await;
    assert_eq!(unauthenticated.status, 401);
    s.stop().await;

    // No cap: month-to-date spend, with day and week.
    let s = capped(Vec::new(), pb::OutageMode::Closed, &clock).await;
    s.cp.set_past_spend("u-ada", 1_230_000, 4_560_000, 7_890_000);
    let a = send(s.dp.addr, "GET", "/api/oauth/usage", &[ADA], "", false).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        serde_json::json!({
            "extra_usage": {
                "is_enabled": true,
                "monthly_limit": null,
                "used_credits": 789,
                "utilization": null,
                "currency": "USD",
                "daily": {"limit": null, "used_credits": 123, "utilization": null},
                "weekly": {"limit": null, "used_credits": 456, "utilization": null},
            },
            "limits": [],
        })
    );
    s.cp.spend_unavailable(true);
    let a = send(s.dp.addr, "GET", "/api/oauth/usage", &[ADA], "", false).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["error"]["type"], "api_error");
    assert_eq!(
        a.json()["error"]["message"],
        "spend information is unavailable"
    );
    // Uncapped requests carry no spend headers but are still priced.
    let a = post(&s, &ask(1_000)).await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "status"), None);
    assert_eq!(s.cp.wait_for_usage(1).await[0].cost_micro_usd, STREAM_COST);
    s.stop().await;
}

#[tokio::test]
async fn a_target_without_a_price_is_refused_naming_the_model() {
    let clock = Clock::manual(noon());
    let s = setup_with(
        Duration::ZERO,
        |snap| {
            for route in &mut snap.routes {
                if route.model == "claude-haiku-5" {
                    route.targets[0].price = None;
                }
            }
        },
        |c| c.clock = clock,
    )
    .await;
    let body = r#"{"model":"claude-haiku-5","max_tokens":10,"messages":[]}"#;
    let a = post(&s, body).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    assert_eq!(
        a.json()["error"]["message"],
        "model claude-haiku-5 has no price configured"
    );
    assert!(s.upstream.received().is_empty());
    s.stop().await;
}
