//! Chaos with real processes on one machine. Under steady load through two data planes the
//! control plane is killed (`SIGKILL`), PostgreSQL is stopped and restarted, the control plane
//! comes back as a new process, one data plane is killed (`SIGKILL`) and started again on its
//! spool, and the other is stopped gracefully (`SIGTERM`) and started again. The clients see no
//! failure beyond what the drain contract allows (docs/operations.md, "Shutdown and draining"),
//! and every request a client saw succeed has exactly one usage record afterwards.
//!
//! A client may see a request fail only like this:
//! - no response (connection refused or closed) from a data plane between the signal and its
//!   return to readiness; the client then goes to the other data plane, as a load balancer
//!   retrying a connection would;
//! - an SSE `error` event (or a 5xx) of type `overloaded_error` from a data plane draining
//!   (such a stream is still metered);
//! - anything short of a complete answer for a request in flight on the data plane it killed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tollgate_e2e::binaries::binary;
use tollgate_e2e::postgres::{OwnedCluster, TestDatabase, target_dir};
use tollgate_e2e::servers::{ControlPlane, DataPlane, seed_alice};
use tollgate_e2e::stack::{OPUS, SONNET, secret_value, target};
use tollgate_e2e::{FakeAnthropic, Reply};
use tollgate_proto::v1 as pb;

use crate::support::{eventually, message_body, sse_events};

/// Answered by a fake that streams; [`HAIKU`] by one that answers with a JSON message;
/// [`SLOW`] by one that streams slowly (only the requests the test holds in flight).
const STREAMED_MODEL: &str = SONNET;
const HAIKU: &str = "claude-haiku-4-5";
const SLOW: &str = OPUS;
/// Concurrent clients of the load.
const CLIENTS: usize = 4;
/// The data planes' `--shutdown-drain-timeout-secs`.
const DRAIN_TIMEOUT_SECS: u64 = 1;
/// A streamed answer is this many text deltas, one every [`STREAM_GAP`] (about a second), or
/// every [`SLOW_STREAM_GAP`] (about five seconds: longer than the drain period).
const STREAM_DELTAS: usize = 40;
const STREAM_GAP: Duration = Duration::from_millis(20);
const SLOW_STREAM_GAP: Duration = Duration::from_millis(100);
/// The text of a non-streamed answer.
const ANSWER: &str = "hello from the fake";

