//! Signed audit checkpoints and their verification.
//!
//! The chain itself is written by Postgres (see [`crate::store::audit`]). This module signs its
//! head on a schedule with an Ed25519 key that never enters the database ([`key`],
//! [`checkpoint`], [`checkpointer`]), exports every checkpoint outside Postgres ([`sink`]: a
//! JSON-lines file and an OTLP log record through `tracing`), and re-checks everything with
//! public keys given by the auditor ([`verify`], behind `tollgate audit verify`).

pub mod checkpoint;
pub mod checkpointer;
pub mod key;
pub mod sink;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use checkpoint::SignedCheckpoint;
pub use checkpointer::{CheckpointError, CheckpointOutcome, Checkpointer};
pub use key::{AuditSigningKey, KeyError, key_id, parse_public_key, public_key_pem};

/// Default period of the checkpointer.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

/// Starts the checkpointer when a signing key file is configured (creating the key at first
/// start); without one, warns that the chain is not signed. The task stops with `stop`.
pub(crate) async fn start(
    pool: &PgPool,
    key_file: Option<&PathBuf>,
    interval: Duration,
    checkpoint_file: Option<&PathBuf>,
    stop: CancellationToken,
) -> Result<Option<JoinHandle<()>>, KeyError> {
    let Some(key_file) = key_file else {
        warn!(
            "no audit signing key configured (--audit-signing-key-file): audit checkpoints are not signed, so tampering with the newest entries cannot be proven"
        );
        return Ok(None);
    };
    let (key, created) = AuditSigningKey::load_or_create(key_file).await?;
    info!(
        key_file = %key_file.display(),
        created,
        key_id = %key.key_id(),
        public_key = %key.public_key_pem().trim_end(),
        "audit checkpoints are signed with this key (public key shown; give it to auditors)"
    );
    let mut checkpointer = Checkpointer::new(key, interval);
    if let Some(path) = checkpoint_file {
        checkpointer = checkpointer.with_file(path.clone());
    }
    Ok(Some(checkpointer.spawn(pool.clone(), stop)))
}
