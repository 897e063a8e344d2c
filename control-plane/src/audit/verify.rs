//! Verifying the audit log with public keys the auditor brings (never from the database).
//!
//! Checks, stopping at the first inconsistency ([`Inconsistency`], whose `Display` says
//! precisely what was found):
//! 1. every checkpoint (stored and exported) is signed by one of the given keys;
//! 2. a pruned prefix ends on a signed checkpoint: the chain restarts after `through_seq` from
//!    the checkpoint's head;
//! 3. walking the entries in sequence order: no sequence number is missing, each `prev_hash`
//!    is the previous entry's hash, each hash is `sha256(prev_hash || payload)`, the columns
//!    agree with the payload, and every checkpoint's head is the chain's hash at its size;
//! 4. no checkpoint and not the head row covers more entries than are present;
//! 5. the head row is the last entry;
//! 6. every exported checkpoint is still in the database.
//!
//! [`ChainVerifier`] is pure and takes entries one at a time (so a long log is verified in
//! constant memory, see [`verify_database`]); [`verify`] runs it over a loaded [`AuditLog`].

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest as _, Sha256};
use sqlx::{PgConnection, PgPool};

use super::checkpoint::{SignatureProblem, SignedCheckpoint, format_signed_at};
use super::key::key_id;
use super::sink::ExportedCheckpoint;
use crate::store::StoreError;
use crate::store::audit::query::{AuditEntryRow, CheckpointRow};

/// The hash before the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Entries read from Postgres at a time by [`verify_database`].
const BATCH: i64 = 5000;

/// The `audit_head` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// An `audit_prunes` row: entries `1..=through_seq` were archived and deleted.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Prune {
    pub through_seq: i64,
    pub head_hash: Vec<u8>,
    pub checkpoint_id: i64,
}

/// Everything stored about the audit log, as read by [`load`].
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    /// `None` when the head row is gone.
    pub head: Option<Head>,
    /// In sequence order.
    pub entries: Vec<AuditEntryRow>,
    pub prunes: Vec<Prune>,
    /// In id order.
    pub checkpoints: Vec<CheckpointRow>,
}

/// Where a checkpoint was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointSource {
    /// The `audit_checkpoints` row with this id.
    Database { id: i64 },
    /// A line of an exported checkpoint file.
    Exported { file: PathBuf, line: usize },
}

/// A checkpoint named in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRef {
    pub source: CheckpointSource,
    pub tree_size: i64,
    pub signed_at: DateTime<Utc>,
}

impl fmt::Display for CheckpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            CheckpointSource::Database { id } => write!(f, "checkpoint #{id}")?,
            CheckpointSource::Exported { file, line } => {
                write!(f, "exported checkpoint ({} line {line})", file.display())?
            }
        }
        write!(
            f,
            " (tree size {}, signed {})",
            self.tree_size,
            format_signed_at(&self.signed_at)
        )
    }
}

/// What says more entries should be present than are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// A signed checkpoint.
    Checkpoint(CheckpointRef),
    /// The `audit_head` row (unsigned).
    Head,
}

