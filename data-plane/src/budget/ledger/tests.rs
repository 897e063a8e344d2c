use std::sync::Arc;

use tollgate_policy::{Budget, BudgetScope, Period};

use super::*;
use crate::budget::lease::CounterState;

const TTL: Duration = Duration::from_secs(30);

fn applied(id: &str, limit: u64) -> AppliedBudget {
    let window = Period::Daily.window(1_000_000);
    AppliedBudget {
        budget: Arc::new(Budget {
            id: id.into(),
            scope: BudgetScope::User,
            scope_id: "u".into(),
            period: Period::Daily,
            limit_micro_usd: limit,
            per_member: false,
            alert_thresholds_percent: Vec::new(),
        }),
        counter: CounterKey {
            budget_id: id.into(),
            subject_id: String::new(),
            window_start_unix_s: window.start_unix_s,
        },
        window,
    }
}

fn reply(granted: bool, states: &[(u64, u64, u64, bool)]) -> LeaseReply {
    LeaseReply {
        granted,
        counters: states
            .iter()
            .map(|&(granted, limit, spent, lease_reset)| CounterState {
                granted,
                limit,
                spent,
                lease_reset,
                expires_in: None,
            })
            .collect(),
        blocked_index: 0,
    }
}

#[test]
fn fast_path_needs_a_live_slot_with_headroom_on_every_counter() {
    let ledger = Ledger::new();
    let a = applied("a", 1_000_000);
    let counters = [a.counter.clone()];
    let now = Instant::now();
    assert_eq!(ledger.try_reserve(&counters, 10, now), None);

    ledger.seed(a.counter.clone(), 100, 1_000_000, TTL);
    let rep = ledger.try_reserve(&counters, 60, now).unwrap();
    assert_eq!(rep.index, 0);
    assert_eq!(ledger.amounts(&a.counter), Some((100, 0, 60)));
    // 40 left: a second 60 does not fit, and nothing is reserved by the refusal.
    assert_eq!(ledger.try_reserve(&counters, 60, now), None);
    assert_eq!(ledger.amounts(&a.counter), Some((100, 0, 60)));
    // Settling at the real cost frees the rest of the estimate.
    ledger.settle(&counters, 60, 15);
    assert_eq!(ledger.amounts(&a.counter), Some((100, 15, 0)));
    assert!(ledger.try_reserve(&counters, 85, now).is_some());
    assert_eq!(ledger.try_reserve(&counters, 1, now), None);
    ledger.release(&counters, 85);
    assert_eq!(ledger.amounts(&a.counter), Some((100, 15, 0)));
    // An expired lease is never spent from, whatever its headroom.
    assert_eq!(
        ledger.try_reserve(&counters, 1, now + TTL + Duration::from_secs(1)),
        None
    );
}

#[test]
fn slow_path_reserves_first_and_asks_only_for_what_is_missing() {
    let ledger = Ledger::new();
    let a = applied("a", 2_000_000);
    let b = applied("b", 1_000);
    ledger.seed(a.counter.clone(), 500, 2_000_000, TTL);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(&[a.clone(), b.clone()], 800, now);
    // a: 500 held → need 300, want limit/20; b: nothing held → need 800 (≥ limit/20).
    assert_eq!(asks.len(), 2);
    assert_eq!((asks[0].need, asks[0].want), (300, 100_000));
    assert_eq!((asks[1].need, asks[1].want), (800, 800));
    // The reservation already blocks concurrent fast-path requests.
    assert_eq!(ledger.amounts(&a.counter), Some((500, 0, 800)));
    assert_eq!(
        ledger.try_reserve(std::slice::from_ref(&a.counter), 1, now),
        None
    );

    ledger.apply_reply(
        &asks,
        &reply(
            true,
            &[(100_000, 2_000_000, 7, false), (800, 1_000, 0, false)],
        ),
        now,
        TTL,
    );
    assert_eq!(ledger.amounts(&a.counter), Some((100_500, 0, 800)));
    assert_eq!(ledger.amounts(&b.counter), Some((800, 0, 800)));
    let rep = ledger
        .representative(&[a.counter.clone(), b.counter.clone()])
        .unwrap();
    assert_eq!(rep.index, 0, "a has spend, b none");
    assert_eq!(
        rep.usage,
        CounterUse {
            used: 7,
            limit: 2_000_000
        }
    );
}

