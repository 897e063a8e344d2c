//! The shared HTTP client to providers: one pooled hyper client, https and http.

pub mod headers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Why a provider gave no response. Never shown to clients as is.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("no response headers within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(#[source] hyper_util::client::legacy::Error),
}

type PooledClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One connection pool per connect timeout (targets rarely differ): a default pool, and
/// one more for each other connect timeout a route target asks for.
#[derive(Clone)]
pub(crate) struct UpstreamClient {
    client: PooledClient,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    others: Arc<Mutex<HashMap<Duration, PooledClient>>>,
}

impl UpstreamClient {
    pub(crate) fn new(connect_timeout: Duration, first_byte_timeout: Duration) -> Self {
        UpstreamClient {
            client: pooled(connect_timeout),
            connect_timeout,
            first_byte_timeout,
            others: Arc::default(),
        }
    }

    /// Sends `request`; fails if the response headers take longer than the first-byte bound.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.send_with(request, None, self.first_byte_timeout).await
    }

    /// Sends `request` with a connect timeout (`None`: the default) and a bound on the time
    /// to response headers.
    pub(crate) async fn send_with(
        &self,
        request: Request<Full<Bytes>>,
        connect_timeout: Option<Duration>,
        first_byte_timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let client = match connect_timeout {
            Some(t) if t != self.connect_timeout => {
                let mut others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
                others.entry(t).or_insert_with(|| pooled(t)).clone()
            }
            _ => self.client.clone(),
        };
        tokio::time::timeout(first_byte_timeout, client.request(request))
            .await
            .map_err(|_| UpstreamError::Timeout(first_byte_timeout))?
            .map_err(UpstreamError::Request)
    }
}

fn pooled(connect_timeout: Duration) -> PooledClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    // Uses the process's rustls crypto provider (ring, the only one compiled in).
    let https = HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .timer(TokioTimer::new())
        .build(https)
}
