//! The usage spool: records the control plane has not acknowledged, kept on local disk
//! across a restart.
//!
//! Written once, at shutdown, when the final flush could not reach the control plane
//! (JSON lines, written to a temporary file and renamed into place, so a crash mid-write
//! leaves the previous spool intact). Read at start; its records are sent first, and the
//! file is deleted once all of them are acknowledged. Re-sending is safe: the control
//! plane stores records idempotently by request id.

use std::io;
use std::path::{Path, PathBuf};

use super::UsageRecord;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot read usage spool {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write usage spool {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Reads the spool at `path`; a missing file is an empty spool. Lines that do not parse are
/// logged and skipped.
pub(crate) async fn read_spool(path: &Path) -> Result<Vec<UsageRecord>, SpoolError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SpoolError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<UsageRecord>(line) {
            Ok(record) => records.push(record),
            Err(error) => tracing::warn!(
                path = %path.display(),
                line = index + 1,
                %error,
                "skipping unreadable usage spool line"
            ),
        }
    }
    Ok(records)
}

/// Replaces the spool at `path` with `records`.
pub(crate) async fn write_spool<'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a UsageRecord>,
) -> Result<(), SpoolError> {
    let write_err = |source| SpoolError::Write {
        path: path.to_owned(),
        source,
    };
    let mut text = Vec::new();
    for record in records {
        serde_json::to_writer(&mut text, record).map_err(|e| write_err(io::Error::other(e)))?;
        text.push(b'\n');
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(write_err)?;
    }
    tokio::fs::write(&tmp, &text).await.map_err(write_err)?;
    tokio::fs::rename(&tmp, path).await.map_err(write_err)
}

/// Deletes the spool once everything in it is acknowledged.
pub(crate) async fn remove_spool(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => tracing::info!(path = %path.display(), "usage spool delivered and removed"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot remove delivered usage spool");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::test_record as record;

    #[tokio::test]
    async fn spool_round_trips_and_skips_bad_lines() {
        let dir = std::env::temp_dir().join(format!("tollgate-spool-{}", uuid::Uuid::now_v7()));
        let path = dir.join("usage.jsonl");
        assert!(read_spool(&path).await.unwrap().is_empty());
        let records = [record("a"), record("b")];
        write_spool(&path, &records).await.unwrap();
        let mut text = tokio::fs::read_to_string(&path).await.unwrap();
        text.push_str("not json\n\n");
        tokio::fs::write(&path, text).await.unwrap();
        assert_eq!(read_spool(&path).await.unwrap(), records);
        remove_spool(&path).await;
        assert!(!path.exists());
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }

    #[tokio::test]
    async fn records_spooled_before_spend_fields_existed_still_load() {
        let dir = std::env::temp_dir().join(format!("tollgate-spool-{}", uuid::Uuid::now_v7()));
        let path = dir.join("usage.jsonl");
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let old = r#"{"request_id":"old","data_plane_id":"dp","started_at_unix_ms":1,"duration_ms":2,"api_key_id":"k","principal_id":"p","model":"m","provider_id":"pr","upstream_model":"um","endpoint":"messages","stream":true,"status":200,"outcome":"complete","input_tokens":3,"output_tokens":4,"cache_creation_5m_tokens":5,"cache_creation_1h_tokens":6,"cache_read_tokens":7}"#;
        tokio::fs::write(&path, format!("{old}\n")).await.unwrap();
        let loaded = read_spool(&path).await.unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].request_id, "old");
        assert_eq!(loaded[0].cost_micro_usd, 0);
        assert!(loaded[0].charges.is_empty() && loaded[0].group_ids.is_empty());
        assert_eq!(loaded[0].price_source, "");
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }
}
