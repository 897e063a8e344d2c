//! Where signed checkpoints go besides Postgres: a JSON-lines file (appended, flushed and
//! fsynced; ship it to write-once storage) and an OTLP log record (a `tracing` event with
//! target `tollgate::audit`, which the telemetry layer exports as a log when OTLP logs are on).

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::AsyncWriteExt as _;

use super::checkpoint::{ParseError, SignedCheckpoint, format_signed_at};

/// Why the checkpoint file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write the audit checkpoint file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the audit checkpoint file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}, line {line}: not a checkpoint", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        #[source]
        source: ParseError,
    },
}

/// A checkpoint read back from an exported file, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedCheckpoint {
    pub checkpoint: SignedCheckpoint,
    /// The file it was read from.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

/// Appends `checkpoints` to `path` (created if missing), one JSON line each, then flushes and
/// fsyncs the file (and its directory when the file was created).
pub async fn append_to_file(
    path: &Path,
    checkpoints: &[SignedCheckpoint],
) -> Result<(), SinkError> {
    let write_err = |source| SinkError::Write {
        path: path.to_owned(),
        source,
    };
    let created = !tokio::fs::try_exists(path).await.map_err(write_err)?;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(write_err)?;
    let mut text = String::new();
    for cp in checkpoints {
        text.push_str(&cp.to_json_line());
        text.push('\n');
    }
    file.write_all(text.as_bytes()).await.map_err(write_err)?;
    file.flush().await.map_err(write_err)?;
    file.sync_all().await.map_err(write_err)?;
    if created {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // A directory fsync makes the new name durable; not every filesystem supports it.
        if let Ok(dir) = tokio::fs::File::open(dir).await {
            let _ = dir.sync_all().await;
        }
    }
    Ok(())
}

/// Reads every checkpoint of an exported JSON-lines file (blank lines are skipped).
pub async fn read_file(path: &Path) -> Result<Vec<ExportedCheckpoint>, SinkError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| SinkError::Read {
            path: path.to_owned(),
            source,
        })?;
    parse_lines(path, &text)
}

/// Parses the text of an exported JSON-lines file read from `path`.
pub fn parse_lines(path: &Path, text: &str) -> Result<Vec<ExportedCheckpoint>, SinkError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let checkpoint =
            SignedCheckpoint::from_json_line(line).map_err(|source| SinkError::Parse {
                path: path.to_owned(),
                line: i + 1,
                source,
            })?;
        out.push(ExportedCheckpoint {
            checkpoint,
            file: path.to_owned(),
            line: i + 1,
        });
    }
    Ok(out)
}

/// Emits the checkpoint as a `tracing` event (`tollgate::audit`, `event = "audit.checkpoint"`),
/// exported as an OTLP log record when OTLP logs are on.
pub fn log(cp: &SignedCheckpoint) {
    tracing::info!(
        target: "tollgate::audit",
        event = "audit.checkpoint",
        tree_size = cp.tree_size,
        head_hash = %hex::encode(cp.head_hash),
        signed_at = %format_signed_at(&cp.signed_at),
        key_id = %cp.key_id,
        signature = %STANDARD.encode(cp.signature),
        "{}",
        cp.to_json_line()
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::audit::key::AuditSigningKey;

    #[tokio::test]
    async fn appended_checkpoints_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.jsonl");
        let key = AuditSigningKey::generate();
        let a = SignedCheckpoint::sign(&key, 1, [1; 32], chrono::Utc::now());
        let b = SignedCheckpoint::sign(&key, 2, [2; 32], chrono::Utc::now());
        append_to_file(&path, std::slice::from_ref(&a))
            .await
            .unwrap();
        append_to_file(&path, std::slice::from_ref(&b))
            .await
            .unwrap();
        let read = read_file(&path).await.unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].checkpoint, a);
        assert_eq!((read[1].checkpoint.clone(), read[1].line), (b, 2));
    }

    #[test]
    fn a_malformed_line_is_named() {
        let err = parse_lines(Path::new("f.jsonl"), "\n{\"tree_size\":1}\n").unwrap_err();
        assert!(matches!(err, SinkError::Parse { line: 2, .. }), "{err:?}");
    }
}
