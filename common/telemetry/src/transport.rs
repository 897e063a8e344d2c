//! The OTLP/HTTP transport: an [`opentelemetry_http::HttpClient`] over hyper-util's client
//! (rustls for `https://`).
//!
//! The SDK's batch processors and periodic reader export from their own threads, outside any
//! Tokio runtime, so each request runs as a task on the runtime captured at
//! [`crate::init`] and is awaited through its `JoinHandle`, under the export timeout.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_http::{HttpClient, HttpError};
use tokio::runtime::Handle;

/// Largest response body read from a collector.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Sends export requests on a Tokio runtime, whichever thread asks.
#[derive(Clone)]
pub(crate) struct ExportClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: Handle,
    timeout: Duration,
}

impl std::fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why an export request got no response.
#[derive(Debug, thiserror::Error)]
enum TransportError {
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("the export task did not finish (runtime shutting down?)")]
    Task,
}

impl ExportClient {
    /// A client whose requests run on `runtime` and give up after `timeout`.
    pub(crate) fn new(runtime: Handle, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        ExportClient {
            client,
            runtime,
            timeout,
        }
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.runtime.spawn(async move {
            let exchange = async {
                let (parts, body) = request.into_parts();
                let response = client
                    .request(Request::from_parts(parts, Full::new(body)))
                    .await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(TransportError::Timeout(timeout)) as HttpError),
            }
        });
        match task.await {
            Ok(result) => result,
            Err(_) => Err(Box::new(TransportError::Task)),
        }
    }
}

impl HttpClient for ExportClient {
    // The expansion of `#[async_trait]`, written out (no proc-macro dependency).
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.send(request))
    }
}
