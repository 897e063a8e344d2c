//! The `Sync` gRPC service data planes call: the snapshot stream and usage reporting.
//! Every call needs `authorization: Bearer <sync token>`.

mod usage;

use std::pin::Pin;

use futures_util::Stream;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::credential::{bearer, secrets_match};
use crate::publisher::SnapshotReceiver;
use crate::store;

/// The `Sync` service.
#[derive(Clone)]
pub struct SyncService {
    pool: PgPool,
    snapshots: SnapshotReceiver,
    sync_token: SecretString,
    shutdown: CancellationToken,
}

impl SyncService {
    /// Streams end when `shutdown` is cancelled, so the server can drain.
    pub fn new(
        pool: PgPool,
        snapshots: SnapshotReceiver,
        sync_token: SecretString,
        shutdown: CancellationToken,
    ) -> Self {
        SyncService {
            pool,
            snapshots,
            sync_token,
            shutdown,
        }
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match bearer(request.metadata()) {
            Some(token) if secrets_match(token, &self.sync_token) => Ok(()),
            Some(_) => Err(Status::unauthenticated("invalid sync token")),
            None => Err(Status::unauthenticated(
                "missing sync token: send `authorization: Bearer <token>`",
            )),
        }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::Snapshot, Status>> + Send>>;

#[tonic::async_trait]
impl pb::sync_server::Sync for SyncService {
    type WatchSnapshotsStream = SnapshotStream;

    async fn watch_snapshots(
        &self,
        request: Request<pb::WatchSnapshotsRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        self.authenticate(&request)?;
        let req = request.into_inner();
        info!(
            data_plane_id = %req.data_plane_id,
            known_version = req.known_version,
            "data plane watching snapshots"
        );
        let stream = snapshot_stream(self.snapshots.clone(), self.shutdown.clone());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_usage(
        &self,
        request: Request<pb::UsageBatch>,
    ) -> Result<Response<pb::UsageAck>, Status> {
        self.authenticate(&request)?;
        let records = usage::validate(request.into_inner().records)
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        let inserted = store::usage::insert(&self.pool, &records).await?;
        let total = records.len() as u64;
        let inserted = inserted.min(total);
        Ok(Response::new(pb::UsageAck {
            inserted: u32::try_from(inserted).unwrap_or(u32::MAX),
            duplicates: u32::try_from(total - inserted).unwrap_or(u32::MAX),
        }))
    }

    async fn lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        self.authenticate(&request)?;
        Err(Status::unimplemented("spend leases are not served yet"))
    }

    async fn spend_summary(
        &self,
        request: Request<pb::SpendSummaryRequest>,
    ) -> Result<Response<pb::SpendSummaryResponse>, Status> {
        self.authenticate(&request)?;
        Err(Status::unimplemented("spend summaries are not served yet"))
    }
}

/// The current snapshot (once there is one), then every newer one; versions strictly
/// increase. Ends when `shutdown` is cancelled or the publisher goes away.
pub fn snapshot_stream(
    snapshots: SnapshotReceiver,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<pb::Snapshot, Status>> + Send + 'static {
    futures_util::stream::unfold(
        (snapshots, shutdown, 0u64),
        |(mut rx, shutdown, last)| async move {
            loop {
                let current = rx.borrow_and_update().clone();
                if let Some(snapshot) = current.filter(|s| s.version > last) {
                    let version = snapshot.version;
                    return Some((Ok(pb::Snapshot::clone(&snapshot)), (rx, shutdown, version)));
                }
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    changed = rx.changed() => changed.ok()?,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests;
