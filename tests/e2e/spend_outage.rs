//! Spend caps while the control plane is down: the data plane spends only what its leases
//! hold, then follows the outage mode; every admitted request's usage reaches the ledger once
//! the control plane is back.

use std::time::Duration;

use tollgate_e2e::Stack;
use tollgate_e2e::ledger;

use crate::spend::{ALICE, Answer, COST, alice_cap, assert_ledger_balances, client_cost, send};
use crate::support::eventually;

/// What data plane `dp` holds unused on the cap, once its usage so far is stored.
async fn held_headroom(pool: &sqlx::PgPool, budget_id: &str, dp: &str, consumed: u64) -> u64 {
    let settled = eventually(Duration::from_secs(20), || async {
        ledger::leases(pool, budget_id)
            .await
            .unwrap()
            .iter()
            .any(|(id, _, c, live)| id == dp && *c == consumed && *live)
    })
    .await;
    let leases = ledger::leases(pool, budget_id).await.unwrap();
    assert!(settled, "{dp}'s lease consumed {consumed}: {leases:?}");
    leases
        .iter()
        .find(|(id, ..)| id == dp)
        .map(|(_, granted, consumed, _)| granted.saturating_sub(*consumed))
        .unwrap_or_default()
}

/// Σ of what the clients were billed for, from the usage in each 200 answer.
fn seen_cost(answers: &[Answer]) -> (u64, u64) {
    let ok: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    (
        ok.len() as u64,
        ok.iter().map(|a| client_cost(&a.body)).sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_closed_serves_what_leases_hold_then_refuses_with_fetch_error_and_loses_no_usage() {
    let mut stack = Stack::start().await.unwrap();
    // A cap of 100 requests: far from it, a lease covers several requests.
    let budget_id = alice_cap(&stack, 100, &["--outage-mode", "closed"]).await;
    let dp = stack.data_plane_named("dp-outage").await.unwrap();
    let client = reqwest::Client::new();
    let pool = stack.db.pool().await.unwrap();

    let mut answers = vec![send(&client, &dp.url, &stack.alice_key, false).await];
    assert_eq!(answers[0].status, 200, "{:?}", answers[0]);
    let held = held_headroom(&pool, &budget_id, "dp-outage", COST).await;
    let covered = held / COST;
    eprintln!("the data plane holds {held} micro-USD unused: {covered} request(s)");
    assert!(
        covered >= 1,
        "a lease far from the cap covers more than one request"
    );

    stack.stop_control_plane().await;
    for i in 0..covered {
        let a = send(&client, &dp.url, &stack.alice_key, false).await;
        assert_eq!(
            a.status, 200,
            "request {i} is covered by the held lease: {a:?}"
        );
        answers.push(a);
    }
    for _ in 0..3 {
        let a = send(&client, &dp.url, &stack.alice_key, false).await;
        assert_eq!(a.status, 429, "{a:?}");
        assert_eq!(a.body["type"], "error", "{a:?}");
        assert_eq!(a.header("x-should-retry"), "false", "{a:?}");
        assert_eq!(a.header("anthropic-ratelimit-unified-status"), "rejected");
        assert_eq!(
            a.header("anthropic-ratelimit-unified-overage-disabled-reason"),
            "fetch_error",
            "{a:?}"
        );
        assert_eq!(a.header("retry-after"), "60", "{a:?}");
        answers.push(a);
    }

    stack.restart_control_plane().await.unwrap();
    let (admitted, billed) = seen_cost(&answers);
    assert_eq!(admitted, 1 + covered);
    let spent = assert_ledger_balances(&pool, &budget_id, admitted).await;
    assert_eq!(
        spent, billed,
        "the ledger holds exactly what the clients were served"
    );
    assert_eq!(
        ledger::usage_cost(&pool, ALICE).await.unwrap(),
        (admitted, billed)
    );

    // Back online, the cap is spendable again.
    let last = std::sync::Mutex::new(None);
    let ok = eventually(Duration::from_secs(20), || async {
        let a = send(&client, &dp.url, &stack.alice_key, false).await;
        let admitted = a.status == 200;
        *last.lock().unwrap() = Some(a);
        admitted
    })
    .await;
    assert!(
        ok,
        "requests are admitted again once the control plane is back; last answer: {:?}",
        last.lock().unwrap()
    );
    pool.close().await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_open_keeps_serving_past_the_leases_and_every_request_is_metered_afterwards() {
    let mut stack = Stack::start().await.unwrap();
    let budget_id = alice_cap(&stack, 100, &["--outage-mode", "open"]).await;
    let dp = stack.data_plane_named("dp-open").await.unwrap();
    let client = reqwest::Client::new();
    let pool = stack.db.pool().await.unwrap();

    let mut answers = vec![send(&client, &dp.url, &stack.alice_key, false).await];
    assert_eq!(answers[0].status, 200, "{:?}", answers[0]);
    let covered = held_headroom(&pool, &budget_id, "dp-open", COST).await / COST;

    stack.stop_control_plane().await;
    let during = covered + 5;
    for i in 0..during {
        let a = send(&client, &dp.url, &stack.alice_key, false).await;
        assert_eq!(
            a.status, 200,
            "open mode serves request {i} ({covered} covered by the lease): {a:?}"
        );
        answers.push(a);
    }

    stack.restart_control_plane().await.unwrap();
    let (admitted, billed) = seen_cost(&answers);
    assert_eq!(admitted, 1 + during);
    let spent = assert_ledger_balances(&pool, &budget_id, admitted).await;
    assert_eq!(spent, billed, "no usage served during the outage was lost");
    pool.close().await;
    stack.finish().await;
}
