//! A whole Tollgate on loopback for one test: a fresh database, a control plane, any number of
//! data planes, and a fake Anthropic upstream, seeded with a small realistic policy.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tollgate_cli::admin::{AdminClient, connect};
use tollgate_control_plane::{ControlPlaneConfig, ControlPlaneHandle};
use tollgate_data_plane::{DataPlaneConfig, DataPlaneHandle};
use tollgate_proto::v1 as pb;

use crate::fake_anthropic::FakeAnthropic;
use crate::killable::KillableDataPlane;
use crate::postgres::TestDatabase;

/// The seeded policy: `alice@example.com` in group `eng` (may use `claude-sonnet-5` only),
/// `ci-bot` service account in group `all` (`*`); both models route to the fake upstream;
/// `claude-opus-4-8` is sent upstream as `claude-opus-4-8-20261101`.
pub const SONNET: &str = "claude-sonnet-5";
pub const OPUS: &str = "claude-opus-4-8";
pub const OPUS_UPSTREAM: &str = "claude-opus-4-8-20261101";

pub struct Stack {
    pub db: TestDatabase,
    pub fake: FakeAnthropic,
    pub admin_key: String,
    pub sync_token: SecretString,
    secrets_key: SecretString,
    pub grpc_addr: SocketAddr,
    /// API key of alice (group `eng`).
    pub alice_key: String,
    /// API key of the `ci-bot` service account (group `all`).
    pub bot_key: String,
    /// The control plane's HTTP listener (sign-in endpoints), when started with
    /// [`Stack::start_with_identity`]; data planes forward to it.
    pub cp_http_url: Option<String>,
    http_listen: Option<SocketAddr>,
    /// The control plane's audit signing key, its public key, and the exported checkpoints.
    pub audit: StackAudit,
    /// The control plane's clock (rate-limit buckets and concurrency leases read it).
    pub clock: tollgate_control_plane::Clock,
    root: CancellationToken,
    cp_token: CancellationToken,
    cp: Option<ControlPlaneHandle>,
}

/// A data plane started by [`Stack::data_plane`].
pub struct StackDataPlane {
    pub url: String,
    pub handle: Option<DataPlaneHandle>,
    token: CancellationToken,
}

impl StackDataPlane {
    /// Gracefully stops this data plane (drain, flush usage).
    pub async fn stop(&mut self) {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.wait().await;
        }
    }

    pub fn handle(&self) -> &DataPlaneHandle {
        self.handle.as_ref().unwrap_or_else(|| unreachable_handle())
    }
}

#[expect(
    clippy::panic,
    reason = "test harness: a stopped data plane has no handle"
)]
fn unreachable_handle() -> ! {
    panic!("data plane already stopped")
}

impl Stack {
    /// Starts a database, a control plane and a fake upstream, and seeds the policy.
    pub async fn start() -> anyhow::Result<Stack> {
        Stack::start_inner(None).await
    }

    /// Like [`Stack::start`], with the control plane's HTTP listener (device flow, IdP
    /// callback) on; every data plane started afterwards forwards the sign-in paths to it.
    pub async fn start_with_identity() -> anyhow::Result<Stack> {
        Stack::start_inner(Some("127.0.0.1:0".parse()?)).await
    }

    /// Like [`Stack::start`], on a database created on the server `admin_url` names (e.g.
    /// a private cluster a test stops and restarts).
    pub async fn start_on_server(admin_url: &str) -> anyhow::Result<Stack> {
        Stack::start_inner_on(TestDatabase::create_on(admin_url).await?, None).await
    }

    /// Like [`Stack::start`], with the control plane on `clock` (e.g. a manual clock the
    /// test moves: rate-limit buckets refill and concurrency leases expire with it).
    pub async fn start_with_clock(clock: tollgate_control_plane::Clock) -> anyhow::Result<Stack> {
        Stack::start_inner_on_clock(TestDatabase::create().await?, None, clock).await
    }

    async fn start_inner(http_listen: Option<SocketAddr>) -> anyhow::Result<Stack> {
        Stack::start_inner_on(TestDatabase::create().await?, http_listen).await
    }

    async fn start_inner_on(
        db: TestDatabase,
        http_listen: Option<SocketAddr>,
    ) -> anyhow::Result<Stack> {
        Stack::start_inner_on_clock(db, http_listen, tollgate_control_plane::Clock::system()).await
    }