#[test]
fn a_refused_or_reset_lease_grants_nothing_old() {
    let ledger = Ledger::new();
    let a = applied("a", 1_000);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&a), 300, now);
    ledger.apply_reply(&asks, &reply(false, &[(0, 1_000, 900, false)]), now, TTL);
    ledger.release(std::slice::from_ref(&a.counter), 300);
    assert_eq!(ledger.amounts(&a.counter), Some((0, 0, 0)));
    assert_eq!(
        ledger.usage_of(&a.counter),
        Some(CounterUse {
            used: 900,
            limit: 1_000
        })
    );

    // A reset drops the old grant: only acknowledged spend stays covered, so the in-flight
    // reservation is paid for by the new grant (as the control plane will count it).
    ledger.seed(a.counter.clone(), 700, 1_000, TTL);
    let later = now + TTL + Duration::from_secs(1);
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&a), 100, later);
    assert_eq!(
        asks[0].need, 100,
        "an expired slot's headroom is not trusted"
    );
    ledger.apply_reply(&asks, &reply(true, &[(100, 1_000, 0, true)]), later, TTL);
    assert_eq!(ledger.amounts(&a.counter), Some((100, 0, 100)));
}

#[test]
fn upkeep_renews_busy_slots_and_retires_idle_ones() {
    let ledger = Ledger::new();
    let busy = applied("busy", 1_000_000);
    let idle = applied("idle", 1_000_000);
    let now = Instant::now();
    ledger.seed(busy.counter.clone(), 1_000, 1_000_000, TTL * 4);
    ledger.seed(idle.counter.clone(), 1_000, 1_000_000, TTL * 4);
    assert!(
        ledger
            .try_reserve(std::slice::from_ref(&busy.counter), 10, now)
            .is_some()
    );
    ledger.settle(std::slice::from_ref(&idle.counter), 0, 250);

    let later = now + TTL + Duration::from_secs(1);
    let mut asks = ledger.plan_upkeep(later, 0, TTL);
    asks.sort_by(|x, y| x.counter.cmp(&y.counter));
    assert_eq!(asks[0], LeaseAsk::renew(busy.counter.clone()));
    assert_eq!(
        asks[1].release, 750,
        "the unused part of the idle slot goes back"
    );
    // Nothing can reserve what is being handed back.
    assert_eq!(
        ledger.try_reserve(std::slice::from_ref(&idle.counter), 1, later),
        None
    );

    ledger.finish_upkeep(&asks, None, later, TTL);
    assert!(ledger.amounts(&idle.counter).is_none());
    assert!(ledger.amounts(&busy.counter).is_some());

    // Shutdown hands back every live slot's headroom.
    let asks = ledger.release_all();
    assert_eq!(asks.len(), 1);
    assert_eq!(asks[0].release, 990);
    assert!(ledger.amounts(&busy.counter).is_none());
}

#[test]
fn a_slot_whose_window_ended_is_retired_once_idle() {
    let ledger = Ledger::new();
    let a = applied("a", 1_000_000);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&a), 10, now);
    ledger.apply_reply(
        &asks,
        &reply(true, &[(50_000, 1_000_000, 0, false)]),
        now,
        TTL,
    );
    // In flight: left alone (no renewal of a window that is over).
    let asks = ledger.plan_upkeep(now, a.window.end_unix_s, TTL);
    assert!(asks.is_empty());
    ledger.settle(std::slice::from_ref(&a.counter), 10, 4);
    let asks = ledger.plan_upkeep(now, a.window.end_unix_s, TTL);
    assert_eq!(asks[0].release, 49_996);
    ledger.finish_upkeep(
        &asks,
        Some(&reply(false, &[(0, 1_000_000, 4, false)])),
        now,
        TTL,
    );
    assert!(ledger.amounts(&a.counter).is_none());
}

#[test]
fn utilisation_is_floored_and_zero_limits_count_as_full() {
    let u = |used, limit| CounterUse { used, limit };
    assert_eq!(u(749_999, 1_000_000).hundredths(), 74);
    assert_eq!(u(3, 4).hundredths(), 75);
    assert_eq!(u(0, 0).hundredths(), 100);
    assert!(u(1, 2).exceeds(&u(1, 3)));
    assert!(!u(1, 3).exceeds(&u(2, 6)));
    assert!(u(0, 0).exceeds(&u(5, 4)));
}

