//! In-process fakes: a control plane (tonic `Sync` server) and an Anthropic-shaped upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::{TcpListenerStream, WatchStream};
use tokio_util::sync::CancellationToken;
use tollgate_policy::secret_sha256;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::sync_server::{Sync as SyncService, SyncServer};
use tonic::{Status, transport::Server};

pub const SYNC_TOKEN: &str = "sync-secret";
pub const PROVIDER_KEY: &str = "sk-ant-provider-key";

// ---------------------------------------------------------------- control plane

#[derive(Clone)]
pub struct FakeControlPlane {
    snapshots: Arc<watch::Sender<Option<pb::Snapshot>>>,
    usage: Arc<Mutex<Vec<pb::UsageRecord>>>,
    refuse_usage: Arc<AtomicBool>,
}

impl FakeControlPlane {
    pub fn new() -> Self {
        FakeControlPlane {
            snapshots: Arc::new(watch::channel(None).0),
            usage: Arc::default(),
            refuse_usage: Arc::default(),
        }
    }

    pub fn publish(&self, snapshot: pb::Snapshot) {
        self.snapshots.send_replace(Some(snapshot));
    }

    pub fn refuse_usage(&self, refuse: bool) {
        self.refuse_usage.store(refuse, Ordering::SeqCst);
    }

    pub fn usage(&self) -> Vec<pb::UsageRecord> {
        self.usage.lock().unwrap().clone()
    }

    /// Waits until at least `n` usage records arrived.
    pub async fn wait_for_usage(&self, n: usize) -> Vec<pb::UsageRecord> {
        for _ in 0..500 {
            let usage = self.usage();
            if usage.len() >= n {
                return usage;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {n} usage records, got {:?}", self.usage());
    }

    pub async fn serve(&self, shutdown: CancellationToken) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder()
            .add_service(SyncServer::new(self.clone()))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                shutdown.cancelled_owned(),
            );
        tokio::spawn(server);
        format!("http://{addr}")
    }
}

fn check_token<T>(request: &tonic::Request<T>) -> Result<(), Status> {
    let expected = format!("Bearer {SYNC_TOKEN}");
    match request.metadata().get("authorization") {
        Some(v) if v.to_str().ok() == Some(expected.as_str()) => Ok(()),
        _ => Err(Status::unauthenticated("bad sync token")),
    }
}

#[tonic::async_trait]
impl SyncService for FakeControlPlane {
    type WatchSnapshotsStream = Pin<Box<dyn Stream<Item = Result<pb::Snapshot, Status>> + Send>>;

    async fn watch_snapshots(
        &self,
        request: tonic::Request<pb::WatchSnapshotsRequest>,
    ) -> Result<tonic::Response<Self::WatchSnapshotsStream>, Status> {
        check_token(&request)?;
        let stream =
            WatchStream::new(self.snapshots.subscribe()).filter_map(|s| async move { s.map(Ok) });
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn report_usage(
        &self,
        request: tonic::Request<pb::UsageBatch>,
    ) -> Result<tonic::Response<pb::UsageAck>, Status> {
        check_token(&request)?;
        if self.refuse_usage.load(Ordering::SeqCst) {
            return Err(Status::unavailable("database is down"));
        }
        let mut usage = self.usage.lock().unwrap();
        let mut ack = pb::UsageAck::default();
        for record in request.into_inner().records {
            if usage.iter().any(|r| r.request_id == record.request_id) {
                ack.duplicates += 1;
            } else {
                usage.push(record);
                ack.inserted += 1;
            }
        }
        Ok(tonic::Response::new(ack))
    }

    async fn lease(
        &self,
        request: tonic::Request<pb::LeaseRequest>,
    ) -> Result<tonic::Response<pb::LeaseResponse>, Status> {
        check_token(&request)?;
        Err(Status::unimplemented("no leases in this fake yet"))
    }

    async fn spend_summary(
        &self,
        request: tonic::Request<pb::SpendSummaryRequest>,
    ) -> Result<tonic::Response<pb::SpendSummaryResponse>, Status> {
        check_token(&request)?;
        Err(Status::unimplemented("spend summaries are not served yet"))
    }
}

// ---------------------------------------------------------------- snapshot

pub fn snapshot(version: u64, upstream_base_url: &str) -> pb::Snapshot {
    let model = |id: &str| pb::Model {
        id: id.into(),
        display_name: id.into(),
        max_input_tokens: 200_000,
        created_at_unix_s: 1_700_000_000,
    };
    pb::Snapshot {
        version,
        generated_at_unix_ms: 1,
        org_id: "org".into(),
        org_name: "Example".into(),
        groups: vec![pb::Group {
            id: "g-eng".into(),
            name: "eng".into(),
            allowed_models: vec![
                "claude-sonnet-5".into(),
                "claude-haiku-5".into(),
                "claude-demo".into(),
            ],
        }],
        api_keys: vec![pb::ApiKey {
            id: "k-ada".into(),
            secret_sha256: secret_sha256("tg_ada").to_vec(),
            principal_id: "u-ada".into(),
            principal_kind: pb::PrincipalKind::User as i32,
            principal_name: "Ada".into(),
            principal_email: "ada@example.com".into(),
            group_ids: vec!["g-eng".into()],
            expires_at_unix_s: 0,
            name: "laptop".into(),
        }],
        providers: vec![
            pb::Provider {
                id: "p-up".into(),
                name: "upstream".into(),
                kind: pb::ProviderKind::Anthropic as i32,
                base_url: upstream_base_url.into(),
                api_key: PROVIDER_KEY.into(),
            },
            pb::Provider {
                id: "p-demo".into(),
                name: "demo".into(),
                kind: pb::ProviderKind::Demo as i32,
                ..Default::default()
            },
        ],
        models: vec![
            model("claude-sonnet-5"),
            model("claude-haiku-5"),
            model("claude-opus-4-8"),
            model("claude-demo"),
        ],
        routes: vec![
            pb::Route {
                model: "claude-sonnet-5".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-up".into(),
                    upstream_model: "claude-sonnet-5-20990101".into(),
                    weight: 1,
                    price: None,
                }],
            },
            pb::Route {
                model: "claude-haiku-5".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-up".into(),
                    upstream_model: String::new(),
                    weight: 1,
                    price: None,
                }],
            },
            pb::Route {
                model: "claude-opus-4-8".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-up".into(),
                    upstream_model: String::new(),
                    weight: 1,
                    price: None,
                }],
            },
            pb::Route {
                model: "claude-demo".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-demo".into(),
                    upstream_model: String::new(),
                    weight: 1,
                    price: None,
                }],
            },
        ],
        ..Default::default()
    }
}

