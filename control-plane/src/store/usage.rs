//! Usage records: idempotent ingest keyed by the data plane's request id, and aggregation.

pub mod export;
mod query;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;
use super::spend::Counter;
use super::spend::settle::{self, ChargedRecord};

pub use query::{UsageDimension, UsageFilter, UsageTotalsRow, query};

/// One validated usage record, ready to store.
#[derive(Debug, Clone)]
pub struct UsageRecordRow {
    pub request_id: Uuid,
    pub data_plane_id: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub api_key_id: Option<Uuid>,
    pub principal_id: Option<Uuid>,
    pub model: String,
    pub provider_id: Option<Uuid>,
    pub upstream_model: String,
    pub endpoint: String,
    pub stream: bool,
    pub status: i32,
    pub outcome: &'static str,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_5m_tokens: i64,
    pub cache_creation_1h_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_micro_usd: i64,
    /// The caller's groups at admission.
    pub group_ids: Vec<Uuid>,
    pub price_source: String,
    /// The spend counters the cost is charged to (each once).
    pub charges: Vec<Counter>,
}

/// Stores a batch and settles it in one transaction: records whose request id is already
/// stored (or repeated within the batch) are skipped; each newly stored record's cost is
/// charged to its counters (see [`settle::apply`]), so a re-sent batch is never charged
/// twice. Returns how many were newly stored.
pub async fn insert(pool: &PgPool, records: &[UsageRecordRow]) -> Result<u64, StoreError> {
    if records.is_empty() {
        return Ok(0);
    }
    fn col<T>(records: &[&UsageRecordRow], f: impl Fn(&UsageRecordRow) -> T) -> Vec<T> {
        records.iter().map(|r| f(r)).collect()
    }
    // In request-id order, so concurrent batches sharing records wait on each other instead
    // of deadlocking.
    let mut sorted: Vec<&UsageRecordRow> = records.iter().collect();
    sorted.sort_by_key(|r| r.request_id);
    let records = sorted.as_slice();
    let mut tx = pool.begin().await?;
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO usage_records (request_id, data_plane_id, started_at, duration_ms, \
         api_key_id, principal_id, model, provider_id, upstream_model, endpoint, stream, status, \
         outcome, input_tokens, output_tokens, cache_creation_5m_tokens, \
         cache_creation_1h_tokens, cache_read_tokens, cost_micro_usd, group_ids, price_source) \
         SELECT r, dp, sa, dm, k, p, m, pr, um, e, st, s, o, it, ot, c5, c1, cr, cost, \
         string_to_array(g, ',')::uuid[], ps \
         FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::int8[], \
         $5::uuid[], $6::uuid[], $7::text[], $8::uuid[], $9::text[], $10::text[], $11::bool[], \
         $12::int4[], $13::text[], $14::int8[], $15::int8[], $16::int8[], $17::int8[], $18::int8[], \
         $19::int8[], $20::text[], $21::text[]) \
         AS t(r, dp, sa, dm, k, p, m, pr, um, e, st, s, o, it, ot, c5, c1, cr, cost, g, ps) \
         ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
    )
    .bind(col(records, |r| r.request_id))
    .bind(col(records, |r| r.data_plane_id.clone()))
    .bind(col(records, |r| r.started_at))
    .bind(col(records, |r| r.duration_ms))
    .bind(col(records, |r| r.api_key_id))
    .bind(col(records, |r| r.principal_id))
    .bind(col(records, |r| r.model.clone()))
    .bind(col(records, |r| r.provider_id))
    .bind(col(records, |r| r.upstream_model.clone()))
    .bind(col(records, |r| r.endpoint.clone()))
    .bind(col(records, |r| r.stream))
    .bind(col(records, |r| r.status))
    .bind(col(records, |r| r.outcome))
    .bind(col(records, |r| r.input_tokens))
    .bind(col(records, |r| r.output_tokens))
    .bind(col(records, |r| r.cache_creation_5m_tokens))
    .bind(col(records, |r| r.cache_creation_1h_tokens))
    .bind(col(records, |r| r.cache_read_tokens))
    .bind(col(records, |r| r.cost_micro_usd))
    .bind(col(records, |r| {
        r.group_ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }))
    .bind(col(records, |r| r.price_source.clone()))
    .fetch_all(&mut *tx)
    .await?;
    // The first record of each newly stored id is the one stored.
    let mut fresh: HashSet<Uuid> = inserted.iter().copied().collect();
    let charged: Vec<ChargedRecord<'_>> = records
        .iter()
        .copied()
        .filter(|r| fresh.remove(&r.request_id))
        .map(|r| ChargedRecord {
            request_id: r.request_id,
            data_plane_id: &r.data_plane_id,
            cost_micro_usd: r.cost_micro_usd,
            charges: &r.charges,
        })
        .collect();
    settle::apply(&mut tx, &charged).await?;
    tx.commit().await?;
    Ok(u64::try_from(inserted.len()).unwrap_or(u64::MAX))
}
