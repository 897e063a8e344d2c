use tollgate_policy::RateLimitScope;

use super::*;
use crate::rate_limit::lease::BucketState;

const TTL: Duration = Duration::from_secs(30);
const LONG: Duration = Duration::from_secs(3_600);

fn limit(id: &str, kind: RateLimitKind, limit: u64) -> Arc<RateLimit> {
    Arc::new(RateLimit {
        id: id.into(),
        scope: RateLimitScope::User,
        scope_id: "u".into(),
        per_member: false,
        model: None,
        kind,
        limit,
    })
}

fn charge(limit: &Arc<RateLimit>, amount: u64) -> Charge {
    Charge {
        bucket: BucketKey {
            limit_id: limit.id.clone(),
            subject_id: String::new(),
        },
        limit: limit.clone(),
        amount,
    }
}

fn state(granted: u64, limit: u64, available: u64) -> BucketState {
    BucketState {
        granted,
        limit,
        available,
        ..BucketState::default()
    }
}

fn reply(granted: bool, buckets: Vec<BucketState>) -> RateReply {
    RateReply {
        granted,
        buckets,
        blocked_index: 0,
    }
}

#[test]
fn the_fast_path_needs_room_on_every_bucket_or_reserves_nothing() {
    let ledger = Ledger::new();
    let rpm = limit("rpm", RateLimitKind::RequestsPerMinute, 100);
    let itpm = limit("itpm", RateLimitKind::InputTokensPerMinute, 10_000);
    let charges = [charge(&rpm, 1), charge(&itpm, 300)];
    let now = Instant::now();
    assert!(!ledger.try_reserve(&charges, now));
    ledger.seed(charges[0].bucket.clone(), rpm.clone(), 5, LONG);
    assert!(!ledger.try_reserve(&charges, now));
    assert_eq!(ledger.amounts(&charges[0].bucket), Some((5, 0, 0)));
    ledger.seed(charges[1].bucket.clone(), itpm.clone(), 500, LONG);
    assert!(ledger.try_reserve(&charges, now));
    assert_eq!(ledger.amounts(&charges[0].bucket), Some((5, 0, 1)));
    assert_eq!(ledger.amounts(&charges[1].bucket), Some((500, 0, 300)));
    // 200 tokens left: a second request of 300 does not fit, and undoes the requests bucket.
    assert!(!ledger.try_reserve(&charges, now));
    assert_eq!(ledger.amounts(&charges[0].bucket), Some((5, 0, 1)));
    assert_eq!(ledger.amounts(&charges[1].bucket), Some((500, 0, 300)));
}

#[test]
fn the_slow_path_reserves_first_and_asks_for_need_and_want() {
    let ledger = Ledger::new();
    let itpm = limit("itpm", RateLimitKind::InputTokensPerMinute, 100_000);
    let c = charge(&itpm, 3_000);
    let now = Instant::now();
    ledger.seed(c.bucket.clone(), itpm.clone(), 1_000, LONG);
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    assert_eq!(
        asks,
        [RateAsk {
            bucket: c.bucket.clone(),
            need: 2_000,
            want: 5_000,
            release: 0,
        }]
    );
    assert_eq!(ledger.amounts(&c.bucket), Some((1_000, 0, 3_000)));
    ledger.apply_reply(
        &asks,
        &reply(true, vec![state(5_000, 100_000, 80_000)]),
        now,
        TTL,
    );
    assert_eq!(ledger.amounts(&c.bucket), Some((6_000, 0, 3_000)));
    // Covered now: a second slow path asks nothing.
    assert!(
        ledger
            .reserve_for_lease(std::slice::from_ref(&c), now)
            .is_empty()
    );
}

