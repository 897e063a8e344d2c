//! Price list, per-model overrides, the fallback rule and provider multipliers.
//!
//! Every write lands in a table whose statement trigger bumps the policy version, so data
//! planes receive the new prices with the next snapshot. Validation errors are
//! `invalid_argument`; an unknown provider is `not_found`; deleting an override that does not
//! exist is `not_found`.

use tollgate_policy::PriceRates;
use tollgate_proto::v1 as pb;
use tonic::Status;

use super::SpendAdminService;
use crate::admin::required;
use crate::pricing::{self, Catalogue, Fallback, PriceOverride, Pricing};
use crate::store::price::{self as store, OverrideRow};

/// Largest accepted multiplier: 10× (100,000 basis points).
const MAX_MULTIPLIER_BPS: u32 = 100_000;

pub(super) async fn list_prices(
    svc: &SpendAdminService,
    _req: pb::ListPricesRequest,
) -> Result<pb::ListPricesResponse, Status> {
    let catalogue = catalogue()?;
    let overrides = store::list_overrides(svc.admin.pool()).await?;
    let mut prices: Vec<pb::PriceInfo> = catalogue
        .models
        .iter()
        .map(|m| match overrides.iter().find(|o| o.model == m.id) {
            Some(o) => override_info(o),
            None => pb::PriceInfo {
                model: m.id.clone(),
                base: Some(m.base.into()),
                long_context_threshold_tokens: m.long_context.map_or(0, |(t, _)| t),
                long_context: m.long_context.map(|(_, r)| r.into()),
                origin: "catalogue".to_owned(),
                source: m.source.clone(),
                as_of: m.as_of.clone(),
            },
        })
        .collect();
    prices.extend(
        overrides
            .iter()
            .filter(|o| !catalogue.models.iter().any(|m| m.id == o.model))
            .map(override_info),
    );
    Ok(pb::ListPricesResponse {
        prices,
        catalogue_version: catalogue.version.clone(),
    })
}

pub(super) async fn set_model_price(
    svc: &SpendAdminService,
    req: pb::SetModelPriceRequest,
) -> Result<pb::PriceInfo, Status> {
    let model = model_id(&req.model)?;
    let base = req
        .base
        .as_ref()
        .map(PriceRates::from)
        .ok_or_else(|| Status::invalid_argument("base rates are required"))?;
    let long_context = match (req.long_context_threshold_tokens, req.long_context.as_ref()) {
        (0, None) => None,
        (0, Some(_)) => {
            return Err(Status::invalid_argument(
                "long-context rates need a long-context threshold",
            ));
        }
        (_, None) => {
            return Err(Status::invalid_argument(
                "a long-context threshold needs long-context rates",
            ));
        }
        (threshold, Some(rates)) => Some((threshold, PriceRates::from(rates))),
    };
    if req.source.len() > 500 {
        return Err(Status::invalid_argument(
            "source must be at most 500 characters",
        ));
    }
    let row = store::upsert_override(
        svc.admin.pool(),
        &PriceOverride {
            model,
            base,
            long_context,
            source: req.source.trim().to_owned(),
        },
    )
    .await?;
    Ok(override_info(&row))
}

pub(super) async fn delete_model_price(
    svc: &SpendAdminService,
    req: pb::DeleteModelPriceRequest,
) -> Result<pb::DeleteModelPriceResponse, Status> {
    let model = model_id(&req.model)?;
    if store::delete_override(svc.admin.pool(), &model).await? {
        Ok(pb::DeleteModelPriceResponse {})
    } else {
        Err(Status::not_found(format!(
            "model `{model}` has no price override"
        )))
    }
}

pub(super) async fn set_price_fallback(
    svc: &SpendAdminService,
    req: pb::SetPriceFallbackRequest,
) -> Result<pb::PriceFallbackInfo, Status> {
    let rule = pb::PriceFallbackRule::try_from(req.rule)
        .map_err(|_| Status::invalid_argument("unknown fallback rule"))?;
    let fallback = match rule {
        pb::PriceFallbackRule::Unspecified => {
            return Err(Status::invalid_argument(
                "rule must be most_expensive, fixed or refuse",
            ));
        }
        pb::PriceFallbackRule::MostExpensive => Fallback::MostExpensive,
        pb::PriceFallbackRule::Refuse => Fallback::Refuse,
        pb::PriceFallbackRule::Fixed => {
            let rates = req.rates.as_ref().map(PriceRates::from).unwrap_or_default();
            if rates.max_rate() == 0 {
                return Err(Status::invalid_argument(
                    "a fixed fallback needs rates (unknown models are never priced as free)",
                ));
            }
            Fallback::Fixed(rates)
        }
    };
    store::set_fallback(svc.admin.pool(), &fallback).await?;
    fallback_info(&fallback)
}

