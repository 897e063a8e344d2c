//! Prices and the cost of a request, in integer micro-USD.
//!
//! Rates are micro-USD per million tokens (USD/MTok × 1,000,000), so every published price
//! is an exact integer. The cost of a request is `ceil(Σ tokens × rate × multiplier /
//! (10^6 × 10^4))`: exact integer arithmetic in `u128`, rounded up once per request (never
//! more than 1 micro-USD above the exact value, never below it).

use tollgate_proto::v1 as pb;

use crate::usage::Usage;

/// One million: micro-USD per USD, and tokens per rate unit.
pub const MICRO_USD_PER_USD: u64 = 1_000_000;
const TOKENS_PER_RATE_UNIT: u128 = 1_000_000;
/// 10,000 basis points = 1.0×.
pub const UNIT_MULTIPLIER_BPS: u32 = 10_000;

/// Token rates in micro-USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriceRates {
    pub input: u64,
    pub output: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
}

impl PriceRates {
    /// Σ tokens × rate, in micro-USD per million tokens (not yet divided).
    fn weighted(&self, usage: &Usage) -> u128 {
        let term = |tokens: u64, rate: u64| u128::from(tokens) * u128::from(rate);
        term(usage.input_tokens, self.input)
            .saturating_add(term(usage.output_tokens, self.output))
            .saturating_add(term(usage.cache_creation_5m_tokens, self.cache_write_5m))
            .saturating_add(term(usage.cache_creation_1h_tokens, self.cache_write_1h))
            .saturating_add(term(usage.cache_read_tokens, self.cache_read))
    }

    /// The highest per-token rate of any class (for "most expensive" comparisons).
    pub fn max_rate(&self) -> u64 {
        self.input
            .max(self.output)
            .max(self.cache_write_5m)
            .max(self.cache_write_1h)
            .max(self.cache_read)
    }
}

impl From<&pb::PriceRates> for PriceRates {
    fn from(p: &pb::PriceRates) -> Self {
        PriceRates {
            input: p.input,
            output: p.output,
            cache_write_5m: p.cache_write_5m,
            cache_write_1h: p.cache_write_1h,
            cache_read: p.cache_read,
        }
    }
}

impl From<PriceRates> for pb::PriceRates {
    fn from(p: PriceRates) -> Self {
        pb::PriceRates {
            input: p.input,
            output: p.output,
            cache_write_5m: p.cache_write_5m,
            cache_write_1h: p.cache_write_1h,
            cache_read: p.cache_read,
        }
    }
}

/// The price of one route target: base rates, an optional long-context tier and the
/// provider/region multiplier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPrice {
    pub base: PriceRates,
    /// Prompt size (input + cache writes + cache reads) above which the whole request is
    /// priced at `long_context`; `None` = no tier.
    pub long_context: Option<(u64, PriceRates)>,
    /// Basis points; 10,000 = 1.0×.
    pub multiplier_bps: u32,
    /// Where the price came from, recorded with each usage record.
    pub source: String,
}

impl TargetPrice {
    /// The rates that apply to a request whose prompt has `prompt_tokens` tokens.
    pub fn rates_for(&self, prompt_tokens: u64) -> &PriceRates {
        match &self.long_context {
            Some((threshold, rates)) if prompt_tokens > *threshold => rates,
            _ => &self.base,
        }
    }

    /// What `usage` costs, in micro-USD, rounded up.
    pub fn cost(&self, usage: &Usage) -> u64 {
        let prompt = usage
            .input_tokens
            .saturating_add(usage.cache_creation_5m_tokens)
            .saturating_add(usage.cache_creation_1h_tokens)
            .saturating_add(usage.cache_read_tokens);
        let weighted = self.rates_for(prompt).weighted(usage);
        scale(weighted, self.multiplier_bps)
    }

    /// A reservation estimate: `input_tokens` at the input rate and `output_tokens` at the
    /// output rate (long-context rates when the input alone passes the threshold).
    pub fn estimate(&self, input_tokens: u64, output_tokens: u64) -> u64 {
        self.cost(&Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        })
    }
}

/// `ceil(weighted × bps / (10^6 × 10^4))`, saturating at `u64::MAX`.
fn scale(weighted: u128, multiplier_bps: u32) -> u64 {
    let numerator = weighted.saturating_mul(u128::from(multiplier_bps));
    let denominator = TOKENS_PER_RATE_UNIT * u128::from(UNIT_MULTIPLIER_BPS);
    u64::try_from(numerator.div_ceil(denominator)).unwrap_or(u64::MAX)
}

impl TryFrom<pb::TargetPrice> for TargetPrice {
    type Error = String;

    fn try_from(p: pb::TargetPrice) -> Result<Self, Self::Error> {
        let base = p
            .base
            .as_ref()
            .map(PriceRates::from)
            .ok_or_else(|| "price has no base rates".to_owned())?;
        let long_context = match (p.long_context_threshold_tokens, p.long_context.as_ref()) {
            (0, _) => None,
            (threshold, Some(rates)) => Some((threshold, PriceRates::from(rates))),
            (_, None) => return Err("long-context threshold without long-context rates".into()),
        };
        if p.multiplier_bps == 0 {
            return Err("price multiplier must be positive".into());
        }
        Ok(TargetPrice {
            base,
            long_context,
            multiplier_bps: p.multiplier_bps,
            source: p.source,
        })
    }
}

impl From<&TargetPrice> for pb::TargetPrice {
    fn from(p: &TargetPrice) -> Self {
        let (threshold, lc) = match &p.long_context {
            Some((threshold, rates)) => (*threshold, Some(pb::PriceRates::from(*rates))),
            None => (0, None),
        };
        pb::TargetPrice {
            base: Some(p.base.into()),
            long_context_threshold_tokens: threshold,
            long_context: lc,
            multiplier_bps: p.multiplier_bps,
            source: p.source.clone(),
        }
    }
}

/// Formats micro-USD as dollars with cents, e.g. `$12.40` (rounded down to the cent).
pub fn format_usd(micro_usd: u64) -> String {
    let cents = micro_usd / 10_000;
    format!("${}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests;
