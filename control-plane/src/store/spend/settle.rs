//! Settlement: charging the cost of newly stored usage records to their counters, in the
//! transaction that stores them (so a re-sent batch is never charged twice), and the alerts
//! that follow.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use sqlx::PgConnection;
use tollgate_policy::Period;
use tollgate_policy::format_usd;
use uuid::Uuid;

use super::budgets::{self, BudgetRow};
use super::settings::{self, BudgetSettingsRow};
use super::{Counter, audit, counter_target, from_micro};
use crate::store::StoreError;

/// A newly stored usage record's cost and the counters it is charged to.
#[derive(Debug, Clone, Copy)]
pub struct ChargedRecord<'a> {
    pub request_id: Uuid,
    pub data_plane_id: &'a str,
    pub cost_micro_usd: i64,
    pub charges: &'a [Counter],
}

#[derive(Default)]
struct CounterCharges {
    total: i64,
    /// Cost per data plane (its lease's `consumed`).
    by_data_plane: BTreeMap<String, i64>,
    /// (request id, cost) for `usage_charges`.
    rows: Vec<(Uuid, i64)>,
}

/// Charges `records` (all newly stored in the caller's transaction): per charge whose budget
/// still exists, the counter's spent and the reporting data plane's lease consumption grow by
/// the cost, a `usage_charges` row is written, and alert thresholds crossed fire once per
/// window. Counters are locked in [`Counter`] order. A zero-cost record still gets its
/// `usage_charges` rows (one per stored request and counter) but fires no alert.
pub async fn apply(
    conn: &mut PgConnection,
    records: &[ChargedRecord<'_>],
) -> Result<(), StoreError> {
    let mut by_counter: BTreeMap<&Counter, CounterCharges> = BTreeMap::new();
    for r in records {
        for counter in r.charges {
            let entry = by_counter.entry(counter).or_default();
            entry.total = entry.total.saturating_add(r.cost_micro_usd);
            *entry
                .by_data_plane
                .entry(r.data_plane_id.to_owned())
                .or_default() += r.cost_micro_usd;
            entry.rows.push((r.request_id, r.cost_micro_usd));
        }
    }
    if by_counter.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<Uuid> = by_counter.keys().map(|c| c.budget_id).collect();
    ids.dedup();
    let budgets: HashMap<Uuid, BudgetRow> = budgets::get_many_locked(conn, &ids)
        .await?
        .into_iter()
        .map(|b| (b.id, b))
        .collect();
    let mut settings: Option<BudgetSettingsRow> = None;
    for (counter, charges) in by_counter {
        let Some(budget) = budgets.get(&counter.budget_id) else {
            continue;
        };
        let spent: i64 = sqlx::query_scalar(
            "INSERT INTO spend_counters (budget_id, subject_id, window_start, spent_micro_usd) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (budget_id, subject_id, window_start) \
             DO UPDATE SET spent_micro_usd = spend_counters.spent_micro_usd + EXCLUDED.spent_micro_usd \
             RETURNING spent_micro_usd",
        )
        .bind(counter.budget_id)
        .bind(&counter.subject_id)
        .bind(counter.window_start)
        .bind(charges.total)
        .fetch_one(&mut *conn)
        .await?;
        for (data_plane_id, cost) in &charges.by_data_plane {
            sqlx::query(
                "UPDATE spend_leases SET consumed_micro_usd = consumed_micro_usd + $5, \
                 updated_at = now() WHERE budget_id = $1 AND subject_id = $2 \
                 AND window_start = $3 AND data_plane_id = $4",
            )
            .bind(counter.budget_id)
            .bind(&counter.subject_id)
            .bind(counter.window_start)
            .bind(data_plane_id)
            .bind(cost)
            .execute(&mut *conn)
            .await?;
        }
        let (request_ids, costs): (Vec<Uuid>, Vec<i64>) = charges.rows.into_iter().unzip();
        sqlx::query(
            "INSERT INTO usage_charges (request_id, budget_id, subject_id, window_start, \
             cost_micro_usd) SELECT r, $2, $3, $4, c FROM UNNEST($1::uuid[], $5::int8[]) AS t(r, c)",
        )
        .bind(&request_ids)
        .bind(counter.budget_id)
        .bind(&counter.subject_id)
        .bind(counter.window_start)
        .bind(&costs)
        .execute(&mut *conn)
        .await?;
        if charges.total > 0 {
            if settings.is_none() {
                settings = Some(settings::get(conn).await?);
            }
            let webhook = settings
                .as_ref()
                .is_some_and(|s| s.alert_webhook_url.is_some());
            alerts(conn, budget, counter, spent, webhook).await?;
        }
    }
    Ok(())
}

/// Fires every threshold the counter's spend has reached that has not fired in this window:
/// a `budget_alerts` row, a `spend.alert` audit event and, when a webhook is configured, an
/// outbox row for the webhook worker.
async fn alerts(
    conn: &mut PgConnection,
    budget: &BudgetRow,
    counter: &Counter,
    spent: i64,
    webhook: bool,
) -> Result<(), StoreError> {
    let limit = budget.limit_micro_usd;
    let mut thresholds: Vec<i32> = budget
        .alert_thresholds_percent
        .iter()
        .copied()
        .filter(|&t| t > 0 && i128::from(spent) * 100 >= i128::from(t) * i128::from(limit))
        .collect();
    thresholds.sort_unstable();
    thresholds.dedup();
    for threshold in thresholds {
        let fired = sqlx::query(
            "INSERT INTO budget_alerts (budget_id, subject_id, window_start, threshold_percent, \
             spent_micro_usd, limit_micro_usd) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT DO NOTHING",
        )
        .bind(counter.budget_id)
        .bind(&counter.subject_id)
        .bind(counter.window_start)
        .bind(threshold)
        .bind(spent)
        .bind(limit)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            > 0;
        if !fired {
            continue;
        }
        let payload = alert_payload(conn, budget, counter, threshold, spent).await?;
        audit(
            conn,
            "control-plane",
            "spend.alert",
            &counter_target(counter),
            &payload,
        )
        .await?;
        if webhook {
            sqlx::query(
                "INSERT INTO webhook_outbox (kind, payload) VALUES ('spend.alert', $1::jsonb)",
            )
            .bind(payload.to_string())
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn alert_payload(
    conn: &mut PgConnection,
    budget: &BudgetRow,
    counter: &Counter,
    threshold: i32,
    spent: i64,
) -> Result<serde_json::Value, StoreError> {
    let subject_name: Option<String> = if counter.subject_id.is_empty() {
        None
    } else {
        sqlx::query_scalar("SELECT COALESCE(email, name) FROM principals WHERE id::text = $1")
            .bind(&counter.subject_id)
            .fetch_optional(&mut *conn)
            .await?
    };
    let start = counter.window_start.timestamp();
    let end = Period::parse(&budget.period).map_or(start, |p| p.window(start).end_unix_s);
    let iso = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    Ok(json!({
        "kind": "spend.alert",
        "budget": {
            "id": budget.id.to_string(),
            "scope": budget.scope,
            "scope_id": budget.scope_id().map(|id| id.to_string()).unwrap_or_default(),
            "scope_name": budget.scope_name,
            "period": budget.period,
            "per_member": budget.per_member,
        },
        "subject_id": counter.subject_id,
        "subject_name": subject_name,
        "window_start": iso(start),
        "window_end": iso(end),
        "threshold_percent": threshold,
        "spent_micro_usd": spent,
        "limit_micro_usd": budget.limit_micro_usd,
        "spent_usd": format_usd(from_micro(spent)),
        "limit_usd": format_usd(from_micro(budget.limit_micro_usd)),
    }))
}
