//! A real OpenID provider for the identity tests: npm `oidc-provider`, configured by
//! `tests/idp/idp.mjs`, installed on first use into `target/e2e-idp` and run with Node on a free
//! loopback port. Its test-only admin endpoint lets a test add, remove or disable users while
//! it runs ("remove the user at the IdP").

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use crate::postgres::target_dir;

/// A user the IdP knows. `id` is the OIDC `sub` and what the login form takes.
#[derive(Debug, Clone)]
pub struct IdpUser {
    pub id: String,
    pub email: String,
    pub name: String,
    /// The values of the `groups` claim.
    pub groups: Vec<String>,
}

impl IdpUser {
    pub fn new(id: &str, email: &str, name: &str, groups: &[&str]) -> IdpUser {
        IdpUser {
            id: id.into(),
            email: email.into(),
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"id": self.id, "email": self.email, "name": self.name, "groups": self.groups})
    }
}

/// The one client the IdP registers: Tollgate's control plane.
#[derive(Debug, Clone)]
pub struct IdpClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

/// A running test IdP; killed on drop.
pub struct TestIdp {
    pub issuer: String,
    pub client: IdpClient,
    child: Child,
    http: reqwest::Client,
}

static INSTALLED: OnceCell<PathBuf> = OnceCell::const_new();

/// The directory holding `idp.mjs` with `oidc-provider` installed beside it.
async fn install() -> anyhow::Result<PathBuf> {
    INSTALLED
        .get_or_try_init(|| async {
            let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("idp");
            let dir = target_dir().join("e2e-idp");
            std::fs::create_dir_all(&dir)?;
            let manifest = std::fs::read(src.join("package.json"))?;
            let stale = std::fs::read(dir.join("package.json")).ok().as_ref() != Some(&manifest)
                || !dir.join("node_modules/oidc-provider/package.json").exists();
            std::fs::copy(src.join("idp.mjs"), dir.join("idp.mjs"))?;
            if stale {
                std::fs::write(dir.join("package.json"), &manifest)?;
                npm_install(&dir).await?;
            }
            Ok(dir)
        })
        .await
        .cloned()
}

async fn npm_install(dir: &Path) -> anyhow::Result<()> {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        Command::new("npm")
            .args([
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--no-package-lock",
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("npm install oidc-provider timed out"))??;
    if !out.status.success() {
        anyhow::bail!(
            "npm install in {} failed (is Node.js >= 20.19 with npm installed?): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl TestIdp {
    /// Starts the IdP with one client redirecting to `redirect_uris` and the given users.
    pub async fn start(redirect_uris: &[String], users: &[IdpUser]) -> anyhow::Result<TestIdp> {
        let dir = install().await?;
        let client = IdpClient {
            client_id: "tollgate".into(),
            client_secret: tollgate_cli::secret::random_token("idp_"),
            redirect_uris: redirect_uris.to_vec(),
        };
        let config = json!({
            "port": 0,
            "client": {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "redirect_uris": client.redirect_uris,
            },
            "users": users.iter().map(IdpUser::to_json).collect::<Vec<_>>(),
        });
        let mut child = Command::new("node")
            .arg(dir.join("idp.mjs"))
            .env("TOLLGATE_IDP_CONFIG", config.to_string())
            .env("DEBUG", "")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run node: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .map_err(|_| anyhow::anyhow!("the test IdP did not start within 20 s"))??
            .ok_or_else(|| anyhow::anyhow!("the test IdP exited before listening"))?;
        let issuer = serde_json::from_str::<Value>(&line)?["issuer"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("unexpected first line from the IdP: {line}"))?
            .to_owned();
        Ok(TestIdp {
            issuer,
            client,
            child,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// Adds or replaces a user.
    pub async fn put_user(&self, user: &IdpUser) -> anyhow::Result<()> {
        self.admin(self.http.put(self.user_url(&user.id)).json(&user.to_json()))
            .await
    }

    /// Removes a user: later refreshes and userinfo calls for them fail.
    pub async fn remove_user(&self, id: &str) -> anyhow::Result<()> {
        self.admin(self.http.delete(self.user_url(id))).await
    }

    /// Disables (`true`) or enables a user.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> anyhow::Result<()> {
        let action = if disabled { "disable" } else { "enable" };
        self.admin(self.http.post(format!("{}/{action}", self.user_url(id))))
            .await
    }

    fn user_url(&self, id: &str) -> String {
        format!("{}/test/users/{id}", self.issuer)
    }

    async fn admin(&self, req: reqwest::RequestBuilder) -> anyhow::Result<()> {
        let resp = req.send().await?;
        if !resp.status().is_success() {
            anyhow::bail!("IdP admin call failed: {}", resp.status());
        }
        Ok(())
    }

    /// Stops the IdP.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
