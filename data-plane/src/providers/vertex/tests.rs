use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tollgate_policy::{SecretSource, VERTEX_ANTHROPIC_VERSION, VertexAuth, VertexProvider};

use super::token::{CLOUD_PLATFORM_SCOPE, GOOGLE_TOKEN_URI};
use super::*;
use crate::request::extract_fields;

/// TEST ONLY: an RSA key generated for these tests (`openssl genpkey -algorithm RSA
/// -pkeyopt rsa_keygen_bits:2048`). It protects nothing.
const TEST_ONLY_PRIVATE_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC9TWLd9VekjQNd
kQ2yHUwpmsd10SuGCdIlnDx7w/6J8hwObNaKyTpDRJx+XTT2luVN1OUbGaZi8Y2s
XcfIFrYnbcumeRijC7GAQYQa7MZZzKHKrr8/I+wgGFw5K+4fi8QXBmWMzLzj0hw1
DigcDTfpsQ1DJDUkF5ksGF6c7MJrRfoZc6lmerf21YUDnwZR1APmy5B7gcQIWMAP
sZUaL/dOdsw8iQAgrxE5/s/46inhVi09fdUZjcy1Du0wp+b7KKTlj610HuydpIBY
OliV3E2VxDiPPstCcbtUktlKpbJzwwg7rmjp8U8Qgqm20/e5tKIppY1zFP1zsBgh
YeGVNYPZAgMBAAECgf9VIRf0+QAQ39lDmpeuIb6+dvx73zTTclcu0rPgdKNjJZ24
XvmcMCIjXheCPCg1PGaiObtOFJrepAIyIXpWYOBJmvaaRprtt7R7GPtvoEsS1xNr
MmqO2ni1dj8C9t5/ETt9n0LLrsbDLRnCQjuHYepjDVwJdZ7wPCyFx+/EYjSMSIWc
uCS+k0eudu9b/GT/ruKA4zmF99se6E9eLpE1r1d8E9EV6v759yeYZB8rW3OXslbD
hXb2OBXPFM0pGmueSoV4RUvHlifj6bKCJE8X8GYxgVfNvn33KhkTgI55Tph8tSef
e0Mz1xX8SN4VsVg8JPMgRVVhZuf7ebXdTK4ZpYECgYEA5l+rQQhdQ90h8FLvhG5Q
3/d28seAyvK/8pTSNKEU0A+chSOpJRrHS6rlTr7KLYFeDK/1SuJH+T099j15tPqn
xG/YVQ2w1cGcJZZWFYwsR4duiwFljS3d6gmAApbe3Ohwr5BU0MoJBuIOLobOrB1o
lnz7oRqz72aev+yT0jn6U1kCgYEA0lwhV34mSzmtwzkPrCwqLLFLxRfrATmzpAH6
e60UXi6iBAZJBTrNoUoQZ8xgwmSknSqc4Pn9uvIGpLE9Bmz+NBnlc4c2XPTlajhh
v9+4YO6U+L/3KQuc2V/5ziOKo/gpug246ShLtLHwf+zmCwHGxU45KXAJsb+Ap8fS
r68BJIECgYEA0uDqK7qTXSbUBWB1vf0ZbRriuHQlEiHJ0S2nieOV4KsZtMoi8EMm
Ab7q7v04pxUP2X9Mg4LFLYKA8KHvgdocrnVPSvQgVltHKyUFoe3RLpzrdLUPl39P
7wdJNZWTZhYj6KGu8fyu7K0LHE3sa6Lz9SVtVVjTMyb11GukGMFXwukCgYEAm4vc
a6GwFzfTMOPknt8ZYGrJKDgDYaiVGNUNrp3QzcOVsXwkSmWs33KwptANTDC3OC/m
SMURxUZpeyZDhZjabxQnAkIdBKdhbCW8wfBfme1Q4o6v5/3aQTIiuTa2sYAy+oxj
CqTtNfPNbgpyH/l0TTkGM4nQ4UpFi8rKE3ZIVgECgYAMb0cgwuIB5ZuAYhwjswPf
U7Y8OpqOIIusRSsUTisSjcd4Ea4cf9cfR3DRdV0rTteiY6AkIsuwURafz8EzkfQW
QIkPbhFR55Hl6B/lgY/BX9n0Mz8n4lbf22ffrww7L91uiaS1g14fDAF3GHMAEZe9
1cD3vhspcrs/r12jspoecg==
-----END PRIVATE KEY-----
";
/// TEST ONLY: the public half of [`TEST_ONLY_PRIVATE_KEY`] (JWK `n`, `e`).
const TEST_ONLY_PUBLIC_N: &str = "vU1i3fVXpI0DXZENsh1MKZrHddErhgnSJZw8e8P-ifIcDmzWisk6Q0Scfl009pblTdTlGxmmYvGNrF3HyBa2J23LpnkYowuxgEGEGuzGWcyhyq6_PyPsIBhcOSvuH4vEFwZljMy849IcNQ4oHA036bENQyQ1JBeZLBhenOzCa0X6GXOpZnq39tWFA58GUdQD5suQe4HECFjAD7GVGi_3TnbMPIkAIK8ROf7P-Oop4VYtPX3VGY3MtQ7tMKfm-yik5Y-tdB7snaSAWDpYldxNlcQ4jz7LQnG7VJLZSqWyc8MIO65o6fFPEIKpttP3ubSiKaWNcxT9c7AYIWHhlTWD2Q";
const TEST_ONLY_PUBLIC_E: &str = "AQAB";
const CLIENT_EMAIL: &str = "tollgate-test@test-project.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";

