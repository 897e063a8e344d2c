//! The usage ledger as evidence: every stored request with its cost, in `(started_at,
//! request_id)` order and keyset-paged, and the reconciliation of spend counters with the
//! costs charged to them.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::StoreError;

/// One stored request, with the names its ids had at export time.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageExportRow {
    pub request_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub data_plane_id: String,
    pub principal_id: Option<Uuid>,
    /// The principal's name ('' when unknown or deleted).
    pub principal: String,
    pub email: String,
    pub api_key_id: Option<Uuid>,
    pub group_ids: Vec<Uuid>,
    pub model: String,
    /// The provider's name ('' when unknown or deleted).
    pub provider: String,
    pub upstream_model: String,
    pub endpoint: String,
    pub stream: bool,
    pub status: i32,
    pub outcome: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_5m_tokens: i64,
    pub cache_creation_1h_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_micro_usd: i64,
    pub price_source: String,
}

/// Where a page ends: the last row's `(started_at, request_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportPosition {
    pub started_at: DateTime<Utc>,
    pub request_id: Uuid,
}

/// At most `limit` records started in `[from, to)` (open bounds when `None`) after `after`, in
/// `(started_at, request_id)` order.
pub async fn export(
    pool: &PgPool,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<ExportPosition>,
    limit: i64,
) -> Result<Vec<UsageExportRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT u.request_id, u.started_at, u.duration_ms, u.data_plane_id, u.principal_id, \
           COALESCE(p.name, '') AS principal, COALESCE(p.email, '') AS email, u.api_key_id, \
           u.group_ids, u.model, COALESCE(pr.name, '') AS provider, u.upstream_model, \
           u.endpoint, u.stream, u.status, u.outcome, u.input_tokens, u.output_tokens, \
           u.cache_creation_5m_tokens, u.cache_creation_1h_tokens, u.cache_read_tokens, \
           u.cost_micro_usd, u.price_source \
         FROM usage_records u \
         LEFT JOIN principals p ON p.id = u.principal_id \
         LEFT JOIN providers pr ON pr.id = u.provider_id \
         WHERE ($1::timestamptz IS NULL OR u.started_at >= $1) \
           AND ($2::timestamptz IS NULL OR u.started_at < $2) \
           AND ($3::timestamptz IS NULL OR (u.started_at, u.request_id) > ($3, $4::uuid)) \
         ORDER BY u.started_at, u.request_id \
         LIMIT $5",
    )
    .bind(from)
    .bind(to)
    .bind(after.map(|a| a.started_at))
    .bind(after.map(|a| a.request_id))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// One spend counter beside what its usage charges add up to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CounterReconciliationRow {
    pub budget_id: Uuid,
    pub subject_id: String,
    pub window_start: DateTime<Utc>,
    pub counter_spent_micro_usd: i64,
    pub charged_micro_usd: i64,
    pub charged_requests: i64,
}

/// The counters of a range and the usage records started in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// Counters whose window starts in the range, by window start, budget and subject.
    pub counters: Vec<CounterReconciliationRow>,
    /// Sum of cost over records started in the range.
    pub usage_cost_micro_usd: i64,
    pub usage_requests: i64,
}

/// Every spend counter whose window starts in `[from, to)` with the sum and count of the
/// usage charges made to it, and the cost and count of usage records started in the range,
/// read in one consistent snapshot.
pub async fn reconcile(
    pool: &PgPool,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Reconciliation, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let counters = sqlx::query_as(
        "SELECT c.budget_id, c.subject_id, c.window_start, \
           c.spent_micro_usd AS counter_spent_micro_usd, \
           COALESCE(sum(ch.cost_micro_usd), 0)::int8 AS charged_micro_usd, \
           count(ch.request_id)::int8 AS charged_requests \
         FROM spend_counters c \
         LEFT JOIN usage_charges ch ON ch.budget_id = c.budget_id \
           AND ch.subject_id = c.subject_id AND ch.window_start = c.window_start \
         WHERE ($1::timestamptz IS NULL OR c.window_start >= $1) \
           AND ($2::timestamptz IS NULL OR c.window_start < $2) \
         GROUP BY c.budget_id, c.subject_id, c.window_start, c.spent_micro_usd \
         ORDER BY c.window_start, c.budget_id, c.subject_id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
    let (usage_cost_micro_usd, usage_requests): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(cost_micro_usd), 0)::int8, count(*)::int8 FROM usage_records \
         WHERE ($1::timestamptz IS NULL OR started_at >= $1) \
           AND ($2::timestamptz IS NULL OR started_at < $2)",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reconciliation {
        counters,
        usage_cost_micro_usd,
        usage_requests,
    })
}
