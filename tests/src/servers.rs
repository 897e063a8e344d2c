//! The real server binaries (`tollgate-control-plane`, `tollgate-data-plane`) started as
//! processes on free local ports: the flags and environment every test passes, extra flags and
//! variables on top, and waiting until each is ready (and, for a data plane, optionally holding
//! a given policy version). Each can be killed and started again with the same flags.

use std::collections::HashMap;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tollgate_cli::admin::AdminClient;
use tollgate_proto::v1 as pb;

use crate::binaries::{Process, binary, free_port};

/// What both planes share: extra flags and environment, and the successive processes (each
/// start writes `<name>-<n>.log` in the working directory).
pub struct Server {
    pub name: String,
    pub admin_url: String,
    env: HashMap<String, String>,
    extra_args: Vec<String>,
    dir: PathBuf,
    starts: usize,
    process: Option<Process>,
}

impl Server {
    fn new(name: &str, dir: &Path, admin_url: String, env: HashMap<String, String>) -> Server {
        Server {
            name: name.to_owned(),
            admin_url,
            env,
            extra_args: Vec::new(),
            dir: dir.to_owned(),
            starts: 0,
            process: None,
        }
    }

    /// One more flag with its value (every start passes it).
    pub fn arg(&mut self, flag: &str, value: impl Into<String>) -> &mut Server {
        self.extra_args.extend([flag.to_owned(), value.into()]);
        self
    }

    /// More environment variables.
    pub fn envs(&mut self, env: HashMap<String, String>) -> &mut Server {
        self.env.extend(env);
        self
    }

    /// The environment the process gets (on top of `PATH` and `HOME`).
    pub fn env(&self) -> &HashMap<String, String> {
        &self.env
    }

    /// Spawns `binary` with `args`, the extra flags and JSON logs.
    async fn spawn(&mut self, binary_name: &str, mut args: Vec<String>) -> anyhow::Result<Process> {
        args.extend(self.extra_args.iter().cloned());
        args.extend(["--log-format".to_owned(), "json".to_owned()]);
        let log = self.dir.join(format!("{}-{}.log", self.name, self.starts));
        self.starts += 1;
        Process::spawn(&binary(binary_name).await?, &args, &self.env, log)
    }

    /// Kills the running process (if any).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.child.kill().await?;
        }
        Ok(())
    }

    /// `SIGTERM`; whether it exited with 0 within `within`.
    pub async fn terminate(&mut self, within: Duration) -> anyhow::Result<bool> {
        let process = self
            .process
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("{} is not running", self.name))?;
        process.terminate(within).await
    }

    /// What the running process wrote so far.
    pub fn output(&self) -> String {
        self.process
            .as_ref()
            .map(Process::output)
            .unwrap_or_default()
    }
}

/// A control plane process (gRPC and admin listeners on free ports, keys in `dir`).
pub struct ControlPlane {
    pub grpc_url: String,
    pub admin_key_file: PathBuf,
    pub sync_token: String,
    server: Server,
}

impl ControlPlane {
    /// A control plane on `database_url`, with its admin key, secrets key and audit signing key
    /// in `dir` and a fresh sync token (not started yet; output in `cp-<n>.log`).
    pub fn new(dir: &Path, database_url: &str) -> anyhow::Result<ControlPlane> {
        let grpc_port = free_port()?;
        let admin_port = free_port()?;
        let sync_token = tollgate_cli::secret::random_token("tgs_");
        let env = HashMap::from([
            ("TOLLGATE_SYNC_TOKEN".to_owned(), sync_token.clone()),
            ("TOLLGATE_DATABASE_URL".to_owned(), database_url.to_owned()),
        ]);
        let admin_url = format!("http://127.0.0.1:{admin_port}");
        Ok(ControlPlane {
            grpc_url: format!("http://127.0.0.1:{grpc_port}"),
            admin_key_file: dir.join("admin.key"),
            sync_token,
            server: Server::new("cp", dir, admin_url, env),
        })
    }

    /// Starts a new process (same flags every time) and waits until the admin key is written
    /// and `/readyz` answers 200.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let dir = &self.server.dir;
        let args = [
            "--grpc-listen",
            listen_address(&self.grpc_url),
            "--admin-listen",
            listen_address(&self.server.admin_url),
            "--admin-key-file",
            &self.admin_key_file.display().to_string(),
            "--secrets-key-file",
            &dir.join("secrets.key").display().to_string(),
            "--audit-signing-key-file",
            &dir.join("audit.pem").display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let process = self.server.spawn("tollgate-control-plane", args).await?;
        let readyz = format!("{}/readyz", self.server.admin_url);
        let key_file = &self.admin_key_file;
        let ready = eventually(Duration::from_secs(60), || async {
            key_file.exists() && status_of(&readyz).await == 200
        })
        .await;
        anyhow::ensure!(ready, "control plane not ready:\n{}", process.output());
        self.server.process = Some(process);
        Ok(())
    }

