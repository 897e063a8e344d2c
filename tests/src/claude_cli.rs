//! The real `claude` CLI (npm `@anthropic-ai/claude-code`), installed on first use into
//! `target/e2e-node`, or the executable named by `TOLLGATE_TEST_CLAUDE`. It always runs with a
//! throwaway `HOME`, the auto-updater off and non-essential traffic off, so it talks to nothing
//! but the gateway under test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::postgres::target_dir;

/// The client version the gateway protocol summary was observed with.
pub const CLAUDE_CODE: &str = "@anthropic-ai/claude-code@2.1.328";

static CLAUDE: OnceCell<PathBuf> = OnceCell::const_new();

/// Path of a runnable `claude` executable.
pub async fn claude() -> anyhow::Result<PathBuf> {
    CLAUDE
        .get_or_try_init(|| async {
            if let Ok(p) = std::env::var("TOLLGATE_TEST_CLAUDE") {
                return Ok(PathBuf::from(p));
            }
            let prefix = target_dir().join("e2e-node");
            let bin = prefix.join("node_modules").join(".bin").join("claude");
            if runs(&bin).await {
                return Ok(bin);
            }
            std::fs::create_dir_all(&prefix)?;
            let out = tokio::time::timeout(
                Duration::from_secs(600),
                Command::new("npm")
                    .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                    .arg(&prefix)
                    .arg(CLAUDE_CODE)
                    .stdin(Stdio::null())
                    .output(),
            )
            .await
            .map_err(|_| anyhow::anyhow!("npm install {CLAUDE_CODE} timed out"))??;
            if !out.status.success() {
                anyhow::bail!(
                    "npm install {CLAUDE_CODE} failed (is Node.js with npm installed?): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            if !runs(&bin).await {
                anyhow::bail!("{} does not run", bin.display());
            }
            Ok(bin)
        })
        .await
        .cloned()
}

async fn runs(bin: &Path) -> bool {
    bin.exists()
        && Command::new(bin)
            .arg("--version")
            .env("DISABLE_AUTOUPDATER", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
}

/// What `claude -p` printed and how it ended.
#[derive(Debug)]
pub struct ClaudeRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `claude -p <prompt> --model <model>` in base-URL mode against `base_url`.
pub async fn print_mode(
    base_url: &str,
    token: &str,
    model: &str,
    prompt: &str,
) -> anyhow::Result<ClaudeRun> {
    let bin = claude().await?;
    let home = tempfile::tempdir()?;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(bin)
            .args(["-p", prompt, "--model", model])
            .current_dir(home.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("ANTHROPIC_BASE_URL", base_url)
            .env("ANTHROPIC_AUTH_TOKEN", token)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("claude -p timed out"))??;
    Ok(ClaudeRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
