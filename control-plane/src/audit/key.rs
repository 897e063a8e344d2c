//! The audit signing key: an Ed25519 private key in a PKCS#8 PEM file (what
//! `openssl genpkey -algorithm ed25519` writes), created with mode 0600 at first start, and the
//! public keys auditors verify with (PEM SPKI as `openssl pkey -pubout` writes, or the raw 32
//! bytes in base64). Key ids are the first 16 hex characters of SHA-256 of the raw public key.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// Why a key could not be loaded, created or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the audit signing key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the audit signing key file {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is not an Ed25519 private key in PKCS#8 PEM (openssl genpkey -algorithm ed25519)",
        path.display()
    )]
    NotAPrivateKey { path: PathBuf },
    #[error(
        "not an Ed25519 public key (PEM SubjectPublicKeyInfo as `openssl pkey -pubout` writes, or the raw 32 bytes in base64)"
    )]
    NotAPublicKey,
    #[error("cannot encode the key as PEM")]
    Encode,
}

/// The private key signing audit checkpoints. Its `Debug` shows only the key id.
pub struct AuditSigningKey {
    key: SigningKey,
    key_id: String,
}

impl fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AuditSigningKey {
    /// A new random key (tests, first start).
    pub fn generate() -> AuditSigningKey {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        AuditSigningKey::from_signing_key(SigningKey::from_bytes(&secret))
    }

    fn from_signing_key(key: SigningKey) -> AuditSigningKey {
        let key_id = key_id(&key.verifying_key());
        AuditSigningKey { key, key_id }
    }

    /// Parses a PKCS#8 PEM private key (v1 as OpenSSL writes it, or v2 with the public key).
    pub fn from_pkcs8_pem(pem: &str) -> Option<AuditSigningKey> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .ok()
            .map(AuditSigningKey::from_signing_key)
    }

    /// The key as PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`), as OpenSSL writes it.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.as_str().to_owned())
            .map_err(|_| KeyError::Encode)
    }

    /// Reads the key at `path`, or creates one there (mode 0600, parent directories too) when
    /// the file does not exist. Returns the key and whether it was created.
    pub async fn load_or_create(path: &Path) -> Result<(AuditSigningKey, bool), KeyError> {
        match tokio::fs::read_to_string(path).await {
            Ok(text) => return Self::parse_file(path, &text).map(|k| (k, false)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let key = AuditSigningKey::generate();
        let pem = key.to_pkcs8_pem()?;
        match crate::identity::secrets::write_new_file(path, pem.as_bytes()).await {
            Ok(()) => Ok((key, true)),
            // Another replica created it first: use theirs.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                let text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|source| KeyError::Read {
                            path: path.to_owned(),
                            source,
                        })?;
                Self::parse_file(path, &text).map(|k| (k, false))
            }
            Err(source) => Err(KeyError::Create {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Reads an existing key file.
    pub async fn load(path: &Path) -> Result<AuditSigningKey, KeyError> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| KeyError::Read {
                path: path.to_owned(),
                source,
            })?;
        Self::parse_file(path, &text)
    }

    fn parse_file(path: &Path, text: &str) -> Result<AuditSigningKey, KeyError> {
        AuditSigningKey::from_pkcs8_pem(text).ok_or_else(|| KeyError::NotAPrivateKey {
            path: path.to_owned(),
        })
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// First 16 hex characters of SHA-256 of the raw public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> String {
        public_key_pem(&self.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }
}

/// First 16 hex characters of SHA-256 of the raw 32-byte public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// `key` as PEM SubjectPublicKeyInfo, as `openssl pkey -pubout` writes it.
pub fn public_key_pem(key: &VerifyingKey) -> String {
    // Encoding 32 bytes into a fixed structure cannot fail; fall back to nothing rather than
    // panic.
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

/// Parses a public key: PEM SubjectPublicKeyInfo, or the raw 32 bytes in standard base64.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text).map_err(|_| KeyError::NotAPublicKey);
    }
    let bytes = STANDARD.decode(text).map_err(|_| KeyError::NotAPublicKey)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::NotAPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPublicKey)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// `openssl genpkey -algorithm ed25519` output (RFC 8410 example key).
    const OPENSSL_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
        -----END PRIVATE KEY-----\n";
    /// `openssl pkey -pubout` of it.
    const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
        -----END PUBLIC KEY-----\n";

    #[test]
    fn reads_what_openssl_writes_and_writes_what_it_reads() {
        let key = AuditSigningKey::from_pkcs8_pem(OPENSSL_PRIVATE).unwrap();
        assert_eq!(key.public_key_pem(), OPENSSL_PUBLIC);
        assert_eq!(key.to_pkcs8_pem().unwrap(), OPENSSL_PRIVATE);
        let public = parse_public_key(OPENSSL_PUBLIC).unwrap();
        assert_eq!(public, key.verifying_key());
    }

    #[test]
    fn public_keys_parse_from_pem_or_raw_base64() {
        let key = AuditSigningKey::generate();
        let raw = STANDARD.encode(key.verifying_key().as_bytes());
        assert_eq!(parse_public_key(&raw).unwrap(), key.verifying_key());
        assert_eq!(
            parse_public_key(&key.public_key_pem()).unwrap(),
            key.verifying_key()
        );
        assert!(parse_public_key("not a key").is_err());
        assert!(parse_public_key(&STANDARD.encode([1u8; 31])).is_err());
    }

    #[test]
    fn key_id_is_a_sha256_prefix_of_the_raw_public_key() {
        let key = AuditSigningKey::generate();
        let id = key_id(&key.verifying_key());
        assert_eq!(id.len(), 16);
        assert_eq!(
            id,
            hex::encode(Sha256::digest(key.verifying_key().as_bytes()))[..16]
        );
        assert_eq!(key.key_id(), id);
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let key = AuditSigningKey::from_pkcs8_pem(OPENSSL_PRIVATE).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(key.key_id()), "{shown}");
        let secret_hex = hex::encode(key.key.to_bytes());
        assert!(!shown.contains(&secret_hex), "{shown}");
        assert!(!shown.contains("d4ee72dbf9"), "{shown}");
    }

    #[tokio::test]
    async fn key_file_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.pem");
        let (a, created_a) = AuditSigningKey::load_or_create(&path).await.unwrap();
        let (b, created_b) = AuditSigningKey::load_or_create(&path).await.unwrap();
        assert!(created_a && !created_b);
        assert_eq!(a.verifying_key(), b.verifying_key());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.pem");
        std::fs::write(&path, "hello").unwrap();
        assert!(matches!(
            AuditSigningKey::load_or_create(&path).await,
            Err(KeyError::NotAPrivateKey { .. })
        ));
    }
}
