//! Failover, circuit breakers and the retry budget, against a fake upstream whose answers
//! depend on the upstream model id (`status-529…` fails with that status, `flaky` fails while
//! told to).

use std::time::Duration;

use tollgate_proto::v1 as pb;

use super::support::{price, send};
use super::{ADA, setup_with};

/// Routes `claude-sonnet-5` to the given upstream models on the fake upstream, in order.
fn route_to(upstream_models: &'static [&'static str]) -> impl FnOnce(&mut pb::Snapshot) {
    move |s: &mut pb::Snapshot| {
        let route = s
            .routes
            .iter_mut()
            .find(|r| r.model == "claude-sonnet-5")
            .unwrap();
        route.targets = upstream_models
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
}

const BODY: &str =
    r#"{"model":"claude-sonnet-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;

async fn ask(addr: std::net::SocketAddr) -> super::support::Answer {
    send(addr, "POST", "/v1/messages", &[ADA], BODY, false).await
}

#[tokio::test]
async fn an_overloaded_target_before_the_first_byte_fails_over_exactly_once() {
    let s = setup_with(
        Duration::ZERO,
        route_to(&["status-529", "claude-sonnet-5-20990101"]),
        |_| {},
    )
    .await;
    let answer = ask(s.dp.addr).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json()["model"],
        "claude-sonnet-5",
        "the client sees the id it asked for"
    );
    assert_eq!(
        s.upstream.models(),
        ["status-529", "claude-sonnet-5-20990101"]
    );
    let records = s.cp.wait_for_usage(1).await;
    assert_eq!(records.len(), 1, "one record for the request");
    assert_eq!(records[0].upstream_model, "claude-sonnet-5-20990101");
    assert_eq!(records[0].input_tokens, 11);
    s.stop().await;
}

#[tokio::test]
async fn x_should_retry_false_and_client_errors_are_not_failed_over() {
    let s = setup_with(
        Duration::ZERO,
        route_to(&["status-529-noretry", "claude-sonnet-5-20990101"]),
        |_| {},
    )
    .await;
    let answer = ask(s.dp.addr).await;
    assert_eq!(answer.status, 529);
    assert_eq!(answer.json()["error"]["type"], "overloaded_error");
    assert_eq!(s.upstream.models(), ["status-529-noretry"]);
    s.stop().await;

    let s = setup_with(
        Duration::ZERO,
        route_to(&["status-400", "claude-sonnet-5-20990101"]),
        |_| {},
    )
    .await;
    let answer = ask(s.dp.addr).await;
    assert_eq!(answer.status, 400);
    assert_eq!(s.upstream.models(), ["status-400"]);
    s.stop().await;
}

#[tokio::test]
async fn a_failing_targets_breaker_opens_then_a_probe_closes_it() {
    let s = setup_with(
        Duration::ZERO,
        route_to(&["flaky", "claude-sonnet-5-20990101"]),
        |c| {
            c.breaker_failure_threshold = 2;
            c.breaker_cooldown = Duration::from_millis(300);
            c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        },
    )
    .await;
    s.upstream.set_flaky_failing(true);
    for _ in 0..3 {
        assert_eq!(ask(s.dp.addr).await.status, 200);
    }
    // Two failures open the breaker: the third request goes straight to the second target.
    let flaky = |models: &[String]| models.iter().filter(|m| *m == "flaky").count();
    assert_eq!(flaky(&s.upstream.models()), 2);

    let metrics = send(s.dp.admin_addr.unwrap(), "GET", "/metrics", &[], "", false).await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        text.contains("tollgate_upstream_breaker_state{provider_id=\"p-up\",provider=\"upstream\",upstream_model=\"flaky\"} 1"),
        "{text}"
    );

    // After the cooldown one probe goes through; it succeeds and closes the breaker.
    s.upstream.set_flaky_failing(false);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ask(s.dp.addr).await.status, 200);
    assert_eq!(ask(s.dp.addr).await.status, 200);
    assert_eq!(flaky(&s.upstream.models()), 4, "probe, then closed");
    let metrics = send(s.dp.admin_addr.unwrap(), "GET", "/metrics", &[], "", false).await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(text.contains("upstream_model=\"flaky\"} 0"), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn a_target_resting_at_the_providers_request_answers_429_until_then() {
    let s = setup_with(Duration::ZERO, route_to(&["status-429-retryafter"]), |_| {}).await;
    let first = ask(s.dp.addr).await;
    assert_eq!(first.status, 429);
    assert_eq!(first.json()["error"]["type"], "rate_limit_error");
    assert_eq!(first.headers["retry-after"], "3600");
    // The provider asked for an hour's rest (capped at five minutes): the next request does
    // not reach it, and the client is told to wait, as the provider would have told it.
    let second = ask(s.dp.addr).await;
    assert_eq!(second.status, 429);
    assert_eq!(second.json()["error"]["type"], "rate_limit_error");
    let wait: u64 = second.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((250..=300).contains(&wait), "{wait}");
    assert_eq!(s.upstream.models().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn when_every_target_is_failing_the_client_gets_529_at_once() {
    let s = setup_with(Duration::ZERO, route_to(&["status-503"]), |c| {
        c.breaker_failure_threshold = 1;
        c.breaker_cooldown = Duration::from_secs(60);
    })
    .await;
    assert_eq!(ask(s.dp.addr).await.status, 502);
    let second = ask(s.dp.addr).await;
    assert_eq!(second.status, 529);
    assert_eq!(second.json()["error"]["type"], "overloaded_error");
    let wait: u64 = second.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&wait), "{wait}");
    assert_eq!(s.upstream.models().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn the_retry_budget_caps_failover() {
    let s = setup_with(
        Duration::ZERO,
        route_to(&["status-503", "claude-sonnet-5-20990101"]),
        |c| {
            c.retry_budget_percent = 0;
            c.retry_budget_min_per_second = 0;
            c.breaker_failure_threshold = 100;
        },
    )
    .await;
    let answer = ask(s.dp.addr).await;
    assert_eq!(
        answer.status, 502,
        "no budget: the first target's error is the answer"
    );
    assert_eq!(s.upstream.models(), ["status-503"]);
    s.stop().await;
}