#[tokio::test]
async fn clients_see_only_drain_contract_failures_and_every_served_request_is_recorded_once() {
    // Built (when out of date) before the clock starts.
    binary("tollgate-control-plane").await.unwrap();
    binary("tollgate-data-plane").await.unwrap();
    let setup = Instant::now();
    let root = CancellationToken::new();
    let mut cluster = OwnedCluster::start("tollgate-pg-chaos-").await.unwrap();
    let db = TestDatabase::create_on(&cluster.admin_url()).await.unwrap();
    let fakes = Fakes::start(&root).await;

    let files = Files::new();
    let mut cp = ControlPlane::new(files.path(), &db.url).unwrap();
    cp.start().await.unwrap();
    let user_key = seed(&cp, &fakes).await;
    let mut dps = [
        data_plane("dp1", files.path(), &cp),
        data_plane("dp2", files.path(), &cp),
    ];
    for dp in &mut dps {
        dp.start().await.unwrap();
    }

    eprintln!("chaos: servers up in {}ms", ms(setup, Instant::now()));
    let load = Arc::new(Load::new(
        [dps[0].url.clone(), dps[1].url.clone()],
        user_key,
    ));
    let stop = CancellationToken::new();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(drive(load.clone(), stop.clone())))
        .collect();
    let mut chaos = Chaos::default();

    chaos.phase("steady load", &load);
    pause(3).await;

    chaos.phase("control plane killed", &load);
    cp.kill().await.unwrap();
    pause(3).await;

    chaos.phase("postgres restarting, control plane down", &load);
    cluster.stop().await.unwrap();
    pause(1).await;
    cluster.restart().await.unwrap();
    pause(2).await;

    chaos.phase("control plane started again", &load);
    cp.start().await.unwrap();
    pause(3).await;

    chaos.phase("dp1 killed", &load);
    let probe = in_flight_stream(&load, 0).await;
    eprintln!(
        "chaos: dp1 usage backlog just before SIGKILL: {}",
        usage_backlog(&dps[0]).await
    );
    let from = Instant::now();
    dps[0].kill().await.unwrap();
    let dead_at = Instant::now();
    load.take_out_of_rotation(0);
    pause(1).await;
    dps[0].start().await.unwrap();
    load.put_in_rotation(0);
    chaos.window(0, Disruption::Kill { dead_at }, from);
    let _ = join(probe).await;
    pause(2).await;

    chaos.phase("dp2 restarted gracefully", &load);
    let drained_probe = in_flight_stream(&load, 1).await;
    let from = Instant::now();
    let graceful = dps[1]
        .terminate(Duration::from_secs(2 * DRAIN_TIMEOUT_SECS + 15))
        .await
        .unwrap();
    load.take_out_of_rotation(1);
    assert!(
        graceful,
        "dp2 did not exit 0 after SIGTERM:\n{}",
        dps[1].output()
    );
    dps[1].start().await.unwrap();
    load.put_in_rotation(1);
    chaos.window(1, Disruption::Terminate, from);
    let drained_probe = join(drained_probe).await;
    pause(3).await;

    chaos.phase("stopping", &load);
    stop.cancel();
    for client in clients {
        tokio::time::timeout(Duration::from_secs(40), client)
            .await
            .expect("a load client ends within its request timeout")
            .unwrap();
    }

    // What the clients saw.
    let seen = load.seen();
    let report = chaos.judge(&seen, &load);
    eprintln!("{}\n{}", report.summary, report.timeline);
    assert!(
        report.violations.is_empty(),
        "{} requests failed beyond what the drain contract allows:\n{}\n\n{}",
        report.violations.len(),
        report.violations.join("\n"),
        report.timeline
    );
    assert!(
        matches!(&drained_probe.answer, Answer::StreamError { error_type, .. } if error_type == "overloaded_error"),
        "a stream still open when dp2's drain period ended must end with an `overloaded_error` \
         event; the client saw: {}\n{}",
        drained_probe.answer.describe(),
        report.timeline
    );
    for (phase, served) in &report.served_per_phase {
        assert!(
            *served > 0,
            "no request served during \"{phase}\"\n{}",
            report.timeline
        );
    }

    // What the ledger holds: exactly one record for every request served (and every stream
    // ended by the drain), and no request id twice.
    let pool = db.pool().await.unwrap();
    let recorded = eventually(Duration::from_secs(40), || async {
        let rows = usage_by_request(&pool).await;
        report.metered.iter().all(|s| recorded_once(s, &rows))
    })
    .await;
    let rows = usage_by_request(&pool).await;
    eprintln!("chaos: usage checked at +{}ms", ms(load.t0, Instant::now()));
    if !recorded {
        let missing: Vec<String> = report
            .metered
            .iter()
            .filter(|s| !recorded_once(s, &rows))
            .map(|s| {
                let recorded = s.request_id.as_ref().and_then(|id| rows.get(id));
                format!("{} -> {recorded:?}", chaos.describe(s, &load))
            })
            .collect();
        panic!(
            "{} of {} requests served (or drained) have no usage record, or more than one:\n{}\n\n{}",
            missing.len(),
            report.metered.len(),
            missing.join("\n"),
            chaos.timeline(&load)
        );
    }
    let twice: Vec<_> = rows.iter().filter(|(_, r)| r.count != 1).collect();
    assert!(twice.is_empty(), "request ids recorded twice: {twice:?}");
    let client_ids: HashSet<&String> = seen.iter().filter_map(|s| s.request_id.as_ref()).collect();
    let unseen = rows.keys().filter(|id| !client_ids.contains(id)).count();
    eprintln!(
        "usage records: {} ({} for requests whose answer no client saw)",
        rows.len(),
        unseen
    );
    pool.close().await;
    root.cancel();
}

// ---------------------------------------------------------------------------------------
// The chaos timeline and the judgement of what the clients saw.

/// How a data plane was disrupted.
#[derive(Debug, Clone, Copy)]
enum Disruption {
    /// `SIGKILL`; the process was reaped at `dead_at`.
    Kill { dead_at: Instant },
    /// `SIGTERM`: drain, then exit.
    Terminate,
}

