//! Spend leases: every ask of one `Lease` call is decided in one transaction, all-or-nothing.
//!
//! Per call: the counters asked about are created if missing and locked in [`Counter`] order.
//! Per ask: this data plane's lease is reset if it had expired (its earlier grants stop
//! counting: granted := consumed), the release is applied, and the lease is renewed until
//! `now + lease_ttl_s`. remaining = limit − spent − unused headroom of every live lease
//! (floor 0). If some ask's `need` exceeds its remaining, nothing is granted (the first such
//! ask is reported, and `spend.cap_reached` is audited once per counter); otherwise each ask
//! gets `min(remaining, max(need, min(want, remaining / 4)))`, so slices shrink to exactly
//! `need` as a cap nears, which is what holds the cap across any number of data planes.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use tollgate_policy::Period;
use uuid::Uuid;

use super::budgets::{self, BudgetRow};
use super::{Counter, audit, counter_state, counter_target, settings};
use crate::store::StoreError;

/// A data plane may ask about the previous or next window when the control plane's clock is
/// this close to the boundary (clock skew between machines).
pub const WINDOW_BOUNDARY_SKEW_S: i64 = 300;

/// One ask of a `Lease` call (amounts in micro-USD).
#[derive(Debug, Clone)]
pub struct Ask {
    pub counter: Counter,
    pub need: i64,
    pub want: i64,
    pub release: i64,
}

/// The state of one asked counter after the call.
#[derive(Debug, Clone)]
pub struct CounterOutcome {
    pub counter: Counter,
    /// Added to this data plane's lease by the call (0 when refused).
    pub granted: i64,
    /// 0 when the budget no longer exists.
    pub limit: i64,
    pub spent: i64,
    /// Unused headroom of every live lease on the counter after the call.
    pub leased: i64,
    pub expires_at: DateTime<Utc>,
    pub lease_reset: bool,
}

/// What a `Lease` call decided.
#[derive(Debug, Clone)]
pub struct LeaseOutcome {
    pub granted: bool,
    /// One per ask, in ask order.
    pub counters: Vec<CounterOutcome>,
    /// The first ask that did not fit (meaningful when `!granted`).
    pub blocked_index: usize,
}

/// The slice granted on a counter with `remaining` room for an ask of (`need`, `want`),
/// given `need <= remaining`.
pub fn slice(remaining: i64, need: i64, want: i64) -> i64 {
    remaining.min(need.max(want.min(remaining / 4)))
}

/// Whether a counter window start is acceptable at `now`: the period's current window, or
/// the previous/next one when `now` is within [`WINDOW_BOUNDARY_SKEW_S`] of the boundary.
pub fn window_acceptable(period: Period, window_start_unix_s: i64, now_unix_s: i64) -> bool {
    let current = period.window(now_unix_s);
    if window_start_unix_s == current.start_unix_s {
        return true;
    }
    if now_unix_s - current.start_unix_s <= WINDOW_BOUNDARY_SKEW_S
        && window_start_unix_s == period.window(current.start_unix_s - 1).start_unix_s
    {
        return true;
    }
    current.end_unix_s - now_unix_s <= WINDOW_BOUNDARY_SKEW_S
        && window_start_unix_s == current.end_unix_s
}

/// Per-ask state gathered under the counter locks.
struct Held {
    spent: i64,
    leased: i64,
    remaining: i64,
    lease_reset: bool,
}

