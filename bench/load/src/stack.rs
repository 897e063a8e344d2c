//! The Tollgate side of the bench: a fresh Postgres database, the control and data plane release
//! binaries as separate processes, and the policy seeded through the admin gRPC API.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::Connection as _;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::admin_client::AdminClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::client::{MODEL, RequestTemplate, wait_for_ok};
use crate::process::ChildGuard;

/// A model that exists but that policy changes toggle access to.
pub const OTHER_MODEL: &str = "claude-haiku-5";
/// The group every bench credential belongs to.
pub const GROUP: &str = "load";

/// A database created for this run; dropped by [`Database::drop_database`].
pub struct Database {
    server_url: String,
    pub name: String,
    pub url: String,
}

impl Database {
    pub async fn create(server_url: &str) -> Result<Database> {
        let name = format!("tg_load_{:016x}", rand::random::<u64>());
        let mut conn = connect(server_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let _ = conn.close().await;
        Ok(Database {
            server_url: server_url.to_owned(),
            url: with_database(server_url, &name),
            name,
        })
    }

    pub async fn drop_database(self) -> Result<()> {
        let mut conn = connect(&self.server_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot drop database {}", self.name))?;
        let _ = conn.close().await;
        Ok(())
    }
}

async fn connect(url: &str) -> Result<sqlx::PgConnection> {
    tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(url))
        .await
        .context("connecting to PostgreSQL timed out")?
        .with_context(
            || "cannot connect to PostgreSQL (set TOLLGATE_TEST_DATABASE_URL or --database-url)",
        )
}

/// `postgres://u@h:p/db?x` with its database replaced by `name` (query kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// A port that was free a moment ago (the processes we start need one on their command line).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Adds `authorization: Bearer <admin key>` to every admin call.
#[derive(Clone)]
pub struct BearerAuth(MetadataValue<Ascii>);

impl Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Admin = AdminClient<InterceptedService<Channel, BearerAuth>>;

/// Everything seeded for the bench.
pub struct Seeded {
    pub api_key: String,
    /// Extra keys, revoked one by one by the propagation phase: (id, secret).
    pub spare_keys: Vec<(String, String)>,
}

/// Control plane + data plane, running and serving the seeded policy.
pub struct Stack {
    /// Declared first so it stops first (fields drop in order) and can flush usage.
    pub data_plane: ChildGuard,
    pub control_plane: ChildGuard,
    pub data_plane_addr: SocketAddr,
    pub admin: Admin,
    pub seeded: Seeded,
}

pub struct StackPlan<'a> {
    pub bin_dir: &'a Path,
    pub database_url: &'a str,
    pub upstream_url: &'a str,
    pub work_dir: &'a Path,
    pub spare_keys: u32,
    pub data_plane_log: Option<&'a str>,
}

/// Path of a release binary, or an error telling how to build it.
pub fn binary(bin_dir: &Path, name: &str) -> Result<PathBuf> {
    let path = bin_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found: build the release binaries first with `cargo build --release --bins` \
             (or point --bin-dir at them)",
            path.display()
        );
    }
    Ok(path)
}

pub async fn start(plan: &StackPlan<'_>) -> Result<Stack> {
    let cp_bin = binary(plan.bin_dir, "tollgate-control-plane")?;
    let dp_bin = binary(plan.bin_dir, "tollgate-data-plane")?;
    let sync_token = format!("sync-{:032x}", rand::random::<u128>());
    let grpc_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let key_file = plan.work_dir.join("admin.key");

    let mut cmd = Command::new(&cp_bin);
    cmd.arg("--database-url")
        .arg(plan.database_url)
        .arg("--grpc-listen")
        .arg(grpc_addr.to_string())
        .arg("--admin-key-file")
        .arg(&key_file)
        .env("TOLLGATE_SYNC_TOKEN", &sync_token);
    let mut control_plane = ChildGuard::spawn("control-plane", cmd, plan.work_dir)?;
    let admin = connect_admin(&mut control_plane, grpc_addr, &key_file).await?;
    let mut admin = admin;
    let seeded = seed(&mut admin, plan.upstream_url, plan.spare_keys).await?;

    let dp_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cmd = Command::new(&dp_bin);
    cmd.arg("--listen")
        .arg(dp_addr.to_string())
        .arg("--control-plane-url")
        .arg(format!("http://{grpc_addr}"))
        .env("TOLLGATE_SYNC_TOKEN", &sync_token);
    if let Some(filter) = plan.data_plane_log {
        cmd.env("TOLLGATE_LOG", filter);
    }
    let mut data_plane = ChildGuard::spawn("data-plane", cmd, plan.work_dir)?;
    let template = RequestTemplate::new(&seeded.api_key, false, None)?;
    let ready = tokio::select! {
        r = wait_for_ok(dp_addr, &template, Duration::from_secs(60)) => r,
        e = exits(&mut data_plane) => Err(e),
    };
    if let Err(err) = ready {
        data_plane.ensure_running()?;
        bail!(
            "{err:#}\nlast lines of {}:\n{}",
            data_plane.log_path().display(),
            data_plane.log_tail(30)
        );
    }
    Ok(Stack {
        data_plane,
        control_plane,
        data_plane_addr: dp_addr,
        admin,
        seeded,
    })
}

