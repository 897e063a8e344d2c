//! Spend reports over stored usage records (cost by user, group, key, model, provider, day)
//! and a principal's day/week/month-to-date spend.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tollgate_policy::Period;
use uuid::Uuid;

use crate::store::scope::{resolve_group, resolve_principal};
use crate::store::{StoreError, parse_uuid, provider};

/// A report dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    User,
    /// A request counts once for each group the caller was in (`usage_records.group_ids`).
    Group,
    Key,
    Model,
    Provider,
    /// UTC day, YYYY-MM-DD.
    Day,
}

impl Dimension {
    fn expr(self) -> &'static str {
        match self {
            Dimension::User => "COALESCE(p.email, p.name, u.principal_id::text, '(none)')",
            Dimension::Group => "COALESCE(gr.name, g.gid::text, '(no group)')",
            Dimension::Key => "COALESCE(u.api_key_id::text, '(none)')",
            Dimension::Model => "u.model",
            Dimension::Provider => "COALESCE(pr.name, u.provider_id::text, '(none)')",
            Dimension::Day => "to_char(u.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        }
    }
}

/// Which records a report covers; references are resolved (unknown ones are
/// `InvalidArgument`). `from` is inclusive, `to` exclusive, on `started_at`.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter<'a> {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// User id or email, or service-account name.
    pub user: Option<&'a str>,
    /// Group id or name.
    pub group: Option<&'a str>,
    pub api_key_id: Option<&'a str>,
    pub model: Option<&'a str>,
    /// Provider id or name.
    pub provider: Option<&'a str>,
}

/// One row: the dimension values (in `group_by` order) and the totals.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRow {
    pub dimensions: Vec<String>,
    pub requests: i64,
    pub cost_micro_usd: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_5m_tokens: i64,
    pub cache_creation_1h_tokens: i64,
    pub cache_read_tokens: i64,
}

/// A report; `total_cost_micro_usd` counts every request once (even grouped by group).
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: Vec<ReportRow>,
    pub total_cost_micro_usd: i64,
}

struct Resolved {
    principal: Option<Uuid>,
    group: Option<Uuid>,
    key: Option<Uuid>,
    provider: Option<Uuid>,
}

const FILTER: &str = "($1::timestamptz IS NULL OR u.started_at >= $1) \
     AND ($2::timestamptz IS NULL OR u.started_at < $2) \
     AND ($3::uuid IS NULL OR u.principal_id = $3) \
     AND ($4::uuid IS NULL OR $4 = ANY(u.group_ids)) \
     AND ($5::uuid IS NULL OR u.api_key_id = $5) \
     AND ($6::text IS NULL OR u.model = $6) \
     AND ($7::uuid IS NULL OR u.provider_id = $7)";

/// Binds the seven `FILTER` parameters.
macro_rules! bind_filter {
    ($query:expr, $filter:expr, $r:expr) => {
        $query
            .bind($filter.from)
            .bind($filter.to)
            .bind($r.principal)
            .bind($r.group)
            .bind($r.key)
            .bind($filter.model)
            .bind($r.provider)
    };
}

