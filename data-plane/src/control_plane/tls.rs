//! TLS to an `https` control plane: which roots its certificate must chain to, and the client
//! certificate this data plane presents when the control plane asks for one (mutual TLS).
//!
//! The sync token is sent over TLS too: the certificate proves the channel, the token the
//! caller.

use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Trust roots and client certificate for an `https` control-plane URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlPlaneTls {
    /// PEM certificates the control plane's certificate must chain to; `None` = the public
    /// web PKI roots (webpki-roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain presented to the control plane (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key_file: Option<PathBuf>,
}

/// Why the control-plane TLS settings cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneTlsError {
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
    #[error("control_plane_client_key_file: {} holds no valid PEM private key", path.display())]
    NoKey { path: PathBuf },
    #[error("control_plane_client_key_file: {} does not belong to the certificate in {}: {reason}", key.display(), cert.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: rustls::Error,
    },
    #[error(
        "control_plane_client_cert_file and control_plane_client_key_file: set both or neither"
    )]
    HalfPair,
    #[error("control-plane TLS: {0}")]
    Transport(#[source] tonic::transport::Error),
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, ControlPlaneTlsError> {
    std::fs::read(path).map_err(|cause| ControlPlaneTlsError::Read {
        setting,
        path: path.to_owned(),
        cause,
    })
}

/// PEM certificates in `path`, at least one.
fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), ControlPlaneTlsError> {
    let pem = read(setting, path)?;
    let no_certificate = || ControlPlaneTlsError::NoCertificate {
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

impl ControlPlaneTls {
    /// Whether any setting is given.
    pub(crate) fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_cert_file.is_some() || self.client_key_file.is_some()
    }

    /// Adds the problem, if any, to `problems` (reads and checks the files).
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        if let Err(error) = self.client_config() {
            problems.push(error.to_string());
        }
    }

    /// The channel's TLS configuration, from the files as they are now.
    pub(crate) fn client_config(&self) -> Result<ClientTlsConfig, ControlPlaneTlsError> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(path) => {
                let (pem, _) = certificates("control_plane_ca_file", path)?;
                config.ca_certificate(Certificate::from_pem(pem))
            }
            None => config.with_webpki_roots(),
        };
        match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => Ok(config),
            (Some(cert_file), Some(key_file)) => {
                let (cert_pem, chain) = certificates("control_plane_client_cert_file", cert_file)?;
                let key_pem = read("control_plane_client_key_file", key_file)?;
                // The PEM error is not shown: it could quote part of the key file.
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                    ControlPlaneTlsError::NoKey {
                        path: key_file.clone(),
                    }
                })?;
                let provider = rustls::crypto::ring::default_provider();
                rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|reason| {
                    ControlPlaneTlsError::Pair {
                        cert: cert_file.clone(),
                        key: key_file.clone(),
                        reason,
                    }
                })?;
                Ok(config.identity(Identity::from_pem(cert_pem, key_pem)))
            }
            _ => Err(ControlPlaneTlsError::HalfPair),
        }
    }
}