#[test]
fn a_refused_answer_grants_nothing() {
    let ledger = Ledger::new();
    let rpm = limit("rpm", RateLimitKind::RequestsPerMinute, 10);
    let c = charge(&rpm, 1);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    assert_eq!((asks[0].need, asks[0].want), (1, 1));
    ledger.apply_reply(&asks, &reply(false, vec![state(0, 10, 0)]), now, TTL);
    ledger.settle(std::slice::from_ref(&c), 0, 0, true);
    assert_eq!(ledger.amounts(&c.bucket), Some((0, 0, 0)));
    assert!(!ledger.try_reserve(std::slice::from_ref(&c), now));
}

#[test]
fn settlement_returns_or_takes_the_difference_and_a_debt_is_asked_for() {
    let ledger = Ledger::new();
    let itpm = limit("itpm", RateLimitKind::InputTokensPerMinute, 100_000);
    let otpm = limit("otpm", RateLimitKind::OutputTokensPerMinute, 100_000);
    let rpm = limit("rpm", RateLimitKind::RequestsPerMinute, 100_000);
    let conc = limit("conc", RateLimitKind::ConcurrentRequests, 10);
    let charges = [
        charge(&itpm, 1_000),
        charge(&otpm, 4_000),
        charge(&rpm, 1),
        charge(&conc, 1),
    ];
    for c in &charges {
        ledger.seed(c.bucket.clone(), c.limit.clone(), 5_000, LONG);
    }
    let now = Instant::now();
    assert!(ledger.try_reserve(&charges, now));
    ledger.settle(&charges, 1_200, 300, false);
    assert_eq!(ledger.amounts(&charges[0].bucket), Some((5_000, 1_200, 0)));
    assert_eq!(ledger.amounts(&charges[1].bucket), Some((5_000, 300, 0)));
    assert_eq!(ledger.amounts(&charges[2].bucket), Some((5_000, 1, 0)));
    assert_eq!(ledger.amounts(&charges[3].bucket), Some((5_000, 0, 0)));
    // A prompt far larger than its estimate leaves a debt…
    assert!(ledger.try_reserve(&charges[..1], now));
    ledger.settle(&charges[..1], 5_000, 0, false);
    assert_eq!(ledger.amounts(&charges[0].bucket), Some((5_000, 6_200, 0)));
    assert!(!ledger.try_reserve(&charges[..1], now));
    // …that the next ask covers too.
    let asks = ledger.reserve_for_lease(&charges[..1], now);
    assert_eq!(asks[0].need, 2_200);
    assert_eq!(asks[0].want, 5_000);
}

#[test]
fn a_debt_never_asks_for_more_than_the_limit() {
    let ledger = Ledger::new();
    let itpm = limit("itpm", RateLimitKind::InputTokensPerMinute, 1_000);
    let c = charge(&itpm, 500);
    ledger.seed(c.bucket.clone(), itpm.clone(), 0, LONG);
    ledger.settle(std::slice::from_ref(&charge(&itpm, 0)), 5_000, 0, false);
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), Instant::now());
    assert_eq!(asks[0].need, 1_000);
}

#[test]
fn a_per_minute_slice_is_spent_from_for_five_seconds_then_handed_back_and_dropped() {
    let ledger = Ledger::new();
    let rpm = limit("rpm", RateLimitKind::RequestsPerMinute, 100);
    let c = charge(&rpm, 1);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    ledger.apply_reply(&asks, &reply(true, vec![state(5, 100, 95)]), now, TTL);
    ledger.settle(std::slice::from_ref(&c), 0, 0, false);
    let later = now + Duration::from_millis(4_900);
    assert!(ledger.try_reserve(std::slice::from_ref(&c), later));
    ledger.settle(std::slice::from_ref(&c), 0, 0, false);
    assert!(ledger.plan_upkeep(later, TTL, true).is_empty());
    let expired = now + PER_MINUTE_SLICE_LIFETIME;
    assert!(!ledger.try_reserve(std::slice::from_ref(&c), expired));
    assert!(ledger.wants_upkeep(expired, false));
    let asks = ledger.plan_upkeep(expired, TTL, false);
    assert_eq!(
        asks,
        [RateAsk {
            release: 3,
            ..RateAsk::renew(c.bucket.clone())
        }]
    );
    assert_eq!(ledger.amounts(&c.bucket), Some((2, 2, 0)));
    ledger.finish_upkeep(&asks, None, expired, TTL);
    assert_eq!(ledger.amounts(&c.bucket), None);
    assert!(!ledger.wants_upkeep(expired, true));
}

