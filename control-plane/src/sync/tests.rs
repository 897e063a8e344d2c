use std::time::Duration;

use futures_util::StreamExt;

use super::*;
use crate::publisher::{publish, snapshot_channel};

fn snapshot(version: u64) -> pb::Snapshot {
    pb::Snapshot {
        version,
        ..Default::default()
    }
}

async fn next_version<S>(stream: &mut S) -> Option<u64>
where
    S: Stream<Item = Result<pb::Snapshot, Status>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .ok()?
        .map(|s| s.unwrap().version)
}

#[tokio::test]
async fn stream_sends_current_snapshot_then_newer_ones() {
    let (tx, rx) = snapshot_channel();
    publish(&tx, snapshot(3));
    let mut stream = Box::pin(snapshot_stream(rx, CancellationToken::new()));
    assert_eq!(next_version(&mut stream).await, Some(3));
    publish(&tx, snapshot(4));
    assert_eq!(next_version(&mut stream).await, Some(4));
}

#[tokio::test]
async fn stream_waits_for_the_first_snapshot() {
    let (tx, rx) = snapshot_channel();
    let mut stream = Box::pin(snapshot_stream(rx, CancellationToken::new()));
    let first = tokio::spawn(async move { next_version(&mut stream).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish(&tx, snapshot(1));
    assert_eq!(first.await.unwrap(), Some(1));
}

#[tokio::test]
async fn stream_ends_on_shutdown() {
    let (tx, rx) = snapshot_channel();
    publish(&tx, snapshot(1));
    let shutdown = CancellationToken::new();
    let mut stream = Box::pin(snapshot_stream(rx, shutdown.clone()));
    assert_eq!(next_version(&mut stream).await, Some(1));
    shutdown.cancel();
    assert!(stream.next().await.is_none());
}
