//! A signed checkpoint of the audit chain's head: what is signed, how it is signed and
//! verified, and its exported JSON-lines form
//! `{"tree_size":N,"head_hash":"<hex>","signed_at":"…","key_id":"…","signature":"<base64>"}`.
//!
//! The signed message is
//! `"tollgate-audit-checkpoint/v1\n{tree_size}\n{hex(head_hash)}\n{signed_at}\n{key_id}"`, with
//! `signed_at` in RFC 3339 UTC with exactly six fractional digits and `Z` (which Postgres'
//! `timestamptz` stores exactly).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::key::{AuditSigningKey, key_id};
use crate::store::audit::query::CheckpointRow;

/// The first line of every signed message.
pub const MESSAGE_PREFIX: &str = "tollgate-audit-checkpoint/v1";

/// A checkpoint of the chain: its first `tree_size` entries end in `head_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub tree_size: i64,
    pub head_hash: [u8; 32],
    /// Always whole microseconds.
    pub signed_at: DateTime<Utc>,
    pub key_id: String,
    pub signature: [u8; 64],
}

/// Why a checkpoint's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureProblem {
    /// None of the given public keys has the checkpoint's key id.
    UnknownKey,
    /// The key with that id does not verify the signature.
    BadSignature,
}

/// Why an exported checkpoint line cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a checkpoint JSON object: {0}")]
    Json(#[from] serde_json::Error),
    #[error("`{field}` is malformed")]
    Field { field: &'static str },
}

/// `signed_at` as signed: `2026-01-02T03:04:05.123456Z`.
pub fn format_signed_at(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `at` truncated to whole microseconds (what `timestamptz` keeps).
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// The exact bytes signed.
pub fn message(
    tree_size: i64,
    head_hash: &[u8],
    signed_at: &DateTime<Utc>,
    key_id: &str,
) -> String {
    format!(
        "{MESSAGE_PREFIX}\n{tree_size}\n{}\n{}\n{key_id}",
        hex::encode(head_hash),
        format_signed_at(signed_at)
    )
}

impl SignedCheckpoint {
    /// Signs the head `(tree_size, head_hash)` at `signed_at` (truncated to microseconds).
    pub fn sign(
        key: &AuditSigningKey,
        tree_size: i64,
        head_hash: [u8; 32],
        signed_at: DateTime<Utc>,
    ) -> SignedCheckpoint {
        let signed_at = truncate_to_micros(signed_at);
        let key_id = key.key_id().to_owned();
        let signature = key
            .sign(message(tree_size, &head_hash, &signed_at, &key_id).as_bytes())
            .to_bytes();
        SignedCheckpoint {
            tree_size,
            head_hash,
            signed_at,
            key_id,
            signature,
        }
    }

    /// The signed message of this checkpoint.
    pub fn message(&self) -> String {
        message(
            self.tree_size,
            &self.head_hash,
            &self.signed_at,
            &self.key_id,
        )
    }

    /// Verifies the signature with the key among `keys` whose id is the checkpoint's.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<(), SignatureProblem> {
        let key = keys
            .iter()
            .find(|k| key_id(k) == self.key_id)
            .ok_or(SignatureProblem::UnknownKey)?;
        key.verify(
            self.message().as_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| SignatureProblem::BadSignature)
    }

    /// A stored row; `None` when its hash or signature has the wrong length (the schema
    /// forbids that).
    pub fn from_row(row: &CheckpointRow) -> Option<SignedCheckpoint> {
        Some(SignedCheckpoint {
            tree_size: row.tree_size,
            head_hash: row.head_hash.as_slice().try_into().ok()?,
            signed_at: row.signed_at,
            key_id: row.key_id.clone(),
            signature: row.signature.as_slice().try_into().ok()?,
        })
    }

    /// The exported form, one line of JSON (no newline).
    pub fn to_json_line(&self) -> String {
        let exported = Exported {
            tree_size: self.tree_size,
            head_hash: hex::encode(self.head_hash),
            signed_at: format_signed_at(&self.signed_at),
            key_id: self.key_id.clone(),
            signature: STANDARD.encode(self.signature),
        };
        serde_json::to_string(&exported).unwrap_or_default()
    }

    /// Parses one exported line.
    pub fn from_json_line(line: &str) -> Result<SignedCheckpoint, ParseError> {
        let e: Exported = serde_json::from_str(line)?;
        let head_hash = hex::decode(&e.head_hash)
            .ok()
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or(ParseError::Field { field: "head_hash" })?;
        let signature = STANDARD
            .decode(&e.signature)
            .ok()
            .and_then(|s| <[u8; 64]>::try_from(s).ok())
            .ok_or(ParseError::Field { field: "signature" })?;
        let signed_at = DateTime::parse_from_rfc3339(&e.signed_at)
            .map_err(|_| ParseError::Field { field: "signed_at" })?
            .with_timezone(&Utc);
        if e.tree_size < 0 {
            return Err(ParseError::Field { field: "tree_size" });
        }
        Ok(SignedCheckpoint {
            tree_size: e.tree_size,
            head_hash,
            signed_at,
            key_id: e.key_id,
            signature,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Exported {
    tree_size: i64,
    head_hash: String,
    signed_at: String,
    key_id: String,
    signature: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use chrono::TimeZone as _;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::nanoseconds(123_456_789)
    }

    #[test]
    fn the_signed_message_is_the_documented_text() {
        let key = AuditSigningKey::generate();
        let cp = SignedCheckpoint::sign(&key, 7, [0xab; 32], at());
        assert_eq!(
            cp.message(),
            format!(
                "tollgate-audit-checkpoint/v1\n7\n{}\n2026-01-02T03:04:05.123456Z\n{}",
                "ab".repeat(32),
                key.key_id()
            )
        );
        assert_eq!(cp.signed_at.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_and_unchanged_fields() {
        let key = AuditSigningKey::generate();
        let other = AuditSigningKey::generate();
        let cp = SignedCheckpoint::sign(&key, 7, [1; 32], at());
        assert_eq!(
            cp.verify(&[other.verifying_key(), key.verifying_key()]),
            Ok(())
        );
        assert_eq!(
            cp.verify(&[other.verifying_key()]),
            Err(SignatureProblem::UnknownKey)
        );
        let mut changed = cp.clone();
        changed.tree_size = 8;
        assert_eq!(
            changed.verify(&[key.verifying_key()]),
            Err(SignatureProblem::BadSignature)
        );
        let mut changed = cp.clone();
        changed.head_hash[0] ^= 1;
        assert_eq!(
            changed.verify(&[key.verifying_key()]),
            Err(SignatureProblem::BadSignature)
        );
        let mut changed = cp;
        changed.signed_at += chrono::Duration::microseconds(1);
        assert_eq!(
            changed.verify(&[key.verifying_key()]),
            Err(SignatureProblem::BadSignature)
        );
    }

    #[test]
    fn json_lines_round_trip_in_the_documented_shape() {
        let key = AuditSigningKey::generate();
        let cp = SignedCheckpoint::sign(&key, 42, [2; 32], at());
        let line = cp.to_json_line();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["tree_size"], 42);
        assert_eq!(value["head_hash"], "02".repeat(32));
        assert_eq!(value["signed_at"], "2026-01-02T03:04:05.123456Z");
        assert_eq!(value["key_id"], key.key_id());
        assert_eq!(
            STANDARD
                .decode(value["signature"].as_str().unwrap())
                .unwrap()
                .len(),
            64
        );
        let back = SignedCheckpoint::from_json_line(&line).unwrap();
        assert_eq!(back, cp);
        assert_eq!(back.verify(&[key.verifying_key()]), Ok(()));
        assert!(SignedCheckpoint::from_json_line("{}").is_err());
        assert!(SignedCheckpoint::from_json_line(&line.replace(&"02".repeat(32), "zz")).is_err());
    }
}
