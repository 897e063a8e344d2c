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