    async fn start_inner_on_clock(
        db: TestDatabase,
        http_listen: Option<SocketAddr>,
        clock: tollgate_control_plane::Clock,
    ) -> anyhow::Result<Stack> {
        let root = CancellationToken::new();
        let fake = FakeAnthropic::start(root.child_token()).await?;
        let sync_token = SecretString::from(tollgate_cli::secret::random_token("tgs_"));
        let cp_token = root.child_token();
        // One secrets key for every start of the control plane, as a deployment keeps its
        // key file: credentials and signing keys sealed before a restart open after it.
        let secrets_key = {
            use base64::Engine as _;
            let bytes: [u8; 32] = rand::random();
            SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes))
        };
        let audit = StackAudit::create()?;
        let mut config = control_plane_config(
            &db,
            "127.0.0.1:0".parse()?,
            &sync_token,
            &secrets_key,
            http_listen,
        );
        audit.configure(&mut config);
        config.clock = clock.clone();
        let cp = tollgate_control_plane::spawn(config, cp_token.clone()).await?;
        let http_listen = cp.http_addr;
        let admin_key = match &cp.bootstrap_admin_key {
            Some(k) => secrecy::ExposeSecret::expose_secret(k).to_owned(),
            None => anyhow::bail!("a fresh database must bootstrap an admin key"),
        };
        let grpc_addr = cp.grpc_addr;
        let mut stack = Stack {
            db,
            fake,
            admin_key,
            sync_token,
            secrets_key,
            grpc_addr,
            alice_key: String::new(),
            bot_key: String::new(),
            cp_http_url: http_listen.map(|a| format!("http://{a}")),
            http_listen,
            audit,
            clock,
            root,
            cp_token,
            cp: Some(cp),
        };
        stack.seed().await?;
        Ok(stack)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub async fn admin(&self) -> anyhow::Result<AdminClient> {
        connect(&self.grpc_url(), &self.admin_key).await
    }

    async fn seed(&mut self) -> anyhow::Result<()> {
        let mut a = self.admin().await?;
        a.create_provider(pb::CreateProviderRequest {
            name: "fake".into(),
            kind: pb::ProviderKind::Anthropic as i32,
            config: Some(pb::ProviderConfig {
                base_url: self.fake.url(),
                api_key: secret_value("sk-upstream-secret"),
                ..Default::default()
            }),
        })
        .await?;
        for (model, upstream) in [(SONNET, ""), (OPUS, OPUS_UPSTREAM)] {
            a.upsert_model(pb::UpsertModelRequest {
                id: model.into(),
                display_name: model.into(),
                max_input_tokens: 200_000,
            })
            .await?;
            a.set_route(pb::SetRouteRequest {
                model: model.into(),
                targets: vec![target("fake", upstream, None)],
            })
            .await?;
        }
        a.create_group(pb::CreateGroupRequest {
            name: "eng".into(),
            allowed_models: vec![SONNET.into()],
        })
        .await?;
        a.create_group(pb::CreateGroupRequest {
            name: "all".into(),
            allowed_models: vec!["*".into()],
        })
        .await?;
        a.create_principal(pb::CreatePrincipalRequest {
            kind: pb::PrincipalKind::User as i32,
            name: "Alice".into(),
            email: "alice@example.com".into(),
            groups: vec!["eng".into()],
        })
        .await?;
        a.create_principal(pb::CreatePrincipalRequest {
            kind: pb::PrincipalKind::ServiceAccount as i32,
            name: "ci-bot".into(),
            email: String::new(),
            groups: vec!["all".into()],
        })
        .await?;
        self.alice_key = self.create_key("alice@example.com").await?.1;
        self.bot_key = self.create_key("ci-bot").await?.1;
        Ok(())
    }

    /// Creates a key for a principal; returns `(key id, secret)`.
    pub async fn create_key(&self, principal: &str) -> anyhow::Result<(String, String)> {
        let resp = self
            .admin()
            .await?
            .create_api_key(pb::CreateApiKeyRequest {
                principal: principal.into(),
                name: "test".into(),
                expires_at_unix_s: 0,
            })
            .await?
            .into_inner();
        let id = resp.key.map(|k| k.id).unwrap_or_default();
        Ok((id, resp.secret))
    }

    /// Starts a data plane connected to this stack's control plane and waits for its policy.
    pub async fn data_plane(&self) -> anyhow::Result<StackDataPlane> {
        self.data_plane_with(|_| {}).await
    }

    /// The configuration [`Stack::data_plane`] starts data planes with.
    pub fn data_plane_config(&self) -> anyhow::Result<DataPlaneConfig> {
        let mut config = DataPlaneConfig::new(
            "127.0.0.1:0".parse()?,
            self.grpc_url(),
            self.sync_token.clone(),
        );
        config.usage_flush_interval = Duration::from_millis(100);
        config.control_plane_http_url = self.cp_http_url.clone();
        // Tests write credential files into temporary directories.
        config.credential_references.dirs.push(std::env::temp_dir());
        Ok(config)
    }

    /// A data plane named `data_plane_id` (in usage records and leases).
    pub async fn data_plane_named(&self, data_plane_id: &str) -> anyhow::Result<StackDataPlane> {
        self.data_plane_with(|c| c.data_plane_id = data_plane_id.to_owned())
            .await
    }

    /// A data plane named `data_plane_id` that [`KillableDataPlane::kill`] stops abruptly,
    /// as a crash would; waits for the current policy.
    pub async fn killable_data_plane(
        &self,
        data_plane_id: &str,
    ) -> anyhow::Result<KillableDataPlane> {
        let mut config = self.data_plane_config()?;
        config.data_plane_id = data_plane_id.to_owned();
        let version = self.policy_version().await?;
        let dp = KillableDataPlane::start(config).await?;
        if !dp
            .wait_for_snapshot_version(version, Duration::from_secs(10))
            .await
        {
            anyhow::bail!("data plane did not reach policy version {version} within 10 s");
        }
        Ok(dp)
    }

    /// Waits until every handle has the current policy (after an admin change).
    pub async fn await_policy(&self, handles: &[&DataPlaneHandle]) -> anyhow::Result<()> {
        let version = self.policy_version().await?;
        for h in handles {
            if !h
                .wait_for_snapshot_version(version, Duration::from_secs(10))
                .await
            {
                anyhow::bail!("a data plane did not reach policy version {version} within 10 s");
            }
        }
        Ok(())
    }

    /// A token cancelled when the stack finishes (for helpers such as proxies).
    pub fn child_token(&self) -> CancellationToken {
        self.root.child_token()
    }

    /// Like [`Stack::data_plane`] with adjusted configuration.
    pub async fn data_plane_with(
        &self,
        adjust: impl FnOnce(&mut DataPlaneConfig),
    ) -> anyhow::Result<StackDataPlane> {
        let mut config = self.data_plane_config()?;
        adjust(&mut config);
        let token = self.root.child_token();
        let version = self.policy_version().await?;
        let handle = tollgate_data_plane::spawn(config, token.clone()).await?;
        if !handle
            .wait_for_snapshot_version(version, Duration::from_secs(10))
            .await
        {
            anyhow::bail!("data plane did not reach policy version {version} within 10 s");
        }
        Ok(StackDataPlane {
            url: format!("http://{}", handle.addr),
            handle: Some(handle),
            token,
        })
    }

    /// Stops the control plane (data planes keep running on their last snapshot).
    pub async fn stop_control_plane(&mut self) {
        self.cp_token.cancel();
        if let Some(cp) = self.cp.take() {
            let _ = cp.wait().await;
        }
    }

    /// Starts the control plane again on the same address.
    pub async fn restart_control_plane(&mut self) -> anyhow::Result<()> {
        self.stop_control_plane().await;
        self.cp_token = self.root.child_token();
        let mut config = control_plane_config(
            &self.db,
            self.grpc_addr,
            &self.sync_token,
            &self.secrets_key,
            self.http_listen,
        );
        self.audit.configure(&mut config);
        config.clock = self.clock.clone();
        self.cp = Some(tollgate_control_plane::spawn(config, self.cp_token.clone()).await?);
        Ok(())
    }

    /// The current policy version in the database.
    pub async fn policy_version(&self) -> anyhow::Result<u64> {
        let pool = self.db.pool().await?;
        let v: i64 = sqlx::query_scalar("SELECT version FROM policy_version")
            .fetch_one(&pool)
            .await?;
        pool.close().await;
        Ok(u64::try_from(v)?)
    }

    /// Creates a provider of `kind` with `config` (credentials as [`SecretRef`]s).
    pub async fn create_provider(
        &self,
        name: &str,
        kind: pb::ProviderKind,
        config: pb::ProviderConfig,
    ) -> anyhow::Result<pb::ProviderInfo> {
        Ok(self
            .admin()
            .await?
            .create_provider(pb::CreateProviderRequest {
                name: name.into(),
                kind: kind as i32,
                config: Some(config),
            })
            .await?
            .into_inner())
    }

    /// Adds (or updates) a catalogue model.
    pub async fn upsert_model(&self, id: &str) -> anyhow::Result<()> {
        self.admin()
            .await?
            .upsert_model(pb::UpsertModelRequest {
                id: id.into(),
                display_name: id.into(),
                max_input_tokens: 200_000,
            })
            .await?;
        Ok(())
    }

    /// Replaces the route of `model` (a catalogue model, created when missing).
    pub async fn set_route(
        &self,
        model: &str,
        targets: Vec<pb::RouteTargetSpec>,
    ) -> anyhow::Result<pb::RouteInfo> {
        self.upsert_model(model).await?;
        Ok(self
            .admin()
            .await?
            .set_route(pb::SetRouteRequest {
                model: model.into(),
                targets,
            })
            .await?
            .into_inner())
    }

    /// Makes `alias` another client-facing name of `model`.
    pub async fn set_alias(&self, alias: &str, model: &str) -> anyhow::Result<()> {
        self.admin()
            .await?
            .set_alias(pb::SetAliasRequest {
                alias: alias.into(),
                model: model.into(),
            })
            .await?;
        Ok(())
    }

    /// Circuit-breaker states the data planes reported.
    pub async fn provider_status(&self) -> anyhow::Result<Vec<pb::TargetStatus>> {
        Ok(self
            .admin()
            .await?
            .provider_status(pb::ProviderStatusRequest { max_age_s: 0 })
            .await?
            .into_inner()
            .targets)
    }

    /// Stops everything and drops the database.
    pub async fn finish(mut self) {
        self.stop_control_plane().await;
        self.root.cancel();
        self.db.drop_database().await;
    }
}

