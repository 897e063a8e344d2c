//! Gateway access tokens: compact JWS (`alg: EdDSA`) signed with the current Ed25519 signing
//! key, and the opaque secrets (device codes, refresh tokens) handed to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;

/// Claims of a gateway access token.
#[derive(Debug, Clone, Serialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// Principal id.
    pub sub: String,
    pub email: String,
    pub name: String,
    /// Tollgate group names.
    pub groups: Vec<String>,
    /// Session id.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// Signs `claims` as a compact JWS with `key`, announcing `kid`.
pub fn sign(
    key: &SigningKey,
    kid: &str,
    claims: &AccessClaims,
) -> Result<String, serde_json::Error> {
    let header = serde_json::to_vec(&Header {
        alg: "EdDSA",
        typ: "JWT",
        kid,
    })?;
    let payload = serde_json::to_vec(claims)?;
    let mut jwt = URL_SAFE_NO_PAD.encode(header);
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(jwt.as_bytes());
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    Ok(jwt)
}

/// The unverified `sid` of a JWT-shaped token (used by revocation: the caller proves nothing
/// beyond holding the token, and revoking someone's session requires their token).
pub fn unverified_sid(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("sid")?.as_str().map(str::to_owned)
}

/// The key id of a public key: hex of the first 8 bytes of its SHA-256.
pub fn kid_for(public_key: &[u8; 32]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(public_key)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    #[test]
    fn signed_tokens_verify_with_the_public_key_and_carry_the_sid() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let claims = AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "s".into(),
            email: "e".into(),
            name: "n".into(),
            groups: vec!["g".into()],
            sid: "sid-1".into(),
            iat: 1,
            exp: 2,
        };
        let jwt = sign(&key, "k1", &claims).unwrap();
        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
        key.verifying_key().verify(signed.as_bytes(), &sig).unwrap();
        assert_eq!(unverified_sid(&jwt).as_deref(), Some("sid-1"));
    }
}
