use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as FrameValue, Message};
use aws_smithy_types::str_bytes::StrBytes;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::HeaderMap;
use http::header::RETRY_AFTER;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use secrecy::SecretString;
use serde_json::{Value, json};
use tollgate_policy::{BEDROCK_ANTHROPIC_VERSION, BedrockApi, BedrockAuth, SecretSource};

use super::eventstream::{Decoder, crc32};
use super::sigv4::{Scope, sign};
use super::*;
use crate::error::ErrorCode;
use crate::meter::BoxError;
use crate::providers::ErrorReply;
use crate::request::{RequestFields, extract_fields};

// ---------------------------------------------------------------------------------------
// Helpers

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the AWS test suite's signing time.
fn suite_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

fn credentials(token: Option<&str>) -> AwsCredentials {
    AwsCredentials {
        access_key_id: SecretString::from(AKID.to_owned()),
        secret_access_key: SecretString::from(SECRET.to_owned()),
        session_token: token.map(|t| SecretString::from(t.to_owned())),
    }
}

fn suite_scope() -> Scope<'static> {
    Scope {
        region: "us-east-1",
        service: "service",
        time: suite_time(),
    }
}

fn inline(value: &str) -> SecretSource {
    SecretSource::Inline(SecretString::from(value.to_owned()))
}

fn sigv4_auth(token: Option<&str>) -> BedrockAuth {
    BedrockAuth::SigV4 {
        access_key_id: inline(AKID),
        secret_access_key: inline(SECRET),
        session_token: token.map(inline),
    }
}

fn invoke_provider(auth: BedrockAuth) -> BedrockProvider {
    BedrockProvider {
        base_url: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
        region: "us-east-1".into(),
        api: BedrockApi::Invoke,
        auth,
        anthropic_version: BEDROCK_ANTHROPIC_VERSION.into(),
    }
}

fn mantle_provider(auth: BedrockAuth) -> BedrockProvider {
    BedrockProvider {
        base_url: "https://bedrock-mantle.us-east-1.api.aws/anthropic".into(),
        region: "us-east-1".into(),
        api: BedrockApi::Messages,
        auth,
        anthropic_version: BEDROCK_ANTHROPIC_VERSION.into(),
    }
}

const SESSION_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

/// The `system` member as Claude Code sends it (attribution line first), with odd spacing
/// and an escape that must survive byte for byte.
const SYSTEM: &str = r#"[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.328.abc; cc_entrypoint=cli;"},  {"type": "text", "text": "You are Claude Code, caf\u00e9.", "cache_control": {"type": "ephemeral"}}]"#;

fn claude_code_body(stream: bool) -> Bytes {
    Bytes::from(format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":32000,"stream":{stream},"system":{SYSTEM},"messages":[{{"role":"system","content":"Auto mode is on."}},{{"role":"user","content":[{{"type":"text","text":"hello"}}]}}],"safeguards":[{{"type":"auto_mode","enabled":true}}],"tags":["team:payments"],"metadata":{{"user_id":"{{\"device_id\":\"d1\",\"session_id\":\"s1\"}}"}},"thinking":{{"type":"adaptive","display":"summarized"}},"tools":[{{"name":"Bash","input_schema":{{"type":"object"}},"defer_loading":true}}]}}"#
    ))
}

fn claude_code_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("anthropic-version", "2023-06-01".parse().unwrap());
    h.insert(
        "anthropic-beta",
        "claude-code-20250219,interleaved-thinking-2025-05-14, request-tags-2026-01-01 ,context-management-2025-06-27"
            .parse()
            .unwrap(),
    );
    h.insert("authorization", "Bearer client-secret".parse().unwrap());
    h.insert("x-api-key", "client-key".parse().unwrap());
    h.insert("x-app", "cli".parse().unwrap());
    h.insert("x-claude-code-session-id", "sess-1".parse().unwrap());
    h.insert(
        "user-agent",
        "claude-cli/2.1.328 (external, cli)".parse().unwrap(),
    );
    h.insert(
        "accept-encoding",
        "gzip, deflate, br, zstd".parse().unwrap(),
    );
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("x-stainless-lang", "js".parse().unwrap());
    h
}

struct Call {
    body: Bytes,
    headers: HeaderMap,
    endpoint: Endpoint,
    model: &'static str,
    identity: bool,
}

impl Call {
    fn new(body: Bytes) -> Call {
        Call {
            body,
            headers: claude_code_headers(),
            endpoint: Endpoint::Messages,
            model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            identity: false,
        }
    }

    fn prepare(&self, provider: &BedrockProvider) -> Result<Prepared, PrepareError> {
        let fields: RequestFields<'_> = extract_fields(&self.body).unwrap();
        let out = Outbound {
            endpoint: self.endpoint,
            headers: &self.headers,
            body: &self.body,
            fields: &fields,
            upstream_model: self.model,
            identity_encoding: self.identity,
        };
        prepare(provider, &out, &Secrets::default(), suite_time())
    }
}