#[test]
fn an_expired_per_minute_slice_hands_its_rest_back_in_the_next_ask() {
    let ledger = Ledger::new();
    let otpm = limit("otpm", RateLimitKind::OutputTokensPerMinute, 10_000);
    let c = charge(&otpm, 1_000);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    ledger.apply_reply(
        &asks,
        &reply(true, vec![state(4_000, 10_000, 6_000)]),
        now,
        TTL,
    );
    ledger.settle(std::slice::from_ref(&c), 0, 200, false);
    // 3_800 left, but the slice is too old to spend from.
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now + Duration::from_secs(6));
    assert_eq!(
        asks,
        [RateAsk {
            bucket: c.bucket.clone(),
            need: 1_000,
            want: 1_000,
            release: 3_800,
        }]
    );
}

#[test]
fn a_per_minute_slice_in_flight_hands_back_only_what_settles_unused() {
    let ledger = Ledger::new();
    let otpm = limit("otpm", RateLimitKind::OutputTokensPerMinute, 10_000);
    let c = charge(&otpm, 1_000);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    ledger.apply_reply(
        &asks,
        &reply(true, vec![state(1_500, 10_000, 8_500)]),
        now,
        TTL,
    );
    let expired = now + Duration::from_secs(6);
    let asks = ledger.plan_upkeep(expired, TTL, false);
    assert_eq!(asks[0].release, 500);
    ledger.finish_upkeep(&asks, None, expired, TTL);
    // Still in flight: kept; it settles below its estimate and the rest goes back.
    ledger.settle(std::slice::from_ref(&c), 0, 100, false);
    assert_eq!(ledger.amounts(&c.bucket), Some((1_000, 100, 0)));
    let asks = ledger.plan_upkeep(expired, TTL, false);
    assert_eq!(asks[0].release, 900);
    ledger.finish_upkeep(&asks, None, expired, TTL);
    assert_eq!(ledger.amounts(&c.bucket), None);
}

#[test]
fn an_idle_per_minute_debt_is_asked_for_then_forgiven_after_a_minute() {
    let ledger = Ledger::new();
    let itpm = limit("itpm", RateLimitKind::InputTokensPerMinute, 10_000);
    let c = charge(&itpm, 100);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    ledger.apply_reply(
        &asks,
        &reply(true, vec![state(500, 10_000, 9_500)]),
        now,
        TTL,
    );
    ledger.settle(std::slice::from_ref(&c), 900, 0, false);
    let expired = now + Duration::from_secs(6);
    let asks = ledger.plan_upkeep(expired, TTL, false);
    assert_eq!((asks[0].need, asks[0].want, asks[0].release), (0, 400, 0));
    ledger.finish_upkeep(
        &asks,
        Some(&reply(true, vec![state(100, 10_000, 0)])),
        expired,
        TTL,
    );
    assert_eq!(ledger.amounts(&c.bucket), Some((600, 900, 0)));
    let asks = ledger.plan_upkeep(expired + Duration::from_secs(60), TTL, false);
    assert!(asks.is_empty());
    assert_eq!(ledger.amounts(&c.bucket), None);
}

