//! The last good snapshot on local disk, so that a data plane restarted while the control
//! plane is away serves again instead of waiting for it.
//!
//! Every newer snapshot installed from the stream is written (by a background task, newest
//! only) to one file, encrypted under a key derived from the sync token because snapshots
//! carry provider credentials. At start, a file that opens, validates and is younger than
//! the configured maximum age is installed before the control plane is first contacted; a
//! file that does not is reported and ignored. The age counts from when the control plane
//! last delivered that snapshot, or confirmed it by a stream that stayed open until then.

mod format;
mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use secrecy::SecretString;
use tollgate_policy::{InvalidSnapshot, Snapshot};
use tollgate_proto::v1 as pb;

use super::SnapshotStore;
use format::CacheKey;
pub(crate) use writer::CacheWriter;

/// Larger files are not read back (a snapshot is far smaller).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Why a cache file cannot be served from. None of these carries secret material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("cannot read the file: {0}")]
    Read(#[source] io::Error),
    #[error("the file is {len} bytes, more than a snapshot cache can be")]
    TooLarge { len: u64 },
    #[error("the file is truncated ({len} bytes)")]
    Truncated { len: usize },
    #[error("the file is not a snapshot cache")]
    NotACacheFile,
    #[error(
        "the file has format version {version}, this build reads version {}",
        format::FORMAT_VERSION
    )]
    UnsupportedFormat { version: u16 },
    #[error("the file cannot be decrypted: written under another sync token, or damaged")]
    Decrypt,
    #[error(
        "the cached snapshot is {age_secs} s old, more than the maximum age of {max_age_secs} s"
    )]
    TooOld { age_secs: u64, max_age_secs: u64 },
    #[error("the cached snapshot cannot be decoded: {0}")]
    Decode(#[source] prost::DecodeError),
    #[error("the cached snapshot is invalid: {0}")]
    Invalid(#[source] InvalidSnapshot),
}

/// A snapshot as kept on disk: its protobuf encoding, and when the control plane last
/// delivered (or confirmed) it.
#[derive(Debug, Clone)]
pub(crate) struct CachedCopy {
    pub(crate) version: u64,
    pub(crate) protobuf: Bytes,
    pub(crate) received_at: SystemTime,
}

/// A cache file read back and prepared for installing.
#[derive(Debug)]
struct Restored {
    snapshot: Snapshot,
    copy: CachedCopy,
    age: Duration,
}

/// Where the cache lives, how it is sealed, and how old a snapshot may be served from it.
#[derive(Debug)]
pub(crate) struct SnapshotCache {
    path: PathBuf,
    key: CacheKey,
    max_age: Duration,
}

impl SnapshotCache {
    pub(crate) fn new(path: PathBuf, sync_token: &SecretString, max_age: Duration) -> Self {
        SnapshotCache {
            path,
            key: CacheKey::derive(sync_token),
            max_age,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes of the cache file for `copy`.
    fn seal(&self, copy: &CachedCopy) -> Vec<u8> {
        let received_at = copy
            .received_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format::seal(&self.key, received_at, &copy.protobuf)
    }

    /// Opens, checks the age of, decodes and prepares the bytes of a cache file.
    fn unseal(&self, file: &[u8], now: SystemTime) -> Result<Restored, CacheError> {
        let opened = format::open(&self.key, file)?;
        let received_at = UNIX_EPOCH + Duration::from_secs(opened.received_at_unix);
        // A time ahead of the clock (the clock was set back) counts as fresh.
        let age = now.duration_since(received_at).unwrap_or_default();
        if age > self.max_age {
            return Err(CacheError::TooOld {
                age_secs: age.as_secs(),
                max_age_secs: self.max_age.as_secs(),
            });
        }
        let protobuf = Bytes::from(opened.protobuf);
        let message = pb::Snapshot::decode(protobuf.clone()).map_err(CacheError::Decode)?;
        let version = message.version;
        let snapshot = Snapshot::try_from(message).map_err(CacheError::Invalid)?;
        Ok(Restored {
            snapshot,
            copy: CachedCopy {
                version,
                protobuf,
                received_at,
            },
            age,
        })
    }

    /// Reads the cache file back; `None` when there is none.
    async fn read(&self, now: SystemTime) -> Result<Option<Restored>, CacheError> {
        let len = match tokio::fs::metadata(&self.path).await {
            Ok(meta) => meta.len(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(CacheError::Read(err)),
        };
        if len > MAX_FILE_BYTES {
            return Err(CacheError::TooLarge { len });
        }
        let file = tokio::fs::read(&self.path)
            .await
            .map_err(CacheError::Read)?;
        self.unseal(&file, now).map(Some)
    }
}

/// Installs the cached snapshot into the (still empty) `store` if the cache file is
/// usable, then starts the task that keeps the file up to date. Never fails: an unusable
/// file is logged and ignored, and the data plane waits for the control plane.
pub(crate) async fn spawn_snapshot_cache(
    path: PathBuf,
    sync_token: &SecretString,
    max_age: Duration,
    store: &SnapshotStore,
) -> CacheWriter {
    let cache = Arc::new(SnapshotCache::new(path, sync_token, max_age));
    let held = restore(&cache, store).await;
    writer::spawn_cache_writer(cache, held)
}

async fn restore(cache: &SnapshotCache, store: &SnapshotStore) -> Option<CachedCopy> {
    let path = cache.path().display();
    match cache.read(SystemTime::now()).await {
        Ok(Some(restored)) => {
            let version = restored.copy.version;
            let age_secs = restored.age.as_secs();
            if store.install_cached(restored.snapshot, restored.age) {
                tracing::info!(
                    version,
                    age_secs,
                    %path,
                    "serving the cached policy snapshot until the control plane answers"
                );
                Some(restored.copy)
            } else {
                None
            }
        }
        Ok(None) => {
            tracing::info!(%path, "no cached policy snapshot; waiting for the control plane");
            None
        }
        Err(error) => {
            tracing::warn!(
                %path,
                %error,
                "cached policy snapshot refused; waiting for the control plane"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "sync-token";
    const DAY: Duration = Duration::from_secs(86_400);

    fn cache(token: &str, max_age: Duration) -> SnapshotCache {
        SnapshotCache::new(PathBuf::from("unused"), &SecretString::from(token), max_age)
    }

    fn copy(version: u64, received_at: SystemTime) -> CachedCopy {
        let message = pb::Snapshot {
            version,
            ..Default::default()
        };
        CachedCopy {
            version,
            protobuf: Bytes::from(message.encode_to_vec()),
            received_at,
        }
    }

    fn at(unix_secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix_secs)
    }

    #[test]
    fn round_trip_restores_the_snapshot_and_its_age() {
        let cache = cache(TOKEN, DAY);
        let file = cache.seal(&copy(7, at(1_700_000_000)));
        let restored = cache.unseal(&file, at(1_700_000_600)).unwrap();
        assert_eq!(restored.snapshot.version, 7);
        assert_eq!(restored.copy.version, 7);
        assert_eq!(restored.copy.received_at, at(1_700_000_000));
        assert_eq!(restored.age, Duration::from_secs(600));
    }

    #[test]
    fn tampered_byte_is_refused() {
        let cache = cache(TOKEN, DAY);
        let mut file = cache.seal(&copy(7, at(1_700_000_000)));
        let last = file.len() - 1;
        file[last] ^= 0x80;
        assert!(matches!(
            cache.unseal(&file, at(1_700_000_001)),
            Err(CacheError::Decrypt)
        ));
    }

    #[test]
    fn wrong_sync_token_is_refused() {
        let file = cache(TOKEN, DAY).seal(&copy(7, at(1_700_000_000)));
        assert!(matches!(
            cache("rotated-token", DAY).unseal(&file, at(1_700_000_001)),
            Err(CacheError::Decrypt)
        ));
    }

    #[test]
    fn truncated_file_is_refused() {
        let cache = cache(TOKEN, DAY);
        let file = cache.seal(&copy(7, at(1_700_000_000)));
        assert!(
            cache
                .unseal(&file[..file.len() - 1], at(1_700_000_001))
                .is_err()
        );
        assert!(matches!(
            cache.unseal(&file[..20], at(1_700_000_001)),
            Err(CacheError::Truncated { len: 20 })
        ));
    }

    #[test]
    fn older_than_max_age_is_refused() {
        let cache = cache(TOKEN, Duration::from_secs(3600));
        let file = cache.seal(&copy(7, at(1_700_000_000)));
        assert!(cache.unseal(&file, at(1_700_003_600)).is_ok());
        let error = cache.unseal(&file, at(1_700_003_601)).unwrap_err();
        assert!(matches!(
            error,
            CacheError::TooOld {
                age_secs: 3601,
                max_age_secs: 3600
            }
        ));
        assert!(error.to_string().contains("maximum age"), "{error}");
    }

    #[test]
    fn received_in_the_future_counts_as_fresh() {
        let cache = cache(TOKEN, Duration::from_secs(60));
        let file = cache.seal(&copy(7, at(1_700_000_000)));
        let restored = cache.unseal(&file, at(1_600_000_000)).unwrap();
        assert_eq!(restored.age, Duration::ZERO);
    }

    #[test]
    fn invalid_snapshot_is_refused() {
        let cache = cache(TOKEN, DAY);
        // Version 0 never passes the same conversion the stream uses.
        let file = cache.seal(&copy(0, at(1_700_000_000)));
        assert!(matches!(
            cache.unseal(&file, at(1_700_000_001)),
            Err(CacheError::Invalid(InvalidSnapshot::ZeroVersion))
        ));
    }

    #[tokio::test]
    async fn restores_a_usable_file_into_an_empty_store_with_its_age_as_staleness() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.cache");
        let token = SecretString::from(TOKEN);
        let cache = SnapshotCache::new(path.clone(), &token, DAY);
        let received = SystemTime::now() - Duration::from_secs(120);
        std::fs::write(&path, cache.seal(&copy(9, received))).unwrap();

        let store = SnapshotStore::default();
        let writer = spawn_snapshot_cache(path, &token, DAY, &store).await;
        assert_eq!(store.version(), Some(9));
        assert!(store.staleness() >= Duration::from_secs(119));
        writer.finish().await;
    }

    #[tokio::test]
    async fn ignores_a_missing_or_unusable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.cache");
        let token = SecretString::from(TOKEN);

        let store = SnapshotStore::default();
        spawn_snapshot_cache(path.clone(), &token, DAY, &store)
            .await
            .finish()
            .await;
        assert_eq!(store.version(), None);

        std::fs::write(&path, b"not a cache").unwrap();
        spawn_snapshot_cache(path, &token, DAY, &store)
            .await
            .finish()
            .await;
        assert_eq!(store.version(), None);
    }
}
