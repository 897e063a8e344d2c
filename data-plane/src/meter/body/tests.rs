use std::time::Instant;

use http_body_util::StreamBody;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::*;
use crate::meter::SseUsageScanner;
use crate::usage::{UsageRecord, test_record, usage_channel};

type FrameTx = mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>;

fn upstream() -> (FrameTx, UpstreamBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        tx,
        StreamBody::new(UnboundedReceiverStream::new(rx)).boxed_unsync(),
    )
}

fn metered(
    inner: UpstreamBody,
    status: u16,
    timeout: Duration,
) -> (MeteredBody, crate::usage::UsageQueue, TaskTracker) {
    let (sink, queue) = usage_channel();
    let mut record = test_record("r1");
    record.status = status;
    let tracker = TaskTracker::new();
    let drain = DrainPolicy {
        timeout,
        tracker: tracker.clone(),
        shutdown: CancellationToken::new(),
        shutdown_grace: Duration::from_secs(1),
        drain_over: CancellationToken::new(),
    };
    let pending = PendingUsage::new(record, Instant::now(), sink);
    let body = MeteredBody::new(inner, Meter::Sse(SseUsageScanner::new()), pending, drain);
    (body, queue, tracker)
}

fn send(tx: &FrameTx, text: &str) {
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(text.as_bytes()))))
        .unwrap();
}

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
const DELTA: &str =
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":20}}\n\n";

async fn only_record(queue: &mut crate::usage::UsageQueue) -> UsageRecord {
    let record = queue.recv().await.unwrap();
    assert!(queue.try_recv().is_err(), "exactly one record");
    record
}

#[tokio::test]
async fn complete_stream_is_recorded_once_as_complete() {
    let (tx, inner) = upstream();
    let (mut body, mut queue, _tracker) = metered(inner, 200, Duration::from_secs(5));
    send(&tx, START);
    send(&tx, DELTA);
    drop(tx);
    let mut seen = Vec::new();
    while let Some(frame) = body.frame().await {
        seen.extend_from_slice(frame.unwrap().data_ref().unwrap());
    }
    assert_eq!(seen, [START, DELTA].concat().as_bytes());
    drop(body);
    let record = only_record(&mut queue).await;
    assert_eq!(record.outcome, Outcome::Complete);
    assert_eq!((record.input_tokens, record.output_tokens), (10, 20));
}

#[tokio::test]
async fn error_status_is_recorded_as_upstream_error() {
    let (tx, inner) = upstream();
    let (mut body, mut queue, _tracker) = metered(inner, 529, Duration::from_secs(5));
    drop(tx);
    assert!(body.frame().await.is_none());
    assert_eq!(
        only_record(&mut queue).await.outcome,
        Outcome::UpstreamError
    );
}

#[tokio::test]
async fn client_disconnect_keeps_reading_the_upstream() {
    let (tx, inner) = upstream();
    let (mut body, mut queue, tracker) = metered(inner, 200, Duration::from_secs(5));
    send(&tx, START);
    body.frame().await.unwrap().unwrap();
    drop(body); // the client went away
    send(&tx, DELTA);
    drop(tx);
    tracker.close();
    tracker.wait().await;
    let record = only_record(&mut queue).await;
    assert_eq!(record.outcome, Outcome::ClientDisconnected);
    assert_eq!((record.input_tokens, record.output_tokens), (10, 20));
}

#[tokio::test]
async fn disconnect_drain_is_bounded() {
    let (tx, inner) = upstream();
    let (mut body, mut queue, tracker) = metered(inner, 200, Duration::from_millis(50));
    send(&tx, START);
    body.frame().await.unwrap().unwrap();
    drop(body);
    tracker.close();
    tracker.wait().await; // the upstream never ends; the bound does
    let record = only_record(&mut queue).await;
    assert_eq!(record.outcome, Outcome::Truncated);
    assert_eq!(record.input_tokens, 10);
    drop(tx);
}
