//! Explaining caps: every budget that applies to a user (or an API key), its counter in the
//! current window, what is spent and leased out, and whether it blocks a request now.
//!
//! A user's groups are the union of their `group_members` rows (what API keys carry) and the
//! group names of their latest unrevoked sign-in session (`sessions.groups`, what their gateway
//! tokens carry). For a user, caps on their unrevoked keys are listed too; such a cap blocks
//! only requests made with that key, so it does not make the user `blocked`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tollgate_policy::Period;
use tollgate_policy::{Window, format_usd};
use uuid::Uuid;

use super::budgets::{BudgetRow, SELECT};
use super::{Counter, counter_state, from_micro};
use crate::store::StoreError;
use crate::store::scope::{self, begin_explain};

/// One cap that applies, with its standing now.
#[derive(Debug, Clone)]
pub struct Standing {
    pub budget: BudgetRow,
    pub counter: Counter,
    pub spent: i64,
    pub leased: i64,
    pub remaining: i64,
    pub window: Window,
    /// Nothing is left (spent + leased ≥ limit).
    pub blocks: bool,
    /// A key cap listed for a user: it applies only to requests with that key.
    pub key_only: bool,
    pub explanation: String,
}

/// Every cap that applies to one principal.
pub type Explanation = scope::Explanation<Standing>;

/// Explains the caps of `user` (id, email or service-account name) or of `api_key_id` (the
/// key's caps plus its owner's) at `now`. An unknown user or key is `NotFound`.
pub async fn explain(
    pool: &PgPool,
    org_id: Uuid,
    user: Option<&str>,
    api_key_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Explanation, StoreError> {
    let (mut tx, subject) = begin_explain(pool, org_id, user, api_key_id).await?;
    let principal_id = subject.principal_id;
    let key = subject.key;
    let group_ids = subject.group_ids();
    let key_ids: Vec<Uuid> = match key {
        Some((id, _)) => vec![id],
        None => {
            sqlx::query_scalar(
                "SELECT id FROM api_keys WHERE principal_id = $1 AND revoked_at IS NULL",
            )
            .bind(principal_id)
            .fetch_all(&mut *tx)
            .await?
        }
    };
    let sql = format!(
        "{SELECT} WHERE b.org_id = $1 AND (b.scope = 'org' OR b.group_id = ANY($2) \
         OR b.principal_id = $3 OR b.api_key_id = ANY($4)) \
         ORDER BY array_position(ARRAY['org','group','user','key'], b.scope), scope_name, \
         array_position(ARRAY['daily','weekly','monthly'], b.period)"
    );
    let budgets: Vec<BudgetRow> = sqlx::query_as(&sql)
        .bind(org_id)
        .bind(&group_ids)
        .bind(principal_id)
        .bind(&key_ids)
        .fetch_all(&mut *tx)
        .await?;
    let mut standings = Vec::with_capacity(budgets.len());
    for budget in budgets {
        let Some(period) = Period::parse(&budget.period) else {
            continue;
        };
        let window = period.window(now.timestamp());
        let counter = Counter {
            budget_id: budget.id,
            subject_id: if budget.per_member {
                principal_id.to_string()
            } else {
                String::new()
            },
            window_start: DateTime::from_timestamp(window.start_unix_s, 0).unwrap_or(now),
        };
        let (spent, leased) = counter_state(&mut tx, &counter, now).await?;
        let remaining = budget
            .limit_micro_usd
            .saturating_sub(spent)
            .saturating_sub(leased)
            .max(0);
        let blocks = spent.saturating_add(leased) >= budget.limit_micro_usd;
        let key_only = budget.scope == "key" && key.is_none();
        let explanation = sentence(&budget, spent, leased, remaining, window, blocks, key_only);
        standings.push(Standing {
            budget,
            counter,
            spent,
            leased,
            remaining,
            window,
            blocks,
            key_only,
            explanation,
        });
    }
    tx.commit().await?;
    let blocked = standings.iter().any(|s| s.blocks && !s.key_only);
    Ok(subject.explained(standings, blocked))
}

/// e.g. "group eng (shared pool) daily: $12.40 of $20.00 used, $1.00 leased out, $6.60 left;
/// resets 2026-11-23 00:00 UTC".
fn sentence(
    budget: &BudgetRow,
    spent: i64,
    leased: i64,
    remaining: i64,
    window: Window,
    blocks: bool,
    key_only: bool,
) -> String {
    let what = match budget.scope.as_str() {
        "org" => "org".to_owned(),
        "group" if budget.per_member => format!("group {} (per member)", budget.scope_name),
        "group" => format!("group {} (shared pool)", budget.scope_name),
        "user" => format!("user {}", budget.scope_name),
        _ => format!("key {}", budget.scope_name),
    };
    let resets = DateTime::from_timestamp(window.end_unix_s, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let mut line = format!(
        "{what} {}: {} of {} used, {} leased out, {} left; resets {resets}",
        budget.period,
        format_usd(from_micro(spent)),
        format_usd(from_micro(budget.limit_micro_usd)),
        format_usd(from_micro(leased)),
        format_usd(from_micro(remaining)),
    );
    match (blocks, key_only) {
        (true, true) => line.push_str(" — blocks requests made with this key"),
        (true, false) => line.push_str(" — blocks requests now"),
        (false, true) => line.push_str(" (applies only to requests made with this key)"),
        (false, false) => {}
    }
    line
}
