//! Explaining rate limits: every limit that applies to a user (or an API key), the bucket a
//! request of theirs is counted in, and how close it is now. Buckets are read, refilled to
//! `now` in memory, never written.
//!
//! A user's groups are those of the spend explanation: `group_members` rows plus the groups
//! of their latest unrevoked sign-in session. Key limits are listed when a key is explained
//! (with its owner's limits), not for a user. Provider ceilings are not listed (they apply to
//! upstreams, not callers).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tollgate_policy::RateLimitKind;
use uuid::Uuid;

use super::lease::{Bucket, SCALE, ms_until, refill};
use super::{ORDER, RateLimitRow, SELECT};
use crate::store::StoreError;
use crate::store::scope::{self, begin_explain};

/// One limit that applies, with its bucket's standing now.
#[derive(Debug, Clone)]
pub struct Standing {
    pub limit: RateLimitRow,
    pub bucket: Bucket,
    /// Per-minute: whole units in the bucket now. Concurrency: free slots.
    pub available: i64,
    /// Concurrency: slots held by live data-plane leases.
    pub held: i64,
    /// Per-minute: ms until the bucket is full.
    pub full_in_ms: i64,
    /// Not even one unit is available.
    pub blocks: bool,
    pub explanation: String,
}

/// Every limit that applies to one principal.
pub type Explanation = scope::Explanation<Standing>;

/// Explains the limits of `user` (id, email or service-account name) or of `api_key_id`
/// (the key's limits plus its owner's) at `now`, only those counting `model` when given. An
/// unknown user or key is `NotFound`.
pub async fn explain(
    pool: &PgPool,
    org_id: Uuid,
    user: Option<&str>,
    api_key_id: Option<&str>,
    model: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Explanation, StoreError> {
    let (mut tx, subject) = begin_explain(pool, org_id, user, api_key_id).await?;
    let principal_id = subject.principal_id;
    let group_ids = subject.group_ids();
    let key_ids: Vec<Uuid> = subject.key.map(|(id, _)| id).into_iter().collect();
    let sql = format!(
        "{SELECT} WHERE r.org_id = $1 AND (r.scope = 'org' OR r.group_id = ANY($2) \
         OR r.principal_id = $3 OR r.api_key_id = ANY($4)) \
         AND ($5::text IS NULL OR r.model = '' OR r.model = $5) {ORDER}"
    );
    let limits: Vec<RateLimitRow> = sqlx::query_as(&sql)
        .bind(org_id)
        .bind(&group_ids)
        .bind(principal_id)
        .bind(&key_ids)
        .bind(model)
        .fetch_all(&mut *tx)
        .await?;
    let mut standings = Vec::with_capacity(limits.len());
    for limit in limits {
        let Some(kind) = limit.kind() else {
            continue;
        };
        let bucket = Bucket {
            limit_id: limit.id,
            subject_id: if limit.per_member {
                principal_id.to_string()
            } else {
                String::new()
            },
        };
        let value = i128::from(limit.limit_value);
        let (available, held, full_in_ms) = if kind.per_minute() {
            let level = tokens_now(&mut tx, &bucket, value, now).await?;
            (level / SCALE, 0, ms_until(level, value * SCALE, value))
        } else {
            let held: i64 = sqlx::query_scalar(
                "SELECT COALESCE(sum(held), 0)::int8 FROM rate_slot_leases \
                 WHERE limit_id = $1 AND subject_id = $2 AND expires_at > $3",
            )
            .bind(bucket.limit_id)
            .bind(&bucket.subject_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            ((value - i128::from(held)).max(0), i128::from(held), 0)
        };
        let available = i64::try_from(available).unwrap_or(i64::MAX);
        let held = i64::try_from(held).unwrap_or(i64::MAX);
        let blocks = available == 0;
        let explanation = sentence(&limit, kind, available, held, full_in_ms, blocks);
        standings.push(Standing {
            limit,
            bucket,
            available,
            held,
            full_in_ms,
            blocks,
            explanation,
        });
    }
    tx.commit().await?;
    let blocked = standings.iter().any(|s| s.blocks);
    Ok(subject.explained(standings, blocked))
}

/// The scaled level of a per-minute bucket refilled to `now` (full when it has no row).
async fn tokens_now(
    conn: &mut PgConnection,
    bucket: &Bucket,
    limit: i128,
    now: DateTime<Utc>,
) -> Result<i128, StoreError> {
    let row: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT level_scaled, refilled_at FROM rate_buckets WHERE limit_id = $1 \
         AND subject_id = $2",
    )
    .bind(bucket.limit_id)
    .bind(&bucket.subject_id)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some((level, refilled_at)) => refill(i128::from(level), refilled_at, limit, now).0,
        None => limit * SCALE,
    })
}

/// How a kind reads in explanations.
pub fn kind_label(kind: RateLimitKind) -> &'static str {
    match kind {
        RateLimitKind::RequestsPerMinute => "requests/min",
        RateLimitKind::InputTokensPerMinute => "input tokens/min",
        RateLimitKind::OutputTokensPerMinute => "output tokens/min",
        RateLimitKind::ConcurrentRequests => "concurrent requests",
    }
}

/// e.g. "user alice@example.com requests/min: 3 of 10 left; full in 42 s", "group eng (per
/// member) concurrent requests for claude-x: 2 of 4 held by data planes, 2 free".
fn sentence(
    limit: &RateLimitRow,
    kind: RateLimitKind,
    available: i64,
    held: i64,
    full_in_ms: i64,
    blocks: bool,
) -> String {
    let what = match limit.scope.as_str() {
        "org" => "org".to_owned(),
        "group" if limit.per_member => format!("group {} (per member)", limit.scope_name),
        "group" => format!("group {} (shared)", limit.scope_name),
        "user" => format!("user {}", limit.scope_name),
        "provider" => format!("provider {}", limit.scope_name),
        _ => format!("key {}", limit.scope_name),
    };
    let model = if limit.model.is_empty() {
        String::new()
    } else {
        format!(" for {}", limit.model)
    };
    let mut line = if kind.per_minute() {
        let mut line = format!(
            "{what} {}{model}: {available} of {} left",
            kind_label(kind),
            limit.limit_value
        );
        if full_in_ms > 0 {
            line.push_str(&format!(
                "; full in {} s",
                full_in_ms.saturating_add(999) / 1000
            ));
        }
        line
    } else {
        format!(
            "{what} {}{model}: {held} of {} held by data planes, {available} free",
            kind_label(kind),
            limit.limit_value
        )
    };
    if blocks {
        line.push_str(" — blocks requests now");
    }
    line
}
