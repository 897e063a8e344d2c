//! The database `tollgate dev` uses: `DATABASE_URL` when given, else a private cluster.

use std::path::Path;

use anyhow::Context as _;
use sqlx::Connection as _;

use crate::pg_cluster::{ClusterOptions, PrivateCluster};

/// A database ready for the control plane, and the cluster to stop afterwards if we own one.
#[derive(Debug)]
pub struct DevDatabase {
    pub url: String,
    cluster: Option<PrivateCluster>,
}

impl DevDatabase {
    /// The policy version committed in the database (what a data plane must reach).
    pub async fn policy_version(&self) -> anyhow::Result<u64> {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .context("cannot connect to the database")?;
        let v: i64 = sqlx::query_scalar("SELECT version FROM policy_version")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// Stops the private cluster, if we started one.
    pub async fn close(&self) {
        if let Some(c) = &self.cluster
            && let Err(e) = c.stop().await
        {
            eprintln!("warning: could not stop the private PostgreSQL cluster: {e}");
        }
    }
}

/// Uses `database_url` as is, or starts (initialising on first use) a private cluster in
/// `<state_dir>/postgres` and makes sure its `tollgate` database exists.
pub async fn open_database(
    state_dir: &Path,
    database_url: Option<String>,
    pg_port: u16,
) -> anyhow::Result<DevDatabase> {
    if let Some(url) = database_url {
        return Ok(DevDatabase { url, cluster: None });
    }
    let cluster = PrivateCluster::start(&ClusterOptions {
        dir: state_dir.join("postgres"),
        port: pg_port,
        ephemeral: false,
    })
    .await
    .context("cannot start a private PostgreSQL cluster")?;
    let db = DevDatabase {
        url: cluster.url("tollgate"),
        cluster: Some(cluster),
    };
    if let Err(e) = create_database_if_missing(&db).await {
        db.close().await;
        return Err(e);
    }
    Ok(db)
}

async fn create_database_if_missing(db: &DevDatabase) -> anyhow::Result<()> {
    let Some(cluster) = &db.cluster else {
        return Ok(());
    };
    let mut conn = sqlx::PgConnection::connect(&cluster.url("postgres"))
        .await
        .context("cannot connect to the private PostgreSQL cluster")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'tollgate')")
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query("CREATE DATABASE tollgate")
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}