/// Grants, renews and releases lease slices for `data_plane_id` at `now` (see the module
/// docs). Bad asks (malformed, duplicate counters, a window that is not current, a subject
/// that does not match the budget's mode) are `InvalidArgument` and change nothing.
pub async fn lease(
    pool: &PgPool,
    data_plane_id: &str,
    asks: &[Ask],
    now: DateTime<Utc>,
) -> Result<LeaseOutcome, StoreError> {
    if data_plane_id.is_empty() {
        return Err(StoreError::InvalidArgument(
            "data_plane_id must not be empty".to_owned(),
        ));
    }
    let mut seen = HashSet::new();
    for ask in asks {
        if !seen.insert(&ask.counter) {
            return Err(StoreError::InvalidArgument(format!(
                "counter {} is asked for twice",
                counter_target(&ask.counter)
            )));
        }
        if ask.need < 0 || ask.want < 0 || ask.release < 0 {
            return Err(StoreError::InvalidArgument(
                "lease amounts must not be negative".to_owned(),
            ));
        }
    }
    let mut tx = pool.begin().await?;
    let ttl = settings::get(&mut tx).await?.lease_ttl_s.max(1);
    let expires_at = now + Duration::seconds(i64::from(ttl));
    let ids: Vec<Uuid> = asks.iter().map(|a| a.counter.budget_id).collect();
    let budgets: HashMap<Uuid, BudgetRow> = budgets::get_many_locked(&mut tx, &ids)
        .await?
        .into_iter()
        .map(|b| (b.id, b))
        .collect();
    // A pure renewal/release of a counter that is no longer acceptable (its window ended
    // past the skew, or the budget's mode changed) is a no-op, not an error: failing the
    // whole call would also drop the renewals of that data plane's live leases.
    let mut stale = HashSet::new();
    for (i, ask) in asks.iter().enumerate() {
        if let Some(budget) = budgets.get(&ask.counter.budget_id)
            && let Err(error) = validate(budget, &ask.counter, now)
        {
            if ask.need == 0 && ask.want == 0 {
                stale.insert(i);
            } else {
                return Err(error);
            }
        }
    }

    // Lock the counters of existing budgets in counter order, then settle each one's lease.
    let mut order: Vec<usize> = (0..asks.len())
        .filter(|&i| budgets.contains_key(&asks[i].counter.budget_id) && !stale.contains(&i))
        .collect();
    order.sort_by(|&a, &b| asks[a].counter.cmp(&asks[b].counter));
    let mut held: HashMap<usize, Held> = HashMap::new();
    for &i in &order {
        let ask = &asks[i];
        let c = &ask.counter;
        let limit = budgets.get(&c.budget_id).map_or(0, |b| b.limit_micro_usd);
        sqlx::query(
            "INSERT INTO spend_counters (budget_id, subject_id, window_start) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(c.budget_id)
        .bind(&c.subject_id)
        .bind(c.window_start)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "SELECT 1 FROM spend_counters WHERE budget_id = $1 AND subject_id = $2 \
             AND window_start = $3 FOR UPDATE",
        )
        .bind(c.budget_id)
        .bind(&c.subject_id)
        .bind(c.window_start)
        .execute(&mut *tx)
        .await?;
        let mine: Option<(i64, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT granted_micro_usd, consumed_micro_usd, expires_at FROM spend_leases \
             WHERE budget_id = $1 AND subject_id = $2 AND window_start = $3 \
             AND data_plane_id = $4 FOR UPDATE",
        )
        .bind(c.budget_id)
        .bind(&c.subject_id)
        .bind(c.window_start)
        .bind(data_plane_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (mut granted, consumed, lease_reset) = match mine {
            // Expired: earlier grants no longer count; start from what was consumed.
            Some((_, consumed, expires)) if expires <= now => (consumed, consumed, true),
            Some((granted, consumed, _)) => (granted, consumed, false),
            None => (0, 0, false),
        };
        let unused = (granted - consumed).max(0);
        granted -= ask.release.min(unused);
        sqlx::query(
            "INSERT INTO spend_leases (budget_id, subject_id, window_start, data_plane_id, \
             granted_micro_usd, consumed_micro_usd, expires_at) VALUES ($1, $2, $3, $4, $5, 0, $6) \
             ON CONFLICT (budget_id, subject_id, window_start, data_plane_id) DO UPDATE \
             SET granted_micro_usd = EXCLUDED.granted_micro_usd, expires_at = EXCLUDED.expires_at, \
             updated_at = now()",
        )
        .bind(c.budget_id)
        .bind(&c.subject_id)
        .bind(c.window_start)
        .bind(data_plane_id)
        .bind(granted)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        let (spent, leased) = counter_state(&mut tx, c, now).await?;
        let remaining = limit.saturating_sub(spent).saturating_sub(leased).max(0);
        held.insert(
            i,
            Held {
                spent,
                leased,
                remaining,
                lease_reset,
            },
        );
    }

    let blocked =
        (0..asks.len()).find(|i| held.get(i).is_some_and(|h| asks[*i].need > h.remaining));
    let mut counters = Vec::with_capacity(asks.len());
    for (i, ask) in asks.iter().enumerate() {
        let Some(h) = held.get(&i) else {
            // The budget no longer exists (nothing to hold back; the next snapshot drops
            // it), or a stale renewal (need = want = 0, so nothing is granted either).
            counters.push(CounterOutcome {
                counter: ask.counter.clone(),
                granted: if blocked.is_some() {
                    0
                } else {
                    ask.need.max(ask.want)
                },
                limit: budgets
                    .get(&ask.counter.budget_id)
                    .map_or(0, |b| b.limit_micro_usd),
                spent: 0,
                leased: 0,
                expires_at,
                lease_reset: false,
            });
            continue;
        };
        let limit = budgets
            .get(&ask.counter.budget_id)
            .map_or(0, |b| b.limit_micro_usd);
        let granted = if blocked.is_some() {
            0
        } else {
            slice(h.remaining, ask.need, ask.want)
        };
        if granted > 0 {
            let c = &ask.counter;
            sqlx::query(
                "UPDATE spend_leases SET granted_micro_usd = granted_micro_usd + $5 \
                 WHERE budget_id = $1 AND subject_id = $2 AND window_start = $3 \
                 AND data_plane_id = $4",
            )
            .bind(c.budget_id)
            .bind(&c.subject_id)
            .bind(c.window_start)
            .bind(data_plane_id)
            .bind(granted)
            .execute(&mut *tx)
            .await?;
        }
        if blocked.is_some()
            && ask.need > h.remaining
            && let Some(budget) = budgets.get(&ask.counter.budget_id)
        {
            cap_reached(&mut tx, budget, ask, h, data_plane_id, now).await?;
        }
        counters.push(CounterOutcome {
            counter: ask.counter.clone(),
            granted,
            limit,
            spent: h.spent,
            leased: h.leased + granted,
            expires_at,
            lease_reset: h.lease_reset,
        });
    }
    tx.commit().await?;
    Ok(LeaseOutcome {
        granted: blocked.is_none(),
        counters,
        blocked_index: blocked.unwrap_or(0),
    })
}

/// The counter must be in a window the budget's period allows now, and its subject must
/// match the budget's mode (a principal id per member, '' for a shared pool).
fn validate(budget: &BudgetRow, counter: &Counter, now: DateTime<Utc>) -> Result<(), StoreError> {
    let period = Period::parse(&budget.period).ok_or_else(|| {
        StoreError::InvalidArgument(format!("budget {} has an unknown period", budget.id))
    })?;
    if !window_acceptable(period, counter.window_start.timestamp(), now.timestamp()) {
        return Err(StoreError::InvalidArgument(format!(
            "counter window {} is not the current {} window of budget {}",
            counter.window_start.format("%Y-%m-%dT%H:%M:%SZ"),
            budget.period,
            budget.id
        )));
    }
    if budget.per_member == counter.subject_id.is_empty() {
        return Err(StoreError::InvalidArgument(format!(
            "budget {} is {}: the counter subject must be {}",
            budget.id,
            if budget.per_member {
                "per member"
            } else {
                "a shared pool"
            },
            if budget.per_member {
                "the principal id"
            } else {
                "empty"
            }
        )));
    }
    Ok(())
}

/// Records `spend.cap_reached` the first time a counter refuses a lease in its window.
async fn cap_reached(
    conn: &mut sqlx::PgConnection,
    budget: &BudgetRow,
    ask: &Ask,
    held: &Held,
    data_plane_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let c = &ask.counter;
    let first = sqlx::query(
        "UPDATE spend_counters SET cap_reached_at = $4 WHERE budget_id = $1 AND subject_id = $2 \
         AND window_start = $3 AND cap_reached_at IS NULL",
    )
    .bind(c.budget_id)
    .bind(&c.subject_id)
    .bind(c.window_start)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if !first {
        return Ok(());
    }
    let details = json!({
        "budget_id": budget.id.to_string(),
        "scope": budget.scope,
        "scope_name": budget.scope_name,
        "period": budget.period,
        "subject_id": c.subject_id,
        "window_start": c.window_start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "limit_micro_usd": budget.limit_micro_usd,
        "spent_micro_usd": held.spent,
        "leased_micro_usd": held.leased,
        "need_micro_usd": ask.need,
        "data_plane_id": data_plane_id,
    });
    audit(
        conn,
        "control-plane",
        "spend.cap_reached",
        &counter_target(c),
        &details,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_policy::unix_s_from_civil;

    #[test]
    fn slices_are_large_far_from_the_cap_and_exactly_need_near_it() {
        assert_eq!(slice(1_000_000, 10, 50_000), 50_000);
        assert_eq!(slice(1_000_000, 10, 0), 10);
        assert_eq!(slice(100, 10, 50_000), 25);
        assert_eq!(slice(30, 10, 50_000), 10);
        assert_eq!(slice(10, 10, 50_000), 10);
        assert_eq!(slice(0, 0, 0), 0);
    }

    #[test]
    fn window_is_current_or_adjacent_within_the_skew() {
        let day = unix_s_from_civil(2026, 11, 23);
        let prev = unix_s_from_civil(2026, 11, 22);
        let next = unix_s_from_civil(2026, 11, 24);
        assert!(window_acceptable(Period::Daily, day, day + 3600));
        assert!(!window_acceptable(Period::Daily, prev, day + 3600));
        assert!(window_acceptable(Period::Daily, prev, day + 300));
        assert!(!window_acceptable(Period::Daily, prev, day + 301));
        assert!(window_acceptable(Period::Daily, next, next - 300));
        assert!(!window_acceptable(Period::Daily, next, next - 301));
        assert!(!window_acceptable(Period::Daily, day + 1, day + 3600));
    }
}
