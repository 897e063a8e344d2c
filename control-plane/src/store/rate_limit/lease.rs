//! Rate-limit leases: every ask of one `RateLease` call is decided in one transaction,
//! all-or-nothing.
//!
//! Every bucket asked about has a `rate_buckets` row (created if missing; a new per-minute
//! bucket starts full), and the rows are locked in [`Bucket`] order (limit id, subject), one
//! at a time, so concurrent calls never deadlock and never see each other's half-done work.
//! A concurrency bucket's row is only its lock; its state is the `rate_slot_leases` rows.
//!
//! Per-minute kinds (token bucket, integer state in 1/60000 units): refill to `now` (limit
//! per 60 s, capped at full), apply the release (capped at full), then `need` fits when
//! `need <= avail` (whole units). Concurrency: this data plane's lease is reset if it had
//! expired, the release is applied, and free = limit − Σ held by live leases; `need` fits when
//! `need <= free`, and the lease is renewed until `now + lease_ttl_s` (the spend budget
//! settings' TTL). If every ask fits, each gets `min(avail, max(need, min(want, avail / 4)))`;
//! otherwise nothing is granted and the first short ask is reported with how long until its
//! need fits. Releases, refills, resets and renewals are kept either way.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use sqlx::PgPool;
use tollgate_policy::RateLimitKind;
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::spend::settings;

/// Bucket levels are kept in units of 1/60000 of a request or token: a full bucket holds
/// `limit * SCALE`, and every millisecond refills `limit`.
pub const SCALE: i128 = 60_000;

/// How long an expired slot lease of another data plane is kept before a call on its
/// bucket removes it.
const STALE_LEASE_RETENTION: Duration = Duration::hours(1);

/// One bucket: a limit and the subject it counts for ('' = shared, else a principal id).
/// Ordered the way buckets are locked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket {
    pub limit_id: Uuid,
    pub subject_id: String,
}

impl Bucket {
    /// Converts a bucket key from the wire, naming what is wrong with it.
    pub fn from_pb(key: &tollgate_proto::v1::BucketKey) -> Result<Bucket, String> {
        let limit_id = Uuid::parse_str(&key.limit_id)
            .map_err(|_| format!("bucket limit_id `{}` is not a UUID", key.limit_id))?;
        Ok(Bucket {
            limit_id,
            subject_id: key.subject_id.clone(),
        })
    }

    /// The wire form.
    pub fn to_pb(&self) -> tollgate_proto::v1::BucketKey {
        tollgate_proto::v1::BucketKey {
            limit_id: self.limit_id.to_string(),
            subject_id: self.subject_id.clone(),
        }
    }

    fn target(&self) -> String {
        let subject = if self.subject_id.is_empty() {
            "shared"
        } else {
            self.subject_id.as_str()
        };
        format!("rate_limit/{}/{subject}", self.limit_id)
    }
}

/// One ask of a `RateLease` call (units of the limit's kind).
#[derive(Debug, Clone)]
pub struct Ask {
    pub bucket: Bucket,
    pub need: i64,
    pub want: i64,
    pub release: i64,
}

/// The state of one asked bucket after the call.
#[derive(Debug, Clone, Default)]
pub struct BucketOutcome {
    /// Added to this data plane's holding by the call (0 when refused).
    pub granted: i64,
    /// 0 when the limit no longer exists.
    pub limit: i64,
    /// Per-minute: whole units left in the bucket. Concurrency: slots free.
    pub available: i64,
    /// When the call was refused and this bucket is short: ms until `need` fits (per-minute
    /// kinds; 0 for concurrency, which frees slots when requests finish).
    pub retry_after_ms: i64,
    /// Per-minute kinds: ms until the bucket is full.
    pub full_in_ms: i64,
    /// Concurrency: when this data plane's lease expires without renewal.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Concurrency: this data plane's lease had expired, its slots were dropped.
    pub lease_reset: bool,
    /// Concurrency: the slots this data plane holds after the call (absolute, so a data
    /// plane that missed an answer converges on the next one).
    pub held: i64,
}

