//! TLS to an `https` control plane: which roots its certificate must chain to, and the client
//! certificate this data plane presents when the control plane asks for one (mutual TLS).
//!
//! The sync token is sent over TLS too: the certificate proves the channel, the token the
//! caller.

use std::path::PathBuf;

use tollgate_settings::pem::{self, KeyRole, PemError};
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
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error(
        "control_plane_client_cert_file and control_plane_client_key_file: set both or neither"
    )]
    HalfPair,
    #[error("control-plane TLS: {0}")]
    Transport(#[source] tonic::transport::Error),
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
                let (ca_pem, _) = pem::certificates("control_plane_ca_file", path)?;
                config.ca_certificate(Certificate::from_pem(ca_pem))
            }
            None => config.with_webpki_roots(),
        };
        match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => Ok(config),
            (Some(cert_file), Some(key_file)) => {
                let setting = "control_plane_client_key_file";
                let (cert_pem, chain) =
                    pem::certificates("control_plane_client_cert_file", cert_file)?;
                let (key_pem, key) = pem::private_key(setting, key_file, KeyRole::Client)?;
                pem::certified_key(setting, chain, key, cert_file, key_file, KeyRole::Client)?;
                Ok(config.identity(Identity::from_pem(cert_pem, key_pem)))
            }
            _ => Err(ControlPlaneTlsError::HalfPair),
        }
    }
}
