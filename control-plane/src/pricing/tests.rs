use tollgate_policy::Usage;

use super::*;

fn shipped_catalogue() -> &'static Catalogue {
    shipped().unwrap()
}

fn anthropic() -> ProviderPricing {
    ProviderPricing {
        kind: "anthropic".into(),
        ..ProviderPricing::default()
    }
}

fn pricing<'a>(overrides: &'a [PriceOverride], fallback: Fallback) -> Pricing<'a> {
    Pricing {
        catalogue: shipped_catalogue(),
        overrides,
        fallback,
    }
}

fn rates(input: u64, output: u64) -> PriceRates {
    PriceRates {
        input,
        output,
        cache_write_5m: input * 5 / 4,
        cache_write_1h: input * 2,
        cache_read: input / 10,
    }
}

#[test]
fn the_shipped_catalogue_parses_and_every_entry_has_a_source_and_date() {
    let catalogue = shipped_catalogue();
    assert!(!catalogue.version.is_empty());
    assert!(catalogue.models.len() >= 20);
    for m in &catalogue.models {
        assert!(m.source.starts_with("https://"), "{}: source", m.id);
        assert_eq!(m.as_of.len(), 10, "{}: as_of", m.id);
        assert!(!m.name.is_empty(), "{}: name", m.id);
    }
    for r in &catalogue.multipliers {
        assert!(r.source.starts_with("https://"), "{}: source", r.name);
        assert_eq!(r.as_of.len(), 10, "{}: as_of", r.name);
    }
}

#[test]
fn every_catalogue_price_has_sane_ratios() {
    for m in &shipped_catalogue().models {
        let tiers = std::iter::once(m.base).chain(m.long_context.map(|(_, r)| r));
        for r in tiers {
            assert!(r.cache_read < r.input, "{}: cache read < input", m.id);
            assert!(r.input < r.cache_write_5m, "{}: input < 5m write", m.id);
            assert!(
                r.cache_write_5m <= r.cache_write_1h,
                "{}: 5m write <= 1h write",
                m.id
            );
            assert!(r.output > r.input, "{}: output > input", m.id);
        }
    }
}

#[test]
fn the_models_claude_code_and_the_dev_seeds_use_are_all_priced() {
    let p = pricing(&[], Fallback::Refuse);
    for id in [
        "claude-opus-5-5",
        "claude-sonnet-5-5",
        "claude-haiku-5-5",
        "claude-fable-5-2",
        "claude-opus-4-8",
        "claude-opus-4-7",
        "claude-opus-4-6",
        "claude-sonnet-4-6",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-sonnet-5",
        "claude-opus-4-1",
        "claude-opus-4",
        "claude-sonnet-4",
        "claude-3-7-sonnet",
        "claude-3-5-haiku",
        "claude-3-haiku",
    ] {
        let price = p.resolve(id, "", &anthropic()).unwrap();
        assert_eq!(price.source, format!("catalogue:{id}"));
    }
}

