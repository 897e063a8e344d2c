//! Spend caps in Postgres: the budgets and their settings, the authoritative spend counters,
//! the leases data planes spend from, settlement of reported usage, alerts, explanations and
//! reports.
//!
//! Locking rule (no deadlocks between leases and settlement): every transaction that changes
//! counters or leases locks the counters it touches in [`Counter`] order (budget id, subject,
//! window start), one at a time, and touches a lease row only while holding its counter's lock.
//! Functions that depend on the time take `now`, so tests can inject any instant.

pub mod budgets;
pub mod explain;
pub mod lease;
pub mod outbox;
pub mod report;
pub mod settings;
pub mod settle;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

use super::StoreError;

/// One spend counter: a budget, the subject it counts for ('' = shared, else a principal id)
/// and the start of its UTC window. Ordered the way counters are locked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Counter {
    pub budget_id: Uuid,
    pub subject_id: String,
    pub window_start: DateTime<Utc>,
}

impl Counter {
    /// Converts a counter key from the wire, naming what is wrong with it.
    pub fn from_pb(key: &pb::CounterKey) -> Result<Counter, String> {
        let budget_id = Uuid::parse_str(&key.budget_id)
            .map_err(|_| format!("counter budget_id `{}` is not a UUID", key.budget_id))?;
        let window_start = DateTime::from_timestamp(key.window_start_unix_s, 0)
            .ok_or_else(|| "counter window_start_unix_s is out of range".to_owned())?;
        Ok(Counter {
            budget_id,
            subject_id: key.subject_id.clone(),
            window_start,
        })
    }

    /// The wire form.
    pub fn to_pb(&self) -> pb::CounterKey {
        pb::CounterKey {
            budget_id: self.budget_id.to_string(),
            subject_id: self.subject_id.clone(),
            window_start_unix_s: self.window_start.timestamp(),
        }
    }
}

/// Micro-USD from the wire into a stored amount (saturating: no real amount comes close).
pub fn to_micro(amount: u64) -> i64 {
    i64::try_from(amount).unwrap_or(i64::MAX)
}

/// A stored amount onto the wire (negative never happens; it would read as 0).
pub fn from_micro(amount: i64) -> u64 {
    u64::try_from(amount).unwrap_or(0)
}

/// The stored spend of a counter and the unused headroom of its leases that are live at
/// `now`, `(spent, leased)`; zeros when the counter has no row.
pub(crate) async fn counter_state(
    conn: &mut PgConnection,
    counter: &Counter,
    now: DateTime<Utc>,
) -> Result<(i64, i64), StoreError> {
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COALESCE((SELECT spent_micro_usd FROM spend_counters \
           WHERE budget_id = $1 AND subject_id = $2 AND window_start = $3), 0)::int8, \
         COALESCE((SELECT sum(greatest(granted_micro_usd - consumed_micro_usd, 0)) \
           FROM spend_leases WHERE budget_id = $1 AND subject_id = $2 AND window_start = $3 \
           AND expires_at > $4), 0)::int8",
    )
    .bind(counter.budget_id)
    .bind(&counter.subject_id)
    .bind(counter.window_start)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// Appends an audit event (to the hash chain, in the caller's transaction).
pub(crate) async fn audit(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    target: &str,
    details: &serde_json::Value,
) -> Result<(), StoreError> {
    super::audit::append(conn, actor, action, target, details).await?;
    Ok(())
}

/// How a counter is named in audit targets: `budget/<id>/<subject or "shared">/<window start>`.
pub(crate) fn counter_target(counter: &Counter) -> String {
    let subject = if counter.subject_id.is_empty() {
        "shared"
    } else {
        counter.subject_id.as_str()
    };
    format!(
        "budget/{}/{subject}/{}",
        counter.budget_id,
        counter.window_start.format("%Y-%m-%dT%H:%M:%SZ")
    )
}
