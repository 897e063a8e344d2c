//! The client-facing HTTP server: HTTP/1.1 and h2c on one port (or HTTP/1.1 and h2 over TLS,
//! see [`tls`]), its limits ([`ListenerLimits`]) and graceful shutdown.
//!
//! # Shutdown
//!
//! When the shutdown token is cancelled the listener stops accepting and asks every
//! connection to finish (HTTP/1: no keep-alive; HTTP/2: `GOAWAY`; see [`connection`]).
//! In-flight requests get the drain period. When it is over, `drain_over` is cancelled:
//! responses still streaming end with an SSE `error` event (`overloaded_error`, see
//! [`crate::relay::StreamGuard`]) and are metered; the connections get
//! [`FINAL_WRITE_GRACE`] to send that, then are closed.

mod connection;
mod in_flight;
mod limits;
mod tls;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use limits::ListenerLimits;
pub(crate) use tls::ServerTls;
pub use tls::{TlsError, TlsSettings};

use crate::gateway::{ClientAddr, Gateway};
use connection::Activity;
use in_flight::InFlight;

/// After the drain period, how long connections have to write the final `error` events.
const FINAL_WRITE_GRACE: Duration = Duration::from_secs(2);

/// How the listener shuts down.
#[derive(Debug, Clone)]
pub(crate) struct ListenerShutdown {
    /// Cancelled to start shutdown.
    pub shutdown: CancellationToken,
    /// How long in-flight requests may go on after shutdown starts.
    pub drain_timeout: Duration,
    /// Cancelled by the listener when the drain period is over.
    pub drain_over: CancellationToken,
}

/// Serves until shutdown: then stops accepting, lets in-flight requests (streams included)
/// finish for up to the drain period, ends the streams still open, and closes what is left.
pub(crate) fn spawn_listener(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: &ListenerLimits,
    tls: Option<ServerTls>,
    stop: ListenerShutdown,
) -> JoinHandle<()> {
    let builder = Arc::new(limits.builder());
    let reloader = tls
        .as_ref()
        .map(|tls| tls::spawn_certificate_reloader(tls, stop.shutdown.clone()));
    let tls = tls.map(Arc::new);
    let in_flight = InFlight::new(limits.max_concurrent_requests);
    let idle_timeout = limits.header_read_timeout;
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = stop.shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let gateway = gateway.clone();
                        let in_flight = in_flight.clone();
                        let activity = Activity::new();
                        let on_request = activity.clone();
                        let service = service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                            request.extensions_mut().insert(ClientAddr(peer));
                            let gateway = gateway.clone();
                            let active = on_request.begin();
                            let slot = in_flight.try_admit();
                            async move {
                                let Some(slot) = slot else {
                                    tracing::debug!("concurrent request limit reached; answering 529");
                                    return Ok::<_, Infallible>(in_flight::overloaded());
                                };
                                let response = gateway.handle(request).await;
                                Ok(in_flight::hold(response, (slot, active)))
                            }
                        });
                        let builder = builder.clone();
                        let shutdown = stop.shutdown.clone();
                        let tls = tls.clone();
                        connections.spawn(async move {
                            match tls {
                                None => connection::serve(&builder, stream, service, &activity, idle_timeout, &shutdown).await,
                                Some(tls) => {
                                    if let Some(stream) = tls.accept(stream, &shutdown).await {
                                        connection::serve(&builder, stream, service, &activity, idle_timeout, &shutdown).await;
                                    }
                                }
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
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        tracing::info!(
            open = connections.len(),
            "stopped accepting; draining connections"
        );
        if !all_closed_within(&mut connections, stop.drain_timeout).await {
            tracing::warn!(
                open = connections.len(),
                "drain period over; ending open streams and closing connections"
            );
            stop.drain_over.cancel();
            if !all_closed_within(&mut connections, FINAL_WRITE_GRACE).await {
                connections.abort_all();
                while connections.join_next().await.is_some() {}
            }
        }
        stop.drain_over.cancel();
    })
}

/// Whether every connection ended within `timeout`.
async fn all_closed_within(connections: &mut JoinSet<()>, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok()
}
