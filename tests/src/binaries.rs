//! The workspace's own binaries as real processes. Only a package's own tests get
//! `CARGO_BIN_EXE_*`, so the harness builds the binaries it needs once per test run with
//! `cargo build` (quick when up to date; selecting this package too keeps the dependency
//! features those of the test build, so nothing is rebuilt).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use crate::postgres::target_dir;

static BUILT: OnceCell<()> = OnceCell::const_new();
static BUILD_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// The binaries the harness runs, with their packages.
const BINARIES: [(&str, &str); 3] = [
    ("tollgate", "tollgate-cli"),
    ("tollgate-control-plane", "tollgate-control-plane"),
    ("tollgate-data-plane", "tollgate-data-plane"),
];

/// Builds (once per run, if needed) and returns the path of a workspace binary
/// (`tollgate`, `tollgate-control-plane` or `tollgate-data-plane`).
pub async fn binary(name: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        BINARIES.iter().any(|(bin, _)| *bin == name),
        "unknown binary {name}"
    );
    BUILT.get_or_init(build).await;
    if let Some(err) = BUILD_ERROR.lock().ok().and_then(|e| e.clone()) {
        anyhow::bail!("cargo build failed: {err}");
    }
    Ok(target_dir().join("debug").join(name))
}

async fn build() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "-q", "-p", "tollgate-e2e"];
    for (bin, package) in BINARIES {
        args.extend(["-p", package, "--bin", bin]);
    }
    let result = Command::new(cargo)
        .args(args)
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .output()
        .await;
    let error = match result {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(e) => Some(e.to_string()),
    };
    if let Ok(mut slot) = BUILD_ERROR.lock() {
        *slot = error;
    }
}

/// A running server process whose standard output and error go to one file; killed when dropped.
pub struct Process {
    pub child: Child,
    pub output_path: PathBuf,
}

impl Process {
    /// Starts `binary` with `args` and `env` (on top of a minimal inherited environment:
    /// `PATH` and `HOME` only, so no `OTEL_*` or `TOLLGATE_*` of the caller leaks in).
    pub fn spawn(
        binary: &Path,
        args: &[String],
        env: &HashMap<String, String>,
        output_path: PathBuf,
    ) -> anyhow::Result<Process> {
        let stdout = std::fs::File::create(&output_path)?;
        let stderr = stdout.try_clone()?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .envs(
                ["PATH", "HOME"]
                    .into_iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (k, v))),
            )
            .envs(env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let child = command.spawn()?;
        Ok(Process { child, output_path })
    }

    /// What the process wrote (standard output and error, interleaved) so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns whether it exited with 0.
    pub async fn terminate(&mut self, within: Duration) -> anyhow::Result<bool> {
        if let Some(pid) = self.child.id() {
            let pid = rustix::process::Pid::from_raw(i32::try_from(pid)?)
                .ok_or_else(|| anyhow::anyhow!("no pid"))?;
            rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        }
        let status = tokio::time::timeout(within, self.child.wait()).await??;
        Ok(status.success())
    }
}

/// A free port on 127.0.0.1 (bound then released: good enough on a test machine).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