const CLAUDE_CODE_BODY: &str = r#"{"model":"claude-sonnet-5","max_tokens":32000,"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.328; cc_entrypoint=cli"},{"type":"text","text":"You are Claude Code.\n\u00e9","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"system","content":"reminder"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"safeguards":[{"type":"auto_mode"}],"tags":["team:a"],"metadata":{"user_id":"{\"device_id\":\"d\"}"},"thinking":{"type":"adaptive","display":"summarized"},"stream":true}"#;

fn provider(base_url: &str, region: &str, auth: VertexAuth) -> VertexProvider {
    VertexProvider {
        base_url: base_url.to_owned(),
        region: region.to_owned(),
        project_id: "test-project".to_owned(),
        auth,
        anthropic_version: VERTEX_ANTHROPIC_VERSION.to_owned(),
    }
}

fn static_token(token: &str) -> VertexAuth {
    VertexAuth::Token(SecretSource::Inline(SecretString::from(token.to_owned())))
}

fn claude_code_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    h.insert(
        "anthropic-beta",
        HeaderValue::from_static(
            "claude-code-20250219, request-tags-2026-09-01,interleaved-thinking-2025-05-14",
        ),
    );
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer client-own"),
    );
    h.insert("x-api-key", HeaderValue::from_static("client-key"));
    h.insert("x-app", HeaderValue::from_static("cli"));
    h.insert("x-claude-code-session-id", HeaderValue::from_static("s"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
    h.insert("user-agent", HeaderValue::from_static("claude-cli/2.1.328"));
    h
}

fn client() -> UpstreamClient {
    UpstreamClient::new(Duration::from_secs(2), Duration::from_secs(10))
}

/// Runs `prepare` for `body` at `endpoint` against `upstream_model`.
async fn prepared(
    p: &VertexProvider,
    runtime: &ProviderRuntime,
    endpoint: Endpoint,
    body: &str,
    upstream_model: &str,
    now: SystemTime,
) -> Result<Prepared, PrepareError> {
    let headers = claude_code_headers();
    let body = Bytes::copy_from_slice(body.as_bytes());
    let fields = extract_fields(&body).unwrap();
    let out = Outbound {
        endpoint,
        headers: &headers,
        body: &body,
        fields: &fields,
        upstream_model,
        identity_encoding: true,
    };
    prepare(p, "prov-1", &out, runtime, &client(), now).await
}

async fn body_json(prepared: Prepared) -> (http::request::Parts, Value, Bytes) {
    let (parts, body) = prepared.request.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap();
    (parts, json, bytes)
}

#[tokio::test]
async fn urls_follow_host_project_region_and_method() {
    let runtime = ProviderRuntime::default();
    let cases = [
        ("https://aiplatform.googleapis.com", "global"),
        ("https://aiplatform.us.rep.googleapis.com", "us"),
        ("https://us-east5-aiplatform.googleapis.com", "us-east5"),
    ];
    let stream = r#"{"model":"claude-sonnet-5","max_tokens":1,"messages":[],"stream":true}"#;
    let plain = r#"{"model":"claude-sonnet-5","max_tokens":1,"messages":[]}"#;
    let count = r#"{"model":"claude-sonnet-5","messages":[]}"#;
    for (base, region) in cases {
        let p = provider(base, region, static_token("ya29.static"));
        let now = SystemTime::now();
        let models = format!(
            "{base}/v1/projects/test-project/locations/{region}/publishers/anthropic/models"
        );
        let r = prepared(
            &p,
            &runtime,
            Endpoint::Messages,
            stream,
            "claude-sonnet-5",
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            r.request.uri().to_string(),
            format!("{models}/claude-sonnet-5:streamRawPredict")
        );
        assert_eq!(r.decode, Decode::Passthrough);
        let r = prepared(
            &p,
            &runtime,
            Endpoint::Messages,
            plain,
            "claude-sonnet-5",
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            r.request.uri().to_string(),
            format!("{models}/claude-sonnet-5:rawPredict")
        );
        let r = prepared(
            &p,
            &runtime,
            Endpoint::CountTokens,
            count,
            "claude-sonnet-5",
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            r.request.uri().to_string(),
            format!("{models}/count-tokens:rawPredict")
        );
    }
}

#[tokio::test]
async fn model_segment_keeps_at_versions_and_escapes_the_rest() {
    assert_eq!(
        escape_segment("claude-sonnet-4-5@20250929"),
        "claude-sonnet-4-5@20250929"
    );
    assert_eq!(escape_segment("a;b/c:d%e f"), "a%3Bb%2Fc%3Ad%25e%20f");
    let runtime = ProviderRuntime::default();
    let p = provider(
        "https://us-east5-aiplatform.googleapis.com",
        "us-east5",
        static_token("t"),
    );
    let body = r#"{"model":"claude-sonnet-5","max_tokens":1,"messages":[]}"#;
    let r = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        body,
        "claude;x/y@1",
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert!(
        r.request
            .uri()
            .path()
            .ends_with("/publishers/anthropic/models/claude%3Bx%2Fy@1:rawPredict"),
        "{}",
        r.request.uri()
    );
    let empty = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        body,
        "",
        SystemTime::now(),
    )
    .await;
    assert!(matches!(empty, Err(PrepareError::Config(_))));
}

