//! A fake Amazon Bedrock runtime on 127.0.0.1 that checks what the real one would.
//!
//! - `POST /model/{modelId}/invoke`, `/invoke-with-response-stream`, `/count-tokens`
//!   (SigV4 service `bedrock`), and the Bedrock Messages endpoint
//!   `POST /anthropic/v1/messages` (SigV4 service `bedrock-mantle`, Anthropic body and SSE).
//! - Authentication: a SigV4 signature checked by the independent verifier in
//!   [`crate::sigv4_verify`] (region, service, 15-minute skew, session token), or a Bedrock
//!   API key as `Authorization: Bearer`.
//! - Body rules of InvokeModel: `model`, `stream` and `tags` are refused as extraneous keys
//!   with Bedrock's `ValidationException` wording; `anthropic_version` must be the dialect
//!   value; `anthropic_beta`, when present, must be an array of strings without
//!   `request-tags-…`.
//! - Streams are AWS event-stream messages written by the hand-written encoder here (CRC-32
//!   of prelude and message), each `chunk` carrying `{"bytes": base64(event JSON), "p": …}`.
//!   Scripts can add exception frames, corrupt a CRC, pause, and split the bytes into tiny
//!   writes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fake_cloud::{self, CloudReply, CloudRequest, Style};
use crate::http_server::TestResponse;
use crate::sigv4_verify::{self, AwsCredentials, Expected, Received};

/// The `anthropic_version` InvokeModel bodies must carry.
pub const BEDROCK_VERSION: &str = "bedrock-2023-05-31";
/// The model name Bedrock reports in answers (Anthropic style, not the Bedrock id).
pub const ANSWER_MODEL: &str = "claude-sonnet-4-5-20250929";

/// How the fake authenticates requests.
#[derive(Debug, Clone)]
pub struct FakeBedrockConfig {
    pub region: String,
    /// SigV4 credentials accepted (service `bedrock` or `bedrock-mantle` by path).
    pub credentials: Option<AwsCredentials>,
    /// A Bedrock API key accepted as `Authorization: Bearer`.
    pub api_key: Option<String>,
    /// The body `anthropic_version` InvokeModel requires.
    pub anthropic_version: String,
}

impl FakeBedrockConfig {
    /// Static SigV4 credentials (`session_token` for temporary ones) in `region`.
    pub fn sigv4(region: &str, access_key_id: &str, secret: &str, token: Option<&str>) -> Self {
        FakeBedrockConfig {
            region: region.to_owned(),
            credentials: Some(AwsCredentials {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret.to_owned(),
                session_token: token.map(str::to_owned),
            }),
            api_key: None,
            anthropic_version: BEDROCK_VERSION.to_owned(),
        }
    }

    /// A Bedrock API key (bearer) in `region`.
    pub fn api_key(region: &str, key: &str) -> Self {
        FakeBedrockConfig {
            region: region.to_owned(),
            credentials: None,
            api_key: Some(key.to_owned()),
            anthropic_version: BEDROCK_VERSION.to_owned(),
        }
    }
}

/// The Bedrock operation a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Invoke,
    InvokeStream,
    CountTokens,
    /// `POST /anthropic/v1/messages` (bedrock-mantle).
    Messages,
    /// `POST /anthropic/v1/messages/count_tokens` (bedrock-mantle).
    MessagesCountTokens,
    Unknown,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct BedrockRequest {
    pub operation: Operation,
    /// The model id from the path, percent-decoded (invoke operations).
    pub model_id: Option<String>,
    /// Signed headers of a valid SigV4 request (empty for bearer or refused requests).
    pub signed_headers: Vec<String>,
    pub request: CloudRequest,
}

/// One step of an event-stream answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// A `chunk` event carrying this Anthropic event JSON.
    Chunk(Value),
    /// A modeled exception frame (`:message-type` = `exception`), e.g. `throttlingException`.
    Exception { kind: String, message: String },
    /// A chunk whose message CRC is wrong.
    CorruptChunk(Value),
    /// Silence.
    Pause(Duration),
}

/// An `InvokeModelWithResponseStream` answer.
#[derive(Debug, Clone)]
pub struct EventStream {
    pub steps: Vec<Step>,
    /// Write the bytes in pieces of this size (each its own write, `write_delay` apart).
    pub write_size: Option<usize>,
    pub write_delay: Duration,
}