/// From the signal to a data plane until it was ready again.
#[derive(Debug, Clone, Copy)]
struct Window {
    dp: usize,
    disruption: Disruption,
    from: Instant,
    until: Instant,
}

#[derive(Default)]
struct Chaos {
    phases: Vec<(String, Instant)>,
    windows: Vec<Window>,
}

struct Report {
    violations: Vec<String>,
    /// Requests that must have exactly one usage record.
    metered: Vec<Seen>,
    served_per_phase: Vec<(String, usize)>,
    summary: String,
    timeline: String,
}

impl Chaos {
    fn phase(&mut self, name: &str, load: &Load) {
        eprintln!("chaos: +{}ms {name}", ms(load.t0, Instant::now()));
        self.phases.push((name.to_owned(), Instant::now()));
    }

    /// Records that data plane `dp` was disrupted from `from` until now.
    fn window(&mut self, dp: usize, disruption: Disruption, from: Instant) {
        self.windows.push(Window {
            dp,
            disruption,
            from,
            until: Instant::now(),
        });
    }

    fn judge(&self, seen: &[Seen], load: &Load) -> Report {
        let mut violations = Vec::new();
        let mut metered = Vec::new();
        let mut excused: HashMap<&'static str, usize> = HashMap::new();
        let mut ids: HashMap<&String, usize> = HashMap::new();
        for s in seen {
            if let Some(id) = &s.request_id {
                *ids.entry(id).or_default() += 1;
            }
            match &s.answer {
                Answer::Complete if s.request_id.is_none() => {
                    violations.push(format!("no request-id header: {}", self.describe(s, load)));
                }
                Answer::Complete => metered.push(s.clone()),
                _ => match self.excuse(s) {
                    Some(reason) => {
                        *excused.entry(reason).or_default() += 1;
                        if reason == DRAINED_STREAM {
                            metered.push(s.clone());
                        }
                    }
                    None => violations.push(self.describe(s, load)),
                },
            }
        }
        for (id, n) in ids {
            if n > 1 {
                violations.push(format!("request id {id} answered {n} times"));
            }
        }
        let served_per_phase = self
            .phases
            .iter()
            .enumerate()
            .filter(|(i, _)| i + 1 < self.phases.len())
            .map(|(i, (name, start))| {
                let end = self.phases[i + 1].1;
                let served = seen
                    .iter()
                    .filter(|s| matches!(s.answer, Answer::Complete))
                    .filter(|s| s.ended >= *start && s.ended < end)
                    .count();
                (name.clone(), served)
            })
            .collect::<Vec<_>>();
        let complete = seen
            .iter()
            .filter(|s| matches!(s.answer, Answer::Complete))
            .count();
        let summary = format!(
            "chaos: {} requests, {complete} complete, excused {excused:?}, {} violations; \
             complete per phase {served_per_phase:?}",
            seen.len(),
            violations.len()
        );
        Report {
            violations,
            metered,
            served_per_phase,
            summary,
            timeline: self.timeline(load),
        }
    }

    /// Why a request that did not end complete is allowed to, if it is.
    fn excuse(&self, s: &Seen) -> Option<&'static str> {
        let touches = |w: &&Window| w.dp == s.dp && s.started <= w.until && s.ended >= w.from;
        for w in self.windows.iter().filter(touches) {
            match (w.disruption, &s.answer) {
                (Disruption::Kill { dead_at }, _) if s.started <= dead_at => {
                    return Some("in flight on the killed data plane");
                }
                (_, Answer::NoResponse(_)) => return Some("no response from a data plane down"),
                (Disruption::Terminate, Answer::StreamError { error_type, .. })
                    if error_type == "overloaded_error" =>
                {
                    return Some(DRAINED_STREAM);
                }
                (
                    Disruption::Terminate,
                    Answer::Error {
                        status, error_type, ..
                    },
                ) if *status >= 500 && error_type == "overloaded_error" => {
                    return Some("overloaded while draining");
                }
                _ => {}
            }
        }
        None
    }

    fn describe(&self, s: &Seen, load: &Load) -> String {
        format!(
            "  dp{} {} started +{}ms ended +{}ms request-id {}: {}",
            s.dp + 1,
            if s.stream { "stream " } else { "message" },
            ms(load.t0, s.started),
            ms(load.t0, s.ended),
            s.request_id.as_deref().unwrap_or("-"),
            s.answer.describe()
        )
    }

    fn timeline(&self, load: &Load) -> String {
        let mut lines = vec!["timeline:".to_owned()];
        for (name, at) in &self.phases {
            lines.push(format!("  +{}ms phase \"{name}\"", ms(load.t0, *at)));
        }
        for w in &self.windows {
            let what = match w.disruption {
                Disruption::Kill { dead_at } => {
                    format!("SIGKILL, reaped at +{}ms", ms(load.t0, dead_at))
                }
                Disruption::Terminate => "SIGTERM".to_owned(),
            };
            lines.push(format!(
                "  dp{} {what}: disrupted from +{}ms until ready again at +{}ms",
                w.dp + 1,
                ms(load.t0, w.from),
                ms(load.t0, w.until)
            ));
        }
        lines.join("\n")
    }
}

