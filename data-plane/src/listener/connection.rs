//! One client connection: served until it ends, asked to finish (HTTP/1: no keep-alive;
//! HTTP/2: `GOAWAY`) at shutdown or once it has had no request in flight for the idle timeout.
//!
//! hyper bounds an idle HTTP/1 connection with its header read timeout, but has no such
//! bound for HTTP/2 (keep-alive pings only find dead peers: a live client could hold any
//! number of idle connections) nor for a connection that never sends enough to pick a
//! protocol. The idle timer here covers all three.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gateway::ResponseBody;

/// Requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` at which the last request ended (0: none yet).
    last_end_ms: AtomicU64,
}

/// A request in flight on a connection; dropped when its response has been sent (or
/// abandoned).
#[derive(Debug)]
pub(crate) struct ActiveRequest(Arc<Activity>);

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        })
    }

    pub(crate) fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        ActiveRequest(self.clone())
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Completes once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::SeqCst) == 0 {
                let since_ms = self
                    .elapsed_ms()
                    .saturating_sub(self.last_end_ms.load(Ordering::SeqCst));
                let idle = Duration::from_millis(since_ms);
                if idle >= timeout {
                    return;
                }
                timeout - idle
            } else {
                timeout
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0
            .last_end_ms
            .store(self.0.elapsed_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `stream` (TCP, or TLS over it) until the connection ends; asks it to finish at
/// `shutdown` or when idle for `idle_timeout`.
pub(crate) async fn serve<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: I,
    service: S,
    activity: &Activity,
    idle_timeout: Duration,
    shutdown: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<ResponseBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut finishing = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "client connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !finishing => {
                connection.as_mut().graceful_shutdown();
                finishing = true;
            }
            () = activity.idle_for(idle_timeout), if !finishing => {
                tracing::debug!("closing an idle client connection");
                connection.as_mut().graceful_shutdown();
                finishing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_requests_for_the_timeout() {
        let activity = Activity::new();
        let request = activity.begin();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!idle.is_finished(), "a request is in flight");
        drop(request);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!idle.is_finished(), "idle for 5 s only");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(idle.is_finished());
    }
}
