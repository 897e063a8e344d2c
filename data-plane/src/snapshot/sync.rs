//! Follows the control plane's snapshot stream.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tollgate_policy::Snapshot;
use tollgate_proto::v1 as pb;

use super::{CacheWriter, SnapshotStore};
use crate::backoff::Backoff;
use crate::control_plane::SyncApi;

/// Watches `WatchSnapshots` until `shutdown`: each message is prepared
/// (`Snapshot::try_from`) and installed if newer. Invalid or stale snapshots are logged and
/// ignored; on any stream failure it reconnects with jittered backoff while the request
/// path keeps serving the last good snapshot. With a `cache`, every newer snapshot is handed
/// to it to be written to disk; at shutdown the task ends once the cache is written.
///
/// An open stream pushes every change, so while it is open the snapshot it last delivered,
/// if installed, is current: the cache's time for it is refreshed when such a stream ends
/// (or the data plane stops), so the maximum age counts from the last contact.
pub(crate) fn spawn_snapshot_sync(
    api: SyncApi,
    store: Arc<SnapshotStore>,
    data_plane_id: String,
    cache: Option<CacheWriter>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut vouched = None;
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = follow(api, &store, &data_plane_id, cache.as_ref(), &mut vouched) => {}
        }
        if let Some(cache) = cache {
            confirm_current(&store, vouched, Some(&cache));
            cache.finish().await;
        }
    })
}

async fn follow(
    mut api: SyncApi,
    store: &SnapshotStore,
    data_plane_id: &str,
    cache: Option<&CacheWriter>,
    vouched: &mut Option<u64>,
) {
    let mut backoff = Backoff::control_plane();
    loop {
        let request = pb::WatchSnapshotsRequest {
            data_plane_id: data_plane_id.to_owned(),
            known_version: store.version().unwrap_or(0),
        };
        match api.watch_snapshots(request).await {
            Ok(response) => {
                store.note_contact(true);
                let mut stream = response.into_inner();
                // The version this open stream last delivered.
                *vouched = None;
                loop {
                    match stream.message().await {
                        Ok(Some(snapshot)) => {
                            backoff.reset();
                            store.note_contact(true);
                            *vouched = Some(snapshot.version);
                            apply(store, snapshot, cache);
                        }
                        Ok(None) => {
                            store.note_contact(false);
                            confirm_current(store, vouched.take(), cache);
                            tracing::info!("control plane ended the snapshot stream; reconnecting");
                            break;
                        }
                        Err(status) => {
                            store.note_contact(false);
                            confirm_current(store, vouched.take(), cache);
                            tracing::warn!(code = ?status.code(), detail = status.message(), "snapshot stream failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), detail = status.message(), "cannot watch snapshots");
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

fn apply(store: &SnapshotStore, snapshot: pb::Snapshot, cache: Option<&CacheWriter>) {
    let version = snapshot.version;
    let received_at = SystemTime::now();
    // Encoded before the conversion consumes the message; snapshots arrive only on change.
    let protobuf = cache
        .filter(|_| store.version().is_none_or(|current| version > current))
        .map(|_| Bytes::from(snapshot.encode_to_vec()));
    match Snapshot::try_from(snapshot) {
        Ok(prepared) => {
            let keys = prepared.key_count();
            if store.install(prepared) {
                tracing::info!(version, keys, "policy snapshot installed");
                if let (Some(cache), Some(protobuf)) = (cache, protobuf) {
                    cache.save(version, protobuf, received_at);
                }
            } else if store.version() == Some(version) {
                // Delivered again (a new stream starts with the current snapshot): still current.
                if let Some(cache) = cache {
                    cache.confirm(version, received_at);
                }
                tracing::debug!(version, "current snapshot confirmed");
            } else {
                tracing::debug!(version, current = ?store.version(), "stale snapshot ignored");
            }
        }
        Err(error) => {
            tracing::error!(version, %error, "invalid snapshot ignored; keeping the last good one");
        }
    }
}

/// A stream that was open until now last delivered `delivered`: if that is the installed
/// snapshot, it was current until now.
fn confirm_current(store: &SnapshotStore, delivered: Option<u64>, cache: Option<&CacheWriter>) {
    if let (Some(cache), Some(version)) = (cache, delivered)
        && store.version() == Some(version)
    {
        cache.confirm(version, SystemTime::now());
    }
}
