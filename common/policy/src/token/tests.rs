use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

pub(crate) const NOW: i64 = 1_800_000_000;

/// A PKCS#8 v1 DER Ed25519 private key from a 32-byte seed.
pub(crate) fn encoding_key(seed: u8) -> EncodingKey {
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap_or_default();
    der.extend_from_slice(&[seed; 32]);
    EncodingKey::from_ed_der(&der)
}

pub(crate) fn public_key(seed: u8) -> Vec<u8> {
    let jwk = Jwk::from_encoding_key(&encoding_key(seed), Algorithm::EdDSA).unwrap();
    let AlgorithmParameters::OctetKeyPair(okp) = jwk.algorithm else {
        unreachable!("ed25519 jwk")
    };
    URL_SAFE_NO_PAD.decode(okp.x).unwrap()
}

fn verifier() -> TokenVerifier {
    TokenVerifier {
        issuer: "https://gw.example.com".into(),
        audience: "tollgate".into(),
        keys: [("k1".to_owned(), DecodingKey::from_ed_der(&public_key(1)))].into(),
        revoked_sessions: ["sid-revoked".to_owned()].into(),
        disabled_principals: ["user-disabled".to_owned()].into(),
    }
}

pub(crate) fn claims() -> serde_json::Value {
    json!({
        "iss": "https://gw.example.com",
        "aud": "tollgate",
        "sub": "user-1",
        "email": "ada@example.com",
        "name": "Ada",
        "groups": ["eng"],
        "sid": "sid-1",
        "iat": NOW - 10,
        "exp": NOW + 3600,
    })
}

pub(crate) fn sign(claims: &serde_json::Value, kid: &str, seed: u8) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &encoding_key(seed)).unwrap()
}

fn with(field: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = claims();
    c[field] = value;
    c
}

#[test]
fn accepts_a_token_signed_by_a_published_key() {
    let got = verifier().verify(&sign(&claims(), "k1", 1), NOW).unwrap();
    assert_eq!(got.sub, "user-1");
    assert_eq!(got.sid, "sid-1");
    assert_eq!(got.groups, vec!["eng".to_owned()]);
    assert_eq!(got.email, "ada@example.com");
}

#[test]
fn rejects_an_unknown_kid_or_a_key_it_does_not_publish() {
    assert_eq!(
        verifier().verify(&sign(&claims(), "k2", 1), NOW),
        Err(AuthError::InvalidToken)
    );
    assert_eq!(
        verifier().verify(&sign(&claims(), "k1", 2), NOW),
        Err(AuthError::InvalidToken)
    );
}

#[test]
fn rejects_alg_none() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    let token = format!("{header}.{body}.");
    assert_eq!(verifier().verify(&token, NOW), Err(AuthError::InvalidToken));
    let token = format!("{header}.{body}.AAAA");
    assert_eq!(verifier().verify(&token, NOW), Err(AuthError::InvalidToken));
}

#[test]
fn rejects_hs256_signed_with_the_public_key_as_secret() {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&public_key(1)),
    )
    .unwrap();
    assert_eq!(verifier().verify(&token, NOW), Err(AuthError::InvalidToken));
}

#[test]
fn rejects_expired_tokens_after_the_leeway() {
    let token = sign(&with("exp", json!(NOW - 30)), "k1", 1);
    assert!(
        verifier().verify(&token, NOW).is_ok(),
        "inside the 60 s skew"
    );
    let token = sign(&with("exp", json!(NOW - 61)), "k1", 1);
    assert_eq!(verifier().verify(&token, NOW), Err(AuthError::TokenExpired));
}

#[test]
fn rejects_revoked_sessions_and_disabled_users() {
    let token = sign(&with("sid", json!("sid-revoked")), "k1", 1);
    assert_eq!(verifier().verify(&token, NOW), Err(AuthError::Revoked));
    let token = sign(&with("sub", json!("user-disabled")), "k1", 1);
    assert_eq!(verifier().verify(&token, NOW), Err(AuthError::Disabled));
}

#[test]
fn rejects_wrong_audience_or_issuer() {
    for (field, value) in [
        ("aud", json!("someone-else")),
        ("iss", json!("https://idp.example.com")),
    ] {
        let token = sign(&with(field, value), "k1", 1);
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(AuthError::InvalidToken),
            "{field}"
        );
    }
}

#[test]
fn rejects_tokens_missing_sid_or_issued_in_the_future() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sid");
    assert_eq!(
        verifier().verify(&sign(&c, "k1", 1), NOW),
        Err(AuthError::InvalidToken)
    );
    let token = sign(&with("iat", json!(NOW + 600)), "k1", 1);
    assert_eq!(verifier().verify(&token, NOW), Err(AuthError::InvalidToken));
}

#[test]
fn recognises_jwt_shaped_secrets() {
    assert!(looks_like_jwt("aGVh.Ym9keQ.c2ln"));
    assert!(!looks_like_jwt("tg_abc"));
    assert!(!looks_like_jwt("a.b"));
}