#[test]
fn concurrency_leases_live_until_the_answered_expiry_less_the_margin() {
    let ledger = Ledger::new();
    let conc = limit("conc", RateLimitKind::ConcurrentRequests, 4);
    let c = charge(&conc, 1);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    assert_eq!((asks[0].need, asks[0].want), (1, 1));
    let answered = BucketState {
        expires_in: Some(Duration::from_secs(10)),
        held: 1,
        ..state(1, 4, 3)
    };
    ledger.apply_reply(&asks, &reply(true, vec![answered]), now, TTL);
    ledger.settle(std::slice::from_ref(&c), 0, 0, false);
    assert_eq!(ledger.amounts(&c.bucket), Some((1, 0, 0)));
    assert!(ledger.try_reserve(std::slice::from_ref(&c), now + Duration::from_millis(7_900)));
    ledger.settle(std::slice::from_ref(&c), 0, 0, false);
    assert!(!ledger.try_reserve(std::slice::from_ref(&c), now + Duration::from_secs(8)));
}

#[test]
fn the_keeper_renews_concurrency_in_use_and_hands_idle_slots_back() {
    let ledger = Ledger::new();
    let conc = limit("conc", RateLimitKind::ConcurrentRequests, 40);
    let busy = charge(&conc, 1);
    let idle = Charge {
        bucket: BucketKey {
            limit_id: "conc".into(),
            subject_id: "other".into(),
        },
        ..busy.clone()
    };
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(&[busy.clone(), idle.clone()], now);
    assert_eq!(asks.len(), 2);
    ledger.apply_reply(
        &asks,
        &reply(true, vec![state(2, 40, 30), state(2, 40, 30)]),
        now,
        TTL,
    );
    ledger.settle(std::slice::from_ref(&idle), 0, 0, false);
    // Not a renewal round: nothing to do for concurrency.
    assert!(ledger.plan_upkeep(now, TTL, false).is_empty());
    // A second later the slots nobody holds go back (the busy one keeps its request's).
    let later = now + Duration::from_secs(10);
    let asks = ledger.plan_upkeep(later, TTL, true);
    let released: Vec<_> = asks
        .iter()
        .map(|a| (a.bucket.subject_id.as_str(), a.release))
        .collect();
    assert_eq!(asks.len(), 2);
    assert!(released.contains(&("other", 2)), "{released:?}");
    assert!(released.contains(&("", 1)), "{released:?}");
    ledger.finish_upkeep(&asks, None, later, TTL);
    assert_eq!(ledger.amounts(&idle.bucket), None);
    assert_eq!(ledger.amounts(&busy.bucket), Some((1, 0, 1)));
    // Later rounds only renew the lease of the request in flight.
    let asks = ledger.plan_upkeep(later + Duration::from_secs(10), TTL, true);
    assert_eq!(asks.len(), 1);
    assert!(
        asks.iter()
            .all(|a| a.need == 0 && a.want == 0 && a.release == 0)
    );
}

#[test]
fn a_slot_freed_while_the_limit_is_fully_leased_goes_back_at_once() {
    let ledger = Ledger::new();
    let conc = limit("conc", RateLimitKind::ConcurrentRequests, 2);
    let c = charge(&conc, 1);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    // Granted the last free slot: nothing left for other data planes.
    ledger.apply_reply(&asks, &reply(true, vec![state(1, 2, 0)]), now, TTL);
    ledger.settle(std::slice::from_ref(&c), 0, 0, false);
    let asks = ledger.plan_upkeep(now, TTL, false);
    assert_eq!(asks.len(), 1);
    assert_eq!(asks[0].release, 1);
    ledger.finish_upkeep(&asks, None, now, TTL);
    assert_eq!(ledger.amounts(&c.bucket), None);
}

#[test]
fn a_lease_reset_turns_requests_in_flight_into_debt_the_keeper_covers_again() {
    let ledger = Ledger::new();
    let conc = limit("conc", RateLimitKind::ConcurrentRequests, 4);
    let c = charge(&conc, 1);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    ledger.apply_reply(&asks, &reply(true, vec![state(2, 4, 2)]), now, TTL);
    assert_eq!(ledger.amounts(&c.bucket), Some((2, 0, 1)));
    let asks = ledger.plan_upkeep(now, TTL, true);
    let reset = BucketState {
        lease_reset: true,
        ..state(0, 4, 4)
    };
    ledger.finish_upkeep(&asks, Some(&reply(true, vec![reset])), now, TTL);
    assert_eq!(ledger.amounts(&c.bucket), Some((0, 0, 1)));
    assert!(!ledger.try_reserve(std::slice::from_ref(&c), now));
    let asks = ledger.plan_upkeep(now, TTL, true);
    assert_eq!((asks[0].need, asks[0].want), (0, 1));
    ledger.finish_upkeep(&asks, Some(&reply(true, vec![state(1, 4, 3)])), now, TTL);
    assert_eq!(ledger.amounts(&c.bucket), Some((1, 0, 1)));
    // The next request must cover itself (and any debt) again.
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    assert_eq!(asks[0].need, 1);
}