/// The first inconsistency found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inconsistency {
    /// A checkpoint names a key id none of the given public keys has.
    UnknownKey {
        checkpoint: CheckpointRef,
        key_id: String,
        known: Vec<String>,
    },
    /// A checkpoint's signature does not verify with the key of its id: the checkpoint was
    /// edited or forged.
    BadSignature { checkpoint: CheckpointRef },
    /// A stored checkpoint whose hash or signature has the wrong length.
    MalformedCheckpoint { id: i64 },
    /// A prune point that no verified checkpoint vouches for.
    PruneUnverified { through_seq: i64 },
    /// Entries `from..=to` are missing.
    EntriesRemoved { from: i64, to: i64 },
    /// Entry `seq` came where `expected` should have (duplicated or reordered numbers).
    OutOfOrder { seq: i64, expected: i64 },
    /// Entry `seq`'s `prev_hash` is not the previous entry's hash.
    BrokenLink { seq: i64 },
    /// Entry `seq`'s payload does not hash to its stored hash.
    EntryEdited { seq: i64 },
    /// Entry `seq`'s payload is not the JSON object the chain writes.
    UnreadablePayload { seq: i64 },
    /// Entry `seq`'s column disagrees with its payload.
    ColumnMismatch {
        seq: i64,
        column: &'static str,
        stored: String,
        in_payload: String,
    },
    /// The entries no longer hash to a signed head: they were changed and the chain
    /// recomputed. The change lies after `last_matching` (or the start) and at or before
    /// `first_failing`.
    CheckpointMismatch {
        first_failing: CheckpointRef,
        last_matching: Option<CheckpointRef>,
        /// The first entry of the chain checked (after any prune point).
        chain_start: i64,
    },
    /// The newest entries are gone: `last_present` is the last entry, `expected` entries were
    /// recorded by `evidence`.
    NewestEntriesMissing {
        last_present: i64,
        expected: i64,
        evidence: Evidence,
    },
    /// The `audit_head` row is gone.
    HeadMissing,
    /// The head row names an older entry than the last one present.
    HeadBehind { head_seq: i64, last_seq: i64 },
    /// The head row's hash is not the last entry's hash.
    HeadMismatch { seq: i64 },
    /// An exported checkpoint is not in the database (checkpoints were deleted there).
    ExportedCheckpointMissing { checkpoint: CheckpointRef },
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inconsistency::UnknownKey {
                checkpoint,
                key_id,
                known,
            } => write!(
                f,
                "{checkpoint} is signed by key id {key_id}, which is none of the given public keys ({}): a forged checkpoint or a missing public key",
                known.join(", ")
            ),
            Inconsistency::BadSignature { checkpoint } => write!(
                f,
                "the signature of {checkpoint} does not verify: the checkpoint was edited or forged"
            ),
            Inconsistency::MalformedCheckpoint { id } => write!(
                f,
                "checkpoint #{id} has a head hash or signature of the wrong length"
            ),
            Inconsistency::PruneUnverified { through_seq } => write!(
                f,
                "entries 1..={through_seq} were pruned, but no verified checkpoint of tree size {through_seq} vouches for the chain head they ended in"
            ),
            Inconsistency::EntriesRemoved { from, to } if from == to => {
                write!(
                    f,
                    "entry {from} was removed (the sequence jumps from {} to {})",
                    from - 1,
                    to + 1
                )
            }
            Inconsistency::EntriesRemoved { from, to } => write!(
                f,
                "entries {from}..={to} ({} entries) were removed (the sequence jumps from {} to {})",
                to - from + 1,
                from - 1,
                to + 1
            ),
            Inconsistency::OutOfOrder { seq, expected } => write!(
                f,
                "entry {seq} appears where entry {expected} was expected: sequence numbers were rewritten"
            ),
            Inconsistency::BrokenLink { seq } => write!(
                f,
                "entry {seq} does not link to entry {}: its prev_hash is not that entry's hash (entry {} was replaced, or this link was edited)",
                seq - 1,
                seq - 1
            ),
            Inconsistency::EntryEdited { seq } => write!(
                f,
                "entry {seq} was edited: its payload no longer hashes to its stored hash"
            ),
            Inconsistency::UnreadablePayload { seq } => write!(
                f,
                "entry {seq} was edited: its payload is not an audit entry object"
            ),
            Inconsistency::ColumnMismatch {
                seq,
                column,
                stored,
                in_payload,
            } => write!(
                f,
                "entry {seq} was edited: its {column} column is {stored:?} but its hashed payload says {in_payload:?}"
            ),
            Inconsistency::CheckpointMismatch {
                first_failing,
                last_matching,
                chain_start,
            } => {
                let from = last_matching
                    .as_ref()
                    .map_or(*chain_start, |c| c.tree_size + 1);
                write!(
                    f,
                    "the chain was changed and recomputed: {first_failing} signed a head the entries no longer hash to; "
                )?;
                match last_matching {
                    Some(last) => write!(f, "the last checkpoint still matching is {last}")?,
                    None => write!(f, "no earlier checkpoint matches")?,
                }
                write!(
                    f,
                    ", so one or more of entries {from}..={} changed",
                    first_failing.tree_size
                )
            }
            Inconsistency::NewestEntriesMissing {
                last_present,
                expected,
                evidence,
            } => {
                let missing = expected - last_present;
                write!(
                    f,
                    "the newest entries were removed: entries {}..={expected} ({missing} entr{}) are missing after ",
                    last_present + 1,
                    if missing == 1 { "y" } else { "ies" }
                )?;
                if *last_present == 0 {
                    write!(f, "the start of the log")?;
                } else {
                    write!(f, "entry {last_present}, the last one present")?;
                }
                match evidence {
                    Evidence::Checkpoint(cp) => write!(f, "; {cp} covered them"),
                    Evidence::Head => write!(f, "; the audit head row records {expected} entries"),
                }
            }
            Inconsistency::HeadMissing => write!(f, "the audit_head row was deleted"),
            Inconsistency::HeadBehind { head_seq, last_seq } => write!(
                f,
                "the audit head row names entry {head_seq} but entries run to {last_seq}: the head was moved back"
            ),
            Inconsistency::HeadMismatch { seq } => write!(
                f,
                "the audit head row's hash is not the hash of entry {seq}: the head or the newest entry was replaced"
            ),
            Inconsistency::ExportedCheckpointMissing { checkpoint } => write!(
                f,
                "{checkpoint} is not in the database: checkpoints were deleted from audit_checkpoints"
            ),
        }
    }
}

