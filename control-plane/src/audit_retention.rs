//! Audit retention with archive-before-delete.
//!
//! When `observability_settings.audit_retention_days` is set and an archive directory is
//! configured, each pass (hourly, see [`spawn`]; [`run_once`] for tests) picks the newest
//! signed checkpoint above the current prune point whose last entry is older than the
//! retention, writes the entries it newly covers as JSON lines (see [`json_line`]) to
//! `<dir>/audit-<first seq>-<last seq>.jsonl` (temporary file, fsync, rename, fsync of the
//! directory), and then, in one transaction, records the prune point (`audit_prunes`: the
//! checkpoint, the archive and its SHA-256), deletes the entries up to it and appends an
//! `audit.pruned` event by `system:retention`. Entries are never deleted without an archive:
//! with retention set but no directory, a pass logs a warning and does nothing. Checkpoints
//! and prune records are never deleted.
//!
//! The archived range is re-verified while it is written (contiguous sequence numbers, each
//! `prev_hash` the previous hash, each hash recomputed, the last one the checkpoint's head); a
//! chain that does not verify is left alone for `tollgate audit verify` to report.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tracing::{info, warn};

use crate::error_report::Report;
use crate::store::audit::{self, query};
use crate::store::{StoreError, observability};

/// Who the prune is attributed to in the chain.
pub const RETENTION_ACTOR: &str = "system:retention";
/// The chain event recording a prune.
pub const PRUNED_ACTION: &str = "audit.pruned";
/// Period of the retention pass.
pub const INTERVAL: Duration = Duration::from_secs(3600);
/// Serialises passes across replicas (`pg_advisory_xact_lock`).
const ADVISORY_LOCK_KEY: i64 = 0x7467_6175_6469_7472;
/// Entries read from Postgres at a time while archiving.
const BATCH: i64 = 1000;

/// Why a retention pass failed (nothing was deleted).
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("cannot read or prune the audit log")]
    Store(#[from] StoreError),
    #[error("cannot write the audit archive {}", path.display())]
    Archive {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the audit chain does not verify at entry {seq}; nothing was pruned")]
    Chain { seq: i64 },
}

impl From<sqlx::Error> for RetentionError {
    fn from(err: sqlx::Error) -> Self {
        RetentionError::Store(err.into())
    }
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionOutcome {
    /// No retention is set: entries are kept forever.
    KeepForever,
    /// Retention is set but no archive directory is configured: nothing was deleted.
    NoArchiveDir,
    /// No signed checkpoint above the prune point covers only entries old enough.
    NothingDue,
    /// Entries `1..=through_seq` are gone; those above the previous prune point are in
    /// `archive`.
    Pruned {
        through_seq: i64,
        entries: u64,
        archive: PathBuf,
        archive_sha256: String,
    },
}

/// Starts the hourly pass (the first runs at once); it ends when `stop` is cancelled.
pub(crate) fn spawn(
    pool: PgPool,
    archive_dir: Option<PathBuf>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                outcome = run_once(&pool, archive_dir.as_deref(), Utc::now()) => outcome,
            };
            if let Err(err) = outcome {
                warn!(error = %Report(&err), "audit retention pass failed");
            }
        }
    })
}