#[test]
fn a_concurrency_lease_certainly_expired_is_reset_locally() {
    let ledger = Ledger::new();
    let conc = limit("conc", RateLimitKind::ConcurrentRequests, 4);
    let c = charge(&conc, 1);
    ledger.seed(c.bucket.clone(), conc.clone(), 3, Duration::from_secs(1));
    let asks = ledger.reserve_for_lease(
        std::slice::from_ref(&c),
        Instant::now() + Duration::from_secs(4),
    );
    assert_eq!(asks[0].need, 1);
    assert_eq!(ledger.amounts(&c.bucket), Some((0, 0, 1)));
}

#[test]
fn a_limit_the_control_plane_no_longer_knows_is_not_enforced() {
    let ledger = Ledger::new();
    let rpm = limit("gone", RateLimitKind::RequestsPerMinute, 1);
    let c = charge(&rpm, 1);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    ledger.apply_reply(&asks, &reply(true, vec![state(1, 0, 0)]), now, TTL);
    for _ in 0..5 {
        assert!(ledger.try_reserve(std::slice::from_ref(&c), now + LONG));
    }
    ledger.settle(
        &[
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
        ],
        0,
        0,
        false,
    );
    assert!(ledger.wants_upkeep(now, false));
    assert!(ledger.plan_upkeep(now, TTL, false).is_empty());
    assert_eq!(ledger.amounts(&c.bucket), None);
}

#[test]
fn views_refill_at_the_limits_rate_and_count_the_unused_slice() {
    let ledger = Ledger::new();
    let rpm = limit("rpm", RateLimitKind::RequestsPerMinute, 60);
    let c = charge(&rpm, 1);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    ledger.apply_reply(&asks, &reply(true, vec![state(3, 60, 20)]), now, TTL);
    let view = |at| {
        ledger.views(std::slice::from_ref(&c), at)[0]
            .clone()
            .unwrap()
    };
    // 20 in the bucket + 2 unused here.
    assert_eq!(view(now).remaining, 22);
    assert_eq!(view(now).full_in_ms(), 38_000);
    // One a second refills.
    assert_eq!(view(now + Duration::from_secs(10)).remaining, 32);
    assert_eq!(view(now + Duration::from_secs(600)).remaining, 60);
    let used = ledger.utilization(now);
    assert_eq!(used.len(), 1);
    assert!((used[0].1 - 38.0 / 60.0).abs() < 1e-9);
    assert_eq!(refill_ms(1, 7), 8_572);
}

#[test]
fn shutdown_hands_every_unused_slice_back() {
    let ledger = Ledger::new();
    let rpm = limit("rpm", RateLimitKind::RequestsPerMinute, 60);
    let conc = limit("conc", RateLimitKind::ConcurrentRequests, 60);
    ledger.seed(charge(&rpm, 1).bucket, rpm.clone(), 4, LONG);
    ledger.seed(charge(&conc, 1).bucket, conc.clone(), 3, LONG);
    let mut asks = ledger.release_all();
    asks.sort_by(|a, b| a.bucket.cmp(&b.bucket));
    let released: Vec<_> = asks
        .iter()
        .map(|a| (a.bucket.limit_id.as_str(), a.release))
        .collect();
    assert_eq!(released, [("conc", 3), ("rpm", 4)]);
    assert!(ledger.buckets().is_empty());
}