impl std::error::Error for Inconsistency {}

/// What an intact log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Entries present and verified.
    pub entries: u64,
    /// The last entry (0 when there are none).
    pub last_seq: i64,
    /// Entries `1..=pruned_through` were archived and deleted (0: none).
    pub pruned_through: i64,
    /// Stored checkpoints whose signature verified.
    pub checkpoints_verified: usize,
    /// Exported checkpoints read, each verified and found in the database.
    pub exported_checkpoints: usize,
    /// The newest signed checkpoint: tree size and time.
    pub newest_checkpoint: Option<(i64, DateTime<Utc>)>,
    /// Entries after the newest checkpoint, not yet covered by a signature.
    pub uncovered: i64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit log intact: {} entries", self.entries)?;
        if self.entries > 0 {
            write!(
                f,
                " ({}..={})",
                self.last_seq + 1 - self.entries as i64,
                self.last_seq
            )?;
        }
        if self.pruned_through > 0 {
            write!(f, ", 1..={} archived and pruned", self.pruned_through)?;
        }
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "; {} stored checkpoint{} verified",
            self.checkpoints_verified,
            plural(self.checkpoints_verified)
        )?;
        if self.exported_checkpoints > 0 {
            write!(
                f,
                ", {} exported checkpoint{} matched",
                self.exported_checkpoints,
                plural(self.exported_checkpoints)
            )?;
        }
        match &self.newest_checkpoint {
            Some((size, at)) => write!(
                f,
                "; newest signed: tree size {size} at {}; {} entr{} not yet covered by a checkpoint",
                format_signed_at(at),
                self.uncovered,
                if self.uncovered == 1 { "y" } else { "ies" }
            ),
            None => write!(
                f,
                "; no checkpoint: {} entries not covered by any signature",
                self.uncovered
            ),
        }
    }
}

/// A checkpoint with its signature verified.
#[derive(Debug, Clone)]
struct Verified {
    checkpoint: SignedCheckpoint,
    reference: CheckpointRef,
}

impl Verified {
    fn new(checkpoint: SignedCheckpoint, source: CheckpointSource) -> Verified {
        let reference = CheckpointRef {
            source,
            tree_size: checkpoint.tree_size,
            signed_at: checkpoint.signed_at,
        };
        Verified {
            checkpoint,
            reference,
        }
    }
}

/// Verifies entries fed in sequence order against signed checkpoints.
#[derive(Debug)]
pub struct ChainVerifier {
    head: Option<Head>,
    /// Verified checkpoints above the chain start, by tree size.
    pending: Vec<Verified>,
    next: usize,
    last_matching: Option<CheckpointRef>,
    /// The prune point (0 when nothing was pruned).
    base: i64,
    expected_seq: i64,
    running: [u8; 32],
    entries: u64,
    stored_verified: usize,
    exported_verified: usize,
    /// Exported checkpoints not found in the database.
    exported_missing: Option<CheckpointRef>,
    newest: Option<(i64, DateTime<Utc>)>,
}

