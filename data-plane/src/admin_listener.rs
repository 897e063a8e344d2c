//! The operator-facing listener (separate from client traffic), served by
//! [`tollgate_telemetry::admin`]: `GET /metrics` (Prometheus text), `GET /healthz` (the
//! process is up) and `GET /readyz` (it holds a policy snapshot and is not shutting down:
//! 503 `draining` from the moment shutdown starts, so load balancers stop sending traffic).
//!
//! `/metrics` carries the process's OpenTelemetry metrics (when telemetry keeps them for
//! Prometheus) followed by this data plane's own lines: each route target's circuit breaker
//! (state, consecutive failures, attempts, failed attempts) and the installed snapshot version.

use std::fmt::Write as _;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tollgate_telemetry::admin::{AdminEndpoints, Readiness};

use crate::routing::Router;
use crate::snapshot::SnapshotStore;

/// What the admin endpoints read.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub router: Arc<Router>,
    pub snapshots: Arc<SnapshotStore>,
    /// The data plane's shutdown token: once cancelled, the data plane is draining.
    pub draining: CancellationToken,
}

pub(crate) fn spawn_admin_listener(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tollgate_telemetry::admin::spawn(listener, endpoints(state), shutdown)
}

/// The endpoints: breaker and snapshot lines after the telemetry metrics; ready once a
/// policy snapshot is installed, until shutdown starts.
fn endpoints(state: AdminState) -> AdminEndpoints {
    let snapshots = state.snapshots.clone();
    let draining = state.draining.clone();
    AdminEndpoints::new()
        .with_extra_metrics(move || metrics(&state))
        .with_readiness(move || {
            if draining.is_cancelled() {
                return Readiness::NotReady("draining".into());
            }
            match snapshots.version() {
                Some(v) => Readiness::Ready(format!("snapshot {v}")),
                None => Readiness::NotReady("no policy snapshot yet".into()),
            }
        })
}

/// A metric family: name, type, help, and how to read a target's value.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&pb::TargetHealth) -> u64,
);

/// Prometheus text exposition of the breaker states.
pub(crate) fn metrics(state: &AdminState) -> String {
    let targets = state.router.health();
    let snapshot = state.snapshots.load();
    let provider_name = |id: &str| {
        snapshot
            .as_ref()
            .and_then(|s| s.provider(id).map(|p| p.name.clone()))
            .unwrap_or_default()
    };
    let labels: Vec<String> = targets
        .iter()
        .map(|t| {
            format!(
                "provider_id=\"{}\",provider=\"{}\",upstream_model=\"{}\"",
                escape(&t.provider_id),
                escape(&provider_name(&t.provider_id)),
                escape(&t.upstream_model)
            )
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP tollgate_policy_snapshot_version Version of the installed policy snapshot (0: none).\n\
         # TYPE tollgate_policy_snapshot_version gauge\n\
         tollgate_policy_snapshot_version {}",
        state.snapshots.version().unwrap_or(0)
    );
    let families: [Family; 4] = [
        (
            "tollgate_upstream_breaker_state",
            "gauge",
            "Circuit breaker of a route target: 0 closed, 1 open, 2 half-open.",
            |t| u64::try_from(t.state).unwrap_or(0),
        ),
        (
            "tollgate_upstream_breaker_consecutive_failures",
            "gauge",
            "Consecutive failed attempts at a route target.",
            |t| u64::from(t.consecutive_failures),
        ),
        (
            "tollgate_upstream_target_attempts_total",
            "counter",
            "Attempts sent to a route target.",
            |t| t.attempts,
        ),
        (
            "tollgate_upstream_target_failures_total",
            "counter",
            "Failed attempts at a route target (connect errors, timeouts, retryable statuses).",
            |t| t.failures,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (t, labels) in targets.iter().zip(&labels) {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(t));
        }
    }
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};

    use super::*;
    use crate::config::DataPlaneConfig;

    #[test]
    fn metrics_show_each_targets_breaker() {
        let config = DataPlaneConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:9".into(),
            secrecy::SecretString::from("t"),
        );
        let router = Arc::new(Router::new(config.routing()));
        let breaker = router.breakers.get("p1", "anthropic.claude-x");
        for _ in 0..5 {
            breaker.attempted();
            breaker.failure(
                &router.breakers.settings,
                tokio::time::Instant::now(),
                "status 529",
                None,
                false,
            );
        }
        let state = AdminState {
            router,
            snapshots: Arc::new(SnapshotStore::default()),
            draining: CancellationToken::new(),
        };
        let text = metrics(&state);
        let endpoints = endpoints(state);
        assert!(text.contains(
            "tollgate_upstream_breaker_state{provider_id=\"p1\",provider=\"\",upstream_model=\"anthropic.claude-x\"} 1"
        ), "{text}");
        assert!(text.contains("tollgate_upstream_target_failures_total{provider_id=\"p1\""));
        assert!(text.contains("tollgate_policy_snapshot_version 0"));
        assert_eq!(
            endpoints.answer(&Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            endpoints.answer(&Method::GET, "/healthz").status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn readiness_turns_to_draining_when_shutdown_starts() {
        use http_body_util::BodyExt as _;

        let config = DataPlaneConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:9".into(),
            secrecy::SecretString::from("t"),
        );
        let snapshots = Arc::new(SnapshotStore::default());
        let draining = CancellationToken::new();
        let endpoints = endpoints(AdminState {
            router: Arc::new(Router::new(config.routing())),
            snapshots,
            draining: draining.clone(),
        });
        draining.cancel();
        let answer = endpoints.answer(&Method::GET, "/readyz");
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("draining"),
            "{body:?}"
        );
    }
}
