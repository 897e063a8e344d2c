use super::*;

fn sonnet() -> TargetPrice {
    // $3 / $15, cache write 5m $3.75, 1h $6, read $0.30; >200k: $6 / $22.50 ...
    TargetPrice {
        base: PriceRates {
            input: 3_000_000,
            output: 15_000_000,
            cache_write_5m: 3_750_000,
            cache_write_1h: 6_000_000,
            cache_read: 300_000,
        },
        long_context: Some((
            200_000,
            PriceRates {
                input: 6_000_000,
                output: 22_500_000,
                cache_write_5m: 7_500_000,
                cache_write_1h: 12_000_000,
                cache_read: 600_000,
            },
        )),
        multiplier_bps: UNIT_MULTIPLIER_BPS,
        source: "test".into(),
    }
}

#[test]
fn one_million_input_tokens_cost_the_listed_rate() {
    let usage = Usage {
        input_tokens: 1_000_000,
        ..Usage::default()
    };
    let mut price = sonnet();
    price.long_context = None;
    assert_eq!(price.cost(&usage), 3_000_000);
}

#[test]
fn every_token_class_is_priced_at_its_own_rate() {
    let usage = Usage {
        input_tokens: 1_000,
        output_tokens: 2_000,
        cache_creation_5m_tokens: 3_000,
        cache_creation_1h_tokens: 4_000,
        cache_read_tokens: 5_000,
    };
    // 1000×3 + 2000×15 + 3000×3.75 + 4000×6 + 5000×0.3 = 3000+30000+11250+24000+1500 µUSD
    assert_eq!(sonnet().cost(&usage), 69_750);
}

#[test]
fn cost_rounds_up_to_the_next_micro_usd() {
    let usage = Usage {
        cache_read_tokens: 1,
        ..Usage::default()
    };
    // 0.3 µUSD → 1
    assert_eq!(sonnet().cost(&usage), 1);
    assert_eq!(sonnet().cost(&Usage::default()), 0);
}

#[test]
fn prompts_over_the_threshold_price_every_token_at_the_long_context_rates() {
    let at = Usage {
        input_tokens: 150_000,
        cache_read_tokens: 50_000,
        output_tokens: 1_000,
        ..Usage::default()
    };
    let over = Usage {
        input_tokens: 150_001,
        ..at
    };
    // exactly 200k: base rates; 450000 + 15000 + 15000 µUSD
    assert_eq!(sonnet().cost(&at), 480_000);
    // 150001×6 + 50000×0.6 + 1000×22.5 = 900006 + 30000 + 22500
    assert_eq!(sonnet().cost(&over), 952_506);
}

