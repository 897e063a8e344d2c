//! Test harness: a fresh Postgres database per test and an in-process control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::compiler;
use tollgate_control_plane::identity::SecretsKey;
use tollgate_control_plane::{ControlPlaneConfig, ControlPlaneHandle};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::admin_client::AdminClient;
use tollgate_proto::v1::sync_client::SyncClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const SYNC_TOKEN: &str = "test-sync-token";

/// A database created for one test and dropped (best effort, even on panic) afterwards.
pub struct TestDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin_url = std::env::var("TOLLGATE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .expect("connect to the test Postgres (set TOLLGATE_TEST_DATABASE_URL)");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        let url = with_database(&admin_url, &name);
        TestDb {
            admin_url,
            name,
            url,
        }
    }

    pub async fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .unwrap()
    }

    pub fn config(&self) -> ControlPlaneConfig {
        ControlPlaneConfig::new(
            SecretString::from(self.url.clone()),
            "127.0.0.1:0".parse().unwrap(),
            SecretString::from(SYNC_TOKEN),
        )
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = conn.execute(sql.as_str()).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A control plane running in-process against a [`TestDb`].
pub struct TestControlPlane {
    pub addr: SocketAddr,
    pub admin_key: String,
    shutdown: CancellationToken,
    handle: Option<ControlPlaneHandle>,
}

impl TestControlPlane {
    /// Starts on a fresh database, which must yield a bootstrap admin key.
    pub async fn start(db: &TestDb) -> TestControlPlane {
        Self::start_with(db.config()).await
    }

    pub async fn start_with(config: ControlPlaneConfig) -> TestControlPlane {
        let shutdown = CancellationToken::new();
        let handle = tollgate_control_plane::spawn(config, shutdown.clone())
            .await
            .unwrap();
        let admin_key = handle
            .bootstrap_admin_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned())
            .unwrap_or_default();
        TestControlPlane {
            addr: handle.grpc_addr,
            admin_key,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Cancels and waits for a clean stop (bounded, so a hang fails the test).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle.wait())
            .await
            .expect("control plane stops within 10 s")
            .unwrap();
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// An admin client sending the bootstrap admin key.
    pub async fn admin(&self) -> AdminApi {
        self.admin_with(Some(&self.admin_key)).await
    }

    /// An admin client sending `authorization: Bearer <key>` (or nothing).
    pub async fn admin_with(&self, key: Option<&str>) -> AdminApi {
        AdminClient::with_interceptor(self.channel().await, Bearer::new(key))
    }

    /// A sync client sending the right sync token.
    pub async fn sync(&self) -> SyncApi {
        self.sync_with(Some(SYNC_TOKEN)).await
    }

    pub async fn sync_with(&self, token: Option<&str>) -> SyncApi {
        SyncClient::with_interceptor(self.channel().await, Bearer::new(token))
    }
}

impl Drop for TestControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub type AdminApi = AdminClient<InterceptedService<Channel, Bearer>>;
pub type SyncApi = SyncClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    fn new(token: Option<&str>) -> Self {
        Bearer(token.map(|t| format!("Bearer {t}").parse().unwrap()))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Compiles the policy with a throwaway secrets key: for tests whose providers store no
/// credentials (a key of its own opens none).
pub async fn compile(pool: &PgPool) -> Result<pb::Snapshot, compiler::CompileError> {
    compiler::compile(pool, &SecretsKey::generate()).await
}

/// The current policy version.
pub async fn policy_version(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT version FROM policy_version")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A provider, a model routed to it, and a group allowing it: the usual starting point.
pub async fn seed_catalogue(admin: &mut AdminApi) -> pb::GroupInfo {
    admin
        .create_provider(pb::CreateProviderRequest {
            name: "demo".to_owned(),
            kind: pb::ProviderKind::Demo as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .upsert_model(pb::UpsertModelRequest {
            id: "claude-test".to_owned(),
            display_name: "Claude Test".to_owned(),
            max_input_tokens: 200_000,
        })
        .await
        .unwrap();
    admin
        .set_route(pb::SetRouteRequest {
            model: "claude-test".to_owned(),
            targets: vec![pb::RouteTargetSpec {
                provider: "demo".to_owned(),
                upstream_model: String::new(),
                weight: 1,
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    admin
        .create_group(pb::CreateGroupRequest {
            name: "eng".to_owned(),
            allowed_models: vec!["claude-test".to_owned()],
        })
        .await
        .unwrap()
        .into_inner()
}

/// Creates a principal in `groups` and returns it.
pub async fn create_principal(
    admin: &mut AdminApi,
    kind: pb::PrincipalKind,
    name: &str,
    email: &str,
    groups: &[&str],
) -> pb::PrincipalInfo {
    admin
        .create_principal(pb::CreatePrincipalRequest {
            kind: kind as i32,
            name: name.to_owned(),
            email: email.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Creates a key for `principal` and returns it with its secret.
pub async fn create_key(
    admin: &mut AdminApi,
    principal: &str,
    name: &str,
) -> pb::CreateApiKeyResponse {
    admin
        .create_api_key(pb::CreateApiKeyRequest {
            principal: principal.to_owned(),
            name: name.to_owned(),
            expires_at_unix_s: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
