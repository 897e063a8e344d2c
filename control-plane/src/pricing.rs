//! Prices: the shipped catalogue, admin overrides, the fallback rule for unpriced models and
//! provider/region multipliers, resolved into one `TargetPrice` per route target when the
//! snapshot is compiled.
//!
//! Resolution for a route target (client model id, upstream model id, provider):
//! 1. the effective price list = catalogue entries with admin overrides replacing entries of the
//!    same id, plus override-only models;
//! 2. match the client id, then the normalised upstream id, exactly (id or alias); then the
//!    longest listed id that is a prefix of the client id, then of the upstream id, at a `-`
//!    boundary;
//! 3. nothing matches: the fallback rule (`most_expensive` by default: the catalogue model with
//!    the highest rates; `fixed`: the admin's rates; `refuse`: no price, the data plane refuses
//!    the request);
//! 4. multiplier: the provider's own `price_multiplier_bps`, else the first catalogue rule for
//!    the provider kind / endpoint scope / model, else 1.0×.
//!
//! Source strings recorded with each usage record: `catalogue:<id>`, `override:<id>`,
//! `fallback:most_expensive`, `fallback:fixed`.

mod catalogue;
pub mod model_id;

pub use catalogue::{
    Catalogue, CatalogueError, CatalogueModel, EndpointRule, MultiplierRule, SHIPPED_TOML, parse,
    shipped,
};
use tollgate_policy::{PriceRates, TargetPrice, UNIT_MULTIPLIER_BPS};
use tollgate_proto::v1 as pb;

/// An admin's price for one model, replacing (or adding to) the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceOverride {
    pub model: String,
    pub base: PriceRates,
    pub long_context: Option<(u64, PriceRates)>,
    pub source: String,
}

/// How models with no price are priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// The catalogue's most expensive model (the default).
    #[default]
    MostExpensive,
    /// These rates.
    Fixed(PriceRates),
    /// No price: requests for the model are refused.
    Refuse,
}

impl Fallback {
    /// The `price_fallback.rule` value.
    pub fn rule_name(&self) -> &'static str {
        match self {
            Fallback::MostExpensive => "most_expensive",
            Fallback::Fixed(_) => "fixed",
            Fallback::Refuse => "refuse",
        }
    }

    /// The API's rule enum.
    pub fn to_proto(&self) -> pb::PriceFallbackRule {
        match self {
            Fallback::MostExpensive => pb::PriceFallbackRule::MostExpensive,
            Fallback::Fixed(_) => pb::PriceFallbackRule::Fixed,
            Fallback::Refuse => pb::PriceFallbackRule::Refuse,
        }
    }
}

/// Where a provider's endpoint sends requests, for regional multipliers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointScope {
    Global,
    Regional,
    Unknown,
}

/// What pricing needs to know about a route target's provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderPricing {
    /// `providers.kind` (`demo`, `anthropic`, `bedrock`, `vertex`, `foundry`).
    pub kind: String,
    /// The provider's region or endpoint location when it has one (`global`, `us-east5`, …;
    /// `providers.config.region`).
    pub region: Option<String>,
    /// The admin's multiplier for this provider (`providers.price_multiplier_bps`).
    pub multiplier_bps: Option<u32>,
}

impl ProviderPricing {
    /// The endpoint scope of a request to `upstream_model` through this provider.
    ///
    /// Bedrock: the model id decides (a `global.` inference profile is global, any other id is
    /// served in the endpoint's region or geography) whatever the provider's API region.
    /// Vertex and others: the provider's region (`global` or a location).
    pub fn scope(&self, upstream_model: &str) -> EndpointScope {
        if self.kind == "bedrock" && !upstream_model.is_empty() {
            return if model_id::bedrock_is_global(upstream_model) {
                EndpointScope::Global
            } else {
                EndpointScope::Regional
            };
        }
        match self.region.as_deref() {
            Some(region) if region.eq_ignore_ascii_case("global") => EndpointScope::Global,
            Some(region) if !region.is_empty() => EndpointScope::Regional,
            _ => EndpointScope::Unknown,
        }
    }
}

/// A provider's multiplier and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multiplier {
    pub bps: u32,
    /// `override`, `catalogue:<rule>` or `default`.
    pub origin: String,
}

/// The catalogue, the admin's overrides and fallback rule: everything prices are resolved from.
#[derive(Debug, Clone, Copy)]
pub struct Pricing<'a> {
    pub catalogue: &'a Catalogue,
    pub overrides: &'a [PriceOverride],
    pub fallback: Fallback,
}

/// A listed price (catalogue or override) before the multiplier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPrice {
    pub model: String,
    pub base: PriceRates,
    pub long_context: Option<(u64, PriceRates)>,
    pub source: String,
}

