//! Process-level settings of a control plane. Policy is not configuration: it lives in Postgres.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// Everything [`crate::spawn`] needs to start a control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// Postgres connection URL (may carry a password, hence secret).
    pub database_url: SecretString,
    /// Where the gRPC `Sync` and `Admin` services listen; port 0 picks a free port.
    pub grpc_listen: SocketAddr,
    /// Data planes must send `authorization: Bearer <token>` on every `Sync` call.
    pub sync_token: SecretString,
    /// Where a bootstrap admin key is written (mode 0600) when one is generated at start.
    pub admin_key_file: Option<PathBuf>,
    /// Period of the full recompile that backs up `LISTEN/NOTIFY`.
    pub resync_interval: Duration,
    /// Size of the Postgres connection pool.
    pub db_max_connections: u32,
}

impl ControlPlaneConfig {
    /// Default period of the safety-net resync.
    pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(30);
    /// Default size of the Postgres connection pool.
    pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 10;

    /// A configuration with defaults for everything but the essentials.
    pub fn new(
        database_url: SecretString,
        grpc_listen: SocketAddr,
        sync_token: SecretString,
    ) -> Self {
        ControlPlaneConfig {
            database_url,
            grpc_listen,
            sync_token,
            admin_key_file: None,
            resync_interval: Self::DEFAULT_RESYNC_INTERVAL,
            db_max_connections: Self::DEFAULT_DB_MAX_CONNECTIONS,
        }
    }
}
