//! The background task that keeps the cache file up to date: it always writes the newest
//! copy handed to it (bursts coalesce), atomically, off the request path and the sync loop.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{CachedCopy, SnapshotCache};

/// Hands snapshots to the cache writer task. Dropping it (see [`CacheWriter::finish`]) lets
/// the task write what it still holds and stop.
#[derive(Debug)]
pub(crate) struct CacheWriter {
    latest: watch::Sender<Option<CachedCopy>>,
    task: JoinHandle<()>,
}

impl CacheWriter {
    /// A newer snapshot was installed: write it (replacing any copy not yet written).
    pub(crate) fn save(&self, version: u64, protobuf: Bytes, received_at: SystemTime) {
        self.latest.send_replace(Some(CachedCopy {
            version,
            protobuf,
            received_at,
        }));
    }

    /// The control plane confirmed that `version` is still current at `at` (it delivered it
    /// again, or a stream that would have pushed a change stayed open until then): rewrite the
    /// held copy with that time, if it is that version.
    pub(crate) fn confirm(&self, version: u64, at: SystemTime) {
        self.latest.send_if_modified(|held| match held {
            Some(copy) if copy.version == version && copy.received_at < at => {
                copy.received_at = at;
                true
            }
            _ => false,
        });
    }

    /// Writes what is still pending, then stops the task.
    pub(crate) async fn finish(self) {
        drop(self.latest);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the snapshot cache writer failed");
        }
    }
}

/// Starts the writer; `held` is the copy already on disk (restored at start), which is not
/// written again until it is confirmed or replaced.
pub(super) fn spawn_cache_writer(
    cache: Arc<SnapshotCache>,
    held: Option<CachedCopy>,
) -> CacheWriter {
    let (latest, mut pending) = watch::channel(held);
    let task = tokio::spawn(async move {
        // Ends once the sender is dropped and the last copy handed over is written.
        while pending.changed().await.is_ok() {
            let Some(copy) = pending.borrow_and_update().clone() else {
                continue;
            };
            let version = copy.version;
            let cache = cache.clone();
            let written = tokio::task::spawn_blocking(move || {
                write_atomically(cache.path(), &cache.seal(&copy))
                    .map_err(|error| (cache.path().display().to_string(), error))
            })
            .await;
            match written {
                Ok(Ok(())) => tracing::debug!(version, "policy snapshot cached"),
                Ok(Err((path, error))) => {
                    tracing::warn!(version, %path, %error, "cannot write the snapshot cache");
                }
                Err(error) => tracing::warn!(version, %error, "the snapshot cache write failed"),
            }
        }
    });
    CacheWriter { latest, task }
}

/// Replaces `path` with `contents` so that a reader (or a crash) sees the old file or the
/// new one, never a mix: a fresh owner-only temporary file in the same directory, synced,
/// renamed over `path`, then the directory synced.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the snapshot cache path does not name a file",
        )
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    // A leftover from a crash is replaced, never reused: `create_new` sets the mode and does
    // not follow a planted symlink.
    let _ = fs::remove_file(&temp);
    let result = write_new(&temp, contents)
        .and_then(|()| fs::rename(&temp, path))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use prost::Message as _;
    use secrecy::SecretString;
    use tollgate_proto::v1 as pb;

    use super::*;

    fn protobuf(version: u64) -> Bytes {
        Bytes::from(
            pb::Snapshot {
                version,
                ..Default::default()
            }
            .encode_to_vec(),
        )
    }

    fn cache(path: &Path) -> Arc<SnapshotCache> {
        Arc::new(SnapshotCache::new(
            path.to_owned(),
            &SecretString::from("sync-token"),
            Duration::from_secs(86_400),
        ))
    }

    #[tokio::test]
    async fn writes_the_newest_snapshot_owner_only_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("snapshot.cache");
        let cache = cache(&path);
        let writer = spawn_cache_writer(cache.clone(), None);
        for version in 1..=20 {
            writer.save(version, protobuf(version), SystemTime::now());
        }
        writer.finish().await;

        let file = fs::read(&path).unwrap();
        let restored = cache.unseal(&file, SystemTime::now()).unwrap();
        assert_eq!(restored.copy.version, 20, "the newest one is on disk");
        let entries: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, [OsString::from("snapshot.cache")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn confirming_the_held_version_refreshes_its_time_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.cache");
        let cache = cache(&path);
        let then = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let writer = spawn_cache_writer(cache.clone(), None);
        writer.save(3, protobuf(3), then);
        writer.confirm(2, SystemTime::now());
        writer.finish().await;
        let restored = cache.unseal(&fs::read(&path).unwrap(), then).unwrap();
        assert_eq!(
            restored.copy.received_at, then,
            "another version is not confirmed"
        );

        let later = then + Duration::from_secs(600);
        let writer = spawn_cache_writer(cache.clone(), Some(restored.copy));
        writer.confirm(3, later);
        writer.finish().await;
        let restored = cache.unseal(&fs::read(&path).unwrap(), later).unwrap();
        assert_eq!(restored.copy.received_at, later);
    }

    #[tokio::test]
    async fn an_unwritable_path_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        // The cache's directory would have to be inside a regular file.
        let writer = spawn_cache_writer(cache(&blocker.join("snapshot.cache")), None);
        writer.save(1, protobuf(1), SystemTime::now());
        writer.finish().await;
        assert_eq!(fs::read(&blocker).unwrap(), b"x");
    }
}
