use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use tollgate_policy::SecretSource;

use super::*;
use crate::providers::{Endpoint, ErrorReply, anthropic};
use crate::request::extract_fields;

fn provider(auth: FoundryAuth) -> FoundryProvider {
    FoundryProvider {
        base_url: "https://acme.services.ai.azure.com/anthropic".to_owned(),
        auth,
    }
}

fn inline(v: &str) -> SecretSource {
    SecretSource::Inline(SecretString::from(v.to_owned()))
}

fn client_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    h.insert(
        "anthropic-beta",
        HeaderValue::from_static("claude-code-20250219,request-tags-2026-09-01"),
    );
    h.insert("x-api-key", HeaderValue::from_static("client-own-key"));
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer client-own"),
    );
    h.insert("x-claude-code-session-id", HeaderValue::from_static("s"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

const BODY: &str = r#"{"model":"claude-sonnet-5","max_tokens":32000,"system":[{"type":"text","text":"x-anthropic-billing-header: a"}],"messages":[{"role":"system","content":"r"},{"role":"user","content":"hi"}],"tags":["t"],"stream":true}"#;

fn prepare_for(p: &FoundryProvider, endpoint: Endpoint, deployment: &str) -> Prepared {
    let headers = client_headers();
    let body = Bytes::from_static(BODY.as_bytes());
    let fields = extract_fields(&body).unwrap();
    let out = Outbound {
        endpoint,
        headers: &headers,
        body: &body,
        fields: &fields,
        upstream_model: deployment,
        identity_encoding: false,
    };
    prepare(p, &out, &Secrets::default()).unwrap()
}

async fn body_text(prepared: Prepared) -> (http::request::Parts, String) {
    let (parts, body) = prepared.request.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn api_key_goes_in_both_headers_and_the_deployment_name_in_the_body() {
    let p = provider(FoundryAuth::ApiKey(inline("foundry-key")));
    let r = prepare_for(&p, Endpoint::Messages, "my-sonnet-deployment");
    assert_eq!(r.decode, Decode::Passthrough);
    let (parts, body) = body_text(r).await;
    assert_eq!(
        parts.uri.to_string(),
        "https://acme.services.ai.azure.com/anthropic/v1/messages"
    );
    let h = &parts.headers;
    for name in ["api-key", "x-api-key"] {
        assert_eq!(h.get(name).unwrap(), "foundry-key", "{name}");
        assert!(h.get(name).unwrap().is_sensitive());
        assert_eq!(h.get_all(name).iter().count(), 1, "{name}");
    }
    assert!(!h.contains_key("authorization"));
    assert!(!h.contains_key("x-claude-code-session-id"));
    assert_eq!(h.get("anthropic-version").unwrap(), "2023-06-01");
    // Foundry takes the Anthropic shape: the beta header and every body byte but the model
    // go as the client sent them.
    assert_eq!(
        h.get("anthropic-beta").unwrap(),
        "claude-code-20250219,request-tags-2026-09-01"
    );
    assert_eq!(
        body,
        BODY.replace(
            r#""model":"claude-sonnet-5""#,
            r#""model":"my-sonnet-deployment""#
        )
    );
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["model"], json!("my-sonnet-deployment"));
}

#[tokio::test]
async fn entra_bearer_is_sent_as_authorization_and_count_tokens_has_its_path() {
    let p = provider(FoundryAuth::Bearer(inline("entra-token")));
    let r = prepare_for(&p, Endpoint::CountTokens, "claude-sonnet-5");
    let (parts, body) = body_text(r).await;
    assert_eq!(
        parts.uri.to_string(),
        "https://acme.services.ai.azure.com/anthropic/v1/messages/count_tokens"
    );
    let auth = parts.headers.get("authorization").unwrap();
    assert_eq!(auth, "Bearer entra-token");
    assert!(auth.is_sensitive());
    assert!(!parts.headers.contains_key("api-key"));
    assert!(!parts.headers.contains_key("x-api-key"));
    assert_eq!(body, BODY, "same model: the body is untouched");
}

#[test]
fn unresolvable_credentials_are_credential_errors() {
    let p = provider(FoundryAuth::ApiKey(SecretSource::Env(
        "TOLLGATE_TEST_SURELY_UNSET_FOUNDRY_KEY".into(),
    )));
    let headers = client_headers();
    let body = Bytes::from_static(BODY.as_bytes());
    let fields = extract_fields(&body).unwrap();
    let out = Outbound {
        endpoint: Endpoint::Messages,
        headers: &headers,
        body: &body,
        fields: &fields,
        upstream_model: "d",
        identity_encoding: false,
    };
    assert!(matches!(
        prepare(&p, &out, &Secrets::default()),
        Err(PrepareError::Credential(_))
    ));
}

#[test]
fn azure_shaped_errors_become_generic_errors_of_the_status_kind() {
    let cases: [(u16, &[u8], u16, bool); 4] = [
        (
            404,
            br#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. Resource acme in subscription 0000-1111."}}"#,
            404,
            false,
        ),
        (
            429,
            br#"{"error":{"code":"429","message":"Requests to the deployment in resource acme have exceeded the rate limit."}}"#,
            429,
            true,
        ),
        (
            401,
            br#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}"#,
            502,
            false,
        ),
        (
            400,
            br#"{"error":{"code":"content_filter","message":"The response was filtered for resource acme."}}"#,
            400,
            false,
        ),
    ];
    for (status, body, client_status, retryable) in cases {
        let f = anthropic::map_error(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body,
        );
        let ErrorReply::Api(e) = &f.reply else {
            panic!("{status}: Azure text must not be relayed");
        };
        assert_eq!(f.reply.status().as_u16(), client_status, "{status}");
        assert!(!e.message.contains("acme"), "{status}: {}", e.message);
        assert_eq!(f.retryable, retryable, "{status}");
    }
}
