//! Route-target health as data planes report it (`target_health`): one row per data plane and
//! target, replaced by each report. Not policy: writes do not bump the snapshot version.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// One target's state in a report.
#[derive(Debug, Clone)]
pub struct HealthEntry {
    pub provider_id: Uuid,
    pub upstream_model: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    pub consecutive_failures: i32,
    pub retry_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub failures: i64,
    pub last_error: String,
    pub last_failure_at: Option<DateTime<Utc>>,
}

/// A stored report row with its provider's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HealthRow {
    pub data_plane_id: String,
    pub provider_id: Uuid,
    pub provider_name: String,
    pub upstream_model: String,
    pub state: String,
    pub consecutive_failures: i32,
    pub retry_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub failures: i64,
    pub last_error: String,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub reported_at: DateTime<Utc>,
}

/// Stores a data plane's report (`reported_at` = now). Entries for providers that no longer
/// exist are skipped; for a target named twice the last entry wins. Returns rows written.
pub async fn upsert(
    pool: &PgPool,
    data_plane_id: &str,
    entries: &[HealthEntry],
) -> Result<u64, StoreError> {
    let mut latest: Vec<&HealthEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        let same = |x: &&HealthEntry| {
            x.provider_id == e.provider_id && x.upstream_model == e.upstream_model
        };
        match latest.iter_mut().find(|x| same(x)) {
            Some(slot) => *slot = e,
            None => latest.push(e),
        }
    }
    if latest.is_empty() {
        return Ok(0);
    }
    let provider_ids: Vec<Uuid> = latest.iter().map(|e| e.provider_id).collect();
    let upstream: Vec<&str> = latest.iter().map(|e| e.upstream_model.as_str()).collect();
    let states: Vec<&str> = latest.iter().map(|e| e.state).collect();
    let consecutive: Vec<i32> = latest.iter().map(|e| e.consecutive_failures).collect();
    let retry_at: Vec<Option<DateTime<Utc>>> = latest.iter().map(|e| e.retry_at).collect();
    let attempts: Vec<i64> = latest.iter().map(|e| e.attempts).collect();
    let failures: Vec<i64> = latest.iter().map(|e| e.failures).collect();
    let last_error: Vec<&str> = latest.iter().map(|e| e.last_error.as_str()).collect();
    let last_failure_at: Vec<Option<DateTime<Utc>>> =
        latest.iter().map(|e| e.last_failure_at).collect();
    let written = sqlx::query(
        "INSERT INTO target_health (data_plane_id, provider_id, upstream_model, state, \
         consecutive_failures, retry_at, attempts, failures, last_error, last_failure_at, \
         reported_at) \
         SELECT $1, x.provider_id, x.upstream_model, x.state, x.consecutive, x.retry_at, \
         x.attempts, x.failures, x.last_error, x.last_failure_at, now() \
         FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::int4[], $6::timestamptz[], \
         $7::int8[], $8::int8[], $9::text[], $10::timestamptz[]) \
         AS x(provider_id, upstream_model, state, consecutive, retry_at, attempts, failures, \
         last_error, last_failure_at) \
         WHERE EXISTS (SELECT 1 FROM providers p WHERE p.id = x.provider_id) \
         ON CONFLICT (data_plane_id, provider_id, upstream_model) DO UPDATE SET \
         state = EXCLUDED.state, consecutive_failures = EXCLUDED.consecutive_failures, \
         retry_at = EXCLUDED.retry_at, attempts = EXCLUDED.attempts, \
         failures = EXCLUDED.failures, last_error = EXCLUDED.last_error, \
         last_failure_at = EXCLUDED.last_failure_at, reported_at = EXCLUDED.reported_at",
    )
    .bind(data_plane_id)
    .bind(&provider_ids)
    .bind(&upstream)
    .bind(&states)
    .bind(&consecutive)
    .bind(&retry_at)
    .bind(&attempts)
    .bind(&failures)
    .bind(&last_error)
    .bind(&last_failure_at)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(written)
}

/// Rows reported within `max_age_s` seconds, by provider name, upstream model, data plane.
pub async fn list(pool: &PgPool, max_age_s: u32) -> Result<Vec<HealthRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT h.data_plane_id, h.provider_id, p.name AS provider_name, h.upstream_model, \
         h.state, h.consecutive_failures, h.retry_at, h.attempts, h.failures, h.last_error, \
         h.last_failure_at, h.reported_at \
         FROM target_health h JOIN providers p ON p.id = h.provider_id \
         WHERE h.reported_at >= now() - make_interval(secs => $1) \
         ORDER BY p.name, h.upstream_model, h.data_plane_id",
    )
    .bind(f64::from(max_age_s))
    .fetch_all(pool)
    .await?)
}