#[tokio::test]
async fn claude_code_body_becomes_vertex_dialect_with_system_bytes_kept() {
    let runtime = ProviderRuntime::default();
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        static_token("ya29.static-token"),
    );
    let r = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        CLAUDE_CODE_BODY,
        "claude-sonnet-4-5@20250929",
        SystemTime::now(),
    )
    .await
    .unwrap();
    let (parts, json, bytes) = body_json(r).await;
    assert!(
        parts
            .uri
            .path()
            .ends_with("claude-sonnet-4-5@20250929:streamRawPredict")
    );
    let obj = json.as_object().unwrap();
    assert!(!obj.contains_key("model"));
    assert!(!obj.contains_key("tags"));
    assert_eq!(json["stream"], json!(true));
    assert_eq!(json["anthropic_version"], json!("vertex-2023-10-16"));
    assert_eq!(json["messages"][0]["role"], json!("system"));
    assert_eq!(json["safeguards"][0]["type"], json!("auto_mode"));
    assert_eq!(json["thinking"]["type"], json!("adaptive"));
    assert_eq!(json["metadata"]["user_id"], json!("{\"device_id\":\"d\"}"));
    // The system array reaches Vertex byte for byte.
    let system = r#""system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.328; cc_entrypoint=cli"},{"type":"text","text":"You are Claude Code.\n\u00e9","cache_control":{"type":"ephemeral"}}]"#;
    assert!(
        std::str::from_utf8(&bytes).unwrap().contains(system),
        "system bytes changed"
    );

    let h = &parts.headers;
    assert_eq!(
        h.get("anthropic-beta").unwrap(),
        "claude-code-20250219,interleaved-thinking-2025-05-14"
    );
    assert_eq!(h.get("anthropic-version").unwrap(), "2023-06-01");
    let auth = h.get("authorization").unwrap();
    assert_eq!(auth, "Bearer ya29.static-token");
    assert!(auth.is_sensitive());
    assert_eq!(h.get("content-type").unwrap(), "application/json");
    assert_eq!(h.get("accept-encoding").unwrap(), "identity");
    for dropped in ["x-api-key", "x-app", "x-claude-code-session-id"] {
        assert!(!h.contains_key(dropped), "{dropped} forwarded");
    }
}

