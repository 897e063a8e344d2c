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
    /// Where the HTTP identity endpoints (device flow, verification page, IdP callback)
    /// listen; `None` serves none. Port 0 picks a free port.
    pub http_listen: Option<SocketAddr>,
    /// The gateway's external base URL (e.g. `https://gateway.example.com`): the issuer of
    /// gateway tokens and the base of absolute URLs. When `None`, URLs are built from
    /// `X-Forwarded-Proto`/`X-Forwarded-Host` (else `Host`) and tokens are issued by `tollgate`.
    pub public_url: Option<String>,
    /// Lifetime of gateway access tokens.
    pub token_ttl: Duration,
    /// Base64 of the 32-byte key encrypting secrets at rest (signing keys, the IdP client
    /// secret, IdP tokens). Every replica needs the same key.
    pub secrets_key: Option<SecretString>,
    /// Where the secrets key is read from, or generated into (mode 0600) at first start, when
    /// `secrets_key` is not given. With neither, a key lives in memory only (tests).
    pub secrets_key_file: Option<PathBuf>,
    /// Where audit entries past their retention are archived (JSON lines) before they are
    /// deleted. `None` never deletes any, whatever the retention setting.
    pub audit_archive_dir: Option<PathBuf>,
    /// The Ed25519 key (PKCS#8 PEM, created mode 0600 if missing) signing audit checkpoints;
    /// `None` signs none.
    pub audit_signing_key_file: Option<PathBuf>,
    /// Period of the audit checkpointer.
    pub audit_checkpoint_interval: Duration,
    /// Where every checkpoint this replica signs is appended as a JSON line.
    pub audit_checkpoint_file: Option<PathBuf>,
    /// Where the operator listener (`/metrics`, `/healthz`, `/readyz`) listens; `None`
    /// serves none. Port 0 picks a free port.
    pub admin_listen: Option<SocketAddr>,
    /// TLS (optionally mutual) on the gRPC listener; `None` = plaintext.
    pub grpc_tls: Option<crate::tls::GrpcTls>,
    /// Where rate-limit buckets and concurrency leases read the time: the system clock,
    /// or a manual one in tests.
    pub clock: crate::clock::Clock,
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
            http_listen: None,
            public_url: None,
            token_ttl: crate::identity::DEFAULT_TOKEN_TTL,
            secrets_key: None,
            secrets_key_file: None,
            audit_archive_dir: None,
            audit_signing_key_file: None,
            audit_checkpoint_interval: crate::audit::DEFAULT_CHECKPOINT_INTERVAL,
            audit_checkpoint_file: None,
            admin_listen: None,
            grpc_tls: None,
            clock: crate::clock::Clock::system(),
        }
    }
}
