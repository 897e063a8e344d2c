//! The price of every route target (`RouteTarget.price`), resolved from the shipped catalogue,
//! admin overrides, the fallback rule and provider multipliers ([`crate::pricing`]).

use std::collections::HashMap;

use tollgate_proto::v1 as pb;

use super::CompileError;
use crate::pricing::{self, Pricing, ProviderPricing};
use crate::store::price::PriceRows;

/// Sets `price` on every route target; a target stays unpriced only under the `refuse`
/// fallback rule.
pub(crate) fn apply(snapshot: &mut pb::Snapshot, rows: &PriceRows) -> Result<(), CompileError> {
    let catalogue = pricing::shipped().map_err(|err| CompileError::Pricing(err.to_string()))?;
    let pricing = Pricing {
        catalogue,
        overrides: &rows.overrides,
        fallback: rows.fallback,
    };
    let providers: HashMap<String, ProviderPricing> = rows
        .providers
        .iter()
        .map(|p| (p.id.to_string(), p.to_pricing()))
        .collect();
    let unknown = ProviderPricing::default();
    for route in &mut snapshot.routes {
        for target in &mut route.targets {
            let provider = providers.get(&target.provider_id).unwrap_or(&unknown);
            target.price = pricing
                .resolve(&route.model, &target.upstream_model, provider)
                .as_ref()
                .map(pb::TargetPrice::from);
        }
    }
    Ok(())
}
