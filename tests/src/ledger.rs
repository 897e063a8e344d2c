//! Direct reads of the spend ledger for assertions: stored usage records and their cost,
//! the authoritative counters (`spend_counters`), the per-request charges (`usage_charges`)
//! and the data planes' leases (`spend_leases`).

use sqlx::PgPool;

/// Count and total cost of the usage records of one principal (by email or name).
pub async fn usage_cost(pool: &PgPool, principal: &str) -> anyhow::Result<(u64, u64)> {
    let (n, sum): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(u.cost_micro_usd), 0)::bigint FROM usage_records u \
         JOIN principals p ON p.id = u.principal_id WHERE p.email = $1 OR p.name = $1",
    )
    .bind(principal)
    .fetch_one(pool)
    .await?;
    Ok((u64::try_from(n)?, u64::try_from(sum)?))
}

/// `spend_counters.spent_micro_usd` summed over every window and subject of one budget.
pub async fn counter_spent(pool: &PgPool, budget_id: &str) -> anyhow::Result<u64> {
    let sum: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(spent_micro_usd), 0)::bigint FROM spend_counters \
         WHERE budget_id = $1::uuid",
    )
    .bind(budget_id)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(sum)?)
}

/// Count and total of the `usage_charges` rows of one budget.
pub async fn charges(pool: &PgPool, budget_id: &str) -> anyhow::Result<(u64, u64)> {
    let (n, sum): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(cost_micro_usd), 0)::bigint FROM usage_charges \
         WHERE budget_id = $1::uuid",
    )
    .bind(budget_id)
    .fetch_one(pool)
    .await?;
    Ok((u64::try_from(n)?, u64::try_from(sum)?))
}

/// The leases on one budget: `(data plane id, granted, consumed, live)`.
pub async fn leases(
    pool: &PgPool,
    budget_id: &str,
) -> anyhow::Result<Vec<(String, u64, u64, bool)>> {
    let rows: Vec<(String, i64, i64, bool)> = sqlx::query_as(
        "SELECT data_plane_id, granted_micro_usd, consumed_micro_usd, expires_at > now() \
         FROM spend_leases WHERE budget_id = $1::uuid ORDER BY data_plane_id",
    )
    .bind(budget_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(dp, g, c, live)| Ok((dp, u64::try_from(g)?, u64::try_from(c)?, live)))
        .collect()
}
