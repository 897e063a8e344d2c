//! Usage aggregation. The SQL is assembled only from the fixed expressions of
//! [`UsageDimension::expression`]; every user-supplied value is a bind parameter.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::store::{StoreError, principal};

/// A column usage can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageDimension {
    /// The API key id (empty for other credentials).
    Key,
    /// The principal's name.
    Principal,
    Model,
    /// `YYYY-MM-DD` of the request start, UTC.
    Day,
    /// The provider's name.
    Provider,
}

impl UsageDimension {
    /// The SQL expression of this dimension (text-valued).
    fn expression(self) -> &'static str {
        match self {
            UsageDimension::Key => "COALESCE(u.api_key_id::text, '')",
            UsageDimension::Principal => "COALESCE(p.name, u.principal_id::text, '')",
            UsageDimension::Model => "u.model",
            UsageDimension::Day => "to_char(u.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            UsageDimension::Provider => "COALESCE(pr.name, u.provider_id::text, '')",
        }
    }
}

/// Which records to aggregate; `None` leaves a bound or filter open.
#[derive(Debug, Default)]
pub struct UsageFilter<'a> {
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub api_key_id: Option<Uuid>,
    /// Principal id, email or name.
    pub principal: Option<&'a str>,
    pub model: Option<&'a str>,
}

/// Sums for one combination of dimension values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotalsRow {
    pub dimensions: Vec<String>,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_5m_tokens: i64,
    pub cache_creation_1h_tokens: i64,
    pub cache_read_tokens: i64,
}

/// Aggregates usage grouped by `group_by` (in order; none = one total row), sorted by the
/// dimension values.
pub async fn query(
    pool: &PgPool,
    org_id: Uuid,
    group_by: &[UsageDimension],
    filter: &UsageFilter<'_>,
) -> Result<Vec<UsageTotalsRow>, StoreError> {
    let mut conn = pool.acquire().await?;
    let principal_id = match filter.principal {
        Some(p) => Some(principal::resolve(&mut conn, org_id, p).await?),
        None => None,
    };
    let sql = build_sql(group_by);
    let rows = sqlx::query(&sql)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.api_key_id)
        .bind(principal_id)
        .bind(filter.model)
        .fetch_all(&mut *conn)
        .await?;
    let n = group_by.len();
    rows.iter()
        .map(|row| {
            let dimensions = (0..n)
                .map(|i| row.try_get::<String, _>(i))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(UsageTotalsRow {
                dimensions,
                requests: row.try_get(n)?,
                input_tokens: row.try_get(n + 1)?,
                output_tokens: row.try_get(n + 2)?,
                cache_creation_5m_tokens: row.try_get(n + 3)?,
                cache_creation_1h_tokens: row.try_get(n + 4)?,
                cache_read_tokens: row.try_get(n + 5)?,
            })
        })
        .collect()
}

fn build_sql(group_by: &[UsageDimension]) -> String {
    let mut select = String::from("SELECT ");
    for d in group_by {
        select.push_str(d.expression());
        select.push_str(", ");
    }
    select.push_str(
        "count(*)::int8, COALESCE(sum(u.input_tokens), 0)::int8, \
         COALESCE(sum(u.output_tokens), 0)::int8, \
         COALESCE(sum(u.cache_creation_5m_tokens), 0)::int8, \
         COALESCE(sum(u.cache_creation_1h_tokens), 0)::int8, \
         COALESCE(sum(u.cache_read_tokens), 0)::int8 \
         FROM usage_records u LEFT JOIN principals p ON p.id = u.principal_id \
         LEFT JOIN providers pr ON pr.id = u.provider_id \
         WHERE ($1::timestamptz IS NULL OR u.started_at >= $1) \
         AND ($2::timestamptz IS NULL OR u.started_at < $2) \
         AND ($3::uuid IS NULL OR u.api_key_id = $3) \
         AND ($4::uuid IS NULL OR u.principal_id = $4) \
         AND ($5::text IS NULL OR u.model = $5)",
    );
    if !group_by.is_empty() {
        let positions: Vec<String> = (1..=group_by.len()).map(|i| i.to_string()).collect();
        let positions = positions.join(", ");
        select.push_str(&format!(" GROUP BY {positions} ORDER BY {positions}"));
    }
    select
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ungrouped_query_has_no_group_by() {
        let sql = build_sql(&[]);
        assert!(sql.starts_with("SELECT count(*)"));
        assert!(!sql.contains("GROUP BY"));
    }

    #[test]
    fn grouped_query_groups_by_dimension_positions_in_order() {
        let sql = build_sql(&[UsageDimension::Day, UsageDimension::Model]);
        assert!(sql.starts_with(
            "SELECT to_char(u.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), u.model,"
        ));
        assert!(sql.ends_with("GROUP BY 1, 2 ORDER BY 1, 2"));
    }
}
