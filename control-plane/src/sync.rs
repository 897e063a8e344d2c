//! The `Sync` gRPC service data planes call: the snapshot stream, usage reporting (stored and
//! charged to spend counters in one transaction), spend leases, rate-limit leases, spend
//! summaries and route target health reports.
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

use crate::clock::Clock;
use crate::credential::{bearer, secrets_match};
use crate::publisher::SnapshotReceiver;
use crate::store;
use crate::store::rate_limit::lease as rate_lease;
use crate::store::spend::{self, lease};

/// The `Sync` service.
#[derive(Clone)]
pub struct SyncService {
    pool: PgPool,
    snapshots: SnapshotReceiver,
    sync_token: SecretString,
    /// "Now" for rate-limit buckets and concurrency leases.
    clock: Clock,
    shutdown: CancellationToken,
}

impl SyncService {
    /// Streams end when `shutdown` is cancelled, so the server can drain.
    pub fn new(
        pool: PgPool,
        snapshots: SnapshotReceiver,
        sync_token: SecretString,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> Self {
        SyncService {
            pool,
            snapshots,
            sync_token,
            clock,
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
        let inserted = retry_aborted(|| store::usage::insert(&self.pool, &records)).await?;
        let total = records.len() as u64;
        let inserted = inserted.min(total);
        crate::metrics::usage_ingested(inserted, total - inserted);
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
        let req = request.into_inner();
        let asks = parse_asks(&req.asks, |ask| {
            Ok(lease::Ask {
                counter: spend::Counter::from_pb(&ask.counter.clone().unwrap_or_default())?,
                need: spend::to_micro(ask.need_micro_usd),
                want: spend::to_micro(ask.want_micro_usd),
                release: spend::to_micro(ask.release_micro_usd),
            })
        })?;
        let now = chrono::Utc::now();
        let outcome =
            retry_aborted(|| lease::lease(&self.pool, &req.data_plane_id, &asks, now)).await?;
        Ok(Response::new(pb::LeaseResponse {
            granted: outcome.granted,
            blocked_index: u32::try_from(outcome.blocked_index).unwrap_or(u32::MAX),
            server_time_unix_ms: now.timestamp_millis(),
            counters: outcome
                .counters
                .into_iter()
                .map(|c| pb::CounterState {
                    counter: Some(c.counter.to_pb()),
                    granted_micro_usd: spend::from_micro(c.granted),
                    limit_micro_usd: spend::from_micro(c.limit),
                    spent_micro_usd: spend::from_micro(c.spent),
                    leased_micro_usd: spend::from_micro(c.leased),
                    lease_expires_at_unix_ms: c.expires_at.timestamp_millis(),
                    lease_reset: c.lease_reset,
                })
                .collect(),
        }))
    }

    async fn rate_lease(
        &self,
        request: Request<pb::RateLeaseRequest>,
    ) -> Result<Response<pb::RateLeaseResponse>, Status> {
        self.authenticate(&request)?;
        let req = request.into_inner();
        let asks = parse_asks(&req.asks, |ask| {
            Ok(rate_lease::Ask {
                bucket: rate_lease::Bucket::from_pb(&ask.bucket.clone().unwrap_or_default())?,
                need: spend::to_micro(ask.need),
                want: spend::to_micro(ask.want),
                release: spend::to_micro(ask.release),
            })
        })?;
        let now = self.clock.now();
        let outcome =
            retry_aborted(|| rate_lease::lease(&self.pool, &req.data_plane_id, &asks, now)).await?;
        let wire = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Response::new(pb::RateLeaseResponse {
            granted: outcome.granted,
            blocked_index: u32::try_from(outcome.blocked_index).unwrap_or(u32::MAX),
            server_time_unix_ms: now.timestamp_millis(),
            buckets: asks
                .iter()
                .zip(outcome.buckets)
                .map(|(ask, b)| pb::BucketState {
                    bucket: Some(ask.bucket.to_pb()),
                    granted: wire(b.granted),
                    limit: wire(b.limit),
                    available: wire(b.available),
                    retry_after_ms: wire(b.retry_after_ms),
                    full_in_ms: wire(b.full_in_ms),
                    lease_expires_at_unix_ms: b
                        .lease_expires_at
                        .map_or(0, |t| t.timestamp_millis()),
                    lease_reset: b.lease_reset,
                    held: u64::try_from(b.held).unwrap_or(0),
                })
                .collect(),
        }))
    }

    async fn report_target_health(
        &self,
        request: Request<pb::TargetHealthReport>,
    ) -> Result<Response<pb::TargetHealthAck>, Status> {
        self.authenticate(&request)?;
        let report = request.into_inner();
        if report.data_plane_id.trim().is_empty() {
            return Err(Status::invalid_argument("data_plane_id must not be empty"));
        }
        let entries = health_entries(report.targets)?;
        store::health::upsert(&self.pool, &report.data_plane_id, &entries).await?;
        Ok(Response::new(pb::TargetHealthAck {}))
    }

    async fn spend_summary(
        &self,
        request: Request<pb::SpendSummaryRequest>,
    ) -> Result<Response<pb::SpendSummaryResponse>, Status> {
        self.authenticate(&request)?;
        let req = request.into_inner();
        let principal_id = uuid::Uuid::parse_str(&req.principal_id)
            .map_err(|_| Status::invalid_argument("principal_id is not a UUID"))?;
        let s = spend::report::summary(&self.pool, principal_id, chrono::Utc::now()).await?;
        Ok(Response::new(pb::SpendSummaryResponse {
            day_micro_usd: spend::from_micro(s.day_micro_usd),
            week_micro_usd: spend::from_micro(s.week_micro_usd),
            month_micro_usd: spend::from_micro(s.month_micro_usd),
            day_start_unix_s: s.day_start_unix_s,
            week_start_unix_s: s.week_start_unix_s,
            month_start_unix_s: s.month_start_unix_s,
        }))
    }
}

/// The asks of a lease request, each converted by `parse`; a bad one is `invalid_argument`
/// naming its index.
fn parse_asks<A, T>(asks: &[A], parse: impl Fn(&A) -> Result<T, String>) -> Result<Vec<T>, Status> {
    asks.iter()
        .enumerate()
        .map(|(i, ask)| {
            parse(ask).map_err(|reason| Status::invalid_argument(format!("ask {i}: {reason}")))
        })
        .collect()
}

/// Validates a health report's entries (provider ids must be UUIDs).
fn health_entries(
    targets: Vec<pb::TargetHealth>,
) -> Result<Vec<store::health::HealthEntry>, Status> {
    let instant = |ms: i64| {
        (ms > 0)
            .then(|| chrono::DateTime::from_timestamp_millis(ms))
            .flatten()
    };
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let provider_id = uuid::Uuid::parse_str(&t.provider_id).map_err(|_| {
                Status::invalid_argument(format!("target {i}: provider_id is not a UUID"))
            })?;
            let state = match pb::BreakerState::try_from(t.state) {
                Ok(pb::BreakerState::Closed) => "closed",
                Ok(pb::BreakerState::Open) => "open",
                Ok(pb::BreakerState::HalfOpen) => "half_open",
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "target {i}: unknown breaker state"
                    )));
                }
            };
            Ok(store::health::HealthEntry {
                provider_id,
                upstream_model: t.upstream_model,
                state,
                consecutive_failures: i32::try_from(t.consecutive_failures).unwrap_or(i32::MAX),
                retry_at: instant(t.retry_at_unix_ms),
                attempts: count(t.attempts),
                failures: count(t.failures),
                last_error: t.last_error.chars().take(MAX_LAST_ERROR_CHARS).collect(),
                last_failure_at: instant(t.last_failure_unix_ms),
            })
        })
        .collect()
}

/// Longer `last_error` texts are cut (they are short reasons, never provider messages).
const MAX_LAST_ERROR_CHARS: usize = 200;

/// Runs a store transaction again (up to three times in all) when a concurrent one made it
/// abort (deadlock or serialization failure); the ledger's lock ordering makes that rare.
async fn retry_aborted<T, F, Fut>(mut run: F) -> Result<T, store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, store::StoreError>>,
{
    let mut attempt = 1;
    loop {
        match run().await {
            Err(store::StoreError::Aborted(_)) if attempt < 3 => attempt += 1,
            other => return other,
        }
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