/// What a `RateLease` call decided.
#[derive(Debug, Clone)]
pub struct RateLeaseOutcome {
    pub granted: bool,
    /// One per ask, in ask order.
    pub buckets: Vec<BucketOutcome>,
    /// The first ask that did not fit (meaningful when `!granted`).
    pub blocked_index: usize,
}

/// The slice granted with `avail` units free for an ask of (`need`, `want`), given
/// `need <= avail`.
pub fn slice(avail: i128, need: i128, want: i128) -> i128 {
    avail.min(need.max(want.min(avail / 4)))
}

/// A per-minute bucket's level refilled from `refilled_at` to `now`: `(level, refilled_at)`.
/// Whole milliseconds are refilled (the remainder carries over); a full bucket's refill time
/// is `now`. A clock that moved back refills nothing.
pub fn refill(
    level: i128,
    refilled_at: DateTime<Utc>,
    limit: i128,
    now: DateTime<Utc>,
) -> (i128, DateTime<Utc>) {
    let full = limit * SCALE;
    let elapsed_ms = (now - refilled_at).num_milliseconds().max(0);
    let level = level + limit * i128::from(elapsed_ms);
    if level >= full {
        (full, now.max(refilled_at))
    } else {
        (level, refilled_at + Duration::milliseconds(elapsed_ms))
    }
}

/// Milliseconds until a bucket at `level` reaches `target` (both scaled), refilling `limit`
/// per ms; 0 when it is there already.
pub fn ms_until(level: i128, target: i128, limit: i128) -> i64 {
    if level >= target || limit <= 0 {
        return 0;
    }
    let missing = target - level;
    i64::try_from((missing + limit - 1) / limit).unwrap_or(i64::MAX)
}

/// A limit as the lease needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct LimitRow {
    id: Uuid,
    kind: String,
    limit_value: i64,
    per_member: bool,
}

/// Per-ask state gathered under the bucket locks.
#[derive(Debug)]
enum Held {
    /// A per-minute bucket, refilled to now and with the release applied.
    Tokens {
        limit: i128,
        level: i128,
        refilled_at: DateTime<Utc>,
    },
    /// A concurrency bucket after this data plane's reset and release.
    Slots {
        limit: i128,
        /// Slots held by other data planes' live leases.
        others: i128,
        /// Slots this data plane holds (after reset and release).
        mine: i128,
        lease_reset: bool,
    },
}

impl Held {
    /// Units the ask may take.
    fn avail(&self) -> i128 {
        match self {
            Held::Tokens { level, .. } => level / SCALE,
            Held::Slots {
                limit,
                others,
                mine,
                ..
            } => (limit - others - mine).max(0),
        }
    }
}