#[test]
fn the_multiplier_scales_the_whole_cost() {
    let mut price = sonnet();
    price.long_context = None;
    price.multiplier_bps = 11_000;
    let usage = Usage {
        input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    assert_eq!(price.cost(&usage), 19_800_000);
}

#[test]
fn huge_usage_saturates_instead_of_wrapping() {
    let usage = Usage {
        input_tokens: u64::MAX,
        output_tokens: u64::MAX,
        cache_creation_5m_tokens: u64::MAX,
        cache_creation_1h_tokens: u64::MAX,
        cache_read_tokens: u64::MAX,
    };
    let mut price = sonnet();
    price.long_context = None;
    price.base.output = u64::MAX;
    price.multiplier_bps = u32::MAX;
    assert_eq!(price.cost(&usage), u64::MAX);
}

#[test]
fn dollars_format_with_cents() {
    assert_eq!(format_usd(12_400_000), "$12.40");
    assert_eq!(format_usd(9_999), "$0.00");
    assert_eq!(format_usd(1_000_000_000), "$1000.00");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Token counts up to 10M per class: far above any real request, far below overflow.
    fn tokens() -> impl Strategy<Value = u64> {
        0u64..10_000_000
    }

    fn usage() -> impl Strategy<Value = Usage> {
        (tokens(), tokens(), tokens(), tokens(), tokens()).prop_map(|(i, o, w5, w1, r)| Usage {
            input_tokens: i,
            output_tokens: o,
            cache_creation_5m_tokens: w5,
            cache_creation_1h_tokens: w1,
            cache_read_tokens: r,
        })
    }

    /// Rates up to $1000 / MTok.
    fn rates() -> impl Strategy<Value = PriceRates> {
        let rate = || 0u64..1_000_000_000;
        (rate(), rate(), rate(), rate(), rate()).prop_map(|(i, o, w5, w1, r)| PriceRates {
            input: i,
            output: o,
            cache_write_5m: w5,
            cache_write_1h: w1,
            cache_read: r,
        })
    }

    fn flat(base: PriceRates, multiplier_bps: u32) -> TargetPrice {
        TargetPrice {
            base,
            long_context: None,
            multiplier_bps,
            source: "prop".into(),
        }
    }

    /// Adds `extra` tokens to token class `class` (0..5).
    fn bump(usage: Usage, class: usize, extra: u64) -> Usage {
        let mut u = usage;
        match class {
            0 => u.input_tokens += extra,
            1 => u.output_tokens += extra,
            2 => u.cache_creation_5m_tokens += extra,
            3 => u.cache_creation_1h_tokens += extra,
            _ => u.cache_read_tokens += extra,
        }
        u
    }

    fn exact_micro_usd_times_1e10(price: &TargetPrice, usage: &Usage) -> u128 {
        let r = price.rates_for(
            usage.input_tokens
                + usage.cache_creation_5m_tokens
                + usage.cache_creation_1h_tokens
                + usage.cache_read_tokens,
        );
        let t = |n: u64, rate: u64| u128::from(n) * u128::from(rate);
        (t(usage.input_tokens, r.input)
            + t(usage.output_tokens, r.output)
            + t(usage.cache_creation_5m_tokens, r.cache_write_5m)
            + t(usage.cache_creation_1h_tokens, r.cache_write_1h)
            + t(usage.cache_read_tokens, r.cache_read))
            * u128::from(price.multiplier_bps)
    }

    proptest! {
        #[test]
        fn cost_never_decreases_when_any_token_class_grows(
            base in rates(),
            lc in rates(),
            threshold in 1u64..1_000_000,
            with_tier in any::<bool>(),
            multiplier in 1u32..100_000,
            u in usage(),
            class in 0usize..5,
            extra in 0u64..1_000_000,
        ) {
            // A tier is never cheaper than the base (the catalogue enforces it).
            let lc = PriceRates {
                input: lc.input.max(base.input),
                output: lc.output.max(base.output),
                cache_write_5m: lc.cache_write_5m.max(base.cache_write_5m),
                cache_write_1h: lc.cache_write_1h.max(base.cache_write_1h),
                cache_read: lc.cache_read.max(base.cache_read),
            };
            let price = TargetPrice {
                long_context: with_tier.then_some((threshold, lc)),
                ..flat(base, multiplier)
            };
            prop_assert!(price.cost(&bump(u, class, extra)) >= price.cost(&u));
        }

        #[test]
        fn cost_is_the_exact_amount_rounded_up(
            base in rates(),
            multiplier in 1u32..100_000,
            u in usage(),
        ) {
            let price = flat(base, multiplier);
            let exact = exact_micro_usd_times_1e10(&price, &u);
            let cost = u128::from(price.cost(&u));
            prop_assert!(cost * 10_000_000_000 >= exact);
            prop_assert!(cost * 10_000_000_000 < exact + 10_000_000_000);
        }

        #[test]
        fn splitting_usage_changes_the_cost_by_at_most_one_micro_usd(
            base in rates(),
            multiplier in 1u32..100_000,
            a in usage(),
            b in usage(),
        ) {
            let price = flat(base, multiplier);
            let whole = Usage {
                input_tokens: a.input_tokens + b.input_tokens,
                output_tokens: a.output_tokens + b.output_tokens,
                cache_creation_5m_tokens: a.cache_creation_5m_tokens + b.cache_creation_5m_tokens,
                cache_creation_1h_tokens: a.cache_creation_1h_tokens + b.cache_creation_1h_tokens,
                cache_read_tokens: a.cache_read_tokens + b.cache_read_tokens,
            };
            let parts = price.cost(&a) + price.cost(&b);
            let whole = price.cost(&whole);
            // Each part rounds up once: the parts cost at least the whole, at most 1 µUSD more.
            prop_assert!(parts >= whole);
            prop_assert!(parts <= whole + 1);
        }

        #[test]
        fn a_multiplier_of_10000_bps_is_the_identity(base in rates(), u in usage()) {
            let price = flat(base, UNIT_MULTIPLIER_BPS);
            let exact = exact_micro_usd_times_1e10(&price, &u) / 10_000;
            prop_assert_eq!(u128::from(price.cost(&u)), exact.div_ceil(1_000_000));
        }

        #[test]
        fn long_context_is_never_cheaper_than_base_for_the_same_usage(
            base in rates(),
            lc in rates(),
            threshold in 0u64..1_000_000,
            multiplier in 1u32..100_000,
            u in usage(),
        ) {
            let lc = PriceRates {
                input: lc.input.max(base.input),
                output: lc.output.max(base.output),
                cache_write_5m: lc.cache_write_5m.max(base.cache_write_5m),
                cache_write_1h: lc.cache_write_1h.max(base.cache_write_1h),
                cache_read: lc.cache_read.max(base.cache_read),
            };
            let tiered = TargetPrice {
                long_context: Some((threshold.max(1), lc)),
                ..flat(base, multiplier)
            };
            prop_assert!(tiered.cost(&u) >= flat(base, multiplier).cost(&u));
        }

        #[test]
        fn a_higher_multiplier_never_costs_less(
            base in rates(),
            m1 in 1u32..100_000,
            m2 in 1u32..100_000,
            u in usage(),
        ) {
            let (lo, hi) = (m1.min(m2), m1.max(m2));
            prop_assert!(flat(base, hi).cost(&u) >= flat(base, lo).cost(&u));
        }
    }
}
