//! Follows the control plane's snapshot stream.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tollgate_policy::Snapshot;
use tollgate_proto::v1 as pb;

use super::SnapshotStore;
use crate::backoff::Backoff;
use crate::control_plane::SyncApi;

/// Watches `WatchSnapshots` until `shutdown`: each message is prepared
/// (`Snapshot::try_from`) and installed if newer. Invalid or stale snapshots are logged and
/// ignored; on any stream failure it reconnects with jittered backoff while the request
/// path keeps serving the last good snapshot.
pub(crate) fn spawn_snapshot_sync(
    api: SyncApi,
    store: Arc<SnapshotStore>,
    data_plane_id: String,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = follow(api, &store, &data_plane_id) => {}
        }
    })
}

async fn follow(mut api: SyncApi, store: &SnapshotStore, data_plane_id: &str) {
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
                loop {
                    match stream.message().await {
                        Ok(Some(snapshot)) => {
                            backoff.reset();
                            store.note_contact(true);
                            apply(store, snapshot);
                        }
                        Ok(None) => {
                            store.note_contact(false);
                            tracing::info!("control plane ended the snapshot stream; reconnecting");
                            break;
                        }
                        Err(status) => {
                            store.note_contact(false);
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

fn apply(store: &SnapshotStore, snapshot: pb::Snapshot) {
    let version = snapshot.version;
    match Snapshot::try_from(snapshot) {
        Ok(prepared) => {
            let keys = prepared.key_count();
            if store.install(prepared) {
                tracing::info!(version, keys, "policy snapshot installed");
            } else {
                tracing::debug!(version, current = ?store.version(), "stale snapshot ignored");
            }
        }
        Err(error) => {
            tracing::error!(version, %error, "invalid snapshot ignored; keeping the last good one");
        }
    }
}