const DRAINED_STREAM: &str = "stream ended by the drain";

/// Milliseconds from the start of the load.
fn ms(t0: Instant, at: Instant) -> u128 {
    at.saturating_duration_since(t0).as_millis()
}

async fn pause(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

// ---------------------------------------------------------------------------------------
// The load: clients alternating between the data planes, streams and not.

/// What a client saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    dp: usize,
    stream: bool,
    started: Instant,
    ended: Instant,
    request_id: Option<String>,
    answer: Answer,
}

#[derive(Debug, Clone)]
enum Answer {
    /// 200 and the whole answer the provider sent.
    Complete,
    /// No response: the connection was refused or closed first.
    NoResponse(String),
    /// A status other than 200.
    Error {
        status: u16,
        error_type: String,
        body: String,
    },
    /// 200, then an SSE `error` event.
    StreamError { error_type: String, message: String },
    /// 200, then less (or other) than the provider sent, without an `error` event.
    Incomplete(String),
}

impl Answer {
    fn describe(&self) -> String {
        match self {
            Answer::Complete => "complete".to_owned(),
            Answer::NoResponse(e) => format!("no response: {e}"),
            Answer::Error {
                status,
                error_type,
                body,
            } => format!("status {status} ({error_type}): {body}"),
            Answer::StreamError {
                error_type,
                message,
            } => format!("200, then an SSE error event {error_type}: {message}"),
            Answer::Incomplete(what) => format!("200, then {what}"),
        }
    }
}

struct Load {
    urls: [String; 2],
    key: String,
    /// Like a load balancer's view: clients send only to data planes in rotation.
    in_rotation: [AtomicBool; 2],
    next: AtomicUsize,
    t0: Instant,
    seen: Mutex<Vec<Seen>>,
}

impl Load {
    fn new(urls: [String; 2], key: String) -> Load {
        Load {
            urls,
            key,
            in_rotation: [AtomicBool::new(true), AtomicBool::new(true)],
            next: AtomicUsize::new(0),
            t0: Instant::now(),
            seen: Mutex::new(Vec::new()),
        }
    }

    fn take_out_of_rotation(&self, dp: usize) {
        self.in_rotation[dp].store(false, Ordering::SeqCst);
    }

    fn put_in_rotation(&self, dp: usize) {
        self.in_rotation[dp].store(true, Ordering::SeqCst);
    }

