//! Reading the audit chain: entries filtered and paged by sequence number, signed
//! checkpoints, and the prune point (everything at or below it was archived and deleted).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tollgate_proto::v1 as pb;

use crate::store::StoreError;

/// One stored entry. `payload` is the exact text hashed:
/// `hash = sha256(prev_hash || utf8(payload))`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntryRow {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub payload: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Which entries to list; `None` leaves a filter open.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    /// Exactly this actor.
    pub actor: Option<&'a str>,
    /// Exactly this action, or every action starting with it when it ends in `.`.
    pub action: Option<&'a str>,
    /// Targets starting with this.
    pub target_prefix: Option<&'a str>,
    /// Inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
    /// Only entries with a larger sequence number.
    pub after_seq: i64,
}

impl AuditEntryRow {
    /// The wire form.
    pub fn to_pb(self) -> pb::AuditEntry {
        pb::AuditEntry {
            seq: u64::try_from(self.seq).unwrap_or(0),
            at_unix_us: self.at.timestamp_micros(),
            actor: self.actor,
            action: self.action,
            target: self.target,
            payload: self.payload,
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

const ENTRY_COLUMNS: &str = "seq, at, actor, action, target, payload, prev_hash, hash";

/// At most `limit` entries matching `filter`, in sequence order.
pub async fn list(
    pool: &PgPool,
    filter: &AuditFilter<'_>,
    limit: i64,
) -> Result<Vec<AuditEntryRow>, StoreError> {
    let (action_exact, action_prefix) = match filter.action {
        Some(a) if a.ends_with('.') => (None, Some(a)),
        Some(a) => (Some(a), None),
        None => (None, None),
    };
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_entries \
         WHERE seq > $1 \
           AND ($2::text IS NULL OR actor = $2) \
           AND ($3::text IS NULL OR action = $3) \
           AND ($4::text IS NULL OR starts_with(action, $4)) \
           AND ($5::text IS NULL OR starts_with(target, $5)) \
           AND ($6::timestamptz IS NULL OR at >= $6) \
           AND ($7::timestamptz IS NULL OR at < $7) \
         ORDER BY seq LIMIT $8"
    );
    Ok(sqlx::query_as(&sql)
        .bind(filter.after_seq)
        .bind(filter.actor)
        .bind(action_exact)
        .bind(action_prefix)
        .bind(filter.target_prefix)
        .bind(filter.since)
        .bind(filter.until)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

/// Entries `from..=to` by sequence number, in order, on the caller's connection.
pub async fn range(
    conn: &mut PgConnection,
    from: i64,
    to: i64,
) -> Result<Vec<AuditEntryRow>, StoreError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE seq BETWEEN $1 AND $2 ORDER BY seq"
    );
    Ok(sqlx::query_as(&sql)
        .bind(from)
        .bind(to)
        .fetch_all(conn)
        .await?)
}

/// A signed checkpoint of the chain's head.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CheckpointRow {
    pub id: i64,
    pub tree_size: i64,
    pub head_hash: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub key_id: String,
    pub signature: Vec<u8>,
}

impl CheckpointRow {
    /// The wire form; `signed_at` exactly as signed (RFC 3339 UTC, microseconds).
    pub fn to_pb(self) -> pb::AuditCheckpoint {
        pb::AuditCheckpoint {
            id: u64::try_from(self.id).unwrap_or(0),
            tree_size: u64::try_from(self.tree_size).unwrap_or(0),
            head_hash: self.head_hash,
            signed_at: self.signed_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            key_id: self.key_id,
            signature: self.signature,
        }
    }
}

/// At most `limit` checkpoints with an id above `after_id`, in id order (the order they were
/// signed in, hence of growing tree size).
pub async fn checkpoints(
    pool: &PgPool,
    after_id: i64,
    limit: i64,
) -> Result<Vec<CheckpointRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, tree_size, head_hash, signed_at, key_id, signature FROM audit_checkpoints \
         WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The highest sequence number archived and deleted (0 when nothing was).
pub async fn prune_point(conn: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(max(through_seq), 0)::int8 FROM audit_prunes")
            .fetch_one(conn)
            .await?,
    )
}