#[tokio::test]
async fn client_version_never_reaches_the_body_and_only_request_tags_beta_is_removed() {
    let runtime = ProviderRuntime::default();
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        static_token("t"),
    );
    let body = r#"{"anthropic_version":"2026-10-21","model":"m","max_tokens":1,"messages":[]}"#;
    let headers = {
        let mut h = HeaderMap::new();
        h.insert(
            "anthropic-beta",
            HeaderValue::from_static("request-tags-2026-09-01"),
        );
        h
    };
    let bytes = Bytes::from_static(body.as_bytes());
    let fields = extract_fields(&bytes).unwrap();
    let out = Outbound {
        endpoint: Endpoint::Messages,
        headers: &headers,
        body: &bytes,
        fields: &fields,
        upstream_model: "m",
        identity_encoding: false,
    };
    let r = prepare(&p, "prov-1", &out, &runtime, &client(), SystemTime::now())
        .await
        .unwrap();
    assert!(!r.request.headers().contains_key("anthropic-beta"));
    let (_, json, _) = body_json(r).await;
    assert_eq!(json["anthropic_version"], json!("vertex-2023-10-16"));
}

#[tokio::test]
async fn count_tokens_keeps_the_upstream_model_in_the_body() {
    let runtime = ProviderRuntime::default();
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        static_token("t"),
    );
    let body = r#"{"model":"claude-sonnet-5","system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":"hi"}],"tags":["x"]}"#;
    let r = prepared(
        &p,
        &runtime,
        Endpoint::CountTokens,
        body,
        "claude-sonnet-4-5@20250929",
        SystemTime::now(),
    )
    .await
    .unwrap();
    let (_, json, bytes) = body_json(r).await;
    assert_eq!(json["model"], json!("claude-sonnet-4-5@20250929"));
    assert_eq!(json["anthropic_version"], json!("vertex-2023-10-16"));
    assert!(json.get("tags").is_none());
    assert!(std::str::from_utf8(&bytes).unwrap().starts_with(
        r#"{"model":"claude-sonnet-4-5@20250929","system":[{"type":"text","text":"s"}]"#
    ));
}

#[tokio::test]
async fn static_token_from_a_file_is_reread_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "ya29.first\n").unwrap();
    let runtime = ProviderRuntime::default();
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        VertexAuth::Token(SecretSource::File(path)),
    );
    let body = r#"{"model":"m","max_tokens":1,"messages":[]}"#;
    let r = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        body,
        "m",
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(r.request.headers()["authorization"], "Bearer ya29.first");
    let missing = provider(
        "https://aiplatform.googleapis.com",
        "global",
        VertexAuth::Token(SecretSource::File(dir.path().join("nope"))),
    );
    let err = prepared(
        &missing,
        &runtime,
        Endpoint::Messages,
        body,
        "m",
        SystemTime::now(),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, PrepareError::Credential(_)));
}

// ---- service-account exchange against a fake token endpoint on 127.0.0.1 ----

#[derive(Default)]
struct FakeTokenEndpoint {
    exchanges: AtomicUsize,
    /// `expires_in` of issued tokens.
    expires_in: AtomicU64,
    /// Answer every exchange with `400 invalid_grant` (and a description naming secrets).
    refuse: AtomicBool,
    /// Delay before answering (to overlap concurrent requests).
    delay_ms: AtomicU64,
    /// What the fake found wrong with assertions.
    problems: Mutex<Vec<String>>,
}

impl FakeTokenEndpoint {
    fn exchanges(&self) -> usize {
        self.exchanges.load(SeqCst)
    }

    fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }

    /// Checks a form body the way Google does; returns the problem if any.
    fn check(&self, form: &[u8]) -> Result<(), String> {
        let form = std::str::from_utf8(form).map_err(|e| e.to_string())?;
        let mut grant = None;
        let mut assertion = None;
        for pair in form.split('&') {
            match pair.split_once('=') {
                Some(("grant_type", v)) => grant = Some(v.to_owned()),
                Some(("assertion", v)) => assertion = Some(v.to_owned()),
                _ => return Err(format!("unexpected form member {pair}")),
            }
        }
        if grant.as_deref() != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") {
            return Err(format!("grant_type {grant:?}"));
        }
        let assertion = assertion.ok_or("no assertion")?;
        let header = jsonwebtoken::decode_header(&assertion).map_err(|e| e.to_string())?;
        if header.alg != Algorithm::RS256 || header.kid.as_deref() != Some(KEY_ID) {
            return Err(format!("header {header:?}"));
        }
        if header.typ.as_deref() != Some("JWT") {
            return Err("typ".into());
        }
        let key = DecodingKey::from_rsa_components(TEST_ONLY_PUBLIC_N, TEST_ONLY_PUBLIC_E)
            .map_err(|e| e.to_string())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[GOOGLE_TOKEN_URI]);
        validation.set_issuer(&[CLIENT_EMAIL]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        // Tests move the clock: check the lifetime, not the wall clock.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Value>(&assertion, &key, &validation)
            .map_err(|e| format!("signature/claims: {e}"))?;
        let claims = data.claims;
        if claims["scope"] != json!(CLOUD_PLATFORM_SCOPE) {
            return Err(format!("scope {}", claims["scope"]));
        }
        let iat = claims["iat"].as_u64().ok_or("iat")?;
        let exp = claims["exp"].as_u64().ok_or("exp")?;
        if exp <= iat || exp - iat > 3600 {
            return Err(format!("lifetime {}", exp.saturating_sub(iat)));
        }
        Ok(())
    }
}

/// Serves `fake` on 127.0.0.1 at `/token`; returns its URL.
async fn spawn_token_endpoint(fake: Arc<FakeTokenEndpoint>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let fake = fake.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let fake = fake.clone();
                    async move {
                        let n = fake.exchanges.fetch_add(1, SeqCst) + 1;
                        let content_type = request
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let path = request.uri().path().to_owned();
                        let form = request.into_body().collect().await.unwrap().to_bytes();
                        let delay = fake.delay_ms.load(SeqCst);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        let mut problem = fake.check(&form).err();
                        if content_type != "application/x-www-form-urlencoded" {
                            problem = Some(format!("content-type {content_type}"));
                        }
                        if path != "/token" {
                            problem = Some(format!("path {path}"));
                        }
                        let refuse = fake.refuse.load(SeqCst);
                        let (status, body) = if let Some(problem) = problem {
                            fake.problems.lock().unwrap().push(problem);
                            (
                                400,
                                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
                            )
                        } else if refuse {
                            (
                                400,
                                json!({
                                    "error": "invalid_grant",
                                    "error_description": "canary-description for tollgate-test@test-project.iam.gserviceaccount.com",
                                }),
                            )
                        } else {
                            let expires_in = fake.expires_in.load(SeqCst);
                            (
                                200,
                                json!({
                                    "access_token": format!("ya29.fake-{n}"),
                                    "expires_in": expires_in,
                                    "token_type": "Bearer",
                                }),
                            )
                        };
                        let mut response =
                            http::Response::new(Full::new(Bytes::from(body.to_string())));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        response
                            .headers_mut()
                            .insert("content-type", HeaderValue::from_static("application/json"));
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/token")
}

fn key_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": KEY_ID,
        "private_key": TEST_ONLY_PRIVATE_KEY,
        "client_email": CLIENT_EMAIL,
        "client_id": "123",
        "token_uri": token_uri,
    })
    .to_string()
}

fn service_account(key_json: &str, token_uri: Option<&str>) -> VertexAuth {
    VertexAuth::ServiceAccount {
        key_json: SecretSource::Inline(SecretString::from(key_json.to_owned())),
        token_uri: token_uri.map(str::to_owned),
    }
}

async fn fake_endpoint(expires_in: u64) -> (Arc<FakeTokenEndpoint>, String) {
    let fake = Arc::new(FakeTokenEndpoint::default());
    fake.expires_in.store(expires_in, SeqCst);
    let url = spawn_token_endpoint(fake.clone()).await;
    (fake, url)
}

const SMALL_BODY: &str = r#"{"model":"m","max_tokens":1,"messages":[]}"#;