impl ChainVerifier {
    /// Checks every checkpoint's signature and the prune point, ready for the entries above
    /// it.
    pub fn new(
        head: Option<Head>,
        prunes: &[Prune],
        stored: &[CheckpointRow],
        exported: &[ExportedCheckpoint],
        keys: &[VerifyingKey],
    ) -> Result<ChainVerifier, Inconsistency> {
        let known: Vec<String> = keys.iter().map(key_id).collect();
        let check = |cp: SignedCheckpoint, source: CheckpointSource| {
            let verified = Verified::new(cp, source);
            match verified.checkpoint.verify(keys) {
                Ok(()) => Ok(verified),
                Err(SignatureProblem::UnknownKey) => Err(Inconsistency::UnknownKey {
                    key_id: verified.checkpoint.key_id.clone(),
                    checkpoint: verified.reference,
                    known: known.clone(),
                }),
                Err(SignatureProblem::BadSignature) => Err(Inconsistency::BadSignature {
                    checkpoint: verified.reference,
                }),
            }
        };
        let mut all = Vec::with_capacity(stored.len() + exported.len());
        let mut in_db = HashSet::new();
        for row in stored {
            let cp = SignedCheckpoint::from_row(row)
                .ok_or(Inconsistency::MalformedCheckpoint { id: row.id })?;
            in_db.insert(cp.to_json_line());
            all.push(check(cp, CheckpointSource::Database { id: row.id })?);
        }
        let stored_verified = all.len();
        let mut exported_missing = None;
        for e in exported {
            let verified = check(
                e.checkpoint.clone(),
                CheckpointSource::Exported {
                    file: e.file.clone(),
                    line: e.line,
                },
            )?;
            if in_db.contains(&e.checkpoint.to_json_line()) {
                continue;
            }
            // Not in the database: checked against the chain too, and reported at the end
            // unless something more precise is found first.
            if exported_missing.is_none() {
                exported_missing = Some(verified.reference.clone());
            }
            all.push(verified);
        }
        let newest = all
            .iter()
            .map(|v| (v.checkpoint.tree_size, v.checkpoint.signed_at))
            .max();

        let (base, running) = match prunes.iter().max_by_key(|p| p.through_seq) {
            None => (0, GENESIS_HASH),
            Some(p) => {
                let hash: [u8; 32] = p.head_hash.as_slice().try_into().map_err(|_| {
                    Inconsistency::PruneUnverified {
                        through_seq: p.through_seq,
                    }
                })?;
                let vouched = all.iter().any(|v| {
                    v.checkpoint.tree_size == p.through_seq && v.checkpoint.head_hash == hash
                });
                if !vouched {
                    return Err(Inconsistency::PruneUnverified {
                        through_seq: p.through_seq,
                    });
                }
                (p.through_seq, hash)
            }
        };
        // Checkpoints below the prune point cannot be compared any more (their entries are
        // archived); those at it must agree with it.
        let mut pending: Vec<Verified> = all
            .into_iter()
            .filter(|v| v.checkpoint.tree_size >= base)
            .collect();
        pending.sort_by_key(|v| (v.checkpoint.tree_size, v.checkpoint.signed_at));
        let mut verifier = ChainVerifier {
            head,
            pending,
            next: 0,
            last_matching: None,
            base,
            expected_seq: base + 1,
            running,
            entries: 0,
            stored_verified,
            exported_verified: exported.len(),
            exported_missing,
            newest,
        };
        verifier.compare_checkpoints_at(base)?;
        Ok(verifier)
    }

    /// Compares the checkpoints of tree size `size` with the running hash.
    fn compare_checkpoints_at(&mut self, size: i64) -> Result<(), Inconsistency> {
        while let Some(v) = self.pending.get(self.next) {
            if v.checkpoint.tree_size != size {
                break;
            }
            if v.checkpoint.head_hash != self.running {
                return Err(Inconsistency::CheckpointMismatch {
                    first_failing: v.reference.clone(),
                    last_matching: self.last_matching.clone(),
                    chain_start: self.base + 1,
                });
            }
            self.last_matching = Some(v.reference.clone());
            self.next += 1;
        }
        Ok(())
    }

