//! `tollgate admin prices`: the price list, per-model overrides, the fallback rule for
//! unpriced models and provider multipliers. Rates are shown in USD per million tokens.

use tollgate_proto::v1 as pb;

use super::super::super::args::{FallbackCmd, LongContextArgs, PriceCmd, RateArgs};
use super::super::super::client::AdminClient;
use super::super::status;
use super::usd_cell;
use crate::report::{Format, Report};

pub(in super::super) async fn prices(
    client: &mut AdminClient,
    cmd: PriceCmd,
    format: Format,
) -> anyhow::Result<String> {
    match cmd {
        PriceCmd::List => {
            let resp = client
                .spend()
                .list_prices(pb::ListPricesRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut r = price_report();
            resp.prices.into_iter().for_each(|p| r.push(price_row(p)));
            if format == Format::Table {
                return Ok(format!(
                    "Catalogue {} (rates in USD per million tokens)\n{}",
                    resp.catalogue_version,
                    r.render(format)
                ));
            }
            Ok(r.render(format))
        }
        PriceCmd::Set {
            model,
            rates,
            long_context,
            source,
        } => {
            let info = client
                .spend()
                .set_model_price(set_request(model, rates, long_context, source))
                .await
                .map_err(status)?
                .into_inner();
            let mut r = price_report();
            r.push(price_row(info));
            Ok(r.render(format))
        }
        PriceCmd::Delete { model } => {
            client
                .spend()
                .delete_model_price(pb::DeleteModelPriceRequest { model })
                .await
                .map_err(status)?;
            Ok(price_report().render(format))
        }
        PriceCmd::Fallback(cmd) => {
            let info = match cmd {
                FallbackCmd::Show => client
                    .spend()
                    .get_price_fallback(pb::GetPriceFallbackRequest {})
                    .await
                    .map_err(status)?,
                cmd => client
                    .spend()
                    .set_price_fallback(fallback_request(cmd))
                    .await
                    .map_err(status)?,
            }
            .into_inner();
            Ok(fallback_report(&info).render(format))
        }
        PriceCmd::Multiplier {
            provider,
            multiplier_bps,
        } => {
            let info = client
                .spend()
                .set_provider_multiplier(pb::SetProviderMultiplierRequest {
                    provider,
                    multiplier_bps,
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut r = Report::new(["provider_id", "provider", "multiplier_bps", "origin"]);
            r.push(vec![
                info.provider_id,
                info.provider_name,
                info.multiplier_bps.to_string(),
                info.origin,
            ]);
            Ok(r.render(format))
        }
    }
}

/// Rates as sent: micro-USD per million tokens.
pub(super) fn rates_pb(r: &RateArgs) -> pb::PriceRates {
    pb::PriceRates {
        input: r.input,
        output: r.output,
        cache_write_5m: r.cache_write_5m,
        cache_write_1h: r.cache_write_1h,
        cache_read: r.cache_read,
    }
}

pub(super) fn set_request(
    model: String,
    rates: RateArgs,
    lc: LongContextArgs,
    source: String,
) -> pb::SetModelPriceRequest {
    let long_context = lc.long_context_threshold.map(|_| pb::PriceRates {
        input: lc.lc_input.unwrap_or_default(),
        output: lc.lc_output.unwrap_or_default(),
        cache_write_5m: lc.lc_cache_write_5m.unwrap_or_default(),
        cache_write_1h: lc.lc_cache_write_1h.unwrap_or_default(),
        cache_read: lc.lc_cache_read.unwrap_or_default(),
    });
    pb::SetModelPriceRequest {
        model,
        base: Some(rates_pb(&rates)),
        long_context_threshold_tokens: lc.long_context_threshold.unwrap_or(0),
        long_context,
        source,
    }
}

pub(super) fn fallback_request(cmd: FallbackCmd) -> pb::SetPriceFallbackRequest {
    let (rule, rates) = match cmd {
        FallbackCmd::Show | FallbackCmd::MostExpensive => {
            (pb::PriceFallbackRule::MostExpensive, None)
        }
        FallbackCmd::Refuse => (pb::PriceFallbackRule::Refuse, None),
        FallbackCmd::Fixed(r) => (pb::PriceFallbackRule::Fixed, Some(rates_pb(&r))),
    };
    pb::SetPriceFallbackRequest {
        rule: rule as i32,
        rates,
    }
}

const RATE_COLUMNS: [&str; 5] = [
    "input",
    "output",
    "cache_write_5m",
    "cache_write_1h",
    "cache_read",
];

fn rate_cells(r: Option<&pb::PriceRates>) -> Vec<String> {
    match r {
        Some(r) => [
            r.input,
            r.output,
            r.cache_write_5m,
            r.cache_write_1h,
            r.cache_read,
        ]
        .map(usd_cell)
        .to_vec(),
        None => vec!["-".to_owned(); RATE_COLUMNS.len()],
    }
}

fn price_report() -> Report {
    let mut columns = vec!["model".to_owned(), "origin".to_owned()];
    columns.extend(RATE_COLUMNS.map(String::from));
    columns.push("long_context_threshold".to_owned());
    columns.extend(RATE_COLUMNS.map(|c| format!("lc_{c}")));
    columns.extend(["source", "as_of"].map(String::from));
    Report::new(columns)
}

fn price_row(p: pb::PriceInfo) -> Vec<String> {
    let mut row = vec![p.model, p.origin];
    row.extend(rate_cells(p.base.as_ref()));
    if p.long_context_threshold_tokens == 0 {
        row.push("-".to_owned());
        row.extend(rate_cells(None));
    } else {
        row.push(p.long_context_threshold_tokens.to_string());
        row.extend(rate_cells(p.long_context.as_ref()));
    }
    row.push(p.source);
    row.push(if p.as_of.is_empty() {
        "-".to_owned()
    } else {
        p.as_of
    });
    row
}

fn fallback_report(info: &pb::PriceFallbackInfo) -> Report {
    let rule = match pb::PriceFallbackRule::try_from(info.rule) {
        Ok(pb::PriceFallbackRule::Fixed) => "fixed",
        Ok(pb::PriceFallbackRule::Refuse) => "refuse",
        _ => "most-expensive",
    };
    let mut columns = vec!["rule".to_owned()];
    columns.extend(RATE_COLUMNS.map(String::from));
    let mut r = Report::new(columns);
    let mut row = vec![rule.to_owned()];
    let rates = (rule == "fixed").then_some(info.rates.as_ref()).flatten();
    row.extend(rate_cells(rates));
    r.push(row);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{AdminCommand, parse_args};

    fn price_cmd(words: &[&str]) -> Result<PriceCmd, clap::Error> {
        let a = parse_args(["prices"].iter().chain(words).copied())?;
        match a.command {
            AdminCommand::Prices(cmd) => Ok(cmd),
            other => unreachable!("{other:?}"),
        }
    }

    const BASE: [&str; 10] = [
        "--input",
        "3",
        "--output",
        "15.00",
        "--cache-write-5m",
        "3.75",
        "--cache-write-1h",
        "6",
        "--cache-read",
        "0.30",
    ];

    #[test]
    fn set_converts_usd_per_mtok_to_micro_usd_per_mtok() {
        let words: Vec<&str> = ["set", "claude-sonnet-5"]
            .into_iter()
            .chain(BASE)
            .chain(["--source", "contract 2026-09"])
            .collect();
        let PriceCmd::Set {
            model,
            rates,
            long_context,
            source,
        } = price_cmd(&words).unwrap()
        else {
            unreachable!()
        };
        let req = set_request(model, rates, long_context, source);
        assert_eq!(req.model, "claude-sonnet-5");
        assert_eq!(
            req.base,
            Some(pb::PriceRates {
                input: 3_000_000,
                output: 15_000_000,
                cache_write_5m: 3_750_000,
                cache_write_1h: 6_000_000,
                cache_read: 300_000,
            })
        );
        assert_eq!(req.long_context_threshold_tokens, 0);
        assert!(req.long_context.is_none());
        assert_eq!(req.source, "contract 2026-09");
    }

    #[test]
    fn long_context_tier_needs_every_rate() {
        let lc = [
            "--long-context-threshold",
            "200000",
            "--lc-input",
            "6",
            "--lc-output",
            "22.50",
            "--lc-cache-write-5m",
            "7.50",
            "--lc-cache-write-1h",
            "12",
            "--lc-cache-read",
            "0.60",
        ];
        let words: Vec<&str> = ["set", "m"].into_iter().chain(BASE).chain(lc).collect();
        let PriceCmd::Set {
            model,
            rates,
            long_context,
            source,
        } = price_cmd(&words).unwrap()
        else {
            unreachable!()
        };
        let req = set_request(model, rates, long_context, source);
        assert_eq!(req.long_context_threshold_tokens, 200_000);
        assert_eq!(req.long_context.map(|r| r.output), Some(22_500_000));

        let partial: Vec<&str> = ["set", "m"]
            .into_iter()
            .chain(BASE)
            .chain(lc[..4].iter().copied())
            .collect();
        assert!(
            price_cmd(&partial).is_err(),
            "threshold without every lc rate"
        );
        let no_threshold: Vec<&str> = ["set", "m"]
            .into_iter()
            .chain(BASE)
            .chain(lc[2..].iter().copied())
            .collect();
        assert!(
            price_cmd(&no_threshold).is_err(),
            "lc rates without a threshold"
        );
        let missing: Vec<&str> = ["set", "m"]
            .into_iter()
            .chain(BASE[..8].iter().copied())
            .collect();
        assert!(price_cmd(&missing).is_err(), "every base rate is required");
    }

    #[test]
    fn fallback_rules_and_multiplier() {
        let FallbackCmd::Refuse = (match price_cmd(&["fallback", "refuse"]).unwrap() {
            PriceCmd::Fallback(f) => f,
            other => unreachable!("{other:?}"),
        }) else {
            unreachable!()
        };
        let fixed: Vec<&str> = ["fallback", "fixed"].into_iter().chain(BASE).collect();
        let PriceCmd::Fallback(cmd) = price_cmd(&fixed).unwrap() else {
            unreachable!()
        };
        let req = fallback_request(cmd);
        assert_eq!(req.rule, pb::PriceFallbackRule::Fixed as i32);
        assert_eq!(req.rates.map(|r| r.input), Some(3_000_000));
        let PriceCmd::Fallback(cmd) = price_cmd(&["fallback", "most-expensive"]).unwrap() else {
            unreachable!()
        };
        assert_eq!(
            fallback_request(cmd).rule,
            pb::PriceFallbackRule::MostExpensive as i32
        );
        assert!(price_cmd(&["fallback", "fixed", "--input", "1"]).is_err());

        let PriceCmd::Multiplier {
            provider,
            multiplier_bps,
        } = price_cmd(&["multiplier", "bedrock-eu", "11000"]).unwrap()
        else {
            unreachable!()
        };
        assert_eq!((provider.as_str(), multiplier_bps), ("bedrock-eu", 11_000));
        assert!(price_cmd(&["multiplier", "p", "1.1"]).is_err());
    }

    #[test]
    fn price_rows_show_dollars_per_mtok() {
        let row = price_row(pb::PriceInfo {
            model: "m".into(),
            base: Some(pb::PriceRates {
                input: 3_000_000,
                output: 15_000_000,
                cache_write_5m: 3_750_000,
                cache_write_1h: 6_000_000,
                cache_read: 300_000,
            }),
            origin: "override".into(),
            ..Default::default()
        });
        assert_eq!(
            row[..7],
            ["m", "override", "3.00", "15.00", "3.75", "6.00", "0.30"]
        );
        assert_eq!(row[7], "-");
        assert_eq!(row.len(), price_report().columns.len());
    }
}