pub(super) async fn get_price_fallback(
    svc: &SpendAdminService,
    _req: pb::GetPriceFallbackRequest,
) -> Result<pb::PriceFallbackInfo, Status> {
    let fallback = store::fallback(svc.admin.pool()).await?;
    fallback_info(&fallback)
}

pub(super) async fn set_provider_multiplier(
    svc: &SpendAdminService,
    req: pb::SetProviderMultiplierRequest,
) -> Result<pb::ProviderMultiplierInfo, Status> {
    let provider = required("provider", &req.provider)?;
    if req.multiplier_bps > MAX_MULTIPLIER_BPS {
        return Err(Status::invalid_argument(format!(
            "multiplier_bps must be at most {MAX_MULTIPLIER_BPS} (10×); 10000 = 1.0×, 0 = the catalogue rule"
        )));
    }
    let bps = (req.multiplier_bps > 0).then_some(req.multiplier_bps);
    let row = store::set_provider_multiplier(svc.admin.pool(), provider, bps).await?;
    let catalogue = catalogue()?;
    let (multiplier_bps, origin) = match bps {
        Some(bps) => (bps, "override".to_owned()),
        None => provider_rules(catalogue, &row.kind),
    };
    Ok(pb::ProviderMultiplierInfo {
        provider_id: row.id.to_string(),
        provider_name: row.name,
        multiplier_bps,
        origin,
    })
}

/// Without an override: the catalogue rules for the provider's kind (they may depend on the
/// model and endpoint, so the unit multiplier is reported with the rules' names), else 1.0×.
fn provider_rules(catalogue: &Catalogue, kind: &str) -> (u32, String) {
    let names: Vec<&str> = catalogue
        .multipliers
        .iter()
        .filter(|r| r.provider_kind == kind)
        .map(|r| r.name.as_str())
        .collect();
    if names.is_empty() {
        (tollgate_policy::UNIT_MULTIPLIER_BPS, "default".to_owned())
    } else {
        (
            tollgate_policy::UNIT_MULTIPLIER_BPS,
            format!("catalogue:{}", names.join(",")),
        )
    }
}

fn fallback_info(fallback: &Fallback) -> Result<pb::PriceFallbackInfo, Status> {
    let rates = match fallback {
        Fallback::Fixed(rates) => Some((*rates).into()),
        Fallback::Refuse => None,
        Fallback::MostExpensive => {
            let pricing = Pricing {
                catalogue: catalogue()?,
                overrides: &[],
                fallback: *fallback,
            };
            pricing.fallback_price().map(|p| p.base.into())
        }
    };
    Ok(pb::PriceFallbackInfo {
        rule: fallback.to_proto() as i32,
        rates,
    })
}

fn override_info(o: &OverrideRow) -> pb::PriceInfo {
    let p = o.to_override();
    pb::PriceInfo {
        model: p.model,
        base: Some(p.base.into()),
        long_context_threshold_tokens: p.long_context.map_or(0, |(t, _)| t),
        long_context: p.long_context.map(|(_, r)| r.into()),
        origin: "override".to_owned(),
        source: p.source,
        as_of: o.updated_at.format("%Y-%m-%d").to_string(),
    }
}

/// A model id to price, normalised like the ids it is matched against (lowercase; Bedrock and
/// Vertex spellings reduced), then checked: ASCII letters, digits, `-`, `.`, `_`.
fn model_id(raw: &str) -> Result<String, Status> {
    let model = pricing::model_id::normalise(required("model", raw)?);
    let ok = !model.is_empty()
        && model.len() <= 200
        && model
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(model)
    } else {
        Err(Status::invalid_argument(format!(
            "model `{}` must be at most 200 ASCII letters, digits, `-`, `.` or `_`",
            raw.trim()
        )))
    }
}

fn catalogue() -> Result<&'static Catalogue, Status> {
    pricing::shipped().map_err(|err| {
        tracing::error!(error = %err, "the shipped price catalogue is invalid");
        Status::internal("the price catalogue is invalid")
    })
}