#[test]
fn a_concurrency_answer_sets_the_slots_held_absolutely_so_a_lost_answer_is_corrected() {
    let ledger = Ledger::new();
    let conc = limit("conc", RateLimitKind::ConcurrentRequests, 4);
    let c = charge(&conc, 1);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    let lease = |granted, held| BucketState {
        expires_in: Some(Duration::from_secs(30)),
        held,
        ..state(granted, 4, 4 - held)
    };
    // The first answer was lost (the control plane granted 2); the next renewal says so.
    ledger.apply_reply(&asks, &reply(true, vec![lease(0, 2)]), now, TTL);
    assert_eq!(ledger.amounts(&c.bucket), Some((2, 0, 1)));
    // A release the control plane never applied: the keeper took the slot out, the next
    // answer puts it back (the control plane still counts it for this data plane).
    ledger.settle(std::slice::from_ref(&c), 0, 0, false);
    let later = now + Duration::from_secs(5);
    let asks = ledger.plan_upkeep(later, TTL, true);
    assert_eq!(asks[0].release, 2);
    ledger.finish_upkeep(&asks, None, later, TTL);
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), later);
    ledger.apply_reply(&asks, &reply(true, vec![lease(0, 2)]), later, TTL);
    assert_eq!(ledger.amounts(&c.bucket), Some((2, 0, 1)));
}

#[test]
fn a_long_requests_unused_reservation_goes_back_to_the_bucket_not_to_the_slice() {
    let ledger = Ledger::new();
    let otpm = limit("otpm", RateLimitKind::OutputTokensPerMinute, 100_000);
    let c = charge(&otpm, 32_000);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    ledger.apply_reply(
        &asks,
        &reply(true, vec![state(32_000, 100_000, 68_000)]),
        now,
        TTL,
    );
    // A stream that ran a minute and used 500 of its 32,000 reserved tokens.
    ledger.settle_held(
        std::slice::from_ref(&c),
        0,
        500,
        false,
        Duration::from_secs(60),
    );
    assert_eq!(ledger.amounts(&c.bucket), Some((500, 500, 0)));
    // The keeper hands the 31,500 back even though the slice is still live.
    let asks = ledger.plan_upkeep(now, TTL, false);
    assert_eq!(asks.len(), 1);
    assert_eq!(asks[0].release, 31_500);
    // A short request's surplus stays in the slice for the next request.
    let short = charge(&otpm, 1_000);
    ledger.apply_reply(
        &[RateAsk::renew(short.bucket.clone())],
        &reply(true, vec![state(1_000, 100_000, 0)]),
        now,
        TTL,
    );
    assert!(ledger.try_reserve(std::slice::from_ref(&short), now));
    ledger.settle_held(
        std::slice::from_ref(&short),
        0,
        10,
        false,
        Duration::from_secs(1),
    );
    assert_eq!(ledger.amounts(&c.bucket), Some((1_500, 510, 0)));
    assert!(ledger.plan_upkeep(now, TTL, false).is_empty());
}

#[test]
fn the_keeper_leaves_buckets_with_a_call_in_flight_for_the_next_round() {
    let ledger = Ledger::new();
    let rpm = limit("rpm", RateLimitKind::RequestsPerMinute, 100);
    let c = charge(&rpm, 1);
    let now = Instant::now();
    let asks = ledger.reserve_for_lease(std::slice::from_ref(&c), now);
    ledger.apply_reply(&asks, &reply(true, vec![state(5, 100, 95)]), now, TTL);
    ledger.settle(std::slice::from_ref(&c), 0, 0, false);
    let expired = now + Duration::from_secs(6);
    assert!(
        ledger
            .plan_upkeep_skipping(expired, TTL, true, std::slice::from_ref(&c.bucket))
            .is_empty()
    );
    let asks = ledger.plan_upkeep(expired, TTL, true);
    assert_eq!(asks[0].release, 4);
}
