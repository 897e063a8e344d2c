//! The webhook outbox: rows written in the transaction that decided them (alerts), claimed by
//! a worker with `FOR UPDATE SKIP LOCKED` so any number of replicas can deliver them once.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

use crate::store::StoreError;

/// Deliveries are given up after this many failed attempts.
pub const MAX_ATTEMPTS: i32 = 24;

/// A pending delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: String,
    /// The JSON body, as text.
    pub payload: String,
    pub attempts: i32,
}

/// Locks up to `limit` deliveries due at `now` that no other worker holds. The locks last
/// until the caller's transaction ends.
pub async fn claim(
    conn: &mut PgConnection,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxItem>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, kind, payload::text AS payload, attempts FROM webhook_outbox \
         WHERE delivered_at IS NULL AND attempts < $1 AND next_attempt_at <= $2 \
         ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
    )
    .bind(MAX_ATTEMPTS)
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Marks a delivery done.
pub async fn delivered(conn: &mut PgConnection, id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_outbox SET delivered_at = now(), attempts = attempts + 1, \
         last_error = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt and schedules the next one with exponential backoff (10 s,
/// doubling, at most 1 h).
pub async fn failed(
    conn: &mut PgConnection,
    item: &OutboxItem,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let attempts = item.attempts.saturating_add(1);
    sqlx::query(
        "UPDATE webhook_outbox SET attempts = $2, next_attempt_at = $3, last_error = $4 \
         WHERE id = $1",
    )
    .bind(item.id)
    .bind(attempts)
    .bind(now + backoff(attempts))
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// The wait after the `attempts`-th failure: 10 s × 2^(attempts − 1), at most one hour.
pub fn backoff(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(12);
    Duration::seconds((10_i64 << exponent).min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::seconds(10));
        assert_eq!(backoff(2), Duration::seconds(20));
        assert_eq!(backoff(9), Duration::seconds(2560));
        assert_eq!(backoff(10), Duration::seconds(3600));
        assert_eq!(backoff(24), Duration::seconds(3600));
    }
}
