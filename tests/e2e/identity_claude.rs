//! The real `claude` CLI in base-URL mode with `tollgate token` as its `apiKeyHelper`, on a
//! machine signed in with the device flow, and the `tollgate login`/`token`/`logout` binary
//! against the real gateway. The binary comes from the harness's `binaries` module (built once
//! per run), because only the cli package's own tests get `CARGO_BIN_EXE_tollgate`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tollgate_cli::login::Credentials;
use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{Reply, claude_cli};

use crate::identity::{Signed, sign_in, signed_stack};

/// The `tollgate` binary of this workspace (built once per run if needed).
async fn tollgate_binary() -> PathBuf {
    tollgate_e2e::binaries::binary("tollgate").await.unwrap()
}

#[tokio::test]
async fn real_claude_cli_uses_tollgate_token_as_api_key_helper() {
    let Signed { stack, dp, idp } = signed_stack().await;
    stack
        .fake
        .reply_with(Reply::stream(SONNET, 80, &["Signed ", "in ", "works."], 5));
    let (meta, set) = sign_in(&dp.url, "alice").await;

    // The machine's credentials, as `tollgate login` leaves them, expiring in under five
    // minutes so that `tollgate token` must refresh through the gateway first.
    let home = tempfile::tempdir().unwrap();
    let config_home = home.path().join("config");
    let path = config_home.join("tollgate").join("credentials.json");
    let mut creds = Credentials::new(&meta, set, chrono_now());
    creds.expires_at_unix_s = chrono_now() + 60;
    creds.save(&path).unwrap();

    let bin = tollgate_binary().await;
    let claude_dir = home.path().join(".claude");
    std::fs::create_dir_all(&claude_dir).unwrap();
    std::fs::write(
        claude_dir.join("settings.json"),
        serde_json::json!({ "apiKeyHelper": format!("{} token", bin.display()) }).to_string(),
    )
    .unwrap();

    let claude = claude_cli::claude().await.unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(claude)
            .args(["-p", "say hi", "--model", SONNET])
            .current_dir(home.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", &config_home)
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("ANTHROPIC_BASE_URL", &dp.url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("Signed in works."), "{stdout}");

    // The helper refreshed: the stored token is a new one, valid for about an hour.
    let refreshed = Credentials::load(&path).unwrap();
    assert!(refreshed.expires_at_unix_s > chrono_now() + 3000);
    let got = stack.fake.received();
    assert!(!got.is_empty());
    assert!(!got[0].headers.contains_key("authorization"));

    idp.stop().await;
    stack.finish().await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

#[tokio::test]
async fn tollgate_login_token_logout_against_the_gateway() {
    use tokio::io::AsyncBufReadExt as _;

    let Signed { stack, dp, idp } = signed_stack().await;
    let bin = tollgate_binary().await;
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(args)
            .env("XDG_CONFIG_HOME", home.path())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    };

    // `tollgate login` prints the verification URL on stderr and waits; the user approves.
    let mut login = run(&["login", "--gateway", &dp.url, "--no-browser"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(login.stderr.take().unwrap()).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("login printed no URL");
        if let Some(url) = line.trim().strip_prefix(&format!("{}/device?", dp.url)) {
            break format!("{}/device?{url}", dp.url);
        }
    };
    let landing = tollgate_e2e::browser::Browser::new()
        .unwrap()
        .device_login(&url, "alice", tollgate_e2e::browser::Choice::Approve)
        .await
        .unwrap();
    assert_eq!(landing.status, 200, "{:#?}", landing.trail);
    let mut rest = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        rest.push_str(&l);
        rest.push('\n');
    }
    let status = tokio::time::timeout(Duration::from_secs(30), login.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("alice@example.com"), "{rest}");

    // `tollgate token` prints the access token alone; it works on the model API.
    let out = run(&["token"]).output().await.unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    assert_eq!(token.matches('.').count(), 2, "a JWT");
    let resp = crate::identity::messages_with_bearer(&dp.url, &token, SONNET).await;
    assert_eq!(resp.status(), 200);

    // `tollgate logout` revokes: the bearer stops working, the credentials are gone.
    let out = run(&["logout"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!home.path().join("tollgate/credentials.json").exists());
    let refused = crate::support::eventually(Duration::from_secs(5), || {
        let (url, token) = (dp.url.clone(), token.clone());
        async move {
            crate::identity::messages_with_bearer(&url, &token, SONNET)
                .await
                .status()
                == 401
        }
    })
    .await;
    assert!(refused, "the revoked token still works after 5 s");

    idp.stop().await;
    stack.finish().await;
}
