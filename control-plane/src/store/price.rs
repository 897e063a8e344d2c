//! Admin price data: per-model overrides (`model_price_overrides`), the fallback rule for
//! unpriced models (`price_fallback`) and provider multipliers
//! (`providers.price_multiplier_bps`). The catalogue itself ships with the binary
//! ([`crate::pricing`]). Statement triggers on these tables bump the policy version, so every
//! change reaches data planes with the next snapshot.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tollgate_policy::PriceRates;
use uuid::Uuid;

use super::{StoreError, audit, provider};
use crate::pricing::{Fallback, PriceOverride, ProviderPricing};

/// One `model_price_overrides` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OverrideRow {
    pub model: String,
    pub input: i64,
    pub output: i64,
    pub cache_write_5m: i64,
    pub cache_write_1h: i64,
    pub cache_read: i64,
    pub long_context_threshold_tokens: i64,
    pub lc_input: i64,
    pub lc_output: i64,
    pub lc_cache_write_5m: i64,
    pub lc_cache_write_1h: i64,
    pub lc_cache_read: i64,
    pub source: String,
    pub updated_at: DateTime<Utc>,
}

impl OverrideRow {
    /// The override as pricing uses it.
    pub fn to_override(&self) -> PriceOverride {
        let rate = |v: i64| u64::try_from(v).unwrap_or(0);
        let long_context = (self.long_context_threshold_tokens > 0).then(|| {
            (
                rate(self.long_context_threshold_tokens),
                PriceRates {
                    input: rate(self.lc_input),
                    output: rate(self.lc_output),
                    cache_write_5m: rate(self.lc_cache_write_5m),
                    cache_write_1h: rate(self.lc_cache_write_1h),
                    cache_read: rate(self.lc_cache_read),
                },
            )
        });
        PriceOverride {
            model: self.model.clone(),
            base: PriceRates {
                input: rate(self.input),
                output: rate(self.output),
                cache_write_5m: rate(self.cache_write_5m),
                cache_write_1h: rate(self.cache_write_1h),
                cache_read: rate(self.cache_read),
            },
            long_context,
            source: self.source.clone(),
        }
    }
}

/// The `price_fallback` row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct FallbackRow {
    rule: String,
    input: i64,
    output: i64,
    cache_write_5m: i64,
    cache_write_1h: i64,
    cache_read: i64,
}

impl FallbackRow {
    fn to_fallback(&self) -> Fallback {
        let rate = |v: i64| u64::try_from(v).unwrap_or(0);
        match self.rule.as_str() {
            "fixed" => Fallback::Fixed(PriceRates {
                input: rate(self.input),
                output: rate(self.output),
                cache_write_5m: rate(self.cache_write_5m),
                cache_write_1h: rate(self.cache_write_1h),
                cache_read: rate(self.cache_read),
            }),
            "refuse" => Fallback::Refuse,
            _ => Fallback::MostExpensive,
        }
    }
}

/// A provider's pricing inputs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderPriceRow {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub price_multiplier_bps: Option<i32>,
    /// `providers.config.region` (empty when the provider has none).
    pub region: String,
}

impl ProviderPriceRow {
    /// The provider as pricing sees it.
    pub fn to_pricing(&self) -> ProviderPricing {
        ProviderPricing {
            kind: self.kind.clone(),
            region: (!self.region.is_empty()).then(|| self.region.clone()),
            multiplier_bps: self
                .price_multiplier_bps
                .and_then(|b| u32::try_from(b).ok())
                .filter(|b| *b > 0),
        }
    }
}

/// Everything the compiler needs to price route targets.
#[derive(Debug, Clone, Default)]
pub struct PriceRows {
    pub overrides: Vec<PriceOverride>,
    pub fallback: Fallback,
    pub providers: Vec<ProviderPriceRow>,
}

const PROVIDER_COLUMNS: &str =
    "id, name, kind, price_multiplier_bps, COALESCE(config->>'region', '') AS region";

const OVERRIDE_COLUMNS: &str = "model, input, output, cache_write_5m, cache_write_1h, \
    cache_read, long_context_threshold_tokens, lc_input, lc_output, lc_cache_write_5m, \
    lc_cache_write_1h, lc_cache_read, source, updated_at";

/// Loads overrides, the fallback rule and provider multipliers (in the compiler's transaction).
pub async fn load(tx: &mut PgConnection) -> Result<PriceRows, StoreError> {
    let sql = format!("SELECT {OVERRIDE_COLUMNS} FROM model_price_overrides ORDER BY model");
    let overrides: Vec<OverrideRow> = sqlx::query_as(&sql).fetch_all(&mut *tx).await?;
    let fallback = fallback_in(&mut *tx).await?;
    let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers ORDER BY name");
    let providers = sqlx::query_as(&sql).fetch_all(&mut *tx).await?;
    Ok(PriceRows {
        overrides: overrides.iter().map(OverrideRow::to_override).collect(),
        fallback,
        providers,
    })
}

