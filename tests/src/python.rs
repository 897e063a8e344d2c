//! The official `anthropic` Python SDK, in a virtualenv the harness creates on first use
//! (`target/e2e-venv`), or the interpreter named by `TOLLGATE_TEST_PYTHON`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::postgres::target_dir;

static PYTHON: OnceCell<PathBuf> = OnceCell::const_new();

/// Version range of the SDK the tests use.
pub const ANTHROPIC_SDK: &str = "anthropic>=0.40";

/// A Python interpreter that can `import anthropic`.
pub async fn python_with_sdk() -> anyhow::Result<PathBuf> {
    PYTHON
        .get_or_try_init(|| async {
            if let Ok(p) = std::env::var("TOLLGATE_TEST_PYTHON") {
                return Ok(PathBuf::from(p));
            }
            let venv = target_dir().join("e2e-venv");
            let python = venv.join("bin").join("python");
            if imports_sdk(&python).await {
                return Ok(python);
            }
            run(
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
                "python3 -m venv (Debian: apt-get install -y python3-venv)",
            )
            .await?;
            run(
                Command::new(&python).args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    ANTHROPIC_SDK,
                ]),
                "pip install anthropic",
            )
            .await?;
            if !imports_sdk(&python).await {
                anyhow::bail!("`import anthropic` fails in {}", venv.display());
            }
            Ok(python)
        })
        .await
        .cloned()
}

async fn imports_sdk(python: &std::path::Path) -> bool {
    python.exists()
        && Command::new(python)
            .args(["-c", "import anthropic"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
}

async fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.stdin(Stdio::null()).output())
        .await
        .map_err(|_| anyhow::anyhow!("{what} timed out"))??;
    if !out.status.success() {
        anyhow::bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a Python script with the SDK against `base_url` and `api_key`; returns stdout.
pub async fn run_script(script: &str, base_url: &str, api_key: &str) -> anyhow::Result<String> {
    let python = python_with_sdk().await?;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(python)
            .arg("-c")
            .arg(script)
            .env("ANTHROPIC_BASE_URL", base_url)
            .env("ANTHROPIC_API_KEY", api_key)
            .env_remove("ANTHROPIC_AUTH_TOKEN")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("python script timed out"))??;
    if !out.status.success() {
        anyhow::bail!(
            "python script failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
