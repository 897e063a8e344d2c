//! PEM certificate and key files named by a setting: read, parsed and checked the same way
//! by every server. Errors name the setting and the file, never quote a key file.

use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// What a private key is for; picks the wording of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// A server's key: serves the certificate to clients.
    Server,
    /// A client certificate's key (mutual TLS).
    Client,
}

/// Why a PEM file named by a setting cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("{setting}: cannot read {}: {cause}", path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// No certificate, or malformed PEM, reported as one (see [`certificates`]).
    #[error("{setting}: {} holds no valid PEM certificate", path.display())]
    NoValidCertificate {
        setting: &'static str,
        path: PathBuf,
    },
    /// Well-formed PEM without a certificate (see [`certificate_chain`]).
    #[error("{setting}: {} holds no PEM certificate", path.display())]
    NoCertificate {
        setting: &'static str,
        path: PathBuf,
    },
    /// Malformed PEM in a certificate file (see [`certificate_chain`]).
    #[error("{setting}: {} is not valid PEM: {reason}", path.display())]
    CertificatePem {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{setting}: {} holds no valid PEM private key{}", path.display(), key_formats(*role))]
    NoKey {
        setting: &'static str,
        path: PathBuf,
        role: KeyRole,
    },
    #[error("{setting}: {} {} the certificate in {}: {reason}", key.display(), pair_verb(*role), cert.display())]
    Pair {
        setting: &'static str,
        cert: PathBuf,
        key: PathBuf,
        role: KeyRole,
        reason: Box<rustls::Error>,
    },
}

fn key_formats(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Server => " (PKCS#8, PKCS#1 or SEC1)",
        KeyRole::Client => "",
    }
}

fn pair_verb(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Server => "cannot serve",
        KeyRole::Client => "does not belong to",
    }
}

/// The bytes of `path`, the file named by `setting`.
pub fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|cause| PemError::Read {
        setting,
        path: path.to_owned(),
        cause,
    })
}

/// The PEM text of `path` and its certificates, at least one; malformed PEM and no
/// certificate are both [`PemError::NoValidCertificate`].
pub fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), PemError> {
    let pem = read(setting, path)?;
    let no_certificate = || PemError::NoValidCertificate {
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

/// The certificates of `path`, at least one; malformed PEM ([`PemError::CertificatePem`],
/// with the parser's reason) is told apart from no certificate ([`PemError::NoCertificate`]).
pub fn certificate_chain(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let pem = read(setting, path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PemError::CertificatePem {
            setting,
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(PemError::NoCertificate {
            setting,
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// The PEM text of `path` and its private key (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(
    setting: &'static str,
    path: &Path,
    role: KeyRole,
) -> Result<(Vec<u8>, PrivateKeyDer<'static>), PemError> {
    let pem = read(setting, path)?;
    // The PEM error is not shown: it could quote part of the key file.
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| PemError::NoKey {
        setting,
        path: path.to_owned(),
        role,
    })?;
    Ok((pem, key))
}

/// Checks that `key` (from `key_file`, named by `setting`) belongs to `chain` (from
/// `cert_file`); the pair, ready to serve.
pub fn certified_key(
    setting: &'static str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: &Path,
    key_file: &Path,
    role: KeyRole,
) -> Result<CertifiedKey, PemError> {
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|reason| PemError::Pair {
        setting,
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        role,
        reason: Box::new(reason),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_certificates_and_a_matching_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let cert_file = write(dir.path(), "cert.pem", &cert);
        let key_file = write(dir.path(), "key.pem", &key);
        let (_, chain) = certificates("c", &cert_file).unwrap();
        assert_eq!(chain, certificate_chain("c", &cert_file).unwrap());
        let (_, key) = private_key("k", &key_file, KeyRole::Server).unwrap();
        certified_key("k", chain, key, &cert_file, &key_file, KeyRole::Server).unwrap();
    }

    #[test]
    fn messages_name_the_setting_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = read("s", &missing).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("s: cannot read {}: ", missing.display())),
            "{error}"
        );
        let empty = write(dir.path(), "empty.pem", "");
        let shown = |e: PemError| e.to_string().replace(&empty.display().to_string(), "F");
        assert_eq!(
            shown(certificates("s", &empty).unwrap_err()),
            "s: F holds no valid PEM certificate"
        );
        assert_eq!(
            shown(certificate_chain("s", &empty).unwrap_err()),
            "s: F holds no PEM certificate"
        );
        assert_eq!(
            shown(private_key("s", &empty, KeyRole::Server).unwrap_err()),
            "s: F holds no valid PEM private key (PKCS#8, PKCS#1 or SEC1)"
        );
        assert_eq!(
            shown(private_key("s", &empty, KeyRole::Client).unwrap_err()),
            "s: F holds no valid PEM private key"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_without_quoting_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let cert_file = write(dir.path(), "cert.pem", &cert);
        let key_file = write(dir.path(), "key.pem", &other_key);
        for (role, verb) in [
            (KeyRole::Server, "cannot serve"),
            (KeyRole::Client, "does not belong to"),
        ] {
            let (_, chain) = certificates("c", &cert_file).unwrap();
            let (_, key) = private_key("k", &key_file, role).unwrap();
            let error = certified_key("k", chain, key, &cert_file, &key_file, role)
                .unwrap_err()
                .to_string();
            let prefix = format!(
                "k: {} {verb} the certificate in {}: ",
                key_file.display(),
                cert_file.display()
            );
            assert!(error.starts_with(&prefix), "{error}");
        }
        let secret = "-----BEGIN PRIVATE KEY-----\nSECRETMATERIAL!!\n-----END PRIVATE KEY-----\n";
        let key_file = write(dir.path(), "secret.pem", secret);
        let error = private_key("k", &key_file, KeyRole::Server).unwrap_err();
        assert!(!format!("{error} {error:?}").contains("SECRETMATERIAL"));
    }
}