/// The audit checkpoint files of a [`Stack`]'s control plane, in a temporary directory: it
/// signs a checkpoint every [`StackAudit::INTERVAL`].
pub struct StackAudit {
    /// The Ed25519 private key (PKCS#8 PEM) the control plane signs with.
    pub signing_key_file: std::path::PathBuf,
    /// Its public key (PEM), for `tollgate audit verify --public-key`.
    pub public_key_file: std::path::PathBuf,
    /// The JSON-lines file every checkpoint is appended to.
    pub checkpoint_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl StackAudit {
    /// Checkpoint period of the stack's control plane.
    pub const INTERVAL: Duration = Duration::from_secs(1);

    fn create() -> anyhow::Result<StackAudit> {
        let dir = tempfile::tempdir()?;
        let key = tollgate_control_plane::audit::AuditSigningKey::generate();
        let audit = StackAudit {
            signing_key_file: dir.path().join("audit-signing-key.pem"),
            public_key_file: dir.path().join("audit-public-key.pem"),
            checkpoint_file: dir.path().join("audit-checkpoints.jsonl"),
            _dir: dir,
        };
        std::fs::write(&audit.signing_key_file, key.to_pkcs8_pem()?)?;
        std::fs::write(&audit.public_key_file, key.public_key_pem())?;
        Ok(audit)
    }

    fn configure(&self, config: &mut ControlPlaneConfig) {
        config.audit_signing_key_file = Some(self.signing_key_file.clone());
        config.audit_checkpoint_file = Some(self.checkpoint_file.clone());
        config.audit_checkpoint_interval = Self::INTERVAL;
    }
}

fn control_plane_config(
    db: &TestDatabase,
    addr: SocketAddr,
    sync_token: &SecretString,
    secrets_key: &SecretString,
    http_listen: Option<SocketAddr>,
) -> ControlPlaneConfig {
    let mut c =
        ControlPlaneConfig::new(SecretString::from(db.url.clone()), addr, sync_token.clone());
    c.secrets_key = Some(secrets_key.clone());
    c.http_listen = http_listen;
    c.resync_interval = Duration::from_secs(5);
    c.db_max_connections = 4;
    c
}

/// An inline credential (stored encrypted by the control plane).
pub fn secret_value(value: &str) -> Option<pb::SecretRef> {
    Some(pb::SecretRef {
        source: Some(pb::secret_ref::Source::Value(value.into())),
    })
}

/// A credential the data plane reads from a file.
pub fn secret_file(path: &std::path::Path) -> Option<pb::SecretRef> {
    Some(pb::SecretRef {
        source: Some(pb::secret_ref::Source::File(path.display().to_string())),
    })
}

/// A credential the data plane reads from its environment.
pub fn secret_env(name: &str) -> Option<pb::SecretRef> {
    Some(pb::SecretRef {
        source: Some(pb::secret_ref::Source::Env(name.into())),
    })
}

/// A route target with weight 1; `priority` unset = its position in the list.
pub fn target(provider: &str, upstream_model: &str, priority: Option<u32>) -> pb::RouteTargetSpec {
    pb::RouteTargetSpec {
        provider: provider.into(),
        upstream_model: upstream_model.into(),
        weight: 1,
        priority,
        timeouts: None,
    }
}
