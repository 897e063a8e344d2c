//! Secrets the control plane mints (API keys, admin keys) and checks (bearer tokens).

use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

/// Prefix of gateway API keys.
pub const API_KEY_PREFIX: &str = "tg_";
/// Prefix of admin keys.
pub const ADMIN_KEY_PREFIX: &str = "tga_";
/// Base62 characters after the prefix: 43 × log2(62) ≈ 256 bits.
const SECRET_CHARS: usize = 43;
/// How many leading characters of an API key are kept to recognise it (`tg_` + 7).
pub const DISPLAY_PREFIX_LEN: usize = 10;

/// A new secret: `prefix` followed by 43 base62 characters from the thread-local CSPRNG.
pub fn generate_secret(prefix: &str) -> SecretString {
    let mut secret = String::with_capacity(prefix.len() + SECRET_CHARS);
    secret.push_str(prefix);
    secret.extend(
        rand::rng()
            .sample_iter(Alphanumeric)
            .take(SECRET_CHARS)
            .map(char::from),
    );
    SecretString::from(secret)
}

/// The recognisable start of a secret, safe to store and show.
pub fn display_prefix(secret: &SecretString) -> String {
    secret
        .expose_secret()
        .chars()
        .take(DISPLAY_PREFIX_LEN)
        .collect()
}

/// The token of an `authorization: Bearer <token>` header, if present and well formed.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares two secrets in time independent of where they differ and of their lengths
/// (both are hashed first, then every byte of the digests is compared).
pub fn secrets_match(presented: &str, expected: &SecretString) -> bool {
    let a: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(expected.expose_secret().as_bytes()).into();
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_prefix_and_256_bits_of_base62() {
        let secret = generate_secret(API_KEY_PREFIX);
        let s = secret.expose_secret();
        assert!(s.starts_with("tg_"));
        assert_eq!(s.len(), 3 + 43);
        assert!(s[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(s, generate_secret(API_KEY_PREFIX).expose_secret());
    }

    #[test]
    fn display_prefix_is_ten_characters() {
        let secret = SecretString::from("tg_abcdefghijklmnop");
        assert_eq!(display_prefix(&secret), "tg_abcdefg");
    }

    #[test]
    fn bearer_accepts_any_case_scheme_and_rejects_others() {
        let mut md = MetadataMap::new();
        assert_eq!(bearer(&md), None);
        md.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&md), Some("abc"));
        md.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&md), None);
        md.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&md), None);
    }

    #[test]
    fn secrets_match_only_on_equal_strings() {
        let expected = SecretString::from("token-1");
        assert!(secrets_match("token-1", &expected));
        assert!(!secrets_match("token-2", &expected));
        assert!(!secrets_match("token-1x", &expected));
        assert!(!secrets_match("", &expected));
    }
}