fn bearer(r: &Prepared) -> String {
    r.request.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn service_account_token_is_exchanged_once_and_cached() {
    let (fake, url) = fake_endpoint(3599).await;
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        service_account(&key_json(&url), None),
    );
    let runtime = ProviderRuntime::default();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let r = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", now)
        .await
        .unwrap();
    assert_eq!(fake.problems(), Vec::<String>::new());
    assert_eq!(bearer(&r), "Bearer ya29.fake-1");
    assert!(r.request.headers()["authorization"].is_sensitive());
    // Still fresh 50 minutes later: no second exchange.
    let later = now + Duration::from_secs(50 * 60);
    let r = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", later)
        .await
        .unwrap();
    assert_eq!(bearer(&r), "Bearer ya29.fake-1");
    assert_eq!(fake.exchanges(), 1);
    // Less than five minutes left: refreshed.
    let near_expiry = now + Duration::from_secs(3599 - 299);
    let r = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        SMALL_BODY,
        "m",
        near_expiry,
    )
    .await
    .unwrap();
    assert_eq!(bearer(&r), "Bearer ya29.fake-2");
    assert_eq!(fake.exchanges(), 2);
    assert_eq!(fake.problems(), Vec::<String>::new());
    // The cache's Debug names no token or key.
    let debug = format!("{:?}", runtime.vertex_tokens);
    assert!(
        !debug.contains("ya29") && !debug.contains("PRIVATE"),
        "{debug}"
    );
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_a_tenth_of_their_lifetime_early() {
    let (fake, url) = fake_endpoint(100).await;
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        service_account(&key_json(&url), None),
    );
    let runtime = ProviderRuntime::default();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let r = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", now)
        .await
        .unwrap();
    assert_eq!(bearer(&r), "Bearer ya29.fake-1");
    let r = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        SMALL_BODY,
        "m",
        now + Duration::from_secs(89),
    )
    .await
    .unwrap();
    assert_eq!(bearer(&r), "Bearer ya29.fake-1");
    let r = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        SMALL_BODY,
        "m",
        now + Duration::from_secs(91),
    )
    .await
    .unwrap();
    assert_eq!(bearer(&r), "Bearer ya29.fake-2");
    assert_eq!(fake.exchanges(), 2);
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_refresh_keeps_using_the_unexpired_token() {
    let (fake, url) = fake_endpoint(100).await;
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        service_account(&key_json(&url), None),
    );
    let runtime = ProviderRuntime::default();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let at = |s: u64| now + Duration::from_secs(s);
    let r = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", now)
        .await
        .unwrap();
    assert_eq!(bearer(&r), "Bearer ya29.fake-1");
    fake.refuse.store(true, SeqCst);
    let r = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", at(91))
        .await
        .unwrap();
    assert_eq!(bearer(&r), "Bearer ya29.fake-1");
    assert_eq!(fake.exchanges(), 2);
    // Expired and still refused: a token error.
    let err = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", at(101)).await;
    assert!(matches!(err, Err(PrepareError::Token(_))));
    assert_eq!(fake.exchanges(), 3);
}

#[tokio::test]
async fn concurrent_requests_share_one_exchange() {
    let (fake, url) = fake_endpoint(3599).await;
    fake.delay_ms.store(200, SeqCst);
    let p = Arc::new(provider(
        "https://aiplatform.googleapis.com",
        "global",
        service_account(&key_json(&url), None),
    ));
    let runtime = Arc::new(ProviderRuntime::default());
    let now = SystemTime::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (p, runtime) = (p.clone(), runtime.clone());
        tasks.push(tokio::spawn(async move {
            let r = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", now)
                .await
                .unwrap();
            bearer(&r)
        }));
    }
    let mut tokens = HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap());
    }
    assert_eq!(tokens, HashSet::from(["Bearer ya29.fake-1".to_owned()]));
    assert_eq!(fake.exchanges(), 1);
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn concurrent_requests_share_a_failed_exchange_instead_of_retrying_it() {
    let (fake, url) = fake_endpoint(3599).await;
    fake.delay_ms.store(200, SeqCst);
    fake.refuse.store(true, SeqCst);
    let p = Arc::new(provider(
        "https://aiplatform.googleapis.com",
        "global",
        service_account(&key_json(&url), None),
    ));
    let runtime = Arc::new(ProviderRuntime::default());
    let now = SystemTime::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (p, runtime) = (p.clone(), runtime.clone());
        tasks.push(tokio::spawn(async move {
            prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", now)
                .await
                .err()
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Some(PrepareError::Token(_))));
    }
    assert_eq!(fake.exchanges(), 1);
    // Within the backoff the failure is repeated without an exchange.
    let again = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", now).await;
    assert!(matches!(again, Err(PrepareError::Token(_))));
    assert_eq!(fake.exchanges(), 1);
    // A later request tries again, and succeeds once the endpoint does.
    fake.refuse.store(false, SeqCst);
    let later = now + Duration::from_secs(6);
    let r = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", later)
        .await
        .unwrap();
    assert_eq!(bearer(&r), "Bearer ya29.fake-2");
}

