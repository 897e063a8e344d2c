//! `tollgate dev` as a user runs it: the real binary, no DATABASE_URL (so it starts its own
//! PostgreSQL cluster from the server binaries), the demo provider, the printed export lines
//! used as a client would, `tollgate admin usage` showing the call, and Ctrl-C stopping it all.

// An integration-test crate: every item in it is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn read_exports(child: &mut std::process::Child) -> (String, String) {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keeps draining after the exports are read: a closed pipe would fail `dev`'s output.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut base, mut token) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(180);
    while base.is_none() || token.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("banner with export lines");
        if let Some(v) = line.strip_prefix("export ANTHROPIC_BASE_URL=") {
            base = Some(v.to_owned());
        }
        if let Some(v) = line.strip_prefix("export ANTHROPIC_AUTH_TOKEN=") {
            token = Some(v.to_owned());
        }
    }
    (base.unwrap(), token.unwrap())
}

#[tokio::test]
async fn dev_runs_everything_locally_and_prints_working_exports() {
    let state = tempfile::Builder::new()
        .prefix("tollgate-dev-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (base, token) = read_exports(&mut child);
    assert!(token.starts_with("tg_"), "{token}");

    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&token)
        .header("anthropic-version", "2023-06-01")
        .body(r#"{"model":"claude-sonnet-5","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hello"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("event: message_start"), "{body}");
    assert!(
        body.trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#),
        "{body}"
    );

    // Sign-in metadata is served through the same base URL (forwarded to the control plane).
    let meta: serde_json::Value = http
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["device_authorization_endpoint"],
        format!("{base}/oauth/device_authorization")
    );

    // The admin CLI, pointed at the state directory, sees the call in the usage report.
    let endpoint_line = std::fs::read_to_string(state.path().join("admin-key")).unwrap();
    assert!(endpoint_line.trim().starts_with("tga_"));
    let grpc = std::fs::read_to_string(state.path().join("grpc-endpoint")).unwrap();
    let mut seen = false;
    for _ in 0..50 {
        let out = Command::new(BIN)
            .args(["admin", "--endpoint", grpc.trim(), "--format", "json"])
            .arg("--admin-key-file")
            .arg(state.path().join("admin-key"))
            .args(["usage", "--by", "user,model"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v.as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["model"] == "claude-sonnet-5" && r["requests"] == 1)
        }) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen, "usage of the call is reported");

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "tollgate dev did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "clean exit: {status}");
}
