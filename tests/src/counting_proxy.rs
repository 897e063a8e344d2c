//! A recording HTTP proxy on 127.0.0.1 in front of a data plane: it forwards every request
//! as is (streaming the answer back) and remembers what passed, so a test can count exactly
//! how many requests a real client sent — retries included.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One request that passed the proxy, with the status the target answered.
#[derive(Debug, Clone)]
pub struct Passed {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
}

impl Passed {
    /// `POST /v1/messages` (not `count_tokens`).
    pub fn is_messages(&self) -> bool {
        let path = self.path_and_query.split('?').next().unwrap_or_default();
        self.method == Method::POST && path == "/v1/messages"
    }
}

/// The running proxy; stops when the token given at start is cancelled.
#[derive(Debug, Clone)]
pub struct CountingProxy {
    pub addr: SocketAddr,
    target: String,
    passed: Arc<Mutex<Vec<Passed>>>,
    client: reqwest::Client,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards to `target` (e.g. `http://127.0.0.1:4000`).
    pub async fn start(target: &str, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = CountingProxy {
            addr: listener.local_addr()?,
            target: target.trim_end_matches('/').to_owned(),
            passed: Arc::default(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        };
        let server = proxy.clone();
        crate::http_server::spawn(listener, shutdown, move |req| {
            let proxy = server.clone();
            async move { proxy.forward(req).await }
        });
        Ok(proxy)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything that passed so far.
    pub fn passed(&self) -> Vec<Passed> {
        self.passed.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The `POST /v1/messages` requests that passed so far.
    pub fn messages(&self) -> Vec<Passed> {
        self.passed()
            .into_iter()
            .filter(Passed::is_messages)
            .collect()
    }

    async fn forward(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Response<BoxBody<Bytes, Infallible>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut headers = parts.headers.clone();
        headers.remove(http::header::HOST);
        let sent = self
            .client
            .request(
                parts.method.clone(),
                format!("{}{path_and_query}", self.target),
            )
            .headers(headers)
            .body(body.clone())
            .send()
            .await;
        let status = sent.as_ref().map_or(502, |r| r.status().as_u16());
        if let Ok(mut p) = self.passed.lock() {
            p.push(Passed {
                method: parts.method,
                path_and_query,
                headers: parts.headers,
                body,
                status,
            });
        }
        let upstream = match sent {
            Ok(r) => r,
            Err(e) => {
                let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(format!(
                    "proxy: {e}"
                )))));
                *resp.status_mut() = StatusCode::BAD_GATEWAY;
                return resp;
            }
        };
        let status = upstream.status();
        let headers = upstream.headers().clone();
        // A broken upstream stream ends the body early, as a cut connection would.
        let body = StreamBody::new(upstream.bytes_stream().filter_map(|chunk| async move {
            chunk.ok().map(|b| Ok::<_, Infallible>(Frame::data(b)))
        }));
        let mut resp = Response::new(BodyExt::boxed(body));
        *resp.status_mut() = status;
        for (name, value) in &headers {
            if name != http::header::TRANSFER_ENCODING && name != http::header::CONNECTION {
                resp.headers_mut().append(name, value.clone());
            }
        }
        resp
    }
}