    /// The admin API key the control plane wrote.
    pub fn admin_key(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.admin_key_file)?
            .trim()
            .to_owned())
    }
}

impl Deref for ControlPlane {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for ControlPlane {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// A data plane process (proxy and admin listeners on free ports) syncing from a control plane.
pub struct DataPlane {
    pub url: String,
    control_plane_url: String,
    min_policy_version: Option<i64>,
    server: Server,
}

impl DataPlane {
    /// A data plane called `name` (its `--data-plane-id`) syncing from `cp` with its sync
    /// token, output in `dir` (not started yet).
    pub fn new(name: &str, dir: &Path, cp: &ControlPlane) -> anyhow::Result<DataPlane> {
        let port = free_port()?;
        let admin_port = free_port()?;
        let env = HashMap::from([("TOLLGATE_SYNC_TOKEN".to_owned(), cp.sync_token.clone())]);
        let admin_url = format!("http://127.0.0.1:{admin_port}");
        Ok(DataPlane {
            url: format!("http://127.0.0.1:{port}"),
            control_plane_url: cp.grpc_url.clone(),
            min_policy_version: None,
            server: Server::new(name, dir, admin_url, env),
        })
    }

    /// Ready also means holding at least this policy version
    /// (`tollgate_policy_snapshot_version` on `/metrics`).
    pub fn wait_for_policy_version(&mut self, version: i64) -> &mut DataPlane {
        self.min_policy_version = Some(version);
        self
    }

    /// Starts a new process (same flags every time) and waits until `/readyz` answers 200
    /// (and it holds the policy version asked for, if any).
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let args = [
            "--listen",
            listen_address(&self.url),
            "--admin-listen",
            listen_address(&self.server.admin_url),
            "--control-plane-url",
            &self.control_plane_url,
            "--data-plane-id",
            &self.server.name,
        ]
        .map(str::to_owned)
        .to_vec();
        let process = self.server.spawn("tollgate-data-plane", args).await?;
        let readyz = format!("{}/readyz", self.server.admin_url);
        let metrics = format!("{}/metrics", self.server.admin_url);
        let min_version = self.min_policy_version;
        let ready = eventually(Duration::from_secs(30), || async {
            status_of(&readyz).await == 200
                && match min_version {
                    None => true,
                    Some(min) => policy_version(&metrics).await.is_some_and(|v| v >= min),
                }
        })
        .await;
        let policy = min_version.map_or(String::new(), |v| format!(" with policy {v}"));
        anyhow::ensure!(
            ready,
            "{} not ready{policy}:\n{}",
            self.server.name,
            process.output()
        );
        self.server.process = Some(process);
        Ok(())
    }
}

impl Deref for DataPlane {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for DataPlane {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// `127.0.0.1:<port>` of an `http://127.0.0.1:<port>` URL.
fn listen_address(url: &str) -> &str {
    url.strip_prefix("http://").unwrap_or(url)
}

/// The highest `tollgate_policy_snapshot_version` on a `/metrics` page.
async fn policy_version(metrics_url: &str) -> Option<i64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let text = client
        .get(metrics_url)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix("tollgate_policy_snapshot_version "))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .max()
}

/// The status of a GET (0 when there is no answer within two seconds).
async fn status_of(url: &str) -> u16 {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return 0;
    };
    match client.get(url).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls `f` every 20 ms until it holds or `limit` has passed.
async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let poll = async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(limit, poll).await.is_ok()
}

/// A group `eng` allowed `models`, a user Alice (`alice@example.com`) in it and an API key
/// `laptop` of hers; returns the key.
pub async fn seed_alice(admin: &mut AdminClient, models: Vec<String>) -> anyhow::Result<String> {
    admin
        .create_group(pb::CreateGroupRequest {
            name: "eng".into(),
            allowed_models: models,
        })
        .await?;
    admin
        .create_principal(pb::CreatePrincipalRequest {
            kind: pb::PrincipalKind::User as i32,
            name: "Alice".into(),
            email: "alice@example.com".into(),
            groups: vec!["eng".into()],
        })
        .await?;
    let key = admin
        .create_api_key(pb::CreateApiKeyRequest {
            principal: "alice@example.com".into(),
            name: "laptop".into(),
            ..Default::default()
        })
        .await?;
    Ok(key.into_inner().secret)
}