/// Cost and tokens of the records matching `filter`, grouped by `group_by` (ordered by the
/// dimension values).
pub async fn report(
    pool: &PgPool,
    org_id: Uuid,
    group_by: &[Dimension],
    filter: &ReportFilter<'_>,
) -> Result<Report, StoreError> {
    let mut conn = pool.acquire().await?;
    let r = resolve(&mut conn, org_id, filter).await?;
    let dims: Vec<String> = group_by.iter().map(|d| d.expr().to_owned()).collect();
    let by_group = group_by.contains(&Dimension::Group);
    let group_join = if by_group {
        " LEFT JOIN LATERAL unnest(CASE WHEN cardinality(u.group_ids) = 0 \
           THEN ARRAY[NULL::uuid] ELSE u.group_ids END) AS g(gid) ON true \
         LEFT JOIN groups gr ON gr.id = g.gid"
    } else {
        ""
    };
    let group_filter = if by_group {
        " AND ($4::uuid IS NULL OR g.gid = $4)"
    } else {
        ""
    };
    let (dim_select, group_clause) = if dims.is_empty() {
        ("ARRAY[]::text[]".to_owned(), String::new())
    } else {
        let list = dims.join(", ");
        (
            format!("ARRAY[{list}]::text[]"),
            format!(" GROUP BY {list} ORDER BY {list}"),
        )
    };
    let sql = format!(
        "SELECT {dim_select} AS dimensions, count(*)::int8 AS requests, \
         COALESCE(sum(u.cost_micro_usd), 0)::int8 AS cost_micro_usd, \
         COALESCE(sum(u.input_tokens), 0)::int8 AS input_tokens, \
         COALESCE(sum(u.output_tokens), 0)::int8 AS output_tokens, \
         COALESCE(sum(u.cache_creation_5m_tokens), 0)::int8 AS cache_creation_5m_tokens, \
         COALESCE(sum(u.cache_creation_1h_tokens), 0)::int8 AS cache_creation_1h_tokens, \
         COALESCE(sum(u.cache_read_tokens), 0)::int8 AS cache_read_tokens \
         FROM usage_records u LEFT JOIN principals p ON p.id = u.principal_id \
         LEFT JOIN providers pr ON pr.id = u.provider_id{group_join} \
         WHERE {FILTER}{group_filter}{group_clause}"
    );
    let rows: Vec<ReportRow> = bind_filter!(sqlx::query_as(&sql), filter, r)
        .fetch_all(&mut *conn)
        .await?;
    let total_sql = format!(
        "SELECT COALESCE(sum(u.cost_micro_usd), 0)::int8 FROM usage_records u WHERE {FILTER}"
    );
    let total: i64 = bind_filter!(sqlx::query_scalar(&total_sql), filter, r)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Report {
        rows: rows.into_iter().filter(|row| row.requests > 0).collect(),
        total_cost_micro_usd: total,
    })
}

async fn resolve(
    conn: &mut PgConnection,
    org_id: Uuid,
    filter: &ReportFilter<'_>,
) -> Result<Resolved, StoreError> {
    let principal = match filter.user {
        Some(u) => Some(resolve_principal(conn, org_id, u).await?),
        None => None,
    };
    let group = match filter.group {
        Some(g) => Some(resolve_group(conn, org_id, g).await?),
        None => None,
    };
    let key = match filter.api_key_id {
        Some(k) => Some(parse_uuid(k).ok_or_else(|| {
            StoreError::InvalidArgument(format!("API key id `{k}` is not a UUID"))
        })?),
        None => None,
    };
    let provider = match filter.provider {
        Some(p) => Some(
            provider::resolve(conn, p)
                .await?
                .ok_or_else(|| StoreError::InvalidArgument(format!("provider `{p}` not found")))?,
        ),
        None => None,
    };
    Ok(Resolved {
        principal,
        group,
        key,
        provider,
    })
}

/// A principal's spend from stored usage records in the current UTC day, week and month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub day_micro_usd: i64,
    pub week_micro_usd: i64,
    pub month_micro_usd: i64,
    pub day_start_unix_s: i64,
    pub week_start_unix_s: i64,
    pub month_start_unix_s: i64,
}

/// Day-, week- and month-to-date spend of `principal_id` at `now` (by request start).
pub async fn summary(
    pool: &PgPool,
    principal_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Summary, StoreError> {
    let now_s = now.timestamp();
    let day = Period::Daily.window(now_s).start_unix_s;
    let week = Period::Weekly.window(now_s).start_unix_s;
    let month = Period::Monthly.window(now_s).start_unix_s;
    let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or(now);
    let (d, w, m): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(cost_micro_usd) FILTER (WHERE started_at >= $2), 0)::int8, \
         COALESCE(sum(cost_micro_usd) FILTER (WHERE started_at >= $3), 0)::int8, \
         COALESCE(sum(cost_micro_usd) FILTER (WHERE started_at >= $4), 0)::int8 \
         FROM usage_records WHERE principal_id = $1 AND started_at >= least($3, $4)",
    )
    .bind(principal_id)
    .bind(at(day))
    .bind(at(week))
    .bind(at(month))
    .fetch_one(pool)
    .await?;
    Ok(Summary {
        day_micro_usd: d,
        week_micro_usd: w,
        month_micro_usd: m,
        day_start_unix_s: day,
        week_start_unix_s: week,
        month_start_unix_s: month,
    })
}