/// Resolves (with the error) only when the child has exited; polls every 100 ms.
async fn exits(child: &mut ChildGuard) -> anyhow::Error {
    loop {
        if let Err(err) = child.ensure_running() {
            return err;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the bootstrap admin key and for the admin API to accept it.
async fn connect_admin(cp: &mut ChildGuard, addr: SocketAddr, key_file: &Path) -> Result<Admin> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no admin key file yet");
    while Instant::now() < deadline {
        cp.ensure_running()?;
        let key = std::fs::read_to_string(key_file).map(|k| k.trim().to_owned());
        if let Ok(key) = key.as_deref()
            && !key.is_empty()
        {
            match try_admin(addr, key).await {
                Ok(admin) => return Ok(admin),
                Err(err) => last = format!("{err:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the control plane's admin API was not usable within 60 s ({last}); last lines of {}:\n{}",
        cp.log_path().display(),
        cp.log_tail(30)
    )
}

async fn try_admin(addr: SocketAddr, key: &str) -> Result<Admin> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let bearer: MetadataValue<Ascii> = format!("Bearer {key}").parse()?;
    let mut admin = AdminClient::with_interceptor(channel, BearerAuth(bearer));
    admin.list_providers(pb::ListProvidersRequest {}).await?;
    Ok(admin)
}

async fn seed(admin: &mut Admin, upstream_url: &str, spare_keys: u32) -> Result<Seeded> {
    admin
        .create_provider(pb::CreateProviderRequest {
            name: "fake".into(),
            kind: pb::ProviderKind::Anthropic.into(),
            config: Some(pb::ProviderConfig {
                base_url: upstream_url.into(),
                api_key: Some(pb::SecretRef {
                    source: Some(pb::secret_ref::Source::Value("sk-ant-load-harness".into())),
                }),
                ..Default::default()
            }),
        })
        .await
        .context("seeding the provider")?;
    for (id, name) in [(MODEL, "Claude Sonnet 5"), (OTHER_MODEL, "Claude Haiku 5")] {
        admin
            .upsert_model(pb::UpsertModelRequest {
                id: id.into(),
                display_name: name.into(),
                max_input_tokens: 200_000,
            })
            .await
            .with_context(|| format!("seeding model {id}"))?;
        admin
            .set_route(pb::SetRouteRequest {
                model: id.into(),
                targets: vec![pb::RouteTargetSpec {
                    provider: "fake".into(),
                    upstream_model: String::new(),
                    weight: 1,
                    ..Default::default()
                }],
            })
            .await
            .with_context(|| format!("seeding the route of {id}"))?;
    }
    admin
        .create_group(pb::CreateGroupRequest {
            name: GROUP.into(),
            allowed_models: vec!["*".into()],
        })
        .await
        .context("seeding the group")?;
    admin
        .create_principal(pb::CreatePrincipalRequest {
            kind: pb::PrincipalKind::ServiceAccount.into(),
            name: "load-harness".into(),
            email: String::new(),
            groups: vec![GROUP.into()],
        })
        .await
        .context("seeding the service account")?;
    let mut keys = Vec::new();
    for i in 0..=spare_keys {
        let created = admin
            .create_api_key(pb::CreateApiKeyRequest {
                principal: "load-harness".into(),
                name: format!("load-{i}"),
                expires_at_unix_s: 0,
            })
            .await
            .context("seeding an API key")?
            .into_inner();
        let id = created.key.map(|k| k.id).unwrap_or_default();
        keys.push((id, created.secret));
    }
    let (_, api_key) = keys.remove(0);
    Ok(Seeded {
        api_key,
        spare_keys: keys,
    })
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
