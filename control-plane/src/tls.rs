//! TLS on the gRPC listener (`Sync` for data planes, the admin services for `tollgate admin`),
//! optionally mutual: with a client CA, a caller without a certificate it issued is refused
//! in the handshake. The sync token and admin keys are still required on every call.
//!
//! The files are read and checked once, at start (and by `--check-config`); tonic's listener
//! does not reload them, so a renewed certificate takes a restart (replicas can be rolled).

use std::path::PathBuf;

use tollgate_settings::pem::{self, KeyRole, PemError};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The gRPC listener's certificate, key and (for mutual TLS) client CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to; `None` = no client
    /// certificates asked for.
    pub client_ca_file: Option<PathBuf>,
}

/// Why the gRPC TLS settings cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct GrpcTlsError(#[from] PemError);

impl GrpcTls {
    /// Reads and checks the files (the key must belong to the certificate) into tonic's
    /// server configuration.
    pub fn server_config(&self) -> Result<ServerTlsConfig, GrpcTlsError> {
        let (cert_pem, chain) = pem::certificates("grpc_tls_cert_file", &self.cert_file)?;
        let (key_pem, key) =
            pem::private_key("grpc_tls_key_file", &self.key_file, KeyRole::Server)?;
        pem::certified_key(
            "grpc_tls_key_file",
            chain,
            key,
            &self.cert_file,
            &self.key_file,
            KeyRole::Server,
        )?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
        if let Some(path) = &self.client_ca_file {
            let (ca_pem, _) = pem::certificates("grpc_tls_client_ca_file", path)?;
            config = config
                .client_ca_root(Certificate::from_pem(ca_pem))
                .client_auth_optional(false);
        }
        Ok(config)
    }
}