// ---------------------------------------------------------------- upstream

/// The events the fake upstream streams, in order.
pub fn sse_events() -> Vec<String> {
    let mut events = vec![
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_up\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-5-20990101\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":1200,\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},\"output_tokens\":1}}}\n\n".to_owned(),
        "event: ping\ndata: {\"type\": \"ping\"}\n\n".to_owned(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_owned(),
    ];
    for i in 0..10 {
        events.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} \"}}}}\n\n"));
    }
    events.push(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            .to_owned(),
    );
    events.push("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n".to_owned());
    events.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned());
    events
}

pub const PROMPT_TOO_LONG: &str = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct FakeUpstream {
    pub base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
    completed_streams: Arc<AtomicUsize>,
    event_pause: Duration,
}

type UpBody = BoxBody<Bytes, Infallible>;

impl FakeUpstream {
    pub async fn start(event_pause: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = FakeUpstream {
            base_url: format!("http://{}", listener.local_addr().unwrap()),
            received: Arc::default(),
            completed_streams: Arc::default(),
            event_pause,
        };
        let server = upstream.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        upstream
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn completed_streams(&self) -> usize {
        self.completed_streams.load(Ordering::SeqCst)
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<UpBody> {
        let path = req.uri().path().to_owned();
        let headers = req.headers().clone();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        self.received.lock().unwrap().push(Received {
            path: path.clone(),
            headers,
            body: body.clone(),
        });
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if let Some(ms) = json["delay_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let mut response = if path == "/v1/messages/count_tokens" {
            full(
                StatusCode::OK,
                "application/json",
                r#"{"input_tokens":77}"#.to_owned(),
            )
        } else if json["please_fail"] == true {
            full(
                StatusCode::BAD_REQUEST,
                "application/json",
                PROMPT_TOO_LONG.to_owned(),
            )
        } else if json["stream"] == true {
            self.sse()
        } else {
            full(StatusCode::OK, "application/json", r#"{"id":"msg_up","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":11,"cache_read_input_tokens":5,"output_tokens":6}}"#.to_owned())
        };
        let h = response.headers_mut();
        h.insert("request-id", "req_fake".parse().unwrap());
        h.insert(
            "anthropic-ratelimit-requests-remaining",
            "99".parse().unwrap(),
        );
        h.insert("anthropic-organization-id", "org-secret".parse().unwrap());
        response
    }

    fn sse(&self) -> Response<UpBody> {
        let pause = self.event_pause;
        let completed = self.completed_streams.clone();
        let events = sse_events();
        let last = events.len() - 1;
        let stream =
            futures_util::stream::iter(events.into_iter().enumerate()).then(move |(i, e)| {
                let completed = completed.clone();
                async move {
                    if i > 0 && !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    if i == last {
                        completed.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok::<_, Infallible>(Frame::data(Bytes::from(e)))
                }
            });
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(Box::pin(stream))));
        response
            .headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        response
    }
}

fn full(status: StatusCode, content_type: &str, body: String) -> Response<UpBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    response
}

// ---------------------------------------------------------------- client

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    http2: bool,
) -> Answer {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http::<Full<Bytes>>();
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}