impl EventStream {
    /// The chunks Bedrock sends for a text answer: no `ping`, and `message_stop` carrying
    /// `amazon-bedrock-invocationMetrics`.
    pub fn standard(input_tokens: u64, deltas: &[&str], output_tokens: u64) -> Self {
        EventStream {
            steps: standard_events(input_tokens, deltas, output_tokens)
                .into_iter()
                .map(Step::Chunk)
                .collect(),
            write_size: None,
            write_delay: Duration::ZERO,
        }
    }

    /// Every byte written on its own (1-byte TCP writes, `delay` apart).
    pub fn split_into(mut self, size: usize, delay: Duration) -> Self {
        self.write_size = Some(size.max(1));
        self.write_delay = delay;
        self
    }

    /// Keeps the first `n` steps, then an exception frame (the stream ends there).
    pub fn exception_after(mut self, n: usize, kind: &str, message: &str) -> Self {
        self.steps.truncate(n);
        self.steps.push(Step::Exception {
            kind: kind.to_owned(),
            message: message.to_owned(),
        });
        self
    }

    /// Replaces step `n` (a chunk) by the same chunk with a broken CRC.
    pub fn corrupt_at(mut self, n: usize) -> Self {
        if let Some(Step::Chunk(v)) = self.steps.get(n).cloned()
            && let Some(slot) = self.steps.get_mut(n)
        {
            *slot = Step::CorruptChunk(v);
        }
        self
    }

    /// Silence of `pause` before step `n`.
    pub fn pause_before(mut self, n: usize, pause: Duration) -> Self {
        let n = n.min(self.steps.len());
        self.steps.insert(n, Step::Pause(pause));
        self
    }

    /// The encoded bytes and pauses, in order.
    fn segments(&self) -> Vec<Segment> {
        let mut out = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let bytes = match step {
                Step::Chunk(v) => chunk_frame(v, i),
                Step::CorruptChunk(v) => {
                    let mut f = chunk_frame(v, i);
                    if let Some(last) = f.last_mut() {
                        *last ^= 0xFF;
                    }
                    f
                }
                Step::Exception { kind, message } => exception_frame(kind, message),
                Step::Pause(d) => {
                    out.push(Segment::Pause(*d));
                    continue;
                }
            };
            match self.write_size {
                Some(n) => out.extend(
                    bytes
                        .chunks(n)
                        .map(|c| Segment::Bytes(Bytes::copy_from_slice(c), self.write_delay)),
                ),
                None => out.push(Segment::Bytes(Bytes::from(bytes), Duration::from_millis(2))),
            }
        }
        out
    }
}

enum Segment {
    /// Bytes written after a delay.
    Bytes(Bytes, Duration),
    Pause(Duration),
}

