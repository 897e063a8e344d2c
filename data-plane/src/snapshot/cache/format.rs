//! The cache file's bytes: a versioned header, then the snapshot's protobuf encoding sealed
//! with AES-256-GCM under a key derived from the sync token.
//!
//! ```text
//! magic "TGSNAP" (6) ‖ format version u16 BE (2) ‖ received at, unix seconds u64 BE (8)
//!   ‖ nonce (12) ‖ ciphertext ‖ tag (16)
//! ```
//!
//! The whole 16-byte header is the associated data, so the received time (which bounds how
//! old a snapshot may be served) cannot be changed without the file being refused.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use super::CacheError;

const MAGIC: &[u8; 6] = b"TGSNAP";
/// The format this build writes and reads.
pub(super) const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = MAGIC.len() + 2 + 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The HKDF `info`: binds the key to this one use of the sync token.
const KEY_INFO: &[u8] = b"tollgate data-plane snapshot cache v1";

/// The AES-256 key the cache file is sealed with, derived from the sync token.
pub(crate) struct CacheKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey([REDACTED])")
    }
}

impl CacheKey {
    /// HKDF-SHA256 of the sync token (no salt) with a fixed `info` string.
    pub(crate) fn derive(sync_token: &SecretString) -> CacheKey {
        let hkdf = Hkdf::<Sha256>::new(None, sync_token.expose_secret().as_bytes());
        let mut key = Box::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so this cannot fail.
        let _ = hkdf.expand(KEY_INFO, key.as_mut_slice());
        CacheKey(SecretBox::new(key))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.expose_secret()))
    }
}

/// What a cache file holds once opened: the snapshot's protobuf bytes and when it was
/// received from the control plane.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Opened {
    pub(super) received_at_unix: u64,
    pub(super) protobuf: Vec<u8>,
}

fn header(received_at_unix: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..6].copy_from_slice(MAGIC);
    header[6..8].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    header[8..].copy_from_slice(&received_at_unix.to_be_bytes());
    header
}

/// Seals `protobuf` received at `received_at_unix` into the bytes of a cache file.
pub(super) fn seal(key: &CacheKey, received_at_unix: u64, protobuf: &[u8]) -> Vec<u8> {
    let header = header(received_at_unix);
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let payload = Payload {
        msg: protobuf,
        aad: &header,
    };
    // Encryption only fails for messages beyond AES-GCM's 64 GiB limit.
    let sealed = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), payload)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Checks the header and opens the ciphertext: any changed byte, another sync token or a
/// cut-short file is refused.
pub(super) fn open(key: &CacheKey, file: &[u8]) -> Result<Opened, CacheError> {
    if file.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
        return Err(CacheError::Truncated { len: file.len() });
    }
    let (header, rest) = file.split_at(HEADER_LEN);
    if &header[..6] != MAGIC {
        return Err(CacheError::NotACacheFile);
    }
    let version = u16::from_be_bytes([header[6], header[7]]);
    if version != FORMAT_VERSION {
        return Err(CacheError::UnsupportedFormat { version });
    }
    let mut received = [0u8; 8];
    received.copy_from_slice(&header[8..]);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let protobuf = key
        .cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: header,
            },
        )
        .map_err(|_| CacheError::Decrypt)?;
    Ok(Opened {
        received_at_unix: u64::from_be_bytes(received),
        protobuf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str) -> CacheKey {
        CacheKey::derive(&SecretString::from(token))
    }

    #[test]
    fn sealed_file_opens_with_the_same_sync_token() {
        let file = seal(&key("sync-token"), 1_700_000_000, b"snapshot bytes");
        let opened = open(&key("sync-token"), &file).unwrap();
        assert_eq!(
            opened,
            Opened {
                received_at_unix: 1_700_000_000,
                protobuf: b"snapshot bytes".to_vec()
            }
        );
        assert!(
            !file.windows(8).any(|w| w == b"snapshot"),
            "the snapshot is not stored in the clear"
        );
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let key = key("sync-token");
        let file = seal(&key, 1_700_000_000, b"snapshot bytes");
        for i in 0..file.len() {
            let mut tampered = file.clone();
            tampered[i] ^= 0x01;
            assert!(open(&key, &tampered).is_err(), "byte {i} changed");
        }
    }

    #[test]
    fn changed_received_time_is_refused() {
        let key = key("sync-token");
        let mut file = seal(&key, 1_700_000_000, b"snapshot bytes");
        file[8..16].copy_from_slice(&1_800_000_000u64.to_be_bytes());
        assert!(matches!(open(&key, &file), Err(CacheError::Decrypt)));
    }

    #[test]
    fn another_sync_token_cannot_open_it() {
        let file = seal(&key("sync-token"), 1_700_000_000, b"snapshot bytes");
        assert!(matches!(
            open(&key("other-token"), &file),
            Err(CacheError::Decrypt)
        ));
    }

    #[test]
    fn truncated_files_are_refused() {
        let key = key("sync-token");
        let file = seal(&key, 1_700_000_000, b"snapshot bytes");
        for len in 0..file.len() {
            assert!(open(&key, &file[..len]).is_err(), "cut to {len} bytes");
        }
        assert!(matches!(
            open(&key, &file[..10]),
            Err(CacheError::Truncated { len: 10 })
        ));
    }

    #[test]
    fn other_files_and_formats_are_named_as_such() {
        let key = key("sync-token");
        let mut file = seal(&key, 1_700_000_000, b"snapshot bytes");
        file[6..8].copy_from_slice(&2u16.to_be_bytes());
        assert!(matches!(
            open(&key, &file),
            Err(CacheError::UnsupportedFormat { version: 2 })
        ));
        assert!(matches!(
            open(&key, &[b'{'; 64]),
            Err(CacheError::NotACacheFile)
        ));
    }

    #[test]
    fn key_debug_is_redacted() {
        assert_eq!(format!("{:?}", key("sync-token")), "CacheKey([REDACTED])");
    }
}
