//! TLS on the gRPC listener (`Sync` for data planes, the admin services for `tollgate admin`),
//! optionally mutual: with a client CA, a caller without a certificate it issued is refused
//! in the handshake. The sync token and admin keys are still required on every call.
//!
//! The files are read and checked once, at start (and by `--check-config`); tonic's listener
//! does not reload them, so a renewed certificate takes a restart (replicas can be rolled).

use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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
pub enum GrpcTlsError {
    #[error("{setting}: cannot read {}: {cause}", path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("{setting}: {} holds no valid PEM certificate", path.display())]
    NoCertificate {
        setting: &'static str,
        path: PathBuf,
    },
    #[error("grpc_tls_key_file: {} holds no valid PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("grpc_tls_key_file: {} cannot serve the certificate in {}: {reason}", key.display(), cert.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: rustls::Error,
    },
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, GrpcTlsError> {
    std::fs::read(path).map_err(|cause| GrpcTlsError::Read {
        setting,
        path: path.to_owned(),
        cause,
    })
}

/// The PEM text of `path` and its certificates, at least one.
fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), GrpcTlsError> {
    let pem = read(setting, path)?;
    let no_certificate = || GrpcTlsError::NoCertificate {
        setting,
        path: path.to_owned(),
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| no_certificate())?;
    if certs.is_empty() {
        return Err(no_certificate());
    }
    Ok((pem, certs))
}

impl GrpcTls {
    /// Reads and checks the files (the key must belong to the certificate) into tonic's
    /// server configuration.
    pub fn server_config(&self) -> Result<ServerTlsConfig, GrpcTlsError> {
        let (cert_pem, chain) = certificates("grpc_tls_cert_file", &self.cert_file)?;
        let key_pem = read("grpc_tls_key_file", &self.key_file)?;
        // The PEM error is not shown: it could quote part of the key file.
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| GrpcTlsError::NoKey {
            path: self.key_file.clone(),
        })?;
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|reason| {
            GrpcTlsError::Pair {
                cert: self.cert_file.clone(),
                key: self.key_file.clone(),
                reason,
            }
        })?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
        if let Some(path) = &self.client_ca_file {
            let (ca_pem, _) = certificates("grpc_tls_client_ca_file", path)?;
            config = config
                .client_ca_root(Certificate::from_pem(ca_pem))
                .client_auth_optional(false);
        }
        Ok(config)
    }
}
