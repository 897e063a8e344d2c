//! TLS on the client listener: a rustls handshake (ALPN `h2`, `http/1.1`) under a timeout on
//! every accepted connection, with the certificate and key read from PEM files and reloaded
//! without a restart.
//!
//! The served certificate lives in an [`ArcSwap`]: a reload *prepares* a new pair (read,
//! parse, check that the key belongs to the certificate) and only then swaps it in. A bad new
//! pair is logged and the old one kept; new connections pick up a good one at once, open ones
//! keep the certificate they were made with. The files are checked every reload interval (by
//! modification time and size), and at once on `SIGHUP`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tollgate_settings::pem::{self, KeyRole, PemError};

/// Where the listener's certificate and key are, and how the handshake is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key_file: PathBuf,
    /// How often the files are checked for a new pair.
    pub reload_interval: Duration,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
}

impl TlsSettings {
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Settings with the default reload interval and handshake timeout.
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> Self {
        TlsSettings {
            cert_file,
            key_file,
            reload_interval: Self::DEFAULT_RELOAD_INTERVAL,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Adds every problem to `problems`; reads and checks the certificate and key files.
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        if self.reload_interval.is_zero() {
            problems.push("tls_reload_interval: must be positive".to_owned());
        }
        if self.handshake_timeout.is_zero() {
            problems.push("tls_handshake_timeout: must be positive".to_owned());
        }
        if let Err(error) = load_pair(&self.cert_file, &self.key_file) {
            problems.push(error.to_string());
        }
    }
}

/// Why a certificate and key pair cannot be served. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("cannot configure TLS: {0}")]
    Config(#[source] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a certificate chain and its key.
fn load_pair(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = pem::certificate_chain("tls_cert_file", cert_file)?;
    let (_, key) = pem::private_key("tls_key_file", key_file, KeyRole::Server)?;
    Ok(pem::certified_key(
        "tls_key_file",
        chain,
        key,
        cert_file,
        key_file,
        KeyRole::Server,
    )?)
}

/// The certificate served to new connections.
struct CurrentCertificate(ArcSwap<CertifiedKey>);

impl std::fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentCertificate { .. }")
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The listener's TLS side: the acceptor and the certificate it serves.
pub(crate) struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<CurrentCertificate>,
    settings: TlsSettings,
}

impl ServerTls {
    /// Loads the initial pair; fails if it is unreadable or invalid.
    pub(crate) fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let pair = load_pair(&settings.cert_file, &settings.key_file)?;
        let current = Arc::new(CurrentCertificate(ArcSwap::from_pointee(pair)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
            settings: settings.clone(),
        })
    }

    /// The TLS handshake on an accepted connection; `None` if it failed, timed out, or
    /// shutdown started first.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        shutdown: &CancellationToken,
    ) -> Option<TlsStream<TcpStream>> {
        let handshake = tokio::time::timeout(
            self.settings.handshake_timeout,
            self.acceptor.accept(stream),
        );
        tokio::select! {
            () = shutdown.cancelled() => None,
            done = handshake => match done {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    None
                }
            },
        }
    }
}

/// What the reloader last saw of the two files (modification time and size).
type Seen = Option<[(SystemTime, u64); 2]>;

fn seen(settings: &TlsSettings) -> Seen {
    let stat = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok()
    };
    Some([stat(&settings.cert_file)?, stat(&settings.key_file)?])
}

/// Checks the files every reload interval and on `SIGHUP`; swaps in a changed pair once it
/// loads, keeps the old one (and logs why) when it does not. Stops at `shutdown`.
pub(crate) fn spawn_certificate_reloader(
    tls: &ServerTls,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let current = tls.current.clone();
    let settings = tls.settings.clone();
    tokio::spawn(async move {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload on change only");
                None
            }
        };
        let mut last = seen(&settings);
        let mut tick = tokio::time::interval(settings.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => false,
                Some(()) = async { hangup.as_mut()?.recv().await } => true,
            };
            let now = seen(&settings);
            if !forced && now == last {
                continue;
            }
            last = now;
            match load_pair(&settings.cert_file, &settings.key_file) {
                Ok(pair) => {
                    current.0.store(Arc::new(pair));
                    tracing::info!(
                        cert_file = %settings.cert_file.display(),
                        "TLS certificate reloaded"
                    );
                }
                Err(error) => tracing::warn!(
                    %error,
                    "new TLS certificate or key not usable; still serving the previous one"
                ),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        (cert_file, key_file)
    }

    #[test]
    fn loads_a_matching_pair_and_refuses_a_key_of_another_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        let (cert_file, key_file) = files(dir.path(), &cert, &key);
        assert!(load_pair(&cert_file, &key_file).is_ok());
        let (cert_file, key_file) = files(dir.path(), &cert, &other_key);
        let error = load_pair(&cert_file, &key_file).unwrap_err();
        assert!(
            matches!(error, TlsError::Pem(PemError::Pair { .. })),
            "{error}"
        );
    }

    #[test]
    fn errors_never_quote_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed();
        let key = "-----BEGIN PRIVATE KEY-----\nSECRETMATERIAL!!\n-----END PRIVATE KEY-----\n";
        let (cert_file, key_file) = files(dir.path(), &cert, key);
        let error = load_pair(&cert_file, &key_file).unwrap_err();
        assert!(
            matches!(error, TlsError::Pem(PemError::NoKey { .. })),
            "{error}"
        );
        assert!(!format!("{error} {error:?}").contains("SECRETMATERIAL"));
    }

    #[test]
    fn validate_names_the_unreadable_file() {
        let settings = TlsSettings::new(
            "/nonexistent/cert.pem".into(),
            "/nonexistent/key.pem".into(),
        );
        let mut problems = Vec::new();
        settings.validate(&mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("tls_cert_file: cannot read /nonexistent/cert.pem"),
            "{problems:?}"
        );
    }
}
