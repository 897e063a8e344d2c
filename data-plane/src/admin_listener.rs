//! The operator-facing listener (separate from client traffic): `GET /metrics` (Prometheus
//! text), `GET /healthz` (the process is up) and `GET /readyz` (it holds a policy snapshot).
//!
//! Metrics so far: each route target's circuit breaker (state, consecutive failures,
//! attempts, failed attempts) and the installed snapshot version.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;

use crate::routing::Router;
use crate::snapshot::SnapshotStore;

/// What the admin endpoints read.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub router: Arc<Router>,
    pub snapshots: Arc<SnapshotStore>,
}

pub(crate) fn spawn_admin_listener(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "admin listener cannot accept");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let response = answer(&state, request.method(), request.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn answer(state: &AdminState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match state.snapshots.version() {
            Some(v) => text(StatusCode::OK, format!("ready: snapshot {v}\n")),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no policy snapshot yet\n".into(),
            ),
        },
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics(state));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
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
            "tollgate_upstream_attempts_total",
            "counter",
            "Attempts sent to a route target.",
            |t| t.attempts,
        ),
        (
            "tollgate_upstream_failures_total",
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
        };
        let text = metrics(&state);
        assert!(text.contains(
            "tollgate_upstream_breaker_state{provider_id=\"p1\",provider=\"\",upstream_model=\"anthropic.claude-x\"} 1"
        ), "{text}");
        assert!(text.contains("tollgate_upstream_failures_total{provider_id=\"p1\""));
        assert!(text.contains("tollgate_policy_snapshot_version 0"));
        assert_eq!(
            answer(&state, &Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            answer(&state, &Method::GET, "/healthz").status(),
            StatusCode::OK
        );
    }
}