/// Every override, by model id.
pub async fn list_overrides(pool: &PgPool) -> Result<Vec<OverrideRow>, StoreError> {
    let sql = format!("SELECT {OVERRIDE_COLUMNS} FROM model_price_overrides ORDER BY model");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// Creates or replaces the override of `o.model`.
pub async fn upsert_override(pool: &PgPool, o: &PriceOverride) -> Result<OverrideRow, StoreError> {
    let (threshold, lc) = o.long_context.unwrap_or_default();
    let sql = format!(
        "INSERT INTO model_price_overrides (model, input, output, cache_write_5m, \
         cache_write_1h, cache_read, long_context_threshold_tokens, lc_input, lc_output, \
         lc_cache_write_5m, lc_cache_write_1h, lc_cache_read, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (model) DO UPDATE SET input = EXCLUDED.input, output = EXCLUDED.output, \
         cache_write_5m = EXCLUDED.cache_write_5m, cache_write_1h = EXCLUDED.cache_write_1h, \
         cache_read = EXCLUDED.cache_read, \
         long_context_threshold_tokens = EXCLUDED.long_context_threshold_tokens, \
         lc_input = EXCLUDED.lc_input, lc_output = EXCLUDED.lc_output, \
         lc_cache_write_5m = EXCLUDED.lc_cache_write_5m, \
         lc_cache_write_1h = EXCLUDED.lc_cache_write_1h, lc_cache_read = EXCLUDED.lc_cache_read, \
         source = EXCLUDED.source, updated_at = now() \
         RETURNING {OVERRIDE_COLUMNS}"
    );
    let mut tx = audit::begin(pool).await?;
    let row = sqlx::query_as(&sql)
        .bind(&o.model)
        .bind(db_amount(o.base.input)?)
        .bind(db_amount(o.base.output)?)
        .bind(db_amount(o.base.cache_write_5m)?)
        .bind(db_amount(o.base.cache_write_1h)?)
        .bind(db_amount(o.base.cache_read)?)
        .bind(db_amount(threshold)?)
        .bind(db_amount(lc.input)?)
        .bind(db_amount(lc.output)?)
        .bind(db_amount(lc.cache_write_5m)?)
        .bind(db_amount(lc.cache_write_1h)?)
        .bind(db_amount(lc.cache_read)?)
        .bind(&o.source)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

/// Removes the override of `model`; `false` when there was none.
pub async fn delete_override(pool: &PgPool, model: &str) -> Result<bool, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let done = sqlx::query("DELETE FROM model_price_overrides WHERE model = $1")
        .bind(model)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// The fallback rule (absent row = most expensive).
pub async fn fallback(pool: &PgPool) -> Result<Fallback, StoreError> {
    let mut conn = pool.acquire().await?;
    fallback_in(&mut conn).await
}

async fn fallback_in(conn: &mut PgConnection) -> Result<Fallback, StoreError> {
    let row: Option<FallbackRow> = sqlx::query_as(
        "SELECT rule, input, output, cache_write_5m, cache_write_1h, cache_read \
         FROM price_fallback WHERE singleton",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map_or(Fallback::MostExpensive, |r| r.to_fallback()))
}

/// Sets the fallback rule.
pub async fn set_fallback(pool: &PgPool, fallback: &Fallback) -> Result<(), StoreError> {
    let rates = match fallback {
        Fallback::Fixed(rates) => *rates,
        Fallback::MostExpensive | Fallback::Refuse => PriceRates::default(),
    };
    let mut tx = audit::begin(pool).await?;
    sqlx::query(
        "INSERT INTO price_fallback (singleton, rule, input, output, cache_write_5m, \
         cache_write_1h, cache_read) VALUES (true, $1, $2, $3, $4, $5, $6) \
         ON CONFLICT (singleton) DO UPDATE SET rule = EXCLUDED.rule, input = EXCLUDED.input, \
         output = EXCLUDED.output, cache_write_5m = EXCLUDED.cache_write_5m, \
         cache_write_1h = EXCLUDED.cache_write_1h, cache_read = EXCLUDED.cache_read, \
         updated_at = now()",
    )
    .bind(fallback.rule_name())
    .bind(db_amount(rates.input)?)
    .bind(db_amount(rates.output)?)
    .bind(db_amount(rates.cache_write_5m)?)
    .bind(db_amount(rates.cache_write_1h)?)
    .bind(db_amount(rates.cache_read)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets (or, with `None`, clears) a provider's multiplier; the provider by id or name.
pub async fn set_provider_multiplier(
    pool: &PgPool,
    provider_ref: &str,
    multiplier_bps: Option<u32>,
) -> Result<ProviderPriceRow, StoreError> {
    let bps = multiplier_bps
        .map(i32::try_from)
        .transpose()
        .map_err(|_| StoreError::InvalidArgument("the multiplier is too large".to_owned()))?;
    let mut tx = audit::begin(pool).await?;
    let id = provider::resolve(&mut tx, provider_ref)
        .await?
        .ok_or_else(|| provider::not_found(provider_ref))?;
    let sql = format!(
        "UPDATE providers SET price_multiplier_bps = $2 WHERE id = $1 RETURNING {PROVIDER_COLUMNS}"
    );
    let row = sqlx::query_as(&sql)
        .bind(id)
        .bind(bps)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

/// A rate or token count as a `bigint`.
fn db_amount(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::InvalidArgument(format!("{value} is too large")))
}