#[test]
fn published_prices_are_exact_integers() {
    let p = pricing(&[], Fallback::Refuse);
    let sonnet = p.resolve("claude-sonnet-4-5", "", &anthropic()).unwrap();
    assert_eq!(sonnet.base.input, 3_000_000);
    assert_eq!(sonnet.base.cache_write_5m, 3_750_000);
    assert_eq!(sonnet.long_context.unwrap().0, 200_000);
    let haiku = p.resolve("claude-haiku-5-5", "", &anthropic()).unwrap();
    assert_eq!(haiku.base.cache_write_5m, 125_000);
    assert_eq!(haiku.long_context.unwrap().1.input, 500_000);
    let usage = Usage {
        input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    // $4 + $20 for a million of each on Opus 5.5.
    let opus = p.resolve("claude-opus-5-5", "", &anthropic()).unwrap();
    assert_eq!(opus.cost(&usage), 24_000_000);
}

#[test]
fn dated_and_provider_spellings_match_the_catalogue_entry() {
    let p = pricing(&[], Fallback::Refuse);
    for (client, upstream, expected) in [
        ("claude-opus-4-8-20261101", "", "claude-opus-4-8"),
        ("opus", "claude-opus-4-8-20261101", "claude-opus-4-8"),
        (
            "sonnet",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5",
        ),
        (
            "sonnet",
            "global.anthropic.claude-sonnet-4-6",
            "claude-sonnet-4-6",
        ),
        ("sonnet", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("haiku", "claude-3-5-haiku@20241022", "claude-3-5-haiku"),
        ("claude-opus-4-0", "", "claude-opus-4"),
        ("claude-sonnet-5-5[1m]", "", "claude-sonnet-5-5"),
        (
            "x",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0",
            "claude-haiku-4-5",
        ),
    ] {
        let price = p.resolve(client, upstream, &anthropic()).unwrap();
        assert_eq!(
            price.source,
            format!("catalogue:{expected}"),
            "{client} / {upstream}"
        );
    }
}

#[test]
fn a_prefix_only_matches_at_a_dash_boundary_and_the_longest_wins() {
    let p = pricing(&[], Fallback::Refuse);
    // `claude-opus-4-8…` must not be priced as `claude-opus-4`.
    let price = p
        .resolve("claude-opus-4-8-20261101", "", &anthropic())
        .unwrap();
    assert_eq!(price.source, "catalogue:claude-opus-4-8");
    // `claude-opus-45` is not a `claude-opus-4` model.
    assert_eq!(p.resolve("claude-opus-45", "", &anthropic()), None);
}

#[test]
fn the_client_id_is_tried_before_the_upstream_id() {
    let p = pricing(&[], Fallback::Refuse);
    let price = p
        .resolve("claude-haiku-4-5", "claude-opus-4-8", &anthropic())
        .unwrap();
    assert_eq!(price.source, "catalogue:claude-haiku-4-5");
}

#[test]
fn an_exact_upstream_match_beats_a_prefix_match_of_the_client_id() {
    let p = pricing(&[], Fallback::Refuse);
    let price = p
        .resolve("claude-opus-4-8-custom", "claude-sonnet-5-5", &anthropic())
        .unwrap();
    assert_eq!(price.source, "catalogue:claude-sonnet-5-5");
}

#[test]
fn an_override_replaces_the_catalogue_price_and_covers_dated_ids() {
    let overrides = [PriceOverride {
        model: "claude-opus-4-8".into(),
        base: rates(4_000_000, 20_000_000),
        long_context: None,
        source: "negotiated".into(),
    }];
    let p = pricing(&overrides, Fallback::Refuse);
    for id in ["claude-opus-4-8", "claude-opus-4-8-20261101"] {
        let price = p.resolve(id, "", &anthropic()).unwrap();
        assert_eq!(price.source, "override:claude-opus-4-8");
        assert_eq!(price.base, rates(4_000_000, 20_000_000));
    }
}

#[test]
fn an_override_adds_a_model_the_catalogue_lacks() {
    let overrides = [PriceOverride {
        model: "claude-test".into(),
        base: rates(1_000_000, 2_000_000),
        long_context: None,
        source: String::new(),
    }];
    let p = pricing(&overrides, Fallback::Refuse);
    let price = p.resolve("claude-test", "", &anthropic()).unwrap();
    assert_eq!(price.source, "override:claude-test");
}

#[test]
fn an_unknown_model_gets_the_most_expensive_catalogue_price_by_default() {
    let p = pricing(&[], Fallback::default());
    let price = p.resolve("mystery-model", "", &anthropic()).unwrap();
    assert_eq!(price.source, "fallback:most_expensive");
    let top = shipped_catalogue()
        .models
        .iter()
        .map(|m| m.base.max_rate())
        .max()
        .unwrap();
    assert_eq!(price.base.max_rate(), top);
    assert!(price.base.output >= 75_000_000);
}

#[test]
fn a_fixed_fallback_prices_unknown_models_at_the_given_rates() {
    let p = pricing(&[], Fallback::Fixed(rates(9_000_000, 45_000_000)));
    let price = p.resolve("mystery-model", "", &anthropic()).unwrap();
    assert_eq!(price.source, "fallback:fixed");
    assert_eq!(price.base, rates(9_000_000, 45_000_000));
    assert_eq!(price.long_context, None);
}

#[test]
fn a_refuse_fallback_leaves_unknown_models_unpriced() {
    let p = pricing(&[], Fallback::Refuse);
    assert_eq!(p.resolve("mystery-model", "", &anthropic()), None);
}

#[test]
fn demo_and_anthropic_providers_price_at_one_times() {
    let p = pricing(&[], Fallback::Refuse);
    for kind in ["demo", "anthropic"] {
        let provider = ProviderPricing {
            kind: kind.into(),
            ..ProviderPricing::default()
        };
        let price = p.resolve("claude-sonnet-5-5", "", &provider).unwrap();
        assert_eq!(price.multiplier_bps, 10_000);
    }
}

#[test]
fn a_provider_multiplier_override_wins() {
    let p = pricing(&[], Fallback::Refuse);
    let provider = ProviderPricing {
        kind: "bedrock".into(),
        region: Some("us-east-1".into()),
        multiplier_bps: Some(9_000),
    };
    let price = p.resolve("claude-sonnet-5-5", "", &provider).unwrap();
    assert_eq!(price.multiplier_bps, 9_000);
}

#[test]
fn regional_bedrock_and_vertex_endpoints_cost_ten_percent_more_for_newer_models() {
    let p = pricing(&[], Fallback::Refuse);
    let bedrock = ProviderPricing {
        kind: "bedrock".into(),
        ..ProviderPricing::default()
    };
    let at = |client: &str, upstream: &str, provider: &ProviderPricing| {
        p.resolve(client, upstream, provider)
            .unwrap()
            .multiplier_bps
    };
    assert_eq!(
        at(
            "s",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            &bedrock
        ),
        11_000
    );
    assert_eq!(at("s", "anthropic.claude-sonnet-5-5", &bedrock), 11_000);
    assert_eq!(
        at(
            "s",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            &bedrock
        ),
        10_000
    );
    // Older models keep one price everywhere.
    assert_eq!(
        at("s", "us.anthropic.claude-sonnet-4-20250514-v1:0", &bedrock),
        10_000
    );
    assert_eq!(
        at("o", "anthropic.claude-opus-4-1-20250805-v1:0", &bedrock),
        10_000
    );

    let vertex = |region: Option<&str>| ProviderPricing {
        kind: "vertex".into(),
        region: region.map(str::to_owned),
        multiplier_bps: None,
    };
    assert_eq!(at("claude-opus-5-5", "", &vertex(Some("us-east5"))), 11_000);
    assert_eq!(at("claude-opus-5-5", "", &vertex(Some("global"))), 10_000);
    assert_eq!(at("claude-opus-4", "", &vertex(Some("us-east5"))), 10_000);
    // No region known: no regional premium is assumed.
    assert_eq!(at("claude-opus-5-5", "", &vertex(None)), 10_000);
}

#[test]
fn the_multiplier_reports_its_origin() {
    let p = pricing(&[], Fallback::Refuse);
    let bedrock = ProviderPricing {
        kind: "bedrock".into(),
        ..ProviderPricing::default()
    };
    let m = p.multiplier(
        &bedrock,
        "claude-haiku-5-5",
        "eu.anthropic.claude-haiku-5-5",
    );
    assert_eq!(m.origin, "catalogue:bedrock-regional-endpoint");
    assert_eq!(
        p.multiplier(&anthropic(), "claude-haiku-5-5", "").origin,
        "default"
    );
}

#[test]
fn model_ids_normalise_provider_spellings() {
    use model_id::normalise;
    assert_eq!(
        normalise("us.anthropic.claude-opus-4-1-20250805-v1:0"),
        "claude-opus-4-1-20250805"
    );
    assert_eq!(normalise("anthropic.claude-haiku-5-5"), "claude-haiku-5-5");
    assert_eq!(
        normalise("claude-sonnet-4-5@20250929"),
        "claude-sonnet-4-5-20250929"
    );
    assert_eq!(normalise("Claude-Opus-4-8"), "claude-opus-4-8");
    assert_eq!(normalise("claude-opus-4-8[1m]"), "claude-opus-4-8");
    assert_eq!(normalise(""), "");
    // A `-v` that is not a version suffix stays.
    assert_eq!(normalise("claude-vx"), "claude-vx");
}

#[test]
fn a_catalogue_without_source_or_date_is_rejected() {
    let entry = |extra: &str| {
        format!(
            "[catalogue]\nversion = \"2026-11-22\"\n[[model]]\nid = \"m\"\nname = \"M\"\n\
             input = 1\noutput = 2\ncache_write_5m = 2\ncache_write_1h = 3\ncache_read = 0\n{extra}"
        )
    };
    assert!(parse(&entry("source = \"https://x\"\nas_of = \"2026-11-22\"\n")).is_ok());
    assert!(parse(&entry("as_of = \"2026-11-22\"\n")).is_err());
    assert!(parse(&entry("source = \"\"\nas_of = \"2026-11-22\"\n")).is_err());
    assert!(parse(&entry("source = \"https://x\"\nas_of = \"22 Nov\"\n")).is_err());
    assert!(
        parse(&entry(
            "source = \"https://x\"\nas_of = \"2026-11-22\"\nbogus = 1\n"
        ))
        .is_err()
    );
}

#[test]
fn a_catalogue_with_duplicate_ids_or_cheaper_long_context_is_rejected() {
    let model = |id: &str, lc_input: u64| {
        format!(
            "[[model]]\nid = \"{id}\"\nname = \"M\"\ninput = 10\noutput = 20\n\
             cache_write_5m = 12\ncache_write_1h = 20\ncache_read = 1\n\
             source = \"https://x\"\nas_of = \"2026-11-22\"\n\
             [model.long_context]\nthreshold_tokens = 5\ninput = {lc_input}\noutput = 20\n\
             cache_write_5m = 12\ncache_write_1h = 20\ncache_read = 1\n"
        )
    };
    let header = "[catalogue]\nversion = \"2026-11-22\"\n";
    assert!(parse(&format!("{header}{}", model("a", 10))).is_ok());
    assert!(parse(&format!("{header}{}", model("a", 9))).is_err());
    assert!(parse(&format!("{header}{}{}", model("a", 10), model("a", 10))).is_err());
}

#[test]
fn a_bedrock_api_region_does_not_make_a_global_profile_regional() {
    let p = pricing(&[], Fallback::Refuse);
    let bedrock = ProviderPricing {
        kind: "bedrock".into(),
        region: Some("us-east-1".into()),
        multiplier_bps: None,
    };
    let at = |upstream: &str| p.resolve("s", upstream, &bedrock).unwrap().multiplier_bps;
    assert_eq!(
        at("global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        10_000
    );
    assert_eq!(at("us.anthropic.claude-sonnet-4-5-20250929-v1:0"), 11_000);
    // No upstream id: the region says regional.
    assert_eq!(
        p.resolve("claude-sonnet-4-5", "", &bedrock)
            .unwrap()
            .multiplier_bps,
        11_000
    );
}