#[test]
fn utilisation_counts_each_settled_cost_once_whether_or_not_the_control_plane_has_it() {
    let ledger = Ledger::new();
    let a = applied("a", 1_000);
    let counters = std::slice::from_ref(&a.counter);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&a), 10, now);
    ledger.apply_reply(&asks, &reply(true, &[(500, 1_000, 200, false)]), now, TTL);
    ledger.settle(counters, 10, 100);
    let used = |l: &Ledger| l.usage_of(&a.counter).unwrap().used;
    assert_eq!(
        used(&ledger),
        300,
        "not yet reported: added to the ledger's 200"
    );

    // A renewal before the record is acknowledged: the control plane still lacks it.
    let renew = [LeaseAsk::renew(a.counter.clone())];
    ledger.apply_reply(&renew, &reply(false, &[(0, 1_000, 200, false)]), now, TTL);
    assert_eq!(used(&ledger), 300);

    // Acknowledged, then a renewal that sees it: counted once.
    ledger.reported(counters, 100);
    ledger.apply_reply(&renew, &reply(false, &[(0, 1_000, 300, false)]), now, TTL);
    assert_eq!(used(&ledger), 300);

    // Settled and acknowledged while a renewal is in flight, and the answer includes it:
    // still counted once.
    ledger.settle(counters, 0, 50);
    ledger.reported(counters, 50);
    ledger.apply_reply(&renew, &reply(false, &[(0, 1_000, 350, false)]), now, TTL);
    assert_eq!(used(&ledger), 350);
}

#[test]
fn a_surely_expired_lease_is_reset_locally_before_asking_so_a_lost_answer_cannot_revive_it() {
    let ledger = Ledger::new();
    let a = applied("a", 1_000);
    let now = Instant::now();
    // 700 granted, nothing spent; the lease then lapses at the control plane.
    ledger.seed(a.counter.clone(), 700, 1_000, TTL);
    let later = now + TTL + EXPIRY_MARGIN + Duration::from_secs(1);
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&a), 100, later);
    assert_eq!(asks[0].need, 100);
    // The answer is lost (never applied): the old 700 must not count any more.
    assert_eq!(ledger.amounts(&a.counter), Some((0, 0, 100)));
    // A later answer that does not say "reset" (the control plane already reset it for
    // the lost call) adds only its grant.
    ledger.apply_reply(&asks, &reply(true, &[(100, 1_000, 0, false)]), later, TTL);
    assert_eq!(ledger.amounts(&a.counter), Some((100, 0, 100)));
}

#[test]
fn the_control_planes_lease_lifetime_wins_over_a_longer_snapshot_ttl() {
    let ledger = Ledger::new();
    let a = applied("a", 1_000_000);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&a), 100, now);
    let mut answer = reply(true, &[(10_000, 1_000_000, 0, false)]);
    answer.counters[0].expires_in = Some(Duration::from_secs(5));
    ledger.apply_reply(&asks, &answer, now, TTL);
    ledger.settle(std::slice::from_ref(&a.counter), 100, 100);
    let after_cp_expiry = now + Duration::from_secs(4);
    assert!(
        ledger
            .try_reserve(std::slice::from_ref(&a.counter), 10, after_cp_expiry)
            .is_none(),
        "a lease the control plane expires in 5 s is not used after 3 s (2 s margin)"
    );
}

#[test]
fn upkeep_leaves_an_ended_window_with_requests_in_flight_alone() {
    let ledger = Ledger::new();
    let a = applied("a", 1_000_000);
    let now = Instant::now();
    ledger.seed(a.counter.clone(), 1_000, 1_000_000, TTL);
    assert!(
        ledger
            .try_reserve(std::slice::from_ref(&a.counter), 10, now)
            .is_some()
    );
    // Seeded slots end at i64::MAX; ask as if the window were long over.
    let asks = ledger.plan_upkeep(now, i64::MAX, TTL);
    assert!(asks.is_empty(), "no renewal of a finished window: {asks:?}");
}

#[test]
fn control_plane_failures_are_outages_but_refusals_are_not() {
    use crate::budget::lease::SpendCallError;
    let unreachable = [
        tonic::Status::unavailable("down"),
        tonic::Status::deadline_exceeded("slow"),
        tonic::Status::internal("database gone"),
    ];
    for status in unreachable {
        assert!(
            SpendCallError::from_status(&status).unreachable,
            "{status:?}"
        );
    }
    let refused = [
        tonic::Status::invalid_argument("window"),
        tonic::Status::unauthenticated("token"),
        tonic::Status::failed_precondition("x"),
    ];
    for status in refused {
        assert!(
            !SpendCallError::from_status(&status).unreachable,
            "{status:?}"
        );
    }
}
