//! The checkpointer: every interval (and once at start), also when nothing happened, signs the
//! chain head and stores the checkpoint in `audit_checkpoints`; after the commit, exports it
//! (file sink, OTLP log).
//!
//! Replicas coordinate through Postgres: each pass takes a transaction-scoped advisory lock
//! and skips when another replica stored a checkpoint within the last half interval, so about
//! one checkpoint is written per interval whatever the number of replicas.
//!
//! Only the replica that wrote a checkpoint exports it; a failed file write is retried with
//! the next pass (the checkpoint itself is already in Postgres).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::checkpoint::SignedCheckpoint;
use super::key::AuditSigningKey;
use super::sink::{self, SinkError};
use crate::error_report::Report;
use crate::store::StoreError;

/// Serialises checkpoint passes across replicas (`pg_advisory_xact_lock`).
const ADVISORY_LOCK_KEY: i64 = 0x7467_6175_6463_6b70;

/// Why a pass failed (nothing was stored).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read the audit head or store the checkpoint")]
    Store(#[from] StoreError),
    #[error("the audit head hash is not 32 bytes")]
    MalformedHead,
}

impl From<sqlx::Error> for CheckpointError {
    fn from(err: sqlx::Error) -> Self {
        CheckpointError::Store(err.into())
    }
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// This checkpoint was stored (its id in `audit_checkpoints`) and exported.
    Signed {
        id: i64,
        checkpoint: SignedCheckpoint,
    },
    /// Another replica stored one within the last half interval.
    Skipped,
}

/// Signs checkpoints with one key on a schedule.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    key: Arc<AuditSigningKey>,
    interval: Duration,
    file: Option<PathBuf>,
}

impl Checkpointer {
    /// A checkpointer signing with `key` every `interval`; with an interval of zero every
    /// pass signs (tests).
    pub fn new(key: AuditSigningKey, interval: Duration) -> Checkpointer {
        Checkpointer {
            key: Arc::new(key),
            interval,
            file: None,
        }
    }

    /// Also appends every checkpoint to the JSON-lines file at `path`.
    pub fn with_file(mut self, path: PathBuf) -> Checkpointer {
        self.file = Some(path);
        self
    }

    /// The signing key.
    pub fn key(&self) -> &AuditSigningKey {
        &self.key
    }

    /// One pass: signs and stores the current head unless another replica did within half an
    /// interval, then exports it. A failed export is returned as a warning-level error in the
    /// log only; the checkpoint is stored either way.
    pub async fn run_once(&self, pool: &PgPool) -> Result<CheckpointOutcome, CheckpointError> {
        let outcome = self.store(pool).await?;
        if let CheckpointOutcome::Signed { checkpoint, .. } = &outcome {
            sink::log(checkpoint);
            if let Err(err) = self.export_file(std::slice::from_ref(checkpoint)).await {
                warn!(error = %Report(&err), "cannot export the audit checkpoint to its file");
            }
        }
        Ok(outcome)
    }

    /// Signs and stores the head, without exporting.
    pub async fn store(&self, pool: &PgPool) -> Result<CheckpointOutcome, CheckpointError> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ADVISORY_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let half = chrono::Duration::from_std(self.interval / 2).unwrap_or(chrono::Duration::MAX);
        if half > chrono::Duration::zero() {
            let recent: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM audit_checkpoints \
                 WHERE signed_at > clock_timestamp() - make_interval(secs => $1))",
            )
            .bind(half.as_seconds_f64())
            .fetch_one(&mut *tx)
            .await?;
            if recent {
                return Ok(CheckpointOutcome::Skipped);
            }
        }
        let (seq, hash): (i64, Vec<u8>) =
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE singleton")
                .fetch_one(&mut *tx)
                .await?;
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| CheckpointError::MalformedHead)?;
        let checkpoint = SignedCheckpoint::sign(&self.key, seq, hash, Utc::now());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_checkpoints (tree_size, head_hash, signed_at, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(checkpoint.tree_size)
        .bind(checkpoint.head_hash.as_slice())
        .bind(checkpoint.signed_at)
        .bind(&checkpoint.key_id)
        .bind(checkpoint.signature.as_slice())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        debug!(id, tree_size = seq, "audit checkpoint stored");
        Ok(CheckpointOutcome::Signed { id, checkpoint })
    }

    async fn export_file(&self, checkpoints: &[SignedCheckpoint]) -> Result<(), SinkError> {
        match &self.file {
            Some(path) => sink::append_to_file(path, checkpoints).await,
            None => Ok(()),
        }
    }

    /// Runs a pass now and then every interval until `stop` is cancelled.
    pub fn spawn(self, pool: PgPool, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let period = self.interval.max(Duration::from_millis(10));
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Checkpoints stored but not yet written to the file (a failed write).
            let mut unexported: Vec<SignedCheckpoint> = Vec::new();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let stored = tokio::select! {
                    () = stop.cancelled() => return,
                    stored = self.store(&pool) => stored,
                };
                match stored {
                    Ok(CheckpointOutcome::Signed { checkpoint, .. }) => {
                        sink::log(&checkpoint);
                        unexported.push(checkpoint);
                    }
                    Ok(CheckpointOutcome::Skipped) => {
                        debug!("another replica signed an audit checkpoint recently");
                    }
                    Err(err) => {
                        warn!(error = %Report(&err), "cannot sign an audit checkpoint");
                    }
                }
                if !unexported.is_empty() {
                    match self.export_file(&unexported).await {
                        Ok(()) => unexported.clear(),
                        Err(err) => warn!(
                            error = %Report(&err),
                            pending = unexported.len(),
                            "cannot export audit checkpoints to their file; retrying next pass"
                        ),
                    }
                }
            }
        })
    }
}
