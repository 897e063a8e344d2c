//! Postgres: the system of record. Plain `sqlx::query`/`query_as` with binds (there is no
//! database at build time); every query is exercised by the integration tests.
//!
//! Every admin write runs in one transaction. Statement triggers on each policy table bump
//! `policy_version` and `NOTIFY tollgate_policy`, so the store never publishes anything itself.

pub(crate) mod admin_key;
pub(crate) mod alias;
pub(crate) mod api_key;
pub mod audit;
mod constraint;
pub(crate) mod group;
pub(crate) mod health;
pub(crate) mod identity;
pub(crate) mod model;
pub(crate) mod observability;
pub(crate) mod org;
pub(crate) mod policy;
pub(crate) mod price;
pub(crate) mod principal;
pub(crate) mod provider;
pub mod rate_limit;
pub(crate) mod route;
pub(crate) mod scope;
pub(crate) mod settings;
pub mod spend;
pub(crate) mod usage;

use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// Why a store operation failed. Constraint violations are classified by constraint name so
/// callers can answer precisely; anything else is a [`StoreError::Database`] that callers log
/// and report generically.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The change conflicts with other rows (e.g. deleting a provider a route still uses).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent transaction won (deadlock or serialization failure); safe to retry.
    #[error("{0}")]
    Aborted(String),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("cannot apply database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        let Some(db) = err.as_database_error() else {
            return StoreError::Database(err);
        };
        if let Some(err) = db.constraint().and_then(constraint::violation) {
            return err;
        }
        match db.code().as_deref() {
            Some("23505") => StoreError::AlreadyExists("the object already exists".to_owned()),
            Some("23503") => StoreError::FailedPrecondition(
                "the change refers to, or is referred to by, other objects".to_owned(),
            ),
            Some("23502" | "23514" | "22P02" | "22003") => {
                StoreError::InvalidArgument("a value is invalid or out of range".to_owned())
            }
            Some("40001" | "40P01") => {
                StoreError::Aborted("a concurrent change conflicted; retry".to_owned())
            }
            _ => StoreError::Database(err),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(err)
    }
}

/// Opens a connection pool and checks that Postgres answers.
pub async fn connect(
    database_url: &SecretString,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(database_url.expose_secret())?;
    // One direct connection first: its error says why (refused, auth, no such database)
    // where the pool would only report a timeout.
    PgConnection::connect_with(&options).await?.close().await?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?)
}

/// A pool of one lazily opened connection, for `LISTEN` (kept apart from the query pool).
pub fn connect_listener(database_url: &SecretString) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(database_url.expose_secret())?;
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Applies the embedded migrations. sqlx's migrator holds a Postgres advisory lock while it
/// runs, so replicas starting together apply each migration exactly once.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::migrate!("../migrations").run(pool).await?;
    Ok(())
}

/// Parses an id argument; `None` when it is not a UUID (callers then try names).
fn parse_uuid(s: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(s).ok()
}
