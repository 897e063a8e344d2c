//! The usage journal (`--spool-path`): every record is written ahead of shipping, so usage
//! survives a data plane killed with SIGKILL, and acknowledged records leave the journal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::support::{FakeControlPlane, SYNC_TOKEN, send, snapshot};
use super::{ADA, config, setup_with};

const DEMO: &str =
    r#"{"model":"claude-demo","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;

/// A `tollgate-data-plane` process; SIGKILLed when dropped, so a failing test leaves none.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts the binary on a free 127.0.0.1 port with `journal` as its `--spool-path`.
    fn start(cp_url: &str, journal: &Path, dir: &Path) -> (Process, SocketAddr) {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = dir.join("data-plane.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate-data-plane"))
            .env_clear()
            .env("TOLLGATE_SYNC_TOKEN", SYNC_TOKEN)
            .args(["--listen", &addr.to_string()])
            .args(["--control-plane-url", cp_url])
            .args(["--data-plane-id", "dp-killed"])
            .args(["--usage-flush-interval-ms", "50"])
            .arg("--spool-path")
            .arg(journal)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        (Process { child, log }, addr)
    }

    /// Waits until it serves under the first snapshot.
    async fn wait_until_ready(&self, addr: SocketAddr) {
        for _ in 0..500 {
            if TcpStream::connect(addr).await.is_ok() {
                let models = send(addr, "GET", "/v1/models", &[ADA], "", false).await;
                if models.status == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("data plane not ready: {}", self.log());
    }

    /// SIGKILL: nothing is flushed, spooled or cleaned up.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The request ids in the journal, in order.
fn journaled_ids(journal: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["request_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn journal_len(journal: &Path) -> u64 {
    std::fs::metadata(journal).map_or(0, |m| m.len())
}

/// Polls `done` for up to 10 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn usage_of_a_data_plane_killed_during_an_outage_is_delivered_once_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("usage.jsonl");
    let cp = FakeControlPlane::new();
    let cp_stop = CancellationToken::new();
    let cp_url = cp.serve(cp_stop.clone()).await;
    cp.publish(snapshot(1, "http://127.0.0.1:9"));
    // The control plane cannot take usage: the data plane keeps it queued.
    cp.refuse_usage(true);

    let (mut process, addr) = Process::start(&cp_url, &journal, dir.path());
    process.wait_until_ready(addr).await;
    let mut served = Vec::new();
    for _ in 0..3 {
        let answer = send(addr, "POST", "/v1/messages", &[ADA], DEMO, false).await;
        assert_eq!(answer.status, 200, "{}", process.log());
        served.push(answer.headers["request-id"].to_str().unwrap().to_owned());
    }
    eventually("every served request is journaled", || {
        let journaled = journaled_ids(&journal);
        served.iter().all(|id| journaled.contains(id))
    })
    .await;
    process.kill();
    assert!(
        cp.usage().is_empty(),
        "nothing was delivered before the kill"
    );
    let mut journaled = journaled_ids(&journal);
    journaled.sort();
    served.sort();
    assert_eq!(journaled, served, "one journal line per served request");

    // The control plane is back; the next data plane on the same journal ships it first.
    cp.refuse_usage(false);
    let mut cfg = config(cp_url);
    cfg.spool_path = Some(journal.clone());
    let stop = CancellationToken::new();
    let dp = tollgate_data_plane::spawn(cfg, stop.clone()).await.unwrap();
    cp.wait_for_usage(served.len()).await;
    eventually("the acknowledged journal is emptied", || {
        journal_len(&journal) == 0
    })
    .await;
    stop.cancel();
    dp.wait().await.unwrap();

    let usage = cp.usage();
    for id in &served {
        let records = usage.iter().filter(|r| &r.request_id == id).count();
        assert_eq!(records, 1, "request {id}");
    }
    assert_eq!(usage.len(), served.len());
    assert_eq!(journal_len(&journal), 0);
    cp_stop.cancel();
}

#[tokio::test]
async fn journal_shrinks_once_the_control_plane_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("usage.jsonl");
    let s = setup_with(
        Duration::ZERO,
        |_| {},
        |c| c.spool_path = Some(journal.clone()),
    )
    .await;
    s.cp.refuse_usage(true);
    for _ in 0..2 {
        let answer = send(s.dp.addr, "POST", "/v1/messages", &[ADA], DEMO, false).await;
        assert_eq!(answer.status, 200);
    }
    eventually("both records are journaled", || {
        journaled_ids(&journal).len() == 2
    })
    .await;
    let grown = journal_len(&journal);

    s.cp.refuse_usage(false);
    s.cp.wait_for_usage(2).await;
    eventually("the journal shrinks", || journal_len(&journal) < grown).await;
    eventually("the journal is empty", || journal_len(&journal) == 0).await;
    s.stop().await;
}
