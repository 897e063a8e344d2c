//! The price catalogue shipped with the control plane (`control-plane/pricing/catalogue.toml`,
//! embedded at build time): parsing and validation.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::Deserialize;
use tollgate_policy::PriceRates;

use super::model_id::is_prefix_at_boundary;

/// The catalogue text compiled into the binary.
pub const SHIPPED_TOML: &str = include_str!("../../pricing/catalogue.toml");

/// Why a catalogue is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("the price catalogue is not valid TOML: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("price catalogue entry `{entry}`: {problem}")]
    Invalid { entry: String, problem: String },
}

/// A parsed, validated price catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    /// The catalogue's version (its date, YYYY-MM-DD).
    pub version: String,
    /// Models in file order.
    pub models: Vec<CatalogueModel>,
    /// Provider/region multiplier rules in file order (the first match wins).
    pub multipliers: Vec<MultiplierRule>,
}

/// One model's list price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueModel {
    pub id: String,
    pub name: String,
    /// Other exact ids priced like this one (e.g. `claude-opus-4-0`).
    pub aliases: Vec<String>,
    pub base: PriceRates,
    /// `(threshold_tokens, rates)`: prompts above the threshold price every token at `rates`.
    pub long_context: Option<(u64, PriceRates)>,
    /// Where the numbers were read (URL).
    pub source: String,
    /// When they were read (YYYY-MM-DD).
    pub as_of: String,
    pub note: String,
}

/// Which endpoint scope a multiplier rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointRule {
    Global,
    Regional,
    Any,
}

/// A provider/region price multiplier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiplierRule {
    pub name: String,
    /// A `providers.kind` value (`bedrock`, `vertex`, …).
    pub provider_kind: String,
    pub endpoint: EndpointRule,
    /// Model id prefixes (at a `-` boundary); empty = every model.
    pub models: Vec<String>,
    pub multiplier_bps: u32,
    pub source: String,
    pub as_of: String,
}

