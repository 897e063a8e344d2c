//! The accept loop the harness's in-process HTTP servers share (HTTP/1.1 and h2c).

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::Response;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the harness's servers answer with.
pub type TestResponse = Response<BoxBody<Bytes, Infallible>>;

/// Serves every connection on `listener` with `handler` (cloned per request) until
/// `shutdown` is cancelled.
pub fn spawn<H, F>(listener: TcpListener, shutdown: CancellationToken, handler: H)
where
    H: Fn(hyper::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = TestResponse> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                () = shutdown.cancelled() => break,
                c = listener.accept() => c,
            };
            let Ok((stream, _)) = conn else { continue };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