/// The standard stream of a text answer as Bedrock sends it.
pub fn standard_events(input_tokens: u64, deltas: &[&str], output_tokens: u64) -> Vec<Value> {
    let mut events = fake_cloud::stream_events(
        "msg_bdrk_01FakeBedrockStream",
        ANSWER_MODEL,
        input_tokens,
        deltas,
        output_tokens,
        false,
    );
    if let Some(last) = events.last_mut() {
        last["amazon-bedrock-invocationMetrics"] = json!({
            "inputTokenCount": input_tokens,
            "outputTokenCount": output_tokens,
            "invocationLatency": 420,
            "firstByteLatency": 180
        });
    }
    events
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub enum BedrockReply {
    /// Success in the operation's shape: Message JSON (invoke, mantle), the standard event
    /// stream (invoke-with-response-stream), SSE (mantle stream), `{"inputTokens"}` (count).
    Message {
        text: String,
        input_tokens: u64,
        output_tokens: u64,
    },
    /// This event stream (invoke-with-response-stream only).
    Stream(EventStream),
    /// An AWS error: status, `x-amzn-ErrorType`, `{"message": …}`.
    Error {
        status: u16,
        code: String,
        message: String,
        headers: Vec<(String, String)>,
    },
    /// Anthropic-shaped answers for the Messages endpoint.
    Cloud(CloudReply),
}

impl BedrockReply {
    pub fn message(text: &str, input_tokens: u64, output_tokens: u64) -> Self {
        BedrockReply::Message {
            text: text.to_owned(),
            input_tokens,
            output_tokens,
        }
    }

    pub fn error(status: u16, code: &str, message: &str) -> Self {
        BedrockReply::Error {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
            headers: Vec::new(),
        }
    }

    pub fn throttling() -> Self {
        Self::error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        )
    }

    pub fn service_unavailable() -> Self {
        Self::error(
            503,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        )
    }

    pub fn input_too_long() -> Self {
        Self::error(
            400,
            "ValidationException",
            "Input is too long for requested model.",
        )
    }

    /// An AccessDenied whose message names an account ARN (must not reach clients).
    pub fn access_denied() -> Self {
        Self::error(
            403,
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/tollgate is not authorized to perform: \
             bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1::foundation-model/\
             anthropic.claude-sonnet-4-5-20250929-v1:0 because no identity-based policy allows \
             the bedrock:InvokeModel action",
        )
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let BedrockReply::Error { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}

#[derive(Debug)]
struct State {
    config: FakeBedrockConfig,
    queue: std::collections::VecDeque<BedrockReply>,
    default: BedrockReply,
    headers_delay: Duration,
    received: Vec<BedrockRequest>,
    completed_streams: usize,
}

/// The running fake. Stopped when `shutdown` (given at start) is cancelled.
#[derive(Debug, Clone)]
pub struct FakeBedrock {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeBedrock {
    pub async fn start(
        config: FakeBedrockConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            config,
            queue: Default::default(),
            default: BedrockReply::message("Hello from Bedrock", 14, 6),
            headers_delay: Duration::ZERO,
            received: Vec::new(),
            completed_streams: 0,
        }));
        let fake = FakeBedrock { addr, state };
        let server = fake.clone();
        crate::http_server::spawn(listener, shutdown, move |req| {
            let fake = server.clone();
            async move { fake.handle(req).await }
        });
        Ok(fake)
    }

    /// `http://127.0.0.1:port` (the InvokeModel base URL).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Bedrock Messages base URL (`…/anthropic`).
    pub fn mantle_url(&self) -> String {
        format!("http://{}/anthropic", self.addr)
    }

    /// The answer to every request without a queued one.
    pub fn reply_with(&self, reply: BedrockReply) {
        if let Ok(mut s) = self.state.lock() {
            s.default = reply;
        }
    }

    /// Answers the next request with `reply` (queued replies go first, in order).
    pub fn push_reply(&self, reply: BedrockReply) {
        if let Ok(mut s) = self.state.lock() {
            s.queue.push_back(reply);
        }
    }

    /// Waits this long before answering (a slow first byte).
    pub fn set_headers_delay(&self, delay: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.headers_delay = delay;
        }
    }

    pub fn received(&self) -> Vec<BedrockRequest> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    /// Requests the fake accepted (valid signature and body).
    pub fn accepted(&self) -> Vec<BedrockRequest> {
        self.received()
            .into_iter()
            .filter(|r| r.request.accepted())
            .collect()
    }

    pub fn completed_streams(&self) -> usize {
        self.state.lock().map(|s| s.completed_streams).unwrap_or(0)
    }

    async fn handle(&self, req: hyper::Request<hyper::body::Incoming>) -> TestResponse {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_owned();
        let (operation, model_id) = classify(&parts.method, &path);
        let Ok(config) = self.state.lock().map(|s| s.config.clone()) else {
            return error_response(500, "InternalServerException", "poisoned", &[]);
        };
        let mut record = BedrockRequest {
            operation,
            model_id,
            signed_headers: Vec::new(),
            request: CloudRequest {
                method: parts.method.clone(),
                path: path.clone(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers.clone(),
                body: body.clone(),
                rejected: None,
            },
        };
        let service = match operation {
            Operation::Messages | Operation::MessagesCountTokens => "bedrock-mantle",
            _ => "bedrock",
        };
        let verdict = authenticate(&config, service, &parts, &body)
            .map(|signed| record.signed_headers = signed)
            .and_then(|()| validate(operation, &config, &parts.headers, &body));
        if let Err((status, code, message)) = verdict {
            record.request.rejected = Some((status, format!("{code}: {message}")));
            self.record(record);
            return error_response(status, code, &message, &[]);
        }
        let (reply, delay) = {
            let Ok(mut s) = self.state.lock() else {
                return error_response(500, "InternalServerException", "poisoned", &[]);
            };
            s.received.push(record.clone());
            let reply = s.queue.pop_front().unwrap_or_else(|| s.default.clone());
            (reply, s.headers_delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.answer(operation, &record, reply)
    }

    fn record(&self, r: BedrockRequest) {
        if let Ok(mut s) = self.state.lock() {
            s.received.push(r);
        }
    }

    fn stream_done(&self) -> impl Fn() + Send + Sync + 'static {
        let state = self.state.clone();
        move || {
            if let Ok(mut s) = state.lock() {
                s.completed_streams += 1;
            }
        }
    }

    fn answer(
        &self,
        operation: Operation,
        record: &BedrockRequest,
        reply: BedrockReply,
    ) -> TestResponse {
        let request_id = "b1e5a1d3-0000-4000-8000-00000000fake";
        match (operation, reply) {
            (
                _,
                BedrockReply::Error {
                    status,
                    code,
                    message,
                    headers,
                },
            ) => error_response(status, &code, &message, &headers),
            (
                Operation::Invoke,
                BedrockReply::Message {
                    text,
                    input_tokens,
                    output_tokens,
                },
            ) => {
                let body = fake_cloud::message_json(
                    "msg_bdrk_01FakeBedrockInvoke",
                    ANSWER_MODEL,
                    &text,
                    input_tokens,
                    output_tokens,
                );
                fake_cloud::raw_response(
                    200,
                    &[
                        ("x-amzn-RequestId".into(), request_id.into()),
                        (
                            "X-Amzn-Bedrock-Input-Token-Count".into(),
                            input_tokens.to_string(),
                        ),
                        (
                            "X-Amzn-Bedrock-Output-Token-Count".into(),
                            output_tokens.to_string(),
                        ),
                        ("X-Amzn-Bedrock-Invocation-Latency".into(), "420".into()),
                    ],
                    body.to_string(),
                )
            }
            (
                Operation::InvokeStream,
                BedrockReply::Message {
                    text,
                    input_tokens,
                    output_tokens,
                },
            ) => self.event_stream(&EventStream::standard(
                input_tokens,
                &fake_cloud::deltas_of(&text),
                output_tokens,
            )),
            (Operation::InvokeStream, BedrockReply::Stream(stream)) => self.event_stream(&stream),
            (Operation::CountTokens, BedrockReply::Message { input_tokens, .. }) => {
                fake_cloud::json_response(200, &json!({"inputTokens": input_tokens}))
            }
            (
                Operation::Messages,
                BedrockReply::Message {
                    text,
                    input_tokens,
                    output_tokens,
                },
            ) => {
                let stream = record.request.json()["stream"] == json!(true);
                fake_cloud::anthropic_answer(
                    CloudReply::message(&text, input_tokens, output_tokens),
                    stream,
                    Style {
                        id: "msg_bdrk_01FakeBedrockMantle",
                        model: ANSWER_MODEL,
                        gap: Duration::from_millis(5),
                        ping: true,
                        headers: &[("x-amzn-requestid", request_id)],
                    },
                    self.stream_done(),
                )
            }
            (Operation::Messages, BedrockReply::Cloud(reply)) => {
                let stream = record.request.json()["stream"] == json!(true);
                fake_cloud::anthropic_answer(
                    reply,
                    stream,
                    Style {
                        id: "msg_bdrk_01FakeBedrockMantle",
                        model: ANSWER_MODEL,
                        gap: Duration::from_millis(5),
                        ping: true,
                        headers: &[("x-amzn-requestid", request_id)],
                    },
                    self.stream_done(),
                )
            }
            (Operation::MessagesCountTokens, BedrockReply::Message { input_tokens, .. }) => {
                fake_cloud::json_response(200, &json!({"input_tokens": input_tokens}))
            }
            (op, _) => error_response(
                500,
                "InternalServerException",
                &format!("fake: no reply scripted for {op:?}"),
                &[],
            ),
        }
    }

    fn event_stream(&self, stream: &EventStream) -> TestResponse {
        let segments: std::collections::VecDeque<Segment> = stream.segments().into();
        let done = self.stream_done();
        let body = futures_util::stream::unfold(
            (segments, Some(done)),
            |(mut segments, mut done)| async move {
                loop {
                    match segments.pop_front() {
                        Some(Segment::Pause(d)) => tokio::time::sleep(d).await,
                        Some(Segment::Bytes(b, delay)) => {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            if segments.is_empty()
                                && let Some(f) = done.take()
                            {
                                f();
                            }
                            return Some((Ok::<_, Infallible>(Frame::data(b)), (segments, done)));
                        }
                        None => return None,
                    }
                }
            },
        );
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(body)));
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        h.insert(
            "x-amzn-bedrock-content-type",
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            "x-amzn-requestid",
            HeaderValue::from_static("b1e5a1d3-0000-4000-8000-00000000fake"),
        );
        resp
    }
}