async fn body_bytes(prepared: Prepared) -> Bytes {
    prepared
        .request
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// `SignedHeaders=…` of an `Authorization` header.
fn signed_headers(authorization: &str) -> Vec<&str> {
    authorization
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .split(';')
        .collect()
}

// ---------------------------------------------------------------------------------------
// SigV4: AWS's published test suite (aws-sig-v4-test-suite), through the signing function
// `prepare` uses.

fn suite_authorization(
    method: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    token: Option<&str>,
) -> String {
    sign(
        method,
        "https://example.amazonaws.com/",
        headers,
        body,
        &credentials(token),
        &suite_scope(),
    )
    .unwrap();
    assert_eq!(header(headers, "x-amz-date"), Some("20150830T123600Z"));
    header(headers, "authorization").unwrap().to_owned()
}

#[test]
fn sigv4_reproduces_the_get_vanilla_vector() {
    let mut headers = HeaderMap::new();
    assert_eq!(
        suite_authorization("GET", &mut headers, b"", None),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
    assert!(headers.get("authorization").unwrap().is_sensitive());
}

#[test]
fn sigv4_reproduces_the_post_vanilla_vector() {
    let mut headers = HeaderMap::new();
    assert_eq!(
        suite_authorization("POST", &mut headers, b"", None),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
    );
}

#[test]
fn sigv4_reproduces_the_post_x_www_form_urlencoded_vector() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    assert_eq!(
        suite_authorization("POST", &mut headers, b"Param1=value1", None),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, \
         Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
    );
}

#[test]
fn sigv4_reproduces_the_post_sts_header_before_vector() {
    let mut headers = HeaderMap::new();
    assert_eq!(
        suite_authorization("POST", &mut headers, b"", Some(SESSION_TOKEN)),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date;x-amz-security-token, \
         Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
    );
    assert_eq!(
        header(&headers, "x-amz-security-token"),
        Some(SESSION_TOKEN)
    );
    assert!(headers.get("x-amz-security-token").unwrap().is_sensitive());
}

#[test]
fn signing_refuses_a_url_without_a_host_instead_of_panicking() {
    let mut headers = HeaderMap::new();
    let err = sign(
        "POST",
        "/model/x/invoke",
        &mut headers,
        b"",
        &credentials(None),
        &suite_scope(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains(SECRET));
}

#[tokio::test]
async fn a_bedrock_invoke_signed_with_a_session_token_signs_the_token_and_the_content() {
    let call = Call::new(claude_code_body(true));
    let prepared = call
        .prepare(&invoke_provider(sigv4_auth(Some("session-token-1"))))
        .unwrap();
    assert_eq!(prepared.decode, Decode::BedrockEventStream);
    let request = &prepared.request;
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(
        request.uri().to_string(),
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    );
    let h = &request.headers().clone();
    let authorization = header(h, "authorization").unwrap();
    assert!(authorization.starts_with(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, "
    ));
    let signed = signed_headers(authorization);
    for name in [
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-amzn-bedrock-accept",
    ] {
        assert!(signed.contains(&name), "{name} not in {signed:?}");
    }
    assert!(!signed.contains(&"user-agent"));
    assert_eq!(header(h, "x-amz-security-token"), Some("session-token-1"));
    assert!(h.get("authorization").unwrap().is_sensitive());
    assert!(h.get("x-amz-security-token").unwrap().is_sensitive());
    assert_eq!(header(h, "x-amzn-bedrock-accept"), Some("application/json"));
    assert_eq!(header(h, "accept-encoding"), Some("identity"));
    assert_eq!(header(h, "content-type"), Some("application/json"));

    // Re-signing the exact bytes and headers sent reproduces the signature.
    let body = body_bytes(prepared).await;
    let mut resigned: HeaderMap = HeaderMap::new();
    for name in [
        "content-type",
        "x-amzn-bedrock-accept",
        "accept-encoding",
        "user-agent",
    ] {
        if let Some(v) = h.get(name) {
            resigned.insert(name, v.clone());
        }
    }
    let scope = Scope {
        region: "us-east-1",
        service: "bedrock",
        time: suite_time(),
    };
    let creds = credentials(Some("session-token-1"));
    let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream";
    let signature = sign("POST", url, &mut resigned, &body, &creds, &scope).unwrap();
    assert!(authorization.ends_with(&format!("Signature={signature}")));
}

#[tokio::test]
async fn a_bedrock_api_key_goes_as_a_bearer_and_client_credentials_never_do() {
    let call = Call::new(claude_code_body(false));
    let prepared = call
        .prepare(&invoke_provider(BedrockAuth::ApiKey(inline(
            "bedrock-key-1",
        ))))
        .unwrap();
    assert_eq!(prepared.decode, Decode::Passthrough);
    let h = prepared.request.headers();
    assert!(
        prepared
            .request
            .uri()
            .path()
            .ends_with("/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke")
    );
    assert_eq!(header(h, "authorization"), Some("Bearer bedrock-key-1"));
    assert!(h.get("authorization").unwrap().is_sensitive());
    for dropped in [
        "x-api-key",
        "x-app",
        "x-claude-code-session-id",
        "anthropic-version",
        "anthropic-beta",
        "x-amz-date",
    ] {
        assert!(h.get(dropped).is_none(), "{dropped} must not go to Bedrock");
    }
    assert_eq!(header(h, "accept"), Some("application/json"));
    assert_eq!(
        header(h, "accept-encoding"),
        Some("gzip, deflate, br, zstd")
    );
    assert_eq!(
        header(h, "user-agent"),
        Some("claude-cli/2.1.328 (external, cli)")
    );

    let mut identity = Call::new(claude_code_body(false));
    identity.identity = true;
    let prepared = identity
        .prepare(&invoke_provider(BedrockAuth::ApiKey(inline("k"))))
        .unwrap();
    assert_eq!(
        header(prepared.request.headers(), "accept-encoding"),
        Some("identity")
    );
}

#[test]
fn a_missing_credential_is_a_credential_error_naming_the_reference() {
    let call = Call::new(claude_code_body(true));
    let auth = BedrockAuth::SigV4 {
        access_key_id: SecretSource::Env("TOLLGATE_TEST_SURELY_UNSET_AWS_KEY".into()),
        secret_access_key: inline(SECRET),
        session_token: None,
    };
    match call.prepare(&invoke_provider(auth)) {
        Err(PrepareError::Credential(e)) => {
            assert!(e.to_string().contains("TOLLGATE_TEST_SURELY_UNSET_AWS_KEY"));
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn model_ids_and_arns_are_one_encoded_path_segment() {
    assert_eq!(
        model_path_segment("anthropic.claude-opus-4-8").unwrap(),
        "anthropic.claude-opus-4-8"
    );
    assert_eq!(
        model_path_segment(
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2"
        )
        .unwrap(),
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2"
    );
    assert!(model_path_segment("..").is_err());
    assert!(model_path_segment("").is_err());
}

// ---------------------------------------------------------------------------------------
// Body dialects

#[tokio::test]
async fn a_claude_code_request_becomes_an_invoke_body_bedrock_accepts() {
    let call = Call::new(claude_code_body(true));
    let prepared = call.prepare(&invoke_provider(sigv4_auth(None))).unwrap();
    let body = body_bytes(prepared).await;
    let text = std::str::from_utf8(&body).unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let obj = v.as_object().unwrap();
    for removed in ["model", "stream", "tags"] {
        assert!(!obj.contains_key(removed), "{removed} must be removed");
    }
    assert_eq!(v["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(
        v["anthropic_beta"],
        json!([
            "claude-code-20250219",
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27"
        ])
    );
    assert!(
        text.contains(&format!("\"system\":{SYSTEM}")),
        "system must be byte-identical: {text}"
    );
    assert_eq!(v["messages"][0]["role"], "system");
    assert_eq!(v["safeguards"][0]["type"], "auto_mode");
    assert_eq!(
        v["metadata"]["user_id"],
        "{\"device_id\":\"d1\",\"session_id\":\"s1\"}"
    );
    assert_eq!(v["thinking"]["type"], "adaptive");
    assert_eq!(v["tools"][0]["defer_loading"], true);
    assert_eq!(v["max_tokens"], 32000);
}

#[tokio::test]
async fn the_clients_anthropic_version_never_reaches_bedrock_and_body_betas_merge() {
    let body = Bytes::from_static(
        br#"{"model":"m","max_tokens":5,"messages":[],"anthropic_version":"2026-10-21","anthropic_beta":["interleaved-thinking-2025-05-14","request-tags-2026-01-01","body-only-beta"]}"#,
    );
    let call = Call::new(body);
    let mut provider = invoke_provider(sigv4_auth(None));
    provider.anthropic_version = "bedrock-2023-05-31".into();
    let v: Value =
        serde_json::from_slice(&body_bytes(call.prepare(&provider).unwrap()).await).unwrap();
    assert_eq!(v["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(
        v["anthropic_beta"],
        json!([
            "interleaved-thinking-2025-05-14",
            "body-only-beta",
            "claude-code-20250219",
            "context-management-2025-06-27"
        ])
    );

    // Without betas anywhere, no `anthropic_beta` member.
    let mut call = Call::new(Bytes::from_static(
        br#"{"model":"m","max_tokens":5,"messages":[]}"#,
    ));
    call.headers.remove("anthropic-beta");
    let v: Value =
        serde_json::from_slice(&body_bytes(call.prepare(&provider).unwrap()).await).unwrap();
    assert!(v.get("anthropic_beta").is_none());
}

#[tokio::test]
async fn count_tokens_sends_the_invoke_body_base64_wrapped() {
    let mut call = Call::new(Bytes::from_static(
        br#"{"model":"claude-sonnet-4-5","system":"s","messages":[{"role":"user","content":"hi"}],"tags":["t"]}"#,
    ));
    call.endpoint = Endpoint::CountTokens;
    let prepared = call.prepare(&invoke_provider(sigv4_auth(None))).unwrap();
    assert_eq!(prepared.decode, Decode::BedrockCountTokens);
    assert!(
        prepared
            .request
            .uri()
            .path()
            .ends_with("/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens")
    );
    assert_eq!(
        header(prepared.request.headers(), "accept-encoding"),
        Some("identity")
    );
    let wrapped: Value = serde_json::from_slice(&body_bytes(prepared).await).unwrap();
    let inner = wrapped["input"]["invokeModel"]["body"].as_str().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(inner)
        .unwrap();
    let v: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(v["anthropic_version"], "bedrock-2023-05-31");
    assert!(v.get("model").is_none() && v.get("tags").is_none());
    assert_eq!(
        v["max_tokens"], 1,
        "CountTokens validates an InvokeModel body"
    );
    assert_eq!(v["system"], "s");

    // With a thinking budget, max_tokens must exceed it.
    let mut call = Call::new(Bytes::from_static(
        br#"{"model":"m","messages":[],"thinking":{"type":"enabled","budget_tokens":2048}}"#,
    ));
    call.endpoint = Endpoint::CountTokens;
    let wrapped: Value = serde_json::from_slice(
        &body_bytes(call.prepare(&invoke_provider(sigv4_auth(None))).unwrap()).await,
    )
    .unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(wrapped["input"]["invokeModel"]["body"].as_str().unwrap())
        .unwrap();
    let v: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(v["max_tokens"], 2049);
}

#[test]
fn count_tokens_answers_are_renamed() {
    assert_eq!(
        decode_count_tokens(br#"{"inputTokens": 1234}"#).as_deref(),
        Some(&br#"{"input_tokens":1234}"#[..])
    );
    assert_eq!(decode_count_tokens(br#"{"input_tokens": 1}"#), None);
    assert_eq!(decode_count_tokens(b"nope"), None);
}

#[tokio::test]
async fn mantle_keeps_the_anthropic_body_with_the_upstream_model_and_signs_for_bedrock_mantle() {
    let mut call = Call::new(claude_code_body(true));
    call.model = "anthropic.claude-opus-4-8";
    let prepared = call.prepare(&mantle_provider(sigv4_auth(None))).unwrap();
    assert_eq!(prepared.decode, Decode::Passthrough);
    assert_eq!(
        prepared.request.uri().to_string(),
        "https://bedrock-mantle.us-east-1.api.aws/anthropic/v1/messages"
    );
    let h = prepared.request.headers().clone();
    assert_eq!(header(&h, "anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        header(&h, "anthropic-beta"),
        Some("claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27")
    );
    for dropped in ["x-api-key", "x-app", "x-claude-code-session-id"] {
        assert!(h.get(dropped).is_none(), "{dropped}");
    }
    let authorization = header(&h, "authorization").unwrap();
    assert!(authorization.contains("/us-east-1/bedrock-mantle/aws4_request"));
    let signed = signed_headers(authorization);
    assert!(signed.contains(&"anthropic-beta") && signed.contains(&"host"));

    let body = body_bytes(prepared).await;
    let text = std::str::from_utf8(&body).unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["model"], "anthropic.claude-opus-4-8");
    assert_eq!(v["stream"], true);
    assert!(v.get("tags").is_none());
    assert!(v.get("anthropic_version").is_none());
    assert!(text.contains(&format!("\"system\":{SYSTEM}")));

    let mut count = Call::new(Bytes::from_static(br#"{"model":"m","messages":[]}"#));
    count.endpoint = Endpoint::CountTokens;
    let prepared = count
        .prepare(&mantle_provider(BedrockAuth::ApiKey(inline("k"))))
        .unwrap();
    assert_eq!(
        prepared.request.uri().path(),
        "/anthropic/v1/messages/count_tokens"
    );
    assert_eq!(
        header(prepared.request.headers(), "authorization"),
        Some("Bearer k")
    );
    // Without `tags`, the body is passed byte for byte (model replaced).
    assert_eq!(
        &body_bytes(prepared).await[..],
        br#"{"model":"us.anthropic.claude-sonnet-4-5-20250929-v1:0","messages":[]}"#
    );
}

// ---------------------------------------------------------------------------------------
// Event stream

fn frame(headers: &[(&'static str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut message = Message::new(Bytes::copy_from_slice(payload));
    for (name, value) in headers {
        message = message.add_header(Header::new(
            *name,
            FrameValue::String(StrBytes::from((*value).to_owned())),
        ));
    }
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    out
}

fn chunk_frame(event: &str, pad: &str) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(event);
    frame(
        &[
            (":event-type", "chunk"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        format!(r#"{{"bytes":"{encoded}","p":"{pad}"}}"#).as_bytes(),
    )
}

fn exception_frame(kind: &str, payload: &str) -> Vec<u8> {
    frame(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

const EVENTS: &[&str] = &[
    r#"{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello, caf\u00e9 \n world"}}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
    r#"{"type":"content_block_stop","index":0}"#,
    r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}"#,
    r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":5,"invocationLatency":321,"firstByteLatency":100}}"#,
];

fn bedrock_stream() -> Vec<u8> {
    let mut out = Vec::new();
    for (i, event) in EVENTS.iter().enumerate() {
        out.extend(chunk_frame(event, &"abcdefghij"[..=i]));
    }
    out
}

fn sse_of(event: &str) -> String {
    let kind = serde_json::from_str::<Value>(event).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_owned();
    format!("event: {kind}\ndata: {event}\n\n")
}

fn expected_sse() -> String {
    let mut out: String = EVENTS[..EVENTS.len() - 1]
        .iter()
        .map(|e| sse_of(e))
        .collect();
    out.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    out
}

fn body_of(chunks: Vec<Result<Vec<u8>, &'static str>>) -> UpstreamBody {
    let frames = chunks.into_iter().map(|c| {
        c.map(|b| Frame::data(Bytes::from(b)))
            .map_err(|e| -> BoxError { e.into() })
    });
    StreamBody::new(stream::iter(frames)).boxed_unsync()
}

/// The decoded body's frames, and the error that ended it (if any).
async fn decode_chunks(chunks: Vec<Result<Vec<u8>, &'static str>>) -> (Vec<Bytes>, Option<String>) {
    let mut body = decode_event_stream(body_of(chunks));
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => frames.push(frame.into_data().unwrap()),
            Err(e) => return (frames, Some(e.to_string())),
        }
    }
    (frames, None)
}

async fn decode_text(chunks: Vec<Vec<u8>>) -> String {
    let (frames, error) = decode_chunks(chunks.into_iter().map(Ok).collect()).await;
    assert_eq!(error, None);
    let all: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    String::from_utf8(all).unwrap()
}

/// The SSE events of `text`, each `(name, data JSON)`.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split_terminator("\n\n")
        .map(|block| {
            let mut lines = block.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            assert!(lines.next().is_none(), "one data line per event: {block}");
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[test]
fn the_published_event_stream_vector_decodes() {
    let mut vector = vec![
        0x00, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x00, 0x00, 0xba, 0xf2, 0xf6, 0x8a,
    ];
    vector.extend_from_slice(br#"{"foo": "bar"}"#);
    vector.extend_from_slice(&[0xae, 0x72, 0x58, 0xe4]);
    assert_eq!(crc32(&vector[..8]), 0xbaf2_f68a);
    assert_eq!(crc32(&vector[..vector.len() - 4]), 0xae72_58e4);
    assert_eq!(
        frame(&[], br#"{"foo": "bar"}"#),
        vector,
        "the encoder agrees"
    );

    let mut decoder = Decoder::default();
    decoder.buffer(&vector);
    let message = decoder.next_message().unwrap().unwrap();
    assert!(message.headers().is_empty());
    assert_eq!(&message.payload()[..], br#"{"foo": "bar"}"#);
    // A message without `:message-type` produces nothing, and the stream goes on.
    let mut out = BytesMut::new();
    assert!(Decoder::default().feed(&vector, &mut out));
    assert!(out.is_empty());
}

#[tokio::test]
async fn a_bedrock_stream_becomes_anthropic_sse_in_one_frame_per_chunk() {
    let (frames, error) = decode_chunks(vec![Ok(bedrock_stream())]).await;
    assert_eq!(error, None);
    assert_eq!(
        frames.len(),
        1,
        "every complete event of a chunk goes out at once"
    );
    let text = std::str::from_utf8(&frames[0]).unwrap();
    assert_eq!(text, expected_sse());
    let parsed = events(text);
    assert_eq!(parsed.len(), EVENTS.len());
    assert_eq!(parsed[2].1["delta"]["text"], "Hello, café \n world");
    assert_eq!(parsed.last().unwrap().1, json!({"type": "message_stop"}));
}

#[tokio::test]
async fn a_stream_split_at_every_byte_boundary_decodes_to_the_same_sse() {
    let stream = bedrock_stream();
    let expected = expected_sse();
    for split in 0..=stream.len() {
        let (a, b) = stream.split_at(split);
        let text = decode_text(vec![a.to_vec(), b.to_vec()]).await;
        assert_eq!(text, expected, "split at byte {split}");
    }
    let bytes: Vec<Vec<u8>> = stream.iter().map(|b| vec![*b]).collect();
    assert_eq!(decode_text(bytes).await, expected, "one byte per chunk");
    let sevens: Vec<Vec<u8>> = stream.chunks(7).map(<[u8]>::to_vec).collect();
    assert_eq!(decode_text(sevens).await, expected, "seven bytes per chunk");
}

#[tokio::test]
async fn a_corrupted_message_crc_ends_the_stream_with_an_error_event_and_no_garbage() {
    let frames: Vec<Vec<u8>> = EVENTS.iter().map(|e| chunk_frame(e, "abc")).collect();
    let mut stream: Vec<u8> = Vec::new();
    stream.extend(&frames[0]);
    stream.extend(&frames[1]);
    let mut bad = frames[2].clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    stream.extend(&bad);
    for f in &frames[3..] {
        stream.extend(f);
    }
    let expected_prefix = format!("{}{}", sse_of(EVENTS[0]), sse_of(EVENTS[1]));
    // Whole, and split at every byte: the same output each time.
    let mut splits = vec![vec![stream.clone()]];
    for split in (0..=stream.len()).step_by(5) {
        let (a, b) = stream.split_at(split);
        splits.push(vec![a.to_vec(), b.to_vec()]);
    }
    for chunks in splits {
        let text = decode_text(chunks).await;
        let rest = text
            .strip_prefix(&expected_prefix)
            .expect("good events first");
        let after = events(rest);
        assert_eq!(after.len(), 1, "one error event, then nothing: {rest}");
        assert_eq!(after[0].0, "error");
        assert_eq!(after[0].1["error"]["type"], "api_error");
        assert_eq!(
            after[0].1["error"]["message"],
            "upstream stream was corrupted"
        );
    }
}

#[tokio::test]
async fn a_corrupted_prelude_is_caught_before_any_more_is_buffered() {
    let mut bad = chunk_frame(EVENTS[0], "a");
    bad[2] ^= 0x40; // total length now megabytes: the prelude CRC says so at once
    let (frames, error) = decode_chunks(vec![Ok(bad[..12].to_vec())]).await;
    assert_eq!(error, None);
    let text = String::from_utf8(frames.concat()).unwrap();
    let parsed = events(&text);
    assert_eq!(parsed.len(), 1);
    assert_eq!(
        parsed[0].1["error"]["message"],
        "upstream stream was corrupted"
    );

    // A length that is impossible, with a valid prelude CRC, is refused too.
    let mut prelude = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
    prelude.extend_from_slice(&crc32(&prelude).to_be_bytes());
    let mut out = BytesMut::new();
    assert!(!Decoder::default().feed(&prelude, &mut out));
    assert!(std::str::from_utf8(&out).unwrap().contains("corrupted"));
}

#[tokio::test]
async fn exception_frames_become_anthropic_error_events_and_end_the_stream() {
    let cases = [
        (
            "throttlingException",
            r#"{"message":"Too many tokens, please wait before trying again."}"#,
            "rate_limit_error",
        ),
        (
            "serviceUnavailableException",
            r#"{"message":"Service unavailable"}"#,
            "overloaded_error",
        ),
        (
            "validationException",
            r#"{"message":"Bad request"}"#,
            "invalid_request_error",
        ),
        (
            "modelTimeoutException",
            r#"{"message":"timed out"}"#,
            "timeout_error",
        ),
        (
            "internalServerException",
            r#"{"message":"oops"}"#,
            "api_error",
        ),
        (
            "modelStreamErrorException",
            r#"{"message":"x","originalStatusCode":500,"originalMessage":"y"}"#,
            "api_error",
        ),
        (
            "modelStreamErrorException",
            r#"{"message":"x","originalStatusCode":529,"originalMessage":"Overloaded"}"#,
            "overloaded_error",
        ),
        ("somethingNewException", r#"{}"#, "api_error"),
    ];
    for (kind, payload, expected_type) in cases {
        let mut stream = chunk_frame(EVENTS[0], "ab");
        stream.extend(exception_frame(kind, payload));
        stream.extend(chunk_frame(EVENTS[1], "ab")); // never reaches the client
        let text = decode_text(vec![stream]).await;
        let parsed = events(&text);
        assert_eq!(parsed.len(), 2, "{kind}: {text}");
        assert_eq!(parsed[0].0, "message_start");
        assert_eq!(parsed[1].0, "error");
        assert_eq!(parsed[1].1["type"], "error");
        assert_eq!(parsed[1].1["error"]["type"], expected_type, "{kind}");
    }
}

#[tokio::test]
async fn exception_messages_are_generic_unless_safe_validation_text() {
    let text = decode_text(vec![exception_frame(
        "throttlingException",
        r#"{"message":"Rate exceeded for account 123456789012"}"#,
    )])
    .await;
    let parsed = events(&text);
    assert_eq!(
        parsed[0].1["error"]["message"],
        "upstream provider rate limit reached; retry later"
    );

    let text = decode_text(vec![exception_frame(
        "validationException",
        r#"{"message":"Input is too long for requested model."}"#,
    )])
    .await;
    assert_eq!(
        events(&text)[0].1["error"]["message"],
        "prompt is too long: Input is too long for requested model."
    );

    let text = decode_text(vec![exception_frame(
        "validationException",
        r#"{"message":"User: arn:aws:sts::123456789012:assumed-role/x is not allowed"}"#,
    )])
    .await;
    let message = events(&text)[0].1["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !message.contains("arn:") && !message.contains("123456789012"),
        "{message}"
    );
}

#[tokio::test]
async fn unmodeled_error_frames_become_api_errors() {
    let error = frame(
        &[
            (":error-code", "InternalFailure"),
            (":error-message", "internal failure at host 10.0.0.1"),
            (":message-type", "error"),
        ],
        b"",
    );
    let text = decode_text(vec![chunk_frame(EVENTS[0], "a"), error]).await;
    let parsed = events(&text);
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1].1["error"]["type"], "api_error");
    assert!(!text.contains("10.0.0.1"));
}

#[tokio::test]
async fn a_stream_ending_inside_a_message_ends_with_an_error_event() {
    let whole = chunk_frame(EVENTS[0], "a");
    let partial = chunk_frame(EVENTS[1], "a");
    for cut in [1, 11, 12, 20, partial.len() - 1] {
        let text = decode_text(vec![whole.clone(), partial[..cut].to_vec()]).await;
        let parsed = events(&text);
        assert_eq!(parsed.len(), 2, "cut at {cut}: {text}");
        assert_eq!(parsed[0].0, "message_start");
        assert_eq!(parsed[1].0, "error");
        assert_eq!(parsed[1].1["error"]["type"], "api_error");
    }
    // A clean end after whole messages is just the end.
    assert_eq!(decode_text(vec![whole.clone()]).await, sse_of(EVENTS[0]));
}

#[tokio::test]
async fn an_upstream_body_error_is_passed_on_after_the_events_before_it() {
    let (frames, error) = decode_chunks(vec![
        Ok(chunk_frame(EVENTS[0], "a")),
        Ok(chunk_frame(EVENTS[1], "a")[..10].to_vec()),
        Err("connection reset"),
    ])
    .await;
    assert_eq!(frames.len(), 1);
    assert_eq!(std::str::from_utf8(&frames[0]).unwrap(), sse_of(EVENTS[0]));
    assert_eq!(error.as_deref(), Some("connection reset"));
}

#[tokio::test]
async fn chunks_without_a_type_are_dropped_and_multiline_json_is_compacted() {
    let stream = [
        chunk_frame(r#"{"no_type":true}"#, "a"),
        chunk_frame(r#"{"type":7}"#, "a"),
        chunk_frame("{\n  \"type\": \"ping\"\n}", "a"),
        frame(
            &[(":message-type", "event"), (":event-type", "other")],
            b"{}",
        ),
    ]
    .concat();
    let text = decode_text(vec![stream]).await;
    assert_eq!(text, "event: ping\ndata: {\"type\":\"ping\"}\n\n");

    // A chunk whose payload is not Bedrock's shape is corruption, not silence.
    let bad = frame(
        &[(":event-type", "chunk"), (":message-type", "event")],
        br#"{"bytes":"not base64!"}"#,
    );
    let text = decode_text(vec![bad]).await;
    assert!(text.contains("upstream stream was corrupted"));
}

// ---------------------------------------------------------------------------------------
// Error answers

fn aws_error(status: u16, code: &str, message: &str) -> UpstreamFailure {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amzn-errortype",
        format!("{code}:http://internal.amazon.com/coral/com.amazon.bedrock/")
            .parse()
            .unwrap(),
    );
    headers.insert("x-amzn-requestid", "r-1".parse().unwrap());
    let body = json!({ "message": message }).to_string();
    map_error(
        StatusCode::from_u16(status).unwrap(),
        &headers,
        body.as_bytes(),
    )
}

fn api(failure: &UpstreamFailure) -> &ApiError {
    match &failure.reply {
        ErrorReply::Api(e) => e,
        ErrorReply::Verbatim { .. } => panic!("Bedrock errors are never relayed verbatim"),
    }
}

use crate::error::ApiError;

#[test]
fn bedrock_errors_map_to_the_anthropic_table() {
    // (status, code, → client status, error type, retryable)
    let cases = [
        (
            400,
            "ValidationException",
            400,
            "invalid_request_error",
            false,
        ),
        (
            400,
            "ServiceQuotaExceededException",
            429,
            "rate_limit_error",
            true,
        ),
        (403, "AccessDeniedException", 502, "api_error", false),
        (403, "UnrecognizedClientException", 502, "api_error", false),
        (403, "InvalidSignatureException", 502, "api_error", false),
        (403, "ExpiredTokenException", 502, "api_error", false),
        (
            404,
            "ResourceNotFoundException",
            404,
            "not_found_error",
            false,
        ),
        (408, "ModelTimeoutException", 504, "timeout_error", true),
        (424, "ModelErrorException", 500, "api_error", false),
        (424, "ModelStreamErrorException", 500, "api_error", true),
        (429, "ThrottlingException", 429, "rate_limit_error", true),
        (429, "ModelNotReadyException", 529, "overloaded_error", true),
        (500, "InternalServerException", 500, "api_error", true),
        (
            503,
            "ServiceUnavailableException",
            529,
            "overloaded_error",
            true,
        ),
        (413, "ValidationException", 413, "request_too_large", false),
    ];
    for (status, code, client_status, error_type, retryable) in cases {
        let f = aws_error(status, code, "Something about the request");
        let e = api(&f);
        assert_eq!(e.code.status().as_u16(), client_status, "{code}");
        assert_eq!(e.code.error_type(), error_type, "{code}");
        assert_eq!(f.retryable, retryable, "{code}");
        assert_eq!(f.reason, code, "reason is the exception name only");
    }
}

#[test]
fn a_model_stream_error_from_an_overloaded_model_is_overloaded() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amzn-errortype",
        "ModelStreamErrorException:x".parse().unwrap(),
    );
    let body =
        br#"{"message":"Overloaded","originalStatusCode":529,"originalMessage":"Overloaded"}"#;
    let f = map_error(StatusCode::from_u16(424).unwrap(), &headers, body);
    assert_eq!(api(&f).code, ErrorCode::Overloaded);
    assert!(f.retryable);
}

#[test]
fn access_denied_naming_an_arn_never_reaches_the_client() {
    let f = aws_error(
        403,
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/gw/i-0abc is not authorized to perform: \
         bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1::foundation-model/x",
    );
    let e = api(&f);
    assert_eq!(e.code, ErrorCode::BadGateway);
    assert_eq!(
        e.message,
        "upstream provider rejected the gateway's credentials"
    );
    let envelope = String::from_utf8(e.envelope().to_vec()).unwrap();
    assert!(!envelope.contains("arn:") && !envelope.contains("123456789012"));
    assert!(!f.reason.contains("arn"));
}

#[test]
fn input_too_long_gets_claude_codes_prompt_is_too_long_wording() {
    let f = aws_error(
        400,
        "ValidationException",
        "Input is too long for requested model.",
    );
    let e = api(&f);
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(
        e.message,
        "prompt is too long: Input is too long for requested model."
    );
    assert!(!f.retryable);

    // Safe validation text passes; text naming an account does not.
    let f = aws_error(
        400,
        "ValidationException",
        "Malformed input request: #: extraneous key [stream] is not permitted, please reformat your input and try again.",
    );
    assert!(api(&f).message.contains("extraneous key [stream]"));
    let f = aws_error(
        400,
        "ValidationException",
        "Model access for account 123456789012 denied",
    );
    assert_eq!(api(&f).message, "upstream provider rejected the request");
}

#[test]
fn throttling_messages_are_generic_and_retry_after_is_kept() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amzn-errortype",
        "ThrottlingException:http://x/".parse().unwrap(),
    );
    headers.insert(RETRY_AFTER, "9".parse().unwrap());
    let body = br#"{"message":"Too many requests, please wait before trying again. You have sent too many requests."}"#;
    let f = map_error(StatusCode::TOO_MANY_REQUESTS, &headers, body);
    let e = api(&f);
    assert_eq!(
        e.message,
        "upstream provider rate limit reached; retry later"
    );
    assert_eq!((e.retry_after, f.retry_after), (Some(9), Some(9)));
    assert!(f.retryable);

    headers.insert("x-should-retry", "false".parse().unwrap());
    assert!(!map_error(StatusCode::TOO_MANY_REQUESTS, &headers, body).retryable);
}

#[test]
fn the_error_code_can_come_from_the_body() {
    let body =
        br#"{"__type":"com.amazon.coral.validate#ThrottlingException","Message":"slow down"}"#;
    let f = map_error(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body);
    assert_eq!(api(&f).code, ErrorCode::RateLimited);
    assert_eq!(f.reason, "ThrottlingException");

    let body =
        br#"{"code":"ValidationException","message":"Input is too long for requested model."}"#;
    let f = map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
    assert!(api(&f).message.starts_with("prompt is too long"));
}

#[test]
fn payload_too_large_is_request_too_large_and_unknown_answers_are_generic() {
    let f = map_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &HeaderMap::new(),
        b"<html>too big</html>",
    );
    assert_eq!(f.reply.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let f = map_error(
        StatusCode::BAD_GATEWAY,
        &HeaderMap::new(),
        b"<html>bad gateway</html>",
    );
    assert_eq!(f.reply.status(), StatusCode::BAD_GATEWAY);
    assert!(f.retryable);
    assert_eq!(f.reason, "status 502");
}
