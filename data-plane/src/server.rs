//! Starting and stopping a data plane.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::{Spend, spawn_lease_keeper};
use crate::config::{ConfigError, DataPlaneConfig};
use crate::control_plane::{ConnectError, ControlPlaneTlsError, sync_api_over};
use crate::gateway::{Gateway, SideChannels};

/// Response-header bound for forwarded OAuth calls and telemetry relays.
const SIDE_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(15);
use crate::admin_listener::{AdminState, spawn_admin_listener};
use crate::listener::{ListenerShutdown, ServerTls, TlsError, spawn_listener};
use crate::meter::DrainPolicy;
use crate::rate_limit::{RateLimiter, spawn_rate_keeper};
use crate::routing::{Exchange, Router, spawn_health_reporter};
use crate::snapshot::{SnapshotStore, spawn_snapshot_cache, spawn_snapshot_sync};
use crate::upstream::UpstreamClient;
use crate::usage::{
    Journal, JournalError, ShipperError, ShipperSettings, journaled_usage_channel,
    spawn_usage_shipper,
};

/// Why a data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid control-plane URL `{url}`: {source}")]
    ControlPlaneUrl {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("the sync token cannot be sent as a header")]
    SyncToken,
    #[error(transparent)]
    ControlPlaneTls(#[from] ControlPlaneTlsError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Why a data plane did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("the {task} task failed: {source}")]
    Task {
        task: &'static str,
        source: tokio::task::JoinError,
    },
    #[error(transparent)]
    Usage(#[from] ShipperError),
}

/// A running data plane. Stop it by cancelling the token given to [`spawn`], then
/// [`DataPlaneHandle::wait`].
pub struct DataPlaneHandle {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The admin listener's address, when enabled.
    pub admin_addr: Option<SocketAddr>,
    admin: Option<JoinHandle<()>>,
    snapshots: Arc<SnapshotStore>,
    listener: JoinHandle<()>,
    sync: JoinHandle<()>,
    drains: TaskTracker,
    keeper: JoinHandle<()>,
    rate_keeper: JoinHandle<()>,
    health: JoinHandle<()>,
    lease_stop: CancellationToken,
    shipper: JoinHandle<Result<(), ShipperError>>,
    usage_stop: CancellationToken,
    _gauges: Option<crate::metrics::Gauges>,
}

impl std::fmt::Debug for DataPlaneHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlaneHandle")
            .field("addr", &self.addr)
            .field("snapshot_version", &self.snapshot_version())
            .finish_non_exhaustive()
    }
}

