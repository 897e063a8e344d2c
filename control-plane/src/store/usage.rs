//! Usage records: idempotent ingest keyed by the data plane's request id, and aggregation.

mod query;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

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
}

/// Stores a batch in one statement; records whose request id is already stored (or repeated
/// within the batch) are skipped. Returns how many were newly stored.
pub async fn insert(pool: &PgPool, records: &[UsageRecordRow]) -> Result<u64, StoreError> {
    if records.is_empty() {
        return Ok(0);
    }
    fn col<T>(records: &[UsageRecordRow], f: impl Fn(&UsageRecordRow) -> T) -> Vec<T> {
        records.iter().map(f).collect()
    }
    let result = sqlx::query(
        "INSERT INTO usage_records (request_id, data_plane_id, started_at, duration_ms, \
         api_key_id, principal_id, model, provider_id, upstream_model, endpoint, stream, status, \
         outcome, input_tokens, output_tokens, cache_creation_5m_tokens, \
         cache_creation_1h_tokens, cache_read_tokens) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::int8[], \
         $5::uuid[], $6::uuid[], $7::text[], $8::uuid[], $9::text[], $10::text[], $11::bool[], \
         $12::int4[], $13::text[], $14::int8[], $15::int8[], $16::int8[], $17::int8[], $18::int8[]) \
         ON CONFLICT (request_id) DO NOTHING",
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
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}