    /// Checks the next entry (entries must come in sequence order).
    pub fn push(&mut self, entry: &AuditEntryRow) -> Result<(), Inconsistency> {
        if entry.seq <= self.base && self.entries == 0 {
            // Left below the prune point: archived already, not part of the chain checked.
            return Ok(());
        }
        if entry.seq > self.expected_seq {
            return Err(Inconsistency::EntriesRemoved {
                from: self.expected_seq,
                to: entry.seq - 1,
            });
        }
        if entry.seq < self.expected_seq {
            return Err(Inconsistency::OutOfOrder {
                seq: entry.seq,
                expected: self.expected_seq,
            });
        }
        if entry.prev_hash.as_slice() != self.running {
            return Err(Inconsistency::BrokenLink { seq: entry.seq });
        }
        let mut hasher = Sha256::new();
        hasher.update(self.running);
        hasher.update(entry.payload.as_bytes());
        let hash: [u8; 32] = hasher.finalize().into();
        if entry.hash.as_slice() != hash {
            return Err(Inconsistency::EntryEdited { seq: entry.seq });
        }
        check_columns(entry)?;
        self.running = hash;
        self.entries += 1;
        self.expected_seq += 1;
        self.compare_checkpoints_at(entry.seq)
    }

    /// After the last entry: checks nothing newer was recorded, the head row, and that every
    /// exported checkpoint is still stored.
    pub fn finish(self) -> Result<Summary, Inconsistency> {
        let last_seq = self.expected_seq - 1;
        let beyond = self.pending[self.next..].iter().max_by_key(|v| {
            (
                v.checkpoint.tree_size,
                std::cmp::Reverse(v.checkpoint.signed_at),
            )
        });
        let head = self.head.as_ref().ok_or(Inconsistency::HeadMissing)?;
        let by_checkpoint = beyond.map(|v| {
            (
                v.checkpoint.tree_size,
                Evidence::Checkpoint(v.reference.clone()),
            )
        });
        let by_head = (head.seq > last_seq).then_some((head.seq, Evidence::Head));
        // The larger claim wins; a signed one when they agree.
        let claim = match (by_checkpoint, by_head) {
            (Some(c), Some(h)) if h.0 > c.0 => Some(h),
            (Some(c), _) => Some(c),
            (None, h) => h,
        };
        if let Some((expected, evidence)) = claim {
            return Err(Inconsistency::NewestEntriesMissing {
                last_present: last_seq,
                expected,
                evidence,
            });
        }
        if head.seq < last_seq {
            return Err(Inconsistency::HeadBehind {
                head_seq: head.seq,
                last_seq,
            });
        }
        if head.hash.as_slice() != self.running {
            return Err(Inconsistency::HeadMismatch { seq: last_seq });
        }
        if let Some(checkpoint) = self.exported_missing {
            return Err(Inconsistency::ExportedCheckpointMissing { checkpoint });
        }
        let covered = self.newest.map_or(self.base, |(size, _)| size);
        Ok(Summary {
            entries: self.entries,
            last_seq,
            pruned_through: self.base,
            checkpoints_verified: self.stored_verified,
            exported_checkpoints: self.exported_verified,
            newest_checkpoint: self.newest,
            uncovered: (last_seq - covered).max(0),
        })
    }
}

