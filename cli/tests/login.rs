//! `tollgate login`, `token` and `logout` (the real binary) against a tiny fake authorization
//! server on loopback that speaks the gateway's device-flow contract.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

/// What the fake saw: `(path, form body)` per request.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Serves the device-flow endpoints: the first poll is pending, the second `slow_down`, the
/// third approved; refresh hands out `at-refreshed` unless the refresh token is `rt-dead`.
async fn fake_gateway() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let polls = Arc::new(Mutex::new(0));
    let (b, s) = (base.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (base, seen, polls) = (b.clone(), s.clone(), polls.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).await.unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).await.unwrap();
                let body = String::from_utf8(body).unwrap();
                seen.lock().unwrap().push((path.clone(), body.clone()));
                let (status, reply) = answer(&base, &path, &body, &polls);
                let text = reply.to_string();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                write.write_all(resp.as_bytes()).await.unwrap();
            });
        }
    });
    (base, seen)
}

fn answer(base: &str, path: &str, body: &str, polls: &Mutex<u32>) -> (u16, Value) {
    match path {
        "/.well-known/oauth-authorization-server" => (
            200,
            json!({
                "issuer": base,
                "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
                "token_endpoint": format!("{base}/oauth/token"),
                "revocation_endpoint": format!("{base}/oauth/revoke"),
                "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            }),
        ),
        "/oauth/device_authorization" => (
            200,
            json!({
                "device_code": "dc-1", "user_code": "WDJB-MJHT",
                "verification_uri": format!("{base}/device"),
                "verification_uri_complete": format!("{base}/device?user_code=WDJB-MJHT"),
                "expires_in": 600, "interval": 1, "login_notice": "Use your company account.",
            }),
        ),
        "/oauth/token" if body.contains("device_code") => {
            let mut n = polls.lock().unwrap();
            *n += 1;
            match *n {
                1 => (400, json!({"error": "authorization_pending"})),
                2 => (400, json!({"error": "slow_down"})),
                _ => (
                    200,
                    json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600,
                           "refresh_token": "rt-1", "email": "alice@example.com"}),
                ),
            }
        }
        "/oauth/token" if body.contains("rt-dead") => (401, json!({"error": "invalid_grant"})),
        "/oauth/token" => (
            200,
            json!({"access_token": "at-refreshed", "token_type": "Bearer", "expires_in": 3600,
                   "refresh_token": "rt-2"}),
        ),
        "/oauth/revoke" => (200, json!({})),
        _ => (404, json!({"error": "not_found"})),
    }
}

fn tollgate(config_home: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"));
    c.args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("TOLLGATE_GATEWAY")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(std::process::Stdio::null());
    c
}

fn write_credentials(config_home: &std::path::Path, base: &str, refresh: &str, expires_at: i64) {
    let dir = config_home.join("tollgate");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("credentials.json"),
        json!({"gateway": base, "token_endpoint": format!("{base}/oauth/token"),
               "revocation_endpoint": format!("{base}/oauth/revoke"),
               "access_token": "at-old", "refresh_token": refresh, "expires_at": expires_at})
        .to_string(),
    )
    .unwrap();
}

#[tokio::test]
async fn login_polls_through_pending_and_slow_down_and_stores_owner_only_credentials() {
    let (base, seen) = fake_gateway().await;
    let home = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tollgate(home.path(), &["login", "--gateway", &base, "--no-browser"]).output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "login prints to stderr only");
    assert!(
        stderr.contains(&format!("{base}/device?user_code=WDJB-MJHT")),
        "{stderr}"
    );
    assert!(stderr.contains("WDJB-MJHT") && stderr.contains("Use your company account."));
    assert!(stderr.contains("alice@example.com"), "{stderr}");

    let seen = seen.lock().unwrap().clone();
    let auth = seen
        .iter()
        .find(|(p, _)| p == "/oauth/device_authorization")
        .unwrap();
    assert_eq!(auth.1, "surface=claude_code");
    assert_eq!(seen.iter().filter(|(p, _)| p == "/oauth/token").count(), 3);

    let path = home.path().join("tollgate/credentials.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(creds["access_token"], "at-1");
    assert_eq!(creds["refresh_token"], "rt-1");

    // A fresh token is printed as is, alone on stdout.
    let out = tollgate(home.path(), &["token"]).output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "at-1\n");
}

#[tokio::test]
async fn token_refreshes_when_less_than_five_minutes_remain() {
    let (base, seen) = fake_gateway().await;
    let home = tempfile::tempdir().unwrap();
    let soon = chrono::Utc::now().timestamp() + 120;
    write_credentials(home.path(), &base, "rt-1", soon);
    let out = tollgate(home.path(), &["token"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "at-refreshed\n");
    let refresh = seen.lock().unwrap().clone();
    assert_eq!(refresh.len(), 1);
    assert!(refresh[0].1.contains("grant_type=refresh_token"));
    assert!(refresh[0].1.contains("refresh_token=rt-1"));
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(home.path().join("tollgate/credentials.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        creds["refresh_token"], "rt-2",
        "the rotated refresh token is kept"
    );
}

#[tokio::test]
async fn token_fails_with_nothing_on_stdout_when_the_gateway_refuses_the_refresh() {
    let (base, _seen) = fake_gateway().await;
    let home = tempfile::tempdir().unwrap();
    write_credentials(home.path(), &base, "rt-dead", 0);
    let out = tollgate(home.path(), &["token"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tollgate login"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn logout_revokes_both_tokens_and_deletes_the_credentials() {
    let (base, seen) = fake_gateway().await;
    let home = tempfile::tempdir().unwrap();
    write_credentials(
        home.path(),
        &base,
        "rt-1",
        chrono::Utc::now().timestamp() + 3600,
    );
    let out = tollgate(home.path(), &["logout"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (
                "/oauth/revoke".to_owned(),
                "token=at-old&token_type_hint=access_token".to_owned()
            ),
            (
                "/oauth/revoke".to_owned(),
                "token=rt-1&token_type_hint=refresh_token".to_owned()
            ),
        ]
    );
    assert!(!home.path().join("tollgate/credentials.json").exists());
    let out = tollgate(home.path(), &["token"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed in"));
}

#[tokio::test]
async fn concurrent_token_runs_refresh_only_once() {
    let (base, seen) = fake_gateway().await;
    let home = tempfile::tempdir().unwrap();
    write_credentials(
        home.path(),
        &base,
        "rt-1",
        chrono::Utc::now().timestamp() + 60,
    );
    // Four processes at once, as several Claude Code sessions would run the helper.
    let children: Vec<_> = (0..4)
        .map(|_| {
            tollgate(home.path(), &["token"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "at-refreshed\n");
    }
    let refreshes = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "/oauth/token")
        .count();
    assert_eq!(refreshes, 1, "one refresh for four concurrent runs");
}