impl<'a> Pricing<'a> {
    /// The price of one route target, `None` when the model has no price and the fallback rule
    /// is `refuse`.
    pub fn resolve(
        &self,
        client_model: &str,
        upstream_model: &str,
        provider: &ProviderPricing,
    ) -> Option<TargetPrice> {
        let client = model_id::normalise(client_model);
        let upstream = model_id::normalise(upstream_model);
        let listed = self
            .lookup(&client, &upstream)
            .or_else(|| self.fallback_price())?;
        let priced_model = if upstream.is_empty() {
            &client
        } else {
            &upstream
        };
        let multiplier = self.multiplier(provider, priced_model, upstream_model);
        Some(TargetPrice {
            base: listed.base,
            long_context: listed.long_context,
            multiplier_bps: multiplier.bps,
            source: listed.source,
        })
    }

    /// The listed price of the model, without any fallback.
    pub fn lookup(&self, client: &str, upstream: &str) -> Option<ListedPrice> {
        let candidates: Vec<&str> = [client, upstream]
            .into_iter()
            .filter(|m| !m.is_empty())
            .collect();
        candidates
            .iter()
            .find_map(|m| self.exact(m))
            .or_else(|| candidates.iter().find_map(|m| self.longest_prefix(m)))
    }

    fn exact(&self, model: &str) -> Option<ListedPrice> {
        if let Some(o) = self.overrides.iter().find(|o| o.model == model) {
            return Some(override_price(o));
        }
        self.catalogue
            .models
            .iter()
            .find(|m| m.id == model || m.aliases.iter().any(|a| a == model))
            .map(|m| self.catalogue_price(m))
    }

    fn longest_prefix(&self, model: &str) -> Option<ListedPrice> {
        let matches = |id: &str| model_id::is_prefix_at_boundary(id, model);
        let best_override = self
            .overrides
            .iter()
            .filter(|o| matches(&o.model))
            .max_by_key(|o| o.model.len());
        let best_catalogue = self
            .catalogue
            .models
            .iter()
            .flat_map(|m| {
                std::iter::once(&m.id)
                    .chain(&m.aliases)
                    .map(move |id| (id, m))
            })
            .filter(|(id, _)| matches(id))
            .max_by_key(|(id, _)| id.len());
        match (best_override, best_catalogue) {
            (Some(o), Some((id, _))) if o.model.len() >= id.len() => Some(override_price(o)),
            (_, Some((_, m))) => Some(self.catalogue_price(m)),
            (Some(o), None) => Some(override_price(o)),
            (None, None) => None,
        }
    }

    /// A catalogue model's price, unless an override of the same id replaces it.
    fn catalogue_price(&self, m: &CatalogueModel) -> ListedPrice {
        match self.overrides.iter().find(|o| o.model == m.id) {
            Some(o) => override_price(o),
            None => ListedPrice {
                model: m.id.clone(),
                base: m.base,
                long_context: m.long_context,
                source: format!("catalogue:{}", m.id),
            },
        }
    }

    /// The fallback rule's price, `None` for `refuse` (or an empty catalogue).
    pub fn fallback_price(&self) -> Option<ListedPrice> {
        match self.fallback {
            Fallback::Refuse => None,
            Fallback::Fixed(rates) => Some(ListedPrice {
                model: String::new(),
                base: rates,
                long_context: None,
                source: "fallback:fixed".to_owned(),
            }),
            Fallback::MostExpensive => most_expensive(self.catalogue).map(|m| ListedPrice {
                model: m.id.clone(),
                base: m.base,
                long_context: m.long_context,
                source: "fallback:most_expensive".to_owned(),
            }),
        }
    }

    /// The multiplier for a request to `model` (normalised) through `provider`.
    pub fn multiplier(
        &self,
        provider: &ProviderPricing,
        model: &str,
        upstream_model: &str,
    ) -> Multiplier {
        if let Some(bps) = provider.multiplier_bps.filter(|b| *b > 0) {
            return Multiplier {
                bps,
                origin: "override".to_owned(),
            };
        }
        let scope = provider.scope(upstream_model);
        let rule = self.catalogue.multipliers.iter().find(|r| {
            r.provider_kind == provider.kind
                && match r.endpoint {
                    EndpointRule::Any => true,
                    EndpointRule::Global => scope == EndpointScope::Global,
                    EndpointRule::Regional => scope == EndpointScope::Regional,
                }
                && r.covers_model(model)
        });
        match rule {
            Some(r) => Multiplier {
                bps: r.multiplier_bps,
                origin: format!("catalogue:{}", r.name),
            },
            None => Multiplier {
                bps: UNIT_MULTIPLIER_BPS,
                origin: "default".to_owned(),
            },
        }
    }
}

fn override_price(o: &PriceOverride) -> ListedPrice {
    ListedPrice {
        model: o.model.clone(),
        base: o.base,
        long_context: o.long_context,
        source: format!("override:{}", o.model),
    }
}

/// The catalogue model with the highest rates: highest single rate, then highest output, input
/// and cache rates; ties go to the first in file order.
pub fn most_expensive(catalogue: &Catalogue) -> Option<&CatalogueModel> {
    let key = |m: &CatalogueModel| {
        let r = m.base;
        (
            r.max_rate(),
            r.output,
            r.input,
            r.cache_write_1h,
            r.cache_write_5m,
            r.cache_read,
        )
    };
    catalogue.models.iter().rev().max_by_key(|m| key(m))
}

#[cfg(test)]
mod tests;