#[tokio::test]
async fn provider_token_uri_overrides_the_key_files() {
    let (fake, url) = fake_endpoint(3599).await;
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        service_account(&key_json("http://127.0.0.1:9/unused"), Some(&url)),
    );
    let runtime = ProviderRuntime::default();
    let r = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        SMALL_BODY,
        "m",
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(bearer(&r), "Bearer ya29.fake-1");
    assert_eq!(fake.exchanges(), 1);
}

#[tokio::test]
async fn failed_exchange_is_a_token_error_naming_no_secret() {
    let (fake, url) = fake_endpoint(3599).await;
    fake.refuse.store(true, SeqCst);
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        service_account(&key_json(&url), None),
    );
    let runtime = ProviderRuntime::default();
    let err = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        SMALL_BODY,
        "m",
        SystemTime::now(),
    )
    .await
    .err()
    .unwrap();
    let PrepareError::Token(message) = &err else {
        panic!("expected a token error, got {err:?}");
    };
    assert_eq!(message, "token endpoint answered 400 (invalid_grant)");
    let shown = format!("{err} {err:?}");
    for secret in ["canary", "PRIVATE KEY", "assertion", CLIENT_EMAIL, "eyJ"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert_eq!(fake.problems(), Vec::<String>::new());

    // An endpoint that cannot be reached: a token error too.
    let p = provider(
        "https://aiplatform.googleapis.com",
        "global",
        service_account(&key_json("http://127.0.0.1:9/token"), None),
    );
    let err = prepared(
        &p,
        &runtime,
        Endpoint::Messages,
        SMALL_BODY,
        "m",
        SystemTime::now(),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, PrepareError::Token(_)), "{err:?}");
}

#[tokio::test]
async fn unusable_key_files_are_configuration_errors_without_contents() {
    let runtime = ProviderRuntime::default();
    for key in [
        "not json canary".to_owned(),
        json!({"client_email": CLIENT_EMAIL}).to_string(),
        json!({"client_email": CLIENT_EMAIL, "private_key": "-----BEGIN PRIVATE KEY-----\nY2FuYXJ5\n-----END PRIVATE KEY-----\n", "token_uri": "http://127.0.0.1:9/token"}).to_string(),
    ] {
        let p = provider(
            "https://aiplatform.googleapis.com",
            "global",
            service_account(&key, None),
        );
        let err = prepared(&p, &runtime, Endpoint::Messages, SMALL_BODY, "m", SystemTime::now())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, PrepareError::Config(_)), "{err:?}");
        assert!(!err.to_string().contains("canary"));
        assert!(!err.to_string().contains("Y2FuYXJ5"));
    }
}

// ---- errors ----

fn api(f: &UpstreamFailure) -> &ApiError {
    match &f.reply {
        ErrorReply::Api(e) => e,
        ErrorReply::Verbatim { .. } => panic!("expected a gateway error"),
    }
}

#[test]
fn array_wrapped_resource_exhausted_is_a_retryable_rate_limit_without_the_project() {
    let body = br#"[{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-claude-sonnet-5 in project 123456789012. Please submit a quota increase request.","status":"RESOURCE_EXHAUSTED"}}]"#;
    let f = map_error(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body);
    let e = api(&f);
    assert_eq!(e.code, ErrorCode::RateLimited);
    assert_eq!(f.reply.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!e.message.contains("123456789012") && !e.message.contains("Quota"));
    assert!(f.retryable);
    assert_eq!(f.reason, "status 429 RESOURCE_EXHAUSTED");

    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, HeaderValue::from_static("9"));
    let plain = &body[1..body.len() - 1];
    let f = map_error(StatusCode::TOO_MANY_REQUESTS, &headers, plain);
    assert_eq!(api(&f).code, ErrorCode::RateLimited);
    assert_eq!((f.retry_after, api(&f).retry_after), (Some(9), Some(9)));
}

