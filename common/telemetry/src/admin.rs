//! The operator listener every Tollgate process can serve, apart from client traffic:
//!
//! - `GET /metrics`: Prometheus text: the process's OpenTelemetry metrics
//!   ([`crate::prometheus_text`]) followed by the lines of an optional callback;
//! - `GET /healthz`: `200` while the process runs;
//! - `GET /readyz`: `200` or `503` as a readiness callback says, with its reason;
//! - any other path `404`, any other method `405`.
//!
//! ```no_run
//! # async fn run(listener: tokio::net::TcpListener, stop: tokio_util::sync::CancellationToken) {
//! use tollgate_telemetry::admin::{AdminEndpoints, Readiness, spawn};
//! let endpoints = AdminEndpoints::new()
//!     .with_readiness(|| Readiness::Ready("ok".into()))
//!     .with_extra_metrics(|| "# TYPE my_gauge gauge\nmy_gauge 1\n".into());
//! let task = spawn(listener, endpoints, stop);
//! # }
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `200` with this reason (e.g. `snapshot 42`).
    Ready(String),
    /// `503` with this reason (e.g. `no policy snapshot yet`).
    NotReady(String),
}

type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;
type ReadinessFn = Arc<dyn Fn() -> Readiness + Send + Sync>;

/// What the admin endpoints serve. Cheap to clone.
#[derive(Clone)]
pub struct AdminEndpoints {
    extra_metrics: Option<MetricsFn>,
    readiness: Option<ReadinessFn>,
}

impl std::fmt::Debug for AdminEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminEndpoints")
            .field("extra_metrics", &self.extra_metrics.is_some())
            .field("readiness", &self.readiness.is_some())
            .finish()
    }
}

impl Default for AdminEndpoints {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminEndpoints {
    /// `/metrics` serves the process's OpenTelemetry metrics only; always ready.
    pub fn new() -> Self {
        AdminEndpoints {
            extra_metrics: None,
            readiness: None,
        }
    }

    /// Appends what `metrics` returns (Prometheus text lines, each ending in `\n`) to
    /// `/metrics`. It runs on every scrape: keep it cheap.
    pub fn with_extra_metrics(
        mut self,
        metrics: impl Fn() -> String + Send + Sync + 'static,
    ) -> Self {
        self.extra_metrics = Some(Arc::new(metrics));
        self
    }

    /// `/readyz` answers what `readiness` says. It runs on every probe: keep it cheap.
    pub fn with_readiness(
        mut self,
        readiness: impl Fn() -> Readiness + Send + Sync + 'static,
    ) -> Self {
        self.readiness = Some(Arc::new(readiness));
        self
    }

    /// The full `/metrics` body.
    pub fn metrics_text(&self) -> String {
        let mut text = crate::prometheus_text();
        if let Some(extra) = &self.extra_metrics {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&extra());
        }
        text
    }

    /// The response to `method path` (the whole routing, for tests).
    pub fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match self.readiness.as_ref().map(|r| r()) {
                None => text(StatusCode::OK, "ready\n".into()),
                Some(Readiness::Ready(reason)) => {
                    text(StatusCode::OK, format!("ready: {reason}\n"))
                }
                Some(Readiness::NotReady(reason)) => {
                    text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"))
                }
            },
            "/metrics" => {
                let mut response = text(StatusCode::OK, self.metrics_text());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
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

/// Serves `endpoints` on `listener` (HTTP/1.1) until `shutdown` is cancelled.
pub fn spawn(
    listener: TcpListener,
    endpoints: AdminEndpoints,
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
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let endpoints = endpoints.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let response = endpoints.answer(request.method(), request.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = stop.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                    }
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn routes_health_readiness_metrics_and_unknown_paths() {
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ready.clone();
        let endpoints = AdminEndpoints::new()
            .with_extra_metrics(|| "# TYPE extra gauge\nextra 7\n".into())
            .with_readiness(move || {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    Readiness::Ready("snapshot 3".into())
                } else {
                    Readiness::NotReady("no snapshot yet".into())
                }
            });
        assert_eq!(
            endpoints.answer(&Method::GET, "/healthz").status(),
            StatusCode::OK
        );
        let not_ready = endpoints.answer(&Method::GET, "/readyz");
        assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(not_ready).await, "no snapshot yet\n");
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        let is_ready = endpoints.answer(&Method::GET, "/readyz");
        assert_eq!(is_ready.status(), StatusCode::OK);
        assert_eq!(body(is_ready).await, "ready: snapshot 3\n");
        let metrics = endpoints.answer(&Method::GET, "/metrics");
        assert_eq!(metrics.status(), StatusCode::OK);
        assert!(body(metrics).await.contains("extra 7\n"));
        assert_eq!(
            endpoints.answer(&Method::GET, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            endpoints.answer(&Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn serves_over_tcp_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = spawn(listener, AdminEndpoints::new(), stop.clone());
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        stop.cancel();
        task.await.unwrap();
    }
}