/// One retention pass at `now`: archives and deletes what is due, if anything.
pub async fn run_once(
    pool: &PgPool,
    archive_dir: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<RetentionOutcome, RetentionError> {
    let Some(days) = observability::get(pool).await?.audit_retention_days else {
        return Ok(RetentionOutcome::KeepForever);
    };
    let Some(dir) = archive_dir else {
        warn!(
            retention_days = days,
            "audit retention is set but no archive directory is configured \
             (--audit-archive-dir); no audit entries are deleted"
        );
        return Ok(RetentionOutcome::NoArchiveDir);
    };
    let cutoff = now - TimeDelta::days(i64::from(days));

    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADVISORY_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    audit::set_actor(&mut tx, RETENTION_ACTOR).await?;
    let prune_point = query::prune_point(&mut tx).await?;
    let checkpoint: Option<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT c.id, c.tree_size, c.head_hash FROM audit_checkpoints c \
         JOIN audit_entries e ON e.seq = c.tree_size AND e.hash = c.head_hash \
         WHERE c.tree_size > $1 AND e.at < $2 \
         ORDER BY c.tree_size DESC, c.id DESC LIMIT 1",
    )
    .bind(prune_point)
    .bind(cutoff)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((checkpoint_id, through_seq, head_hash)) = checkpoint else {
        return Ok(RetentionOutcome::NothingDue);
    };
    let start_hash: Vec<u8> = if prune_point == 0 {
        vec![0; 32]
    } else {
        sqlx::query_scalar("SELECT head_hash FROM audit_prunes WHERE through_seq = $1")
            .bind(prune_point)
            .fetch_one(&mut *tx)
            .await?
    };

    let (first, last) = (prune_point + 1, through_seq);
    let archive = dir.join(format!("audit-{first}-{last}.jsonl"));
    let written = write_archive(&mut tx, dir, &archive, first, last, start_hash).await?;
    if written.head != head_hash {
        return Err(RetentionError::Chain { seq: last });
    }

    sqlx::query(
        "INSERT INTO audit_prunes (through_seq, head_hash, checkpoint_id, archive, archive_sha256) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(through_seq)
    .bind(&head_hash)
    .bind(checkpoint_id)
    .bind(archive.to_string_lossy().as_ref())
    .bind(&written.sha256)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM audit_entries WHERE seq <= $1")
        .bind(through_seq)
        .execute(&mut *tx)
        .await?;
    let details = json!({
        "through_seq": through_seq,
        "archive": archive.to_string_lossy(),
        "archive_sha256": written.sha256,
    });
    audit::append(&mut tx, RETENTION_ACTOR, PRUNED_ACTION, "audit", &details).await?;
    tx.commit().await?;
    info!(
        through_seq,
        entries = written.entries,
        archive = %archive.display(),
        "audit entries archived and pruned"
    );
    Ok(RetentionOutcome::Pruned {
        through_seq,
        entries: written.entries,
        archive,
        archive_sha256: written.sha256,
    })
}

/// What [`write_archive`] wrote.
struct Written {
    entries: u64,
    /// The hash of the last entry written.
    head: Vec<u8>,
    /// Hex SHA-256 of the file.
    sha256: String,
}

/// Writes entries `first..=last` (verifying the chain from `start_hash`) to `path`, durably:
/// a temporary file in `dir`, fsync, rename, fsync of `dir`.
async fn write_archive(
    conn: &mut sqlx::PgConnection,
    dir: &Path,
    path: &Path,
    first: i64,
    last: i64,
    start_hash: Vec<u8>,
) -> Result<Written, RetentionError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(archive_err(dir))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let file = tokio::fs::File::create(&tmp)
        .await
        .map_err(archive_err(&tmp))?;
    let mut out = tokio::io::BufWriter::new(file);
    let mut digest = Sha256::new();
    let mut prev = start_hash;
    let mut expected = first;
    let result: Result<(), RetentionError> = async {
        while expected <= last {
            let to = last.min(expected.saturating_add(BATCH - 1));
            let rows = query::range(&mut *conn, expected, to).await?;
            for row in rows {
                let hash: Vec<u8> = Sha256::new()
                    .chain_update(&prev)
                    .chain_update(row.payload.as_bytes())
                    .finalize()
                    .to_vec();
                if row.seq != expected || row.prev_hash != prev || row.hash != hash {
                    return Err(RetentionError::Chain { seq: expected });
                }
                prev = hash;
                let mut line = json_line(&row.to_pb());
                line.push('\n');
                digest.update(line.as_bytes());
                out.write_all(line.as_bytes())
                    .await
                    .map_err(archive_err(&tmp))?;
                expected += 1;
            }
            if expected <= to {
                return Err(RetentionError::Chain { seq: expected });
            }
        }
        out.flush().await.map_err(archive_err(&tmp))?;
        out.get_ref().sync_all().await.map_err(archive_err(&tmp))?;
        Ok(())
    }
    .await;
    if let Err(err) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(err);
    }
    drop(out);
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(archive_err(path))?;
    sync_dir(dir).await.map_err(archive_err(dir))?;
    Ok(Written {
        entries: u64::try_from(last - first + 1).unwrap_or(0),
        head: prev,
        sha256: hex::encode(digest.finalize()),
    })
}

/// Maps an I/O error on `path` to [`RetentionError::Archive`].
fn archive_err(path: &Path) -> impl FnOnce(io::Error) -> RetentionError + use<> {
    let path = path.to_owned();
    move |source| RetentionError::Archive { path, source }
}

/// Makes a rename in `dir` durable.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

/// One audit entry as a JSON line for archives and SIEM exports (no trailing newline):
/// `{"seq","at","actor","action","target","entry","payload","prev_hash","hash"}`, where
/// `entry` is the payload parsed, `payload` its exact text (what was hashed) and the hashes
/// are hex, so a reader can re-verify `hash = sha256(prev_hash || payload)`.
pub fn json_line(entry: &pb::AuditEntry) -> String {
    let at = DateTime::from_timestamp_micros(entry.at_unix_us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default();
    let parsed: serde_json::Value =
        serde_json::from_str(&entry.payload).unwrap_or(serde_json::Value::Null);
    json!({
        "seq": entry.seq,
        "at": at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "entry": parsed,
        "payload": entry.payload,
        "prev_hash": hex::encode(&entry.prev_hash),
        "hash": hex::encode(&entry.hash),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_keep_the_exact_payload_and_hex_hashes() {
        let payload = r#"{"v": 1, "seq": 3}"#;
        let line = json_line(&pb::AuditEntry {
            seq: 3,
            at_unix_us: 1_767_312_000_000_001,
            actor: "admin:ops".to_owned(),
            action: "provider.create".to_owned(),
            target: "provider/x".to_owned(),
            payload: payload.to_owned(),
            prev_hash: vec![0; 32],
            hash: vec![0xab; 32],
        });
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["payload"], payload);
        assert_eq!(v["entry"]["seq"], 3);
        assert_eq!(v["at"], "2026-01-02T00:00:00.000001Z");
        assert_eq!(v["prev_hash"], "0".repeat(64));
        assert_eq!(v["hash"], "ab".repeat(32));
    }
}