/// Starts a data plane: binds the listener, reads back any usage journal, and spawns the
/// snapshot sync, the usage shipper and the server. Returns once the port is bound; requests
/// get 503 until the first snapshot arrives (from the control plane, or from the snapshot
/// cache when one is configured and usable). Runs until `shutdown` is cancelled.
pub async fn spawn(
    config: DataPlaneConfig,
    shutdown: CancellationToken,
) -> Result<DataPlaneHandle, StartError> {
    config.validate()?;
    let api = sync_api_over(
        &config.control_plane_url,
        &config.sync_token,
        &config.control_plane_tls,
    )
    .map_err(|e| match e {
        ConnectError::Url(source) => StartError::ControlPlaneUrl {
            url: config.control_plane_url.clone(),
            source,
        },
        ConnectError::Token => StartError::SyncToken,
        ConnectError::Tls(error) => StartError::ControlPlaneTls(error),
    })?;
    let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;
    let bind_error = |source| StartError::Bind {
        addr: config.listen,
        source,
    };
    let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let (journal, spooled) = match &config.spool_path {
        Some(path) => {
            let (journal, records) = Journal::open(path)?;
            (Some(Arc::new(journal)), records)
        }
        None => (None, Vec::new()),
    };
    if !spooled.is_empty() {
        tracing::info!(count = spooled.len(), "re-sending journaled usage records");
    }

    let snapshots = Arc::new(SnapshotStore::default());
    // A usable cached snapshot is installed before the control plane is first contacted.
    let snapshot_cache = match &config.snapshot_cache_path {
        Some(path) => Some(
            spawn_snapshot_cache(
                path.clone(),
                &config.sync_token,
                config.snapshot_cache_max_age,
                &snapshots,
            )
            .await,
        ),
        None => None,
    };
    let spend = Arc::new(Spend::new(
        api.clone(),
        config.data_plane_id.clone(),
        config.clock.clone(),
    ));
    let rate_limits = Arc::new(RateLimiter::new(api.clone(), config.data_plane_id.clone()));
    let (usage, queue) = journaled_usage_channel(journal.clone());
    let usage_stop = CancellationToken::new();
    let shipper = spawn_usage_shipper(
        api.clone(),
        queue,
        spooled,
        ShipperSettings {
            batch_max: config.usage_batch_max,
            flush_interval: config.usage_flush_interval,
            final_flush_timeout: config.shutdown_drain_timeout,
            journal,
        },
        spend.ledger().clone(),
        usage.backlog().clone(),
        usage_stop.clone(),
    );
    // Process-wide gauges read this data plane's state (weakly: a stopped one reports nothing).
    let gauges = crate::metrics::is_enabled().then(|| {
        let meter = opentelemetry::global::meter(crate::metrics::METER_NAME);
        let limiter = Arc::downgrade(&rate_limits);
        let rate_utilization: crate::metrics::RateUtilizationSource = Box::new(move || {
            let Some(limiter) = limiter.upgrade() else {
                return Vec::new();
            };
            limiter
                .utilization()
                .into_iter()
                .map(|(limit, fraction)| crate::metrics::RateUtilization {
                    limit_id: limit.id.clone(),
                    scope: limit.scope.as_str(),
                    kind: limit.kind.as_str(),
                    fraction,
                })
                .collect()
        });
        crate::metrics::register_gauges(&meter, &snapshots, usage.backlog(), rate_utilization)
    });
    let lease_stop = CancellationToken::new();
    let keeper = spawn_lease_keeper(spend.clone(), snapshots.clone(), lease_stop.clone());
    let rate_keeper = spawn_rate_keeper(rate_limits.clone(), snapshots.clone(), lease_stop.clone());
    let sync = spawn_snapshot_sync(
        api.clone(),
        snapshots.clone(),
        config.data_plane_id.clone(),
        snapshot_cache,
        shutdown.clone(),
    );
    let drains = TaskTracker::new();
    let drain_over = CancellationToken::new();
    let upstream = UpstreamClient::new(
        config.upstream_connect_timeout,
        config.upstream_first_byte_timeout,
    );
    let drain = DrainPolicy {
        timeout: config.disconnect_drain_timeout,
        tracker: drains.clone(),
        shutdown: shutdown.clone(),
        shutdown_grace: config.shutdown_drain_timeout,
        drain_over: drain_over.clone(),
    };
    let router = Arc::new(Router::new(config.routing()));
    let admin = match config.admin_listen {
        Some(addr) => {
            let bind_error = |source| StartError::Bind { addr, source };
            let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
            let admin_addr = listener.local_addr().map_err(bind_error)?;
            let state = AdminState {
                router: router.clone(),
                snapshots: snapshots.clone(),
                draining: shutdown.clone(),
            };
            let task = spawn_admin_listener(listener, state, lease_stop.clone());
            tracing::info!(addr = %admin_addr, "admin listener (metrics, health) listening");
            Some((admin_addr, task))
        }
        None => None,
    };
    let health = spawn_health_reporter(
        api.clone(),
        router.clone(),
        config.data_plane_id.clone(),
        config.health_report_interval,
        lease_stop.clone(),
    );
    let gateway = Arc::new(Gateway {
        snapshots: snapshots.clone(),
        exchange: Exchange {
            router,
            client: upstream,
            drain,
            rate_limits: rate_limits.clone(),
        },
        usage,
        data_plane_id: config.data_plane_id.clone(),
        max_body_bytes: config.max_body_bytes,
        sign_in_limit: crate::sign_in_limit::SignInLimit::new(config.sign_in_limit),
        spend,
        rate_limits,
        side: SideChannels {
            client: UpstreamClient::new(config.upstream_connect_timeout, SIDE_FIRST_BYTE_TIMEOUT),
            control_plane_http_url: config
                .control_plane_http_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
        },
    });
    let listener = spawn_listener(
        listener,
        gateway,
        &config.listener_limits,
        tls,
        ListenerShutdown {
            shutdown,
            drain_timeout: config.shutdown_drain_timeout,
            drain_over,
        },
    );
    tracing::info!(%addr, data_plane_id = %config.data_plane_id, "data plane listening");
    let (admin_addr, admin) = admin.unzip();
    Ok(DataPlaneHandle {
        addr,
        admin_addr,
        admin,
        snapshots,
        listener,
        sync,
        drains,
        keeper,
        rate_keeper,
        health,
        lease_stop,
        shipper,
        usage_stop,
        _gauges: gauges,
    })
}

impl DataPlaneHandle {
    /// The installed snapshot's version; `None` until the first one arrives.
    pub fn snapshot_version(&self) -> Option<u64> {
        self.snapshots.version()
    }

    /// Waits until a snapshot of at least version `min` is installed, or `timeout` passes.
    pub async fn wait_for_snapshot_version(&self, min: u64, timeout: Duration) -> bool {
        self.snapshots.wait_for_version(min, timeout).await
    }

    /// Waits for the data plane to stop after its shutdown token is cancelled, in order:
    /// the server stopped accepting and drained, metering (and settling) of abandoned
    /// streams finished, spend leases and rate-limit slices released, usage flushed (or left
    /// in the journal).
    pub async fn wait(self) -> Result<(), ShutdownError> {
        let task = |task| move |source| ShutdownError::Task { task, source };
        let listener = self.listener.await.map_err(task("listener"));
        // Streams whose client left keep being metered, bounded by the drain policy.
        self.drains.close();
        self.drains.wait().await;
        // Everything has settled: hand the unused headroom of every lease and every
        // rate-limit slice back.
        self.lease_stop.cancel();
        let keeper = self.keeper.await.map_err(task("lease keeper"));
        let rate_keeper = self.rate_keeper.await.map_err(task("rate keeper"));
        // The last breaker report is best effort.
        let _ = self.health.await;
        if let Some(admin) = self.admin {
            let _ = admin.await;
        }
        let sync = self.sync.await.map_err(task("snapshot sync"));
        self.usage_stop.cancel();
        let shipped = match self.shipper.await {
            Ok(result) => result.map_err(ShutdownError::from),
            Err(source) => Err(task("usage shipper")(source)),
        };
        tracing::info!("data plane stopped");
        listener.and(keeper).and(rate_keeper).and(sync).and(shipped)
    }
}
