//! The shared HTTP client to providers: one pooled hyper client, https and http.

pub mod headers;

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

/// One connection pool for every provider.
#[derive(Clone)]
pub(crate) struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    first_byte_timeout: Duration,
}

impl UpstreamClient {
    pub(crate) fn new(connect_timeout: Duration, first_byte_timeout: Duration) -> Self {
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
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .timer(TokioTimer::new())
            .build(https);
        UpstreamClient {
            client,
            first_byte_timeout,
        }
    }

    /// Sends `request`; fails if the response headers take longer than the first-byte bound.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        tokio::time::timeout(self.first_byte_timeout, self.client.request(request))
            .await
            .map_err(|_| UpstreamError::Timeout(self.first_byte_timeout))?
            .map_err(UpstreamError::Request)
    }

    pub(crate) fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
    }
}
