//! Overload and abuse protection on the client listener: slow and oversized request heads,
//! HTTP/2 reset floods, the concurrent request limit and the sign-in rate limit.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::send;
use super::{setup_with, stream_request};

/// Reads until the peer closes (or resets) the connection; `None` if it stays open past
/// `within`.
async fn read_until_closed(socket: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(seen)
}

/// Sends a streaming request on a raw HTTP/1 connection and reads up to `message_start`.
pub(super) async fn open_stream(addr: std::net::SocketAddr) -> TcpStream {
    let body = stream_request("claude-sonnet-5");
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-api-key: tg_ada\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("message_start") {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    socket
}

#[tokio::test]
async fn slowloris_client_is_disconnected_after_the_header_timeout_while_others_are_served() {
    let s = setup_with(
        Duration::ZERO,
        |_| {},
        |c| c.listener_limits.header_read_timeout = Duration::from_secs(1),
    )
    .await;
    let addr = s.dp.addr;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\n")
        .await
        .unwrap();
    let (mut read_half, mut write_half) = slow.into_split();
    let drip = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write_half
                .write_all(format!("x-drip-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut silent = TcpStream::connect(addr).await.unwrap();

    // Meanwhile a normal request on another connection is served.
    let hello = send(addr, "GET", "/api/hello", &[], "", false).await;
    assert_eq!(hello.status, 200);

    let mut buf = [0_u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read_half.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client must be disconnected");
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(10))
            .await
            .is_some(),
        "a connection that sends nothing must be closed"
    );
    drip.abort();
    s.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let s = setup_with(
        Duration::ZERO,
        |_| {},
        |c| c.listener_limits.header_read_timeout = Duration::from_secs(1),
    )
    .await;
    let mut socket = TcpStream::connect(s.dp.addr).await.unwrap();
    socket
        .write_all(b"GET /api/hello HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let seen = read_until_closed(&mut socket, Duration::from_secs(10))
        .await
        .expect("the idle connection must be closed");
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    s.stop().await;
}

#[tokio::test]
async fn idle_http2_connections_are_closed_after_the_header_timeout() {
    let s = setup_with(
        Duration::ZERO,
        |_| {},
        |c| c.listener_limits.header_read_timeout = Duration::from_secs(1),
    )
    .await;
    let addr = s.dp.addr;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{addr}/api/hello"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    // No further request: the server says GOAWAY and the connection ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(ended.is_ok(), "the idle connection must be closed");
    drop(client);
    s.stop().await;
}

/// Sends `head` on a raw connection; the answer (empty if the connection was just closed).
async fn answer_to_head(addr: std::net::SocketAddr, head: String) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let _ = socket.write_all(head.as_bytes()).await;
    let seen = read_until_closed(&mut socket, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("an oversized head must end the connection"));
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn oversized_request_heads_get_431_or_are_closed() {
    let s = setup_with(Duration::ZERO, |_| {}, |_| {}).await;
    let addr = s.dp.addr;
    let big = format!(
        "GET /api/hello HTTP/1.1\r\nhost: gw\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = answer_to_head(addr, big).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = answer_to_head(
        addr,
        format!("GET /api/hello HTTP/1.1\r\nhost: gw\r\n{many}\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Within the limits, the same request is served.
    let hello = send(addr, "GET", "/api/hello", &[("x-h", "v")], "", false).await;
    assert_eq!(hello.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn http2_rapid_reset_flood_gets_goaway_while_other_clients_are_served() {
    let s = setup_with(Duration::ZERO, |_| {}, |_| {}).await;
    let addr = s.dp.addr;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    for _ in 0..10_000 {
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let request = http::Request::post(format!("http://{addr}/v1/messages"))
            .header("x-api-key", "tg_ada")
            .body(())
            .unwrap();
        let Ok((_response, mut stream)) = client.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the flooding connection must be closed")
        .unwrap();
    // The server sends GOAWAY and closes; the flooding client may see either first.
    let error = ended.expect_err("closed by the server, not cleanly");
    assert!(
        error.is_go_away() || error.is_io(),
        "unexpected ending: {error}"
    );
    // Another client is still served, over HTTP/2 too.
    let hello = send(addr, "GET", "/api/hello", &[], "", true).await;
    assert_eq!(hello.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn concurrency_limit_answers_529_with_retry_after_and_recovers() {
    let s = setup_with(
        Duration::from_millis(100),
        |_| {},
        |c| c.listener_limits.max_concurrent_requests = 1,
    )
    .await;
    let addr = s.dp.addr;
    let mut stream = open_stream(addr).await;
    let refused = send(addr, "GET", "/api/hello", &[], "", false).await;
    assert_eq!(refused.status.as_u16(), 529);
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(refused.json()["error"]["type"], "overloaded_error");
    // The stream held the slot; once it has ended the gateway serves again.
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("message_stop") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream must end normally");
        seen.extend_from_slice(&buf[..n]);
    }
    let mut served = false;
    for _ in 0..100 {
        if send(addr, "GET", "/api/hello", &[], "", false).await.status == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the slot must be given back");
    s.stop().await;
}

#[tokio::test]
async fn sign_in_requests_beyond_the_per_address_limit_get_429() {
    // A control-plane HTTP URL nobody listens on: allowed requests get 502.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let s = setup_with(
        Duration::ZERO,
        |_| {},
        move |c| {
            c.control_plane_http_url = Some(url);
            c.sign_in_limit.per_minute = 1;
            c.sign_in_limit.burst = 2;
        },
    )
    .await;
    let path = "/.well-known/oauth-authorization-server";
    for _ in 0..2 {
        let allowed = send(s.dp.addr, "GET", path, &[], "", false).await;
        assert_ne!(allowed.status, 429);
    }
    let refused = send(s.dp.addr, "GET", "/oauth/token", &[], "", false).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"]["type"], "rate_limit_error");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    // Other endpoints are not limited.
    let hello = send(s.dp.addr, "GET", "/api/hello", &[], "", false).await;
    assert_eq!(hello.status, 200);
    s.stop().await;
}