impl MultiplierRule {
    /// Whether the rule covers `model` (a normalised model id).
    pub fn covers_model(&self, model: &str) -> bool {
        self.models.is_empty()
            || self
                .models
                .iter()
                .any(|prefix| is_prefix_at_boundary(prefix, model))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    catalogue: Header,
    #[serde(default)]
    model: Vec<ModelEntry>,
    #[serde(default)]
    multiplier: Vec<MultiplierEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    id: String,
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    input: u64,
    output: u64,
    cache_write_5m: u64,
    cache_write_1h: u64,
    cache_read: u64,
    long_context: Option<LongContextEntry>,
    source: String,
    as_of: String,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongContextEntry {
    threshold_tokens: u64,
    input: u64,
    output: u64,
    cache_write_5m: u64,
    cache_write_1h: u64,
    cache_read: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiplierEntry {
    name: String,
    provider_kind: String,
    endpoint: EndpointRule,
    #[serde(default)]
    models: Vec<String>,
    multiplier_bps: u32,
    source: String,
    as_of: String,
    #[serde(default)]
    #[expect(dead_code, reason = "documentation for readers of the file")]
    note: String,
}

/// The shipped catalogue, parsed once.
pub fn shipped() -> Result<&'static Catalogue, &'static CatalogueError> {
    static SHIPPED: OnceLock<Result<Catalogue, CatalogueError>> = OnceLock::new();
    SHIPPED.get_or_init(|| parse(SHIPPED_TOML)).as_ref()
}

/// Parses and validates catalogue text.
pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
    let file: File = toml::from_str(text)?;
    let version = file.catalogue.version;
    check_date("catalogue", "version", &version)?;
    let mut seen = HashSet::new();
    let mut models = Vec::with_capacity(file.model.len());
    for entry in file.model {
        let model = model(entry)?;
        for id in std::iter::once(&model.id).chain(&model.aliases) {
            if !seen.insert(id.clone()) {
                return Err(invalid(id, "the id appears twice"));
            }
        }
        models.push(model);
    }
    let multipliers = file
        .multiplier
        .into_iter()
        .map(multiplier)
        .collect::<Result<_, _>>()?;
    Ok(Catalogue {
        version,
        models,
        multipliers,
    })
}

fn model(e: ModelEntry) -> Result<CatalogueModel, CatalogueError> {
    check_id(&e.id, &e.id)?;
    for alias in &e.aliases {
        check_id(&e.id, alias)?;
    }
    if e.source.trim().is_empty() {
        return Err(invalid(&e.id, "`source` is empty"));
    }
    check_date(&e.id, "as_of", &e.as_of)?;
    let base = PriceRates {
        input: e.input,
        output: e.output,
        cache_write_5m: e.cache_write_5m,
        cache_write_1h: e.cache_write_1h,
        cache_read: e.cache_read,
    };
    if base.max_rate() == 0 {
        return Err(invalid(&e.id, "every rate is zero"));
    }
    let long_context = match e.long_context {
        None => None,
        Some(lc) => {
            if lc.threshold_tokens == 0 {
                return Err(invalid(&e.id, "long-context threshold must be positive"));
            }
            let rates = PriceRates {
                input: lc.input,
                output: lc.output,
                cache_write_5m: lc.cache_write_5m,
                cache_write_1h: lc.cache_write_1h,
                cache_read: lc.cache_read,
            };
            if !not_below(&rates, &base) {
                return Err(invalid(
                    &e.id,
                    "long-context rates must not be below the base rates",
                ));
            }
            Some((lc.threshold_tokens, rates))
        }
    };
    Ok(CatalogueModel {
        id: e.id,
        name: e.name,
        aliases: e.aliases,
        base,
        long_context,
        source: e.source,
        as_of: e.as_of,
        note: e.note,
    })
}

fn multiplier(e: MultiplierEntry) -> Result<MultiplierRule, CatalogueError> {
    if e.name.trim().is_empty() || e.provider_kind.trim().is_empty() {
        return Err(invalid(
            &e.name,
            "a multiplier needs a name and a provider kind",
        ));
    }
    if e.multiplier_bps == 0 {
        return Err(invalid(&e.name, "multiplier_bps must be positive"));
    }
    if e.source.trim().is_empty() {
        return Err(invalid(&e.name, "`source` is empty"));
    }
    check_date(&e.name, "as_of", &e.as_of)?;
    Ok(MultiplierRule {
        name: e.name,
        provider_kind: e.provider_kind,
        endpoint: e.endpoint,
        models: e.models,
        multiplier_bps: e.multiplier_bps,
        source: e.source,
        as_of: e.as_of,
    })
}

/// Every rate of `a` is at least the same rate of `b`.
pub(crate) fn not_below(a: &PriceRates, b: &PriceRates) -> bool {
    a.input >= b.input
        && a.output >= b.output
        && a.cache_write_5m >= b.cache_write_5m
        && a.cache_write_1h >= b.cache_write_1h
        && a.cache_read >= b.cache_read
}

fn check_id(entry: &str, id: &str) -> Result<(), CatalogueError> {
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            entry,
            &format!("model id `{id}` must be lowercase ASCII letters, digits, `-` or `.`"),
        ))
    }
}

/// `YYYY-MM-DD` with a plausible month and day.
fn check_date(entry: &str, field: &str, value: &str) -> Result<(), CatalogueError> {
    let b = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shape = b.len() == 10 && b[4] == b'-' && b[7] == b'-' && digits(0..4);
    let ok = shape
        && digits(5..7)
        && digits(8..10)
        && matches!(value[5..7].parse::<u8>(), Ok(1..=12))
        && matches!(value[8..10].parse::<u8>(), Ok(1..=31));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            entry,
            &format!("`{field}` must be a date YYYY-MM-DD, got `{value}`"),
        ))
    }
}

fn invalid(entry: &str, problem: &str) -> CatalogueError {
    CatalogueError::Invalid {
        entry: entry.to_owned(),
        problem: problem.to_owned(),
    }
}