#[test]
fn unauthenticated_and_permission_denied_become_502_and_stop_failover() {
    let body = br#"{"error":{"code":401,"message":"Request had invalid authentication credentials. Expected OAuth 2 access token","status":"UNAUTHENTICATED"}}"#;
    let f = map_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), body);
    assert_eq!(f.reply.status(), StatusCode::BAD_GATEWAY);
    assert!(api(&f).message.contains("credentials"));
    assert!(!api(&f).message.contains("OAuth"));
    assert!(!f.retryable);
    let body = br#"{"error":{"code":403,"message":"Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/test-project/locations/global/publishers/anthropic/models/claude-sonnet-5'","status":"PERMISSION_DENIED"}}"#;
    let f = map_error(StatusCode::FORBIDDEN, &HeaderMap::new(), body);
    assert_eq!(f.reply.status(), StatusCode::BAD_GATEWAY);
    assert!(!api(&f).message.contains("test-project"));
    assert_eq!(f.reason, "status 403 PERMISSION_DENIED");
}

#[test]
fn unavailable_is_overloaded_and_deadline_is_a_timeout() {
    let body = br#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#;
    let f = map_error(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), body);
    assert_eq!(api(&f).code, ErrorCode::Overloaded);
    assert_eq!(f.reply.status().as_u16(), 529);
    assert!(f.retryable);
    let body =
        br#"{"error":{"code":504,"message":"Deadline exceeded","status":"DEADLINE_EXCEEDED"}}"#;
    let f = map_error(StatusCode::GATEWAY_TIMEOUT, &HeaderMap::new(), body);
    assert_eq!(f.reply.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(f.retryable);
    let body = br#"{"error":{"code":404,"message":"Publisher Model `projects/test-project/locations/us-east5/publishers/anthropic/models/nope` not found.","status":"NOT_FOUND"}}"#;
    let f = map_error(StatusCode::NOT_FOUND, &HeaderMap::new(), body);
    assert_eq!(f.reply.status(), StatusCode::NOT_FOUND);
    assert!(!api(&f).message.contains("test-project"));
    assert!(!f.retryable);
}

#[test]
fn invalid_argument_relays_only_safe_messages_and_size_wording() {
    let safe = br#"{"error":{"code":400,"message":"max_tokens: must be at most 64000","status":"INVALID_ARGUMENT"}}"#;
    let f = map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), safe);
    assert_eq!(api(&f).code, ErrorCode::InvalidRequest);
    assert_eq!(api(&f).message, "max_tokens: must be at most 64000");
    assert!(!f.retryable);

    let leaky = br#"{"error":{"code":400,"message":"Project `my-proj` is not allowed to use Publisher Model `claude-sonnet-5`","status":"FAILED_PRECONDITION"}}"#;
    let f = map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), leaky);
    assert_eq!(api(&f).code, ErrorCode::InvalidRequest);
    assert!(!api(&f).message.contains("my-proj"));
    assert_eq!(f.reason, "status 400 FAILED_PRECONDITION");

    let long = br#"{"error":{"code":400,"message":"Input is too long for requested model.","status":"INVALID_ARGUMENT"}}"#;
    let f = map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), long);
    assert!(api(&f).message.starts_with("prompt is too long"));
}

#[test]
fn anthropic_shaped_errors_are_handled_like_anthropics() {
    let overloaded =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let f = map_error(
        StatusCode::from_u16(529).unwrap(),
        &HeaderMap::new(),
        overloaded,
    );
    assert_eq!(api(&f).code, ErrorCode::Overloaded);
    assert!(f.retryable);
    assert_eq!(f.reason, "status 529");

    let too_long = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#;
    let f = map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), too_long);
    let ErrorReply::Verbatim { body, .. } = &f.reply else {
        panic!("expected the provider's body");
    };
    assert_eq!(&body[..], &too_long[..]);

    let mut h = HeaderMap::new();
    h.insert("x-should-retry", HeaderValue::from_static("false"));
    let f = map_error(StatusCode::from_u16(529).unwrap(), &h, overloaded);
    assert!(!f.retryable);

    // Neither shape: a generic error of the status's kind.
    let f = map_error(
        StatusCode::BAD_GATEWAY,
        &HeaderMap::new(),
        b"<html>bad gateway</html>",
    );
    assert_eq!(f.reply.status(), StatusCode::BAD_GATEWAY);
    assert!(f.retryable);
}
