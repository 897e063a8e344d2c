//! The secrets key: AES-256-GCM encryption at rest of signing keys, the IdP client secret and
//! IdP tokens. Ciphertexts are `nonce (12 bytes) ‖ ciphertext+tag`, bound to a purpose string
//! (associated data) so a ciphertext cannot be moved from one column to another.

use std::io;
use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use tokio::io::AsyncWriteExt;

const NONCE_LEN: usize = 12;

/// Why the secrets key is unusable or a ciphertext does not open.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the secrets key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("cannot read or write the secrets key file")]
    File(#[source] io::Error),
    #[error("a stored secret cannot be decrypted (wrong secrets key?)")]
    Decrypt,
}

/// The 256-bit key every replica shares.
pub struct SecretsKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey([REDACTED])")
    }
}

impl SecretsKey {
    /// A fresh random key.
    pub fn generate() -> SecretsKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        SecretsKey(SecretBox::new(Box::new(bytes)))
    }

    /// Parses a base64-encoded 32-byte key.
    pub fn from_base64(encoded: &SecretString) -> Result<SecretsKey, SecretsError> {
        let bytes = STANDARD
            .decode(encoded.expose_secret().trim())
            .map_err(|_| SecretsError::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SecretsError::BadKey)?;
        Ok(SecretsKey(SecretBox::new(Box::new(bytes))))
    }

    /// Reads the key file, or creates it (mode 0600) with a fresh key when it does not exist.
    pub async fn load_or_create(path: &Path) -> Result<SecretsKey, SecretsError> {
        match tokio::fs::read_to_string(path).await {
            Ok(text) => return SecretsKey::from_base64(&SecretString::from(text)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(SecretsError::File(err)),
        }
        let key = SecretsKey::generate();
        let encoded = SecretString::from(STANDARD.encode(key.0.expose_secret()));
        write_new_file(path, encoded.expose_secret().as_bytes())
            .await
            .map_err(SecretsError::File)?;
        Ok(key)
    }

    /// Encrypts `plaintext` for `purpose`.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.expose_secret()));
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: purpose.as_bytes(),
        };
        // Encryption only fails for messages beyond AES-GCM's 64 GiB limit.
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`SecretsKey::seal`] produced for the same `purpose`.
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretsError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.expose_secret()));
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Decrypt)
    }
}

/// Creates `path` (and its parent directories) readable by its owner only; fails if it exists.
pub(crate) async fn write_new_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).await?;
    file.write_all(contents).await?;
    file.sync_all().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_purpose() {
        let key = SecretsKey::generate();
        let sealed = key.seal("a", b"hello");
        assert_eq!(key.open("a", &sealed).unwrap(), b"hello");
        assert!(key.open("b", &sealed).is_err());
        assert!(SecretsKey::generate().open("a", &sealed).is_err());
    }

    #[tokio::test]
    async fn key_file_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/secrets.key");
        let a = SecretsKey::load_or_create(&path).await.unwrap();
        let b = SecretsKey::load_or_create(&path).await.unwrap();
        assert_eq!(b.open("p", &a.seal("p", b"x")).unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