/// The columns beside the payload must be copies of it.
fn check_columns(entry: &AuditEntryRow) -> Result<(), Inconsistency> {
    let unreadable = || Inconsistency::UnreadablePayload { seq: entry.seq };
    let payload: serde_json::Value =
        serde_json::from_str(&entry.payload).map_err(|_| unreadable())?;
    let text = |field: &str| {
        payload
            .get(field)
            .and_then(|v| v.as_str())
            .ok_or_else(unreadable)
    };
    let seq = payload
        .get("seq")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(unreadable)?;
    let mismatch =
        |column: &'static str, stored: String, in_payload: String| Inconsistency::ColumnMismatch {
            seq: entry.seq,
            column,
            stored,
            in_payload,
        };
    if seq != entry.seq {
        return Err(mismatch("seq", entry.seq.to_string(), seq.to_string()));
    }
    let at = format_signed_at(&entry.at);
    let checks = [
        ("at", at.as_str(), text("at")?),
        ("actor", entry.actor.as_str(), text("actor")?),
        ("action", entry.action.as_str(), text("action")?),
        ("target", entry.target.as_str(), text("target")?),
    ];
    for (column, stored, in_payload) in checks {
        if stored != in_payload {
            return Err(mismatch(column, stored.to_owned(), in_payload.to_owned()));
        }
    }
    Ok(())
}

/// Verifies a loaded log.
pub fn verify(
    log: &AuditLog,
    exported: &[ExportedCheckpoint],
    keys: &[VerifyingKey],
) -> Result<Summary, Inconsistency> {
    let mut verifier = ChainVerifier::new(
        log.head.clone(),
        &log.prunes,
        &log.checkpoints,
        exported,
        keys,
    )?;
    for entry in &log.entries {
        verifier.push(entry)?;
    }
    verifier.finish()
}

/// Opens a read-only transaction on one consistent snapshot of the database.
async fn snapshot(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

async fn read_meta(
    conn: &mut PgConnection,
) -> Result<(Option<Head>, Vec<Prune>, Vec<CheckpointRow>), StoreError> {
    let head =
        sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT seq, hash FROM audit_head WHERE singleton")
            .fetch_optional(&mut *conn)
            .await?
            .map(|(seq, hash)| Head { seq, hash });
    let prunes = sqlx::query_as(
        "SELECT through_seq, head_hash, checkpoint_id FROM audit_prunes ORDER BY through_seq",
    )
    .fetch_all(&mut *conn)
    .await?;
    let checkpoints = sqlx::query_as(
        "SELECT id, tree_size, head_hash, signed_at, key_id, signature FROM audit_checkpoints \
         ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok((head, prunes, checkpoints))
}

async fn entries_after(
    conn: &mut PgConnection,
    after: i64,
) -> Result<Vec<AuditEntryRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT seq, at, actor, action, target, payload, prev_hash, hash FROM audit_entries \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(BATCH)
    .fetch_all(conn)
    .await?)
}

/// Reads the whole audit log (one consistent snapshot, read-only queries).
pub async fn load(pool: &PgPool) -> Result<AuditLog, StoreError> {
    let mut tx = snapshot(pool).await?;
    let (head, prunes, checkpoints) = read_meta(&mut tx).await?;
    let mut entries: Vec<AuditEntryRow> = Vec::new();
    loop {
        let after = entries.last().map_or(i64::MIN, |e| e.seq);
        let batch = entries_after(&mut tx, after).await?;
        if batch.is_empty() {
            break;
        }
        entries.extend(batch);
    }
    tx.rollback().await?;
    Ok(AuditLog {
        head,
        entries,
        prunes,
        checkpoints,
    })
}

/// Verifies the log straight from Postgres (one consistent snapshot, read-only queries),
/// holding one batch of entries in memory at a time. The outer error is a database failure;
/// the inner result the verdict.
pub async fn verify_database(
    pool: &PgPool,
    exported: &[ExportedCheckpoint],
    keys: &[VerifyingKey],
) -> Result<Result<Summary, Inconsistency>, StoreError> {
    let mut tx = snapshot(pool).await?;
    let (head, prunes, checkpoints) = read_meta(&mut tx).await?;
    let mut verifier = match ChainVerifier::new(head, &prunes, &checkpoints, exported, keys) {
        Ok(v) => v,
        Err(found) => return Ok(Err(found)),
    };
    let mut after = i64::MIN;
    loop {
        let batch = entries_after(&mut tx, after).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for entry in &batch {
            if let Err(found) = verifier.push(entry) {
                return Ok(Err(found));
            }
        }
    }
    tx.rollback().await?;
    Ok(verifier.finish())
}

#[cfg(test)]
mod tests;