    fn record(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// One client: requests back to back until `stop`, alternating data planes and kinds; after
/// no response, the same kind goes to the other data plane.
async fn drive(load: Arc<Load>, stop: CancellationToken) {
    let client = http_client();
    let mut retry_on = None;
    while !stop.is_cancelled() {
        let n = load.next.fetch_add(1, Ordering::Relaxed);
        let model = if (n / 2).is_multiple_of(2) {
            STREAMED_MODEL
        } else {
            HAIKU
        };
        let mut dp = retry_on.take().unwrap_or(n % 2);
        if !load.in_rotation[dp].load(Ordering::SeqCst) {
            dp = 1 - dp;
        }
        let seen = exchange(&client, &load, dp, model, None).await;
        if matches!(seen.answer, Answer::NoResponse(_)) {
            retry_on = Some(1 - dp);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        load.record(seen);
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Starts a slow stream on data plane `dp` (recorded with the load) and returns once its
/// response has begun, so it is in flight for what follows.
async fn in_flight_stream(load: &Arc<Load>, dp: usize) -> tokio::task::JoinHandle<Seen> {
    let (begun, begun_rx) = oneshot::channel();
    let load = load.clone();
    let task = tokio::spawn(async move {
        let seen = exchange(&http_client(), &load, dp, SLOW, Some(begun)).await;
        load.record(seen.clone());
        seen
    });
    let _ = tokio::time::timeout(Duration::from_secs(10), begun_rx).await;
    task
}

async fn join(task: tokio::task::JoinHandle<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(40), task)
        .await
        .expect("a probe request ends within its timeout")
        .unwrap()
}

async fn exchange(
    client: &reqwest::Client,
    load: &Load,
    dp: usize,
    model: &str,
    begun: Option<oneshot::Sender<()>>,
) -> Seen {
    let started = Instant::now();
    let stream = model != HAIKU;
    let sent = client
        .post(format!("{}/v1/messages", load.urls[dp]))
        .header("x-api-key", &load.key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(message_body(model, stream))
        .send()
        .await;
    let (request_id, answer) = match sent {
        Err(e) => (None, Answer::NoResponse(error_chain(&e))),
        Ok(resp) => {
            let request_id = resp
                .headers()
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(begun) = begun {
                let _ = begun.send(());
            }
            (request_id, read_answer(resp, stream).await)
        }
    };
    Seen {
        dp,
        stream,
        started,
        ended: Instant::now(),
        request_id,
        answer,
    }
}

async fn read_answer(mut resp: reqwest::Response, stream: bool) -> Answer {
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    let mut cut = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                cut = Some(error_chain(&e));
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    if status != 200 {
        let error_type = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Answer::Error {
            status,
            error_type,
            body: text,
        };
    }
    if stream {
        judge_stream(&text, cut)
    } else {
        judge_message(&text, cut)
    }
}

fn judge_stream(text: &str, cut: Option<String>) -> Answer {
    let events = sse_events(text);
    if let Some((_, data)) = events.iter().find(|(event, _)| event == "error") {
        let v: Value = serde_json::from_str(data).unwrap_or_default();
        return Answer::StreamError {
            error_type: v["error"]["type"].as_str().unwrap_or_default().to_owned(),
            message: v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
    }
    let streamed: String = events
        .iter()
        .filter(|(event, _)| event == "content_block_delta")
        .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    let last = events.last().map_or("", |(event, _)| event.as_str());
    if let Some(e) = cut {
        Answer::Incomplete(format!(
            "the body failed after {} events: {e}",
            events.len()
        ))
    } else if last != "message_stop" || !text.ends_with("\n\n") {
        Answer::Incomplete(format!(
            "the stream ended after {} events, the last `{last}`, with neither `message_stop` \
             nor an `error` event",
            events.len()
        ))
    } else if streamed != streamed_text() {
        Answer::Incomplete(format!(
            "a stream whose text is not what the provider sent: {streamed:?}"
        ))
    } else {
        Answer::Complete
    }
}

fn judge_message(text: &str, cut: Option<String>) -> Answer {
    if let Some(e) = cut {
        return Answer::Incomplete(format!("the body failed: {e}"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v["type"] == "message" && v["content"][0]["text"] == ANSWER => Answer::Complete,
        _ => Answer::Incomplete(format!("a body that is not the provider's message: {text}")),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn stream_reply(model: &str, gap: Duration) -> Reply {
    let deltas: Vec<String> = (0..STREAM_DELTAS).map(|i| format!("w{i} ")).collect();
    let deltas: Vec<&str> = deltas.iter().map(String::as_str).collect();
    let Reply::Sse { events, .. } = Reply::stream(model, 25, &deltas, 9) else {
        unreachable!("Reply::stream is SSE")
    };
    Reply::Sse { events, gap }
}

fn streamed_text() -> String {
    (0..STREAM_DELTAS).map(|i| format!("w{i} ")).collect()
}

// ---------------------------------------------------------------------------------------
// The servers: real processes.

/// The working directory of the processes (keys, spools, logs); kept, and named, when the
/// test panics.
struct Files {
    dir: Option<TempDir>,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-chaos-")
            .tempdir_in(target_dir())
            .unwrap();
        Files { dir: Some(dir) }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), TempDir::path)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("chaos: process logs kept in {}", dir.keep().display());
        }
    }
}

/// A data plane with its own spool in `dir` and the short drain period.
fn data_plane(name: &str, dir: &Path, cp: &ControlPlane) -> DataPlane {
    let mut dp = DataPlane::new(name, dir, cp).unwrap();
    dp.arg(
        "--spool-path",
        dir.join(format!("{name}.spool")).display().to_string(),
    )
    .arg(
        "--shutdown-drain-timeout-secs",
        DRAIN_TIMEOUT_SECS.to_string(),
    );
    dp
}

/// The data plane's `tollgate_usage_backlog` (records not yet acknowledged), from `/metrics`.
async fn usage_backlog(dp: &DataPlane) -> String {
    let metrics = reqwest::get(format!("{}/metrics", dp.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .filter(|l| l.starts_with("tollgate_usage_backlog"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The providers: each fake answers every request the same way, so each model has its own.
struct Fakes {
    streaming: FakeAnthropic,
    messages: FakeAnthropic,
    slow: FakeAnthropic,
}

impl Fakes {
    async fn start(root: &CancellationToken) -> Fakes {
        let streaming = FakeAnthropic::start(root.child_token()).await.unwrap();
        streaming.reply_with(stream_reply(STREAMED_MODEL, STREAM_GAP));
        let messages = FakeAnthropic::start(root.child_token()).await.unwrap();
        messages.reply_with(Reply::message(HAIKU, ANSWER, 12, 5));
        let slow = FakeAnthropic::start(root.child_token()).await.unwrap();
        slow.reply_with(stream_reply(SLOW, SLOW_STREAM_GAP));
        Fakes {
            streaming,
            messages,
            slow,
        }
    }
}

/// A provider and a model routed to it per fake, a group allowed every model, and a user with
/// an API key; returns the key.
async fn seed(cp: &ControlPlane, fakes: &Fakes) -> String {
    let mut a = tollgate_cli::admin::connect(&cp.grpc_url, &cp.admin_key().unwrap())
        .await
        .unwrap();
    for (provider, fake, model) in [
        ("fake-stream", &fakes.streaming, STREAMED_MODEL),
        ("fake-json", &fakes.messages, HAIKU),
        ("fake-slow", &fakes.slow, SLOW),
    ] {
        a.create_provider(pb::CreateProviderRequest {
            name: provider.into(),
            kind: pb::ProviderKind::Anthropic as i32,
            config: Some(pb::ProviderConfig {
                base_url: fake.url(),
                api_key: secret_value("sk-fake"),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        a.upsert_model(pb::UpsertModelRequest {
            id: model.into(),
            display_name: model.into(),
            max_input_tokens: 200_000,
        })
        .await
        .unwrap();
        a.set_route(pb::SetRouteRequest {
            model: model.into(),
            targets: vec![target(provider, "", None)],
        })
        .await
        .unwrap();
    }
    let models = vec![STREAMED_MODEL.into(), HAIKU.into(), SLOW.into()];
    seed_alice(&mut a, models).await.unwrap()
}

/// The usage records of one request id.
struct Recorded {
    count: i64,
    data_plane_id: String,
    outcome: String,
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} record(s), by {}, outcome {}",
            self.count, self.data_plane_id, self.outcome
        )
    }
}

/// Whether the request has exactly one usage record.
fn recorded_once(s: &Seen, rows: &HashMap<String, Recorded>) -> bool {
    s.request_id
        .as_ref()
        .and_then(|id| rows.get(id))
        .is_some_and(|r| r.count == 1)
}

/// Usage records by request id.
async fn usage_by_request(pool: &sqlx::PgPool) -> HashMap<String, Recorded> {
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT request_id::text, count(*), min(data_plane_id), min(outcome) \
         FROM usage_records GROUP BY request_id",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    rows.into_iter()
        .map(|(id, count, data_plane_id, outcome)| {
            (
                id,
                Recorded {
                    count,
                    data_plane_id,
                    outcome,
                },
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: a private cluster stopped and started again on the same port.
