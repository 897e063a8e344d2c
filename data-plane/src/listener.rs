//! The client-facing HTTP server: HTTP/1.1 and h2c on one port, graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;

use crate::gateway::ClientAddr;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// Serves until `shutdown`: then stops accepting, lets in-flight requests (streams
/// included) finish for up to `drain_timeout`, and closes what is left.
pub(crate) fn spawn_listener(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let gateway = gateway.clone();
                        let service = service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                            request.extensions_mut().insert(ClientAddr(peer));
                            let gateway = gateway.clone();
                            async move { Ok::<_, Infallible>(gateway.handle(request).await) }
                        });
                        let connection = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .into_owned();
                        let connection = graceful.watch(connection);
                        connections.spawn(async move {
                            if let Err(error) = connection.await {
                                tracing::debug!(%error, "client connection ended with an error");
                            }
                        });
                    }
                    Err(error) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        drop(gateway);
        tracing::info!(
            open = connections.len(),
            "stopped accepting; draining connections"
        );
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(drain_timeout) => {
                tracing::warn!(open = connections.len(), "drain timeout reached; closing remaining connections");
                connections.abort_all();
            }
        }
        while connections.join_next().await.is_some() {}
    })
}