/// Grants, renews and releases for `data_plane_id` at `now` (see the module docs). Bad asks
/// (empty data plane id, negative amounts, a bucket asked for twice, a subject that does not
/// match the limit's mode) are `InvalidArgument` and change nothing; a pure renewal/read
/// (`need = want = 0`) of a bucket whose subject no longer matches is a no-op instead. A
/// bucket whose limit no longer exists is granted as asked (`need`), with limit 0.
pub async fn lease(
    pool: &PgPool,
    data_plane_id: &str,
    asks: &[Ask],
    now: DateTime<Utc>,
) -> Result<RateLeaseOutcome, StoreError> {
    if data_plane_id.trim().is_empty() {
        return Err(StoreError::InvalidArgument(
            "data_plane_id must not be empty".to_owned(),
        ));
    }
    let mut seen = HashSet::new();
    for ask in asks {
        if !seen.insert(&ask.bucket) {
            return Err(StoreError::InvalidArgument(format!(
                "bucket {} is asked for twice",
                ask.bucket.target()
            )));
        }
        if ask.need < 0 || ask.want < 0 || ask.release < 0 {
            return Err(StoreError::InvalidArgument(
                "lease amounts must not be negative".to_owned(),
            ));
        }
    }
    let mut tx = pool.begin().await?;
    let ids: Vec<Uuid> = asks.iter().map(|a| a.bucket.limit_id).collect();
    // Key-share locked: a limit cannot be deleted under the bucket writes (its value may
    // still change; this call then acted just before the change).
    let limits: HashMap<Uuid, LimitRow> = sqlx::query_as::<_, LimitRow>(
        "SELECT id, kind, limit_value, per_member FROM rate_limits WHERE id = ANY($1) \
         ORDER BY id FOR KEY SHARE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|l| (l.id, l))
    .collect();
    let mut stale = HashSet::new();
    for (i, ask) in asks.iter().enumerate() {
        let Some(limit) = limits.get(&ask.bucket.limit_id) else {
            continue;
        };
        if limit.per_member == ask.bucket.subject_id.is_empty() {
            // The limit switched between shared and per member and the asking data plane
            // has not seen the snapshot yet: its bucket no longer exists. Like a deleted
            // limit, the ask is granted as asked (nothing counts in a bucket nobody else
            // uses) rather than failing every request until the snapshot arrives.
            stale.insert(i);
            continue;
        }
        if RateLimitKind::parse(&limit.kind).is_none() {
            return Err(StoreError::InvalidArgument(format!(
                "rate limit {} has an unknown kind",
                limit.id
            )));
        }
    }
    let need_ttl = asks.iter().enumerate().any(|(i, a)| {
        !stale.contains(&i)
            && limits
                .get(&a.bucket.limit_id)
                .is_some_and(|l| l.kind == RateLimitKind::ConcurrentRequests.as_str())
    });
    let expires_at = if need_ttl {
        let ttl = settings::get(&mut tx).await?.lease_ttl_s.max(1);
        now + Duration::seconds(i64::from(ttl))
    } else {
        now
    };

    // Lock the buckets of existing limits in bucket order, then gather each one's state.
    let mut order: Vec<usize> = (0..asks.len())
        .filter(|&i| limits.contains_key(&asks[i].bucket.limit_id) && !stale.contains(&i))
        .collect();
    order.sort_by(|&a, &b| asks[a].bucket.cmp(&asks[b].bucket));
    let mut held: HashMap<usize, Held> = HashMap::new();
    for &i in &order {
        let ask = &asks[i];
        let Some(limit) = limits.get(&ask.bucket.limit_id) else {
            continue;
        };
        let per_minute = limit.kind != RateLimitKind::ConcurrentRequests.as_str();
        let value = i128::from(limit.limit_value);
        let (level, refilled_at) = lock_bucket(
            &mut tx,
            &ask.bucket,
            if per_minute { value * SCALE } else { 0 },
            now,
        )
        .await?;
        let release = i128::from(ask.release);
        let state = if per_minute {
            let full = value * SCALE;
            let (level, refilled_at) = refill(i128::from(level), refilled_at, value, now);
            Held::Tokens {
                limit: value,
                level: (level + release * SCALE).min(full),
                refilled_at,
            }
        } else {
            let (others, mine, mine_expires): (i64, Option<i64>, Option<DateTime<Utc>>) =
                // Other data planes' leases expired long ago are removed on the way (a
                // data plane drops its slots itself before its lease expires).
                sqlx::query_as(
                    "WITH gone AS (DELETE FROM rate_slot_leases WHERE limit_id = $1 \
                       AND subject_id = $2 AND data_plane_id <> $3 AND expires_at <= $5) \
                     SELECT COALESCE(sum(held) FILTER (WHERE data_plane_id <> $3 \
                       AND expires_at > $4), 0)::int8, \
                     max(held) FILTER (WHERE data_plane_id = $3), \
                     max(expires_at) FILTER (WHERE data_plane_id = $3) \
                     FROM rate_slot_leases WHERE limit_id = $1 AND subject_id = $2",
                )
                .bind(ask.bucket.limit_id)
                .bind(&ask.bucket.subject_id)
                .bind(data_plane_id)
                .bind(now)
                .bind(now - STALE_LEASE_RETENTION)
                .fetch_one(&mut *tx)
                .await?;
            let (mine, lease_reset) = match (mine, mine_expires) {
                (Some(_), Some(expires)) if expires <= now => (0, true),
                (Some(held), _) => (i128::from(held), false),
                _ => (0, false),
            };
            Held::Slots {
                limit: value,
                others: i128::from(others),
                mine: (mine - release).max(0),
                lease_reset,
            }
        };
        held.insert(i, state);
    }

    let blocked = (0..asks.len()).find(|i| {
        held.get(i)
            .is_some_and(|h| i128::from(asks[*i].need) > h.avail())
    });
    let mut buckets = Vec::with_capacity(asks.len());
    for (i, ask) in asks.iter().enumerate() {
        let Some(state) = held.get(&i) else {
            // The limit no longer exists, or its bucket does not (it switched between shared
            // and per member): nothing to hold back, granted as asked, limit 0 so the data
            // plane stops enforcing the bucket until its snapshot catches up.
            buckets.push(BucketOutcome {
                granted: if blocked.is_some() { 0 } else { ask.need },
                limit: 0,
                ..BucketOutcome::default()
            });
            continue;
        };
        let need = i128::from(ask.need);
        let avail = state.avail();
        let granted = if blocked.is_some() {
            0
        } else {
            slice(avail, need, i128::from(ask.want))
        };
        let short = blocked.is_some() && need > avail;
        let outcome = match *state {
            Held::Tokens {
                limit,
                level,
                refilled_at,
            } => {
                let level = level - granted * SCALE;
                sqlx::query(
                    "UPDATE rate_buckets SET level_scaled = $3, refilled_at = $4 \
                     WHERE limit_id = $1 AND subject_id = $2",
                )
                .bind(ask.bucket.limit_id)
                .bind(&ask.bucket.subject_id)
                .bind(i64::try_from(level).unwrap_or(0))
                .bind(refilled_at)
                .execute(&mut *tx)
                .await?;
                BucketOutcome {
                    granted: i64::try_from(granted).unwrap_or(i64::MAX),
                    limit: i64::try_from(limit).unwrap_or(i64::MAX),
                    available: i64::try_from(level / SCALE).unwrap_or(0),
                    retry_after_ms: if short {
                        ms_until(level, need * SCALE, limit)
                    } else {
                        0
                    },
                    full_in_ms: ms_until(level, limit * SCALE, limit),
                    lease_expires_at: None,
                    lease_reset: false,
                    held: 0,
                }
            }
            Held::Slots {
                limit,
                others,
                mine,
                lease_reset,
            } => {
                let mine = mine + granted;
                write_slots(&mut tx, &ask.bucket, data_plane_id, mine, expires_at).await?;
                BucketOutcome {
                    granted: i64::try_from(granted).unwrap_or(i64::MAX),
                    limit: i64::try_from(limit).unwrap_or(i64::MAX),
                    available: i64::try_from((limit - others - mine).max(0)).unwrap_or(0),
                    retry_after_ms: 0,
                    full_in_ms: 0,
                    lease_expires_at: Some(expires_at),
                    lease_reset,
                    held: i64::try_from(mine.max(0)).unwrap_or(i64::MAX),
                }
            }
        };
        buckets.push(outcome);
    }
    tx.commit().await?;
    Ok(RateLeaseOutcome {
        granted: blocked.is_none(),
        buckets,
        blocked_index: blocked.unwrap_or(0),
    })
}

/// Locks a bucket's row, creating it (at `initial_level`, refilled now) if missing:
/// `(level_scaled, refilled_at)`.
async fn lock_bucket(
    conn: &mut PgConnection,
    bucket: &Bucket,
    initial_level: i128,
    now: DateTime<Utc>,
) -> Result<(i64, DateTime<Utc>), StoreError> {
    const LOCK: &str = "SELECT level_scaled, refilled_at FROM rate_buckets \
         WHERE limit_id = $1 AND subject_id = $2 FOR UPDATE";
    let row: Option<(i64, DateTime<Utc>)> = sqlx::query_as(LOCK)
        .bind(bucket.limit_id)
        .bind(&bucket.subject_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = row {
        return Ok(row);
    }
    sqlx::query(
        "INSERT INTO rate_buckets (limit_id, subject_id, level_scaled, refilled_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(bucket.limit_id)
    .bind(&bucket.subject_id)
    .bind(i64::try_from(initial_level).unwrap_or(i64::MAX))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_as(LOCK)
        .bind(bucket.limit_id)
        .bind(&bucket.subject_id)
        .fetch_one(&mut *conn)
        .await?)
}

/// Stores this data plane's slots on a concurrency bucket, renewed until `expires_at`
/// (holding none removes the lease).
async fn write_slots(
    conn: &mut PgConnection,
    bucket: &Bucket,
    data_plane_id: &str,
    held: i128,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    if held <= 0 {
        sqlx::query(
            "DELETE FROM rate_slot_leases WHERE limit_id = $1 AND subject_id = $2 \
             AND data_plane_id = $3",
        )
        .bind(bucket.limit_id)
        .bind(&bucket.subject_id)
        .bind(data_plane_id)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO rate_slot_leases (limit_id, subject_id, data_plane_id, held, expires_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (limit_id, subject_id, data_plane_id) DO UPDATE \
         SET held = EXCLUDED.held, expires_at = EXCLUDED.expires_at",
    )
    .bind(bucket.limit_id)
    .bind(&bucket.subject_id)
    .bind(data_plane_id)
    .bind(i64::try_from(held).unwrap_or(i64::MAX))
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn slices_are_large_far_from_the_limit_and_exactly_need_near_it() {
        assert_eq!(slice(1000, 1, 50), 50);
        assert_eq!(slice(100, 1, 50), 25);
        assert_eq!(slice(1000, 1, 0), 1);
        assert_eq!(slice(8, 1, 50), 2);
        assert_eq!(slice(3, 1, 50), 1);
        assert_eq!(slice(3, 3, 50), 3);
        assert_eq!(slice(0, 0, 0), 0);
    }

    #[test]
    fn refill_adds_limit_per_millisecond_and_stops_at_full() {
        // limit 10/min: 10 * 60000 full; 6 s refill one request.
        let (level, at) = refill(0, t(0), 10, t(6_000));
        assert_eq!(level, SCALE);
        assert_eq!(at, t(6_000));
        let (level, at) = refill(0, t(0), 10, t(600_000));
        assert_eq!(level, 10 * SCALE);
        assert_eq!(at, t(600_000));
        // A lowered limit caps an over-full bucket.
        let (level, _) = refill(20 * SCALE, t(0), 10, t(0));
        assert_eq!(level, 10 * SCALE);
        // A clock that moved back refills nothing and keeps the refill time.
        let (level, at) = refill(5, t(1_000), 10, t(0));
        assert_eq!((level, at), (5, t(1_000)));
    }

    #[test]
    fn refill_carries_sub_millisecond_remainders() {
        let start = t(0);
        let now = start + Duration::microseconds(1_500);
        let (level, at) = refill(0, start, 10, now);
        assert_eq!(level, 10);
        assert_eq!(at, start + Duration::milliseconds(1));
    }

    #[test]
    fn waits_round_up_to_whole_milliseconds() {
        assert_eq!(ms_until(0, SCALE, 10), 6_000);
        assert_eq!(ms_until(1, SCALE, 7), (SCALE - 1 + 6) as i64 / 7);
        assert_eq!(ms_until(SCALE, SCALE, 10), 0);
    }
}
