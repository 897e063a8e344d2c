//! PostgreSQL for tests: one server per test process, one fresh database per test.
//!
//! Order: `TOLLGATE_TEST_DATABASE_URL` (an admin URL, e.g. `postgres://postgres@host/postgres`),
//! else a server on 127.0.0.1:5432 (user `postgres`, trust auth), else a private cluster
//! started from the PostgreSQL binaries under the target directory, stopped by a watchdog
//! when the test process exits.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sqlx::Connection as _;
use tokio::sync::OnceCell;
use tollgate_cli::pg_cluster::{ClusterOptions, PrivateCluster};

static SERVER: OnceCell<String> = OnceCell::const_new();

/// A database created for one test.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database.
    pub async fn create() -> anyhow::Result<Self> {
        TestDatabase::create_on(&server_admin_url().await?).await
    }

    /// Creates a fresh, empty database on the server `admin_url` names (a URL allowed to
    /// create databases).
    pub async fn create_on(admin_url: &str) -> anyhow::Result<Self> {
        let admin_url = admin_url.to_owned();
        let name = format!("tg_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let url = replace_database(&admin_url, &name);
        Ok(TestDatabase {
            name,
            url,
            admin_url,
        })
    }

    /// Drops the database (best effort; connections are terminated first).
    pub async fn drop_database(&self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }

    pub async fn pool(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await?)
    }
}

fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..prefix_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The admin URL of the test server, starting a private cluster on first use if needed.
pub async fn server_admin_url() -> anyhow::Result<String> {
    SERVER
        .get_or_try_init(|| async {
            if let Ok(url) = std::env::var("TOLLGATE_TEST_DATABASE_URL") {
                return Ok(url);
            }
            let local = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
            let probe =
                tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect(&local))
                    .await;
            if let Ok(Ok(conn)) = probe {
                let _ = conn.close().await;
                return Ok(local);
            }
            start_private_cluster().await
        })
        .await
        .cloned()
}

async fn start_private_cluster() -> anyhow::Result<String> {
    let dir = target_dir().join(format!("tollgate-test-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = PrivateCluster::start(&ClusterOptions {
        dir: dir.clone(),
        port: 0,
        ephemeral: true,
    })
    .await?;
    spawn_watchdog(&dir, &cluster)?;
    Ok(cluster.url("postgres"))
}

/// A detached shell that stops the cluster and removes its files once this process is gone.
fn spawn_watchdog(dir: &std::path::Path, cluster: &PrivateCluster) -> anyhow::Result<()> {
    let owner = match cluster.run_as() {
        Some(user) => format!("runuser -u {user} --"),
        None => String::new(),
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {owner} \"$BIN/pg_ctl\" -D \"$DATA\" -m immediate -w stop >/dev/null 2>&1; \
         rm -rf \"$DIR\" \"$DATA\"",
        pid = std::process::id(),
    );
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("BIN", cluster.bindir())
        .env("DATA", cluster.data_dir())
        .env("DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(())
}

/// A private PostgreSQL cluster owned by one test, which may stop it and start it again on
/// the same port (an outage); stopped (immediately) when dropped, on every exit path.
pub struct OwnedCluster {
    options: ClusterOptions,
    server: Option<PrivateCluster>,
    _dir: tempfile::TempDir,
}

impl OwnedCluster {
    /// Initialises and starts a cluster under a temporary directory in the target directory.
    pub async fn start(prefix: &str) -> anyhow::Result<OwnedCluster> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(target_dir())?;
        let mut options = ClusterOptions {
            dir: dir.path().to_owned(),
            port: 0,
            ephemeral: true,
        };
        let server = PrivateCluster::start(&options).await?;
        options.port = server.port();
        Ok(OwnedCluster {
            options,
            server: Some(server),
            _dir: dir,
        })
    }

    /// An admin URL of the cluster (user `postgres`, database `postgres`).
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.options.port
        )
    }

    /// Stops the server (fast shutdown); a no-op when it is stopped.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(server) = self.server.take() {
            server.stop().await?;
        }
        Ok(())
    }

    /// Starts the same cluster again, on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.server = Some(PrivateCluster::start(&self.options).await?);
        Ok(())
    }
}

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            let pg_ctl = server.bindir().join("pg_ctl");
            let mut command = match server.run_as() {
                Some(user) => {
                    let mut c = std::process::Command::new("runuser");
                    c.args(["-u", user, "--"]).arg(pg_ctl);
                    c
                }
                None => std::process::Command::new(pg_ctl),
            };
            let _ = command
                .arg("-D")
                .arg(server.data_dir())
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `target/` of this workspace (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.join("target"))
        .unwrap_or_else(|| PathBuf::from("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database_keeping_query() {
        assert_eq!(
            replace_database("postgres://u@h:5/postgres?sslmode=disable", "x"),
            "postgres://u@h:5/x?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://u@h:5", "x"),
            "postgres://u@h:5/x"
        );
    }
}
