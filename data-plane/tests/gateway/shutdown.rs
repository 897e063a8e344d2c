//! Graceful shutdown: readiness turns 503 at once, in-flight requests get the drain period,
//! and streams still open at its end are ended with an SSE `error` event and metered.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tollgate_proto::v1 as pb;

use super::protection::open_stream;
use super::setup_with;
use super::support::send;

#[tokio::test]
async fn stream_open_at_the_end_of_the_drain_period_gets_an_sse_error_and_is_metered() {
    // 16 events 300 ms apart: the stream outlives the 1 s drain period.
    let s = setup_with(
        Duration::from_millis(300),
        |_| {},
        |c| {
            c.shutdown_drain_timeout = Duration::from_secs(1);
            c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        },
    )
    .await;
    let admin = s.dp.admin_addr.unwrap();
    let ready = send(admin, "GET", "/readyz", &[], "", false).await;
    assert_eq!(ready.status, 200);
    let mut stream = open_stream(s.dp.addr).await;

    s.shutdown.cancel();
    let draining = send(admin, "GET", "/readyz", &[], "", false).await;
    assert_eq!(draining.status, 503);
    assert!(
        String::from_utf8_lossy(&draining.body).contains("draining"),
        "{:?}",
        draining.body
    );
    // The listener stops accepting new connections (at once; polled to stay race-free).
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(s.dp.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener must stop accepting");

    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection must close after the drain");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("overloaded_error"), "{text}");
    assert!(text.contains("shutting down"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");

    s.dp.wait().await.unwrap();
    let usage = s.cp.wait_for_usage(1).await;
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].input_tokens, 25, "metered to what was relayed");
    assert_eq!(usage[0].outcome, pb::UsageOutcome::Truncated as i32);
}

#[tokio::test]
async fn requests_finishing_within_the_drain_period_complete_normally() {
    let s = setup_with(
        Duration::from_millis(20),
        |_| {},
        |c| c.shutdown_drain_timeout = Duration::from_secs(10),
    )
    .await;
    let mut stream = open_stream(s.dp.addr).await;
    s.shutdown.cancel();
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("message_stop") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream must finish within the drain period");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("event: error"));
    s.dp.wait().await.unwrap();
    let usage = s.cp.wait_for_usage(1).await;
    assert_eq!(usage[0].outcome, pb::UsageOutcome::Complete as i32);
}