fn classify(method: &Method, path: &str) -> (Operation, Option<String>) {
    if method != Method::POST {
        return (Operation::Unknown, None);
    }
    match path {
        "/anthropic/v1/messages" => return (Operation::Messages, None),
        "/anthropic/v1/messages/count_tokens" => {
            return (Operation::MessagesCountTokens, None);
        }
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/model/") else {
        return (Operation::Unknown, None);
    };
    let Some((id, op)) = rest.rsplit_once('/') else {
        return (Operation::Unknown, None);
    };
    let id = String::from_utf8_lossy(&sigv4_verify::percent_decode(id)).into_owned();
    let op = match op {
        "invoke" => Operation::Invoke,
        "invoke-with-response-stream" => Operation::InvokeStream,
        "count-tokens" => Operation::CountTokens,
        _ => Operation::Unknown,
    };
    (op, Some(id))
}

type Refusal = (u16, &'static str, String);

/// `Ok(signed headers)` (empty for a bearer API key).
fn authenticate(
    config: &FakeBedrockConfig,
    service: &str,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Vec<String>, Refusal> {
    let authz = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(key) = authz.strip_prefix("Bearer ") {
        return match &config.api_key {
            Some(want) if want == key.trim() => Ok(Vec::new()),
            _ => Err((
                403,
                "UnrecognizedClientException",
                "Invalid API Key format: Must start with pre-defined prefix".to_owned(),
            )),
        };
    }
    let Some(credentials) = &config.credentials else {
        return Err((
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".to_owned(),
        ));
    };
    let received = Received {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        authority: parts.uri.authority().map(|a| a.as_str()),
        body,
    };
    let expected = Expected {
        credentials,
        region: &config.region,
        service,
        now: SystemTime::now(),
        max_skew: Duration::from_secs(15 * 60),
    };
    match sigv4_verify::verify(&received, &expected) {
        Ok(auth) => Ok(auth.signed_headers),
        Err(e) => {
            let status = match e {
                sigv4_verify::SigV4Error::Incomplete(_) => 400,
                _ => 403,
            };
            Err((status, e.code(), e.message().to_owned()))
        }
    }
}

fn malformed(details: &str) -> Refusal {
    (
        400,
        "ValidationException",
        format!("Malformed input request: {details}, please reformat your input and try again."),
    )
}

/// The checks Bedrock makes on a body, by operation.
fn validate(
    operation: Operation,
    config: &FakeBedrockConfig,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), Refusal> {
    match operation {
        Operation::Invoke | Operation::InvokeStream => {
            validate_invoke_body(body, &config.anthropic_version)
        }
        Operation::CountTokens => {
            let v: Value =
                serde_json::from_slice(body).map_err(|_| malformed("#: expected a JSON object"))?;
            let inner = v["input"]["invokeModel"]["body"].as_str().ok_or_else(|| {
                (
                    400,
                    "ValidationException",
                    "1 validation error detected: Value at 'input' failed to satisfy \
                     constraint: Member must not be null"
                        .to_owned(),
                )
            })?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(inner)
                .map_err(|_| {
                    (
                        400,
                        "SerializationException",
                        "input.invokeModel.body is not valid base64".to_owned(),
                    )
                })?;
            validate_invoke_body(&decoded, &config.anthropic_version)
        }
        Operation::Messages | Operation::MessagesCountTokens => {
            if headers.get("anthropic-version").is_none() {
                return Err((
                    400,
                    "ValidationException",
                    "anthropic-version: header is required".to_owned(),
                ));
            }
            let v: Value =
                serde_json::from_slice(body).map_err(|_| malformed("#: expected a JSON object"))?;
            if !v["model"].is_string() {
                return Err((
                    400,
                    "ValidationException",
                    "model: Field required".to_owned(),
                ));
            }
            Ok(())
        }
        Operation::Unknown => Err((
            404,
            "UnknownOperationException",
            "The requested operation is not recognized by the service.".to_owned(),
        )),
    }
}

/// InvokeModel's rules for an Anthropic body.
pub fn validate_invoke_body(body: &[u8], version: &str) -> Result<(), (u16, &'static str, String)> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| malformed("#: expected a JSON object"))?;
    let Some(obj) = v.as_object() else {
        return Err(malformed("#: expected type: JSONObject"));
    };
    let extraneous: String = ["stream", "model", "tags"]
        .iter()
        .filter(|k| obj.contains_key(**k))
        .map(|k| format!("#: extraneous key [{k}] is not permitted"))
        .collect();
    if !extraneous.is_empty() {
        return Err(malformed(&extraneous));
    }
    for required in ["anthropic_version", "max_tokens", "messages"] {
        if !obj.contains_key(required) {
            return Err(malformed(&format!(
                "#: required key [{required}] not found"
            )));
        }
    }
    if obj["anthropic_version"] != json!(version) {
        return Err(malformed(&format!(
            "#/anthropic_version: {} is not a valid enum value",
            obj["anthropic_version"]
        )));
    }
    if let Some(betas) = obj.get("anthropic_beta") {
        let Some(list) = betas.as_array() else {
            return Err(malformed(
                "#/anthropic_beta: expected type: JSONArray, found: String",
            ));
        };
        for b in list {
            let Some(b) = b.as_str() else {
                return Err(malformed("#/anthropic_beta: expected type: String"));
            };
            if b.starts_with("request-tags") {
                return Err((400, "ValidationException", "invalid beta flag".to_owned()));
            }
        }
    }
    Ok(())
}

/// An AWS error answer.
pub fn error_response(
    status: u16,
    code: &str,
    message: &str,
    extra: &[(String, String)],
) -> TestResponse {
    let mut headers = vec![
        (
            "x-amzn-ErrorType".to_owned(),
            format!("{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        ),
        (
            "x-amzn-RequestId".to_owned(),
            "b1e5a1d3-0000-4000-8000-0000000000e1".to_owned(),
        ),
    ];
    headers.extend(extra.iter().cloned());
    fake_cloud::raw_response(status, &headers, json!({"message": message}).to_string())
}

// ---- AWS event-stream encoding ----

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as the event stream uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One event-stream message with string headers.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(h.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A `chunk` frame for one Anthropic event (with Bedrock's random-length `p` padding).
pub fn chunk_frame(event: &Value, index: usize) -> Vec<u8> {
    let bytes = base64::engine::general_purpose::STANDARD.encode(event.to_string());
    let pad = PADDING
        .get(..(index * 7) % PADDING.len() + 1)
        .unwrap_or("a");
    let payload = json!({"bytes": bytes, "p": pad}).to_string();
    encode_message(
        &[
            (":event-type", "chunk"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

/// A modeled exception frame (e.g. `throttlingException`).
pub fn exception_frame(kind: &str, message: &str) -> Vec<u8> {
    encode_message(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({"message": message}).to_string().as_bytes(),
    )
}

/// A decoded message: string headers and payload.
pub type Decoded = (Vec<(String, String)>, Vec<u8>);

/// Decodes a whole buffer of event-stream messages, checking both CRCs.
pub fn decode_messages(mut buf: &[u8]) -> Result<Vec<Decoded>, String> {
    let be32 = |b: &[u8]| -> Option<u32> { Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?)) };
    let mut out = Vec::new();
    while !buf.is_empty() {
        let total = be32(buf).ok_or("short prelude")? as usize;
        let hlen = be32(buf.get(4..).ok_or("short prelude")?).ok_or("short prelude")? as usize;
        let pcrc = be32(buf.get(8..).ok_or("short prelude")?).ok_or("short prelude")?;
        if crc32(buf.get(..8).ok_or("short")?) != pcrc {
            return Err("prelude CRC mismatch".into());
        }
        let msg = buf.get(..total).ok_or("truncated message")?;
        let mcrc = be32(msg.get(total - 4..).ok_or("short")?).ok_or("short")?;
        if crc32(msg.get(..total - 4).ok_or("short")?) != mcrc {
            return Err("message CRC mismatch".into());
        }
        let mut headers = Vec::new();
        let mut h = msg.get(12..12 + hlen).ok_or("bad header length")?;
        while !h.is_empty() {
            let nlen = usize::from(*h.first().ok_or("short header")?);
            let name = String::from_utf8_lossy(h.get(1..1 + nlen).ok_or("short")?).into_owned();
            let ty = *h.get(1 + nlen).ok_or("short")?;
            if ty != 7 {
                return Err(format!("header type {ty} not supported by this decoder"));
            }
            let vlen_bytes = h.get(2 + nlen..4 + nlen).ok_or("short")?;
            let vlen = usize::from(u16::from_be_bytes([vlen_bytes[0], vlen_bytes[1]]));
            let value = String::from_utf8_lossy(h.get(4 + nlen..4 + nlen + vlen).ok_or("short")?)
                .into_owned();
            headers.push((name, value));
            h = h.get(4 + nlen + vlen..).ok_or("short")?;
        }
        let payload = msg
            .get(12 + hlen..total - 4)
            .ok_or("short payload")?
            .to_vec();
        out.push((headers, payload));
        buf = buf.get(total..).ok_or("short")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_matches_the_published_event_stream_vector() {
        let frame = encode_message(&[], br#"{"foo": "bar"}"#);
        let mut want = hex::decode("0000001e00000000baf2f68a").unwrap();
        want.extend_from_slice(br#"{"foo": "bar"}"#);
        want.extend_from_slice(&hex::decode("ae7258e4").unwrap());
        assert_eq!(frame, want);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn standard_stream_decodes_back_to_the_anthropic_events() {
        let stream = EventStream::standard(9, &["Hel", "lo"], 3);
        let mut bytes = Vec::new();
        for s in stream.segments() {
            if let Segment::Bytes(b, _) = s {
                bytes.extend_from_slice(&b);
            }
        }
        let messages = decode_messages(&bytes).unwrap();
        let events: Vec<Value> = messages
            .iter()
            .map(|(headers, payload)| {
                assert!(headers.contains(&(":event-type".into(), "chunk".into())));
                assert!(headers.contains(&(":message-type".into(), "event".into())));
                let v: Value = serde_json::from_slice(payload).unwrap();
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(v["bytes"].as_str().unwrap())
                    .unwrap();
                serde_json::from_slice(&raw).unwrap()
            })
            .collect();
        assert_eq!(events, standard_events(9, &["Hel", "lo"], 3));
        assert!(events.iter().all(|e| e["type"] != "ping"));
        assert_eq!(
            events.last().unwrap()["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
            3
        );
    }

    #[test]
    fn corrupted_and_exception_frames_are_what_they_claim() {
        let stream = EventStream::standard(1, &["x"], 1)
            .corrupt_at(2)
            .exception_after(4, "throttlingException", "slow down");
        let bytes: Vec<u8> = stream
            .segments()
            .into_iter()
            .flat_map(|s| match s {
                Segment::Bytes(b, _) => b.to_vec(),
                Segment::Pause(_) => Vec::new(),
            })
            .collect();
        assert_eq!(decode_messages(&bytes).unwrap_err(), "message CRC mismatch");
        let exception = exception_frame("throttlingException", "slow down");
        let decoded = decode_messages(&exception).unwrap();
        assert!(
            decoded[0]
                .0
                .contains(&(":message-type".into(), "exception".into()))
        );
    }

    #[test]
    fn invoke_bodies_follow_bedrock_rules() {
        let ok = json!({"anthropic_version": BEDROCK_VERSION, "max_tokens": 5,
                        "messages": [], "anthropic_beta": ["a", "b"]});
        validate_invoke_body(ok.to_string().as_bytes(), BEDROCK_VERSION).unwrap();
        let bad = json!({"anthropic_version": BEDROCK_VERSION, "max_tokens": 5,
                         "messages": [], "model": "x"});
        let (status, code, message) =
            validate_invoke_body(bad.to_string().as_bytes(), BEDROCK_VERSION).unwrap_err();
        assert_eq!((status, code), (400, "ValidationException"));
        assert_eq!(
            message,
            "Malformed input request: #: extraneous key [model] is not permitted, please \
             reformat your input and try again."
        );
        for bad in [
            json!({"anthropic_version": "2023-06-01", "max_tokens": 5, "messages": []}),
            json!({"anthropic_version": BEDROCK_VERSION, "max_tokens": 5, "messages": [],
                   "anthropic_beta": "a,b"}),
            json!({"anthropic_version": BEDROCK_VERSION, "max_tokens": 5, "messages": [],
                   "anthropic_beta": ["request-tags-2026-01-01"]}),
            json!({"anthropic_version": BEDROCK_VERSION, "max_tokens": 5, "messages": [],
                   "tags": {"a": "b"}}),
            json!({"max_tokens": 5, "messages": []}),
        ] {
            assert!(
                validate_invoke_body(bad.to_string().as_bytes(), BEDROCK_VERSION).is_err(),
                "{bad}"
            );
        }
    }

    async fn signed_post(
        url: &str,
        path: &str,
        body: &str,
        creds: &AwsCredentials,
        service: &str,
    ) -> reqwest::Response {
        let addr = url.trim_start_matches("http://");
        let mut headers = http::HeaderMap::new();
        headers.insert("host", addr.parse().unwrap());
        headers.insert(
            "x-amz-date",
            sigv4_verify::format_amz_date(SystemTime::now())
                .parse()
                .unwrap(),
        );
        headers.insert("content-type", "application/json".parse().unwrap());
        let req = Received {
            method: &Method::POST,
            path,
            query: None,
            headers: &headers,
            authority: None,
            body: body.as_bytes(),
        };
        let authz = sigv4_verify::sign(
            &req,
            &["content-type", "host", "x-amz-date"],
            creds,
            "us-east-1",
            service,
        )
        .unwrap();
        reqwest::Client::new()
            .post(format!("{url}{path}"))
            .header("x-amz-date", headers["x-amz-date"].clone())
            .header("content-type", "application/json")
            .header("authorization", authz)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn fake_checks_signature_and_body_and_answers_invoke() {
        let token = CancellationToken::new();
        let config = FakeBedrockConfig::sigv4("us-east-1", "AKIDTEST", "secret/key", None);
        let creds = config.credentials.clone().unwrap();
        let fake = FakeBedrock::start(config, token.clone()).await.unwrap();
        let path = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke";
        let body = json!({"anthropic_version": BEDROCK_VERSION, "max_tokens": 5,
                          "messages": [{"role": "user", "content": "hi"}]})
        .to_string();

        let resp = signed_post(&fake.url(), path, &body, &creds, "bedrock").await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["model"], ANSWER_MODEL);
        assert!(v["id"].as_str().unwrap().starts_with("msg_bdrk_"));
        let got = fake.accepted();
        assert_eq!(
            got[0].model_id.as_deref(),
            Some("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
        );

        let resp = signed_post(&fake.url(), path, &body, &creds, "bedrock-mantle").await;
        assert_eq!(resp.status(), 403);

        let with_model = json!({"anthropic_version": BEDROCK_VERSION, "max_tokens": 5,
                                "messages": [], "model": "m"})
        .to_string();
        let resp = signed_post(&fake.url(), path, &with_model, &creds, "bedrock").await;
        assert_eq!(resp.status(), 400);
        assert!(
            resp.headers()["x-amzn-errortype"]
                .to_str()
                .unwrap()
                .starts_with("ValidationException:")
        );

        let count = json!({"input": {"invokeModel": {"body":
            base64::engine::general_purpose::STANDARD.encode(&body)}}})
        .to_string();
        let resp = signed_post(
            &fake.url(),
            "/model/anthropic.claude-opus-4-8/count-tokens",
            &count,
            &creds,
            "bedrock",
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"inputTokens": 14})
        );

        fake.reply_with(BedrockReply::Stream(
            EventStream::standard(2, &["a", "b"], 2).split_into(1, Duration::ZERO),
        ));
        let resp = signed_post(
            &fake.url(),
            "/model/x/invoke-with-response-stream",
            &body,
            &creds,
            "bedrock",
        )
        .await;
        assert_eq!(
            resp.headers()["content-type"],
            "application/vnd.amazon.eventstream"
        );
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(decode_messages(&bytes).unwrap().len(), 7);
        assert_eq!(fake.completed_streams(), 1);
        token.cancel();
    }
}
