//! Signed-in mode: gateway access tokens, managed settings, telemetry relay and the
//! forwarded OAuth paths.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tollgate_data_plane::DataPlaneHandle;
use tollgate_proto::v1 as pb;

use super::config;
use crate::support::{FakeControlPlane, send, snapshot};

const ISSUER: &str = "http://gateway.test";
const AUDIENCE: &str = "tollgate-gateway";

fn encoding_key(seed: u8) -> EncodingKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    EncodingKey::from_ed_der(&der)
}

fn public_key(seed: u8) -> Vec<u8> {
    let jwk = Jwk::from_encoding_key(&encoding_key(seed), Algorithm::EdDSA).unwrap();
    let AlgorithmParameters::OctetKeyPair(okp) = jwk.algorithm else {
        panic!("not an OKP key")
    };
    URL_SAFE_NO_PAD.decode(okp.x).unwrap()
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn token(sid: &str, groups: &[&str], seed: u8) -> String {
    token_expiring(sid, groups, seed, now() + 3600)
}

fn token_expiring(sid: &str, groups: &[&str], seed: u8, exp: i64) -> String {
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "0190a0a0-0000-7000-8000-000000000001",
        "email": "ada@example.com", "name": "Ada", "groups": groups, "sid": sid,
        "iat": exp - 3600, "exp": exp,
    });
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("kid-1".into());
    jsonwebtoken::encode(&header, &claims, &encoding_key(seed)).unwrap()
}

/// What a fake HTTP peer (collector, control-plane listener) received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

/// An HTTP server that records every request and answers `200 {"ok":true}`.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let me = me.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            me.seen.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path_and_query: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.as_str().to_owned())
                                    .unwrap_or_default(),
                                headers: parts.headers,
                                body,
                            });
                            let mut response =
                                Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                            *response.status_mut() = http::StatusCode::ACCEPTED;
                            response
                                .headers_mut()
                                .insert("x-from", "control-plane".parse().unwrap());
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        url
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct SignedIn {
    cp: FakeControlPlane,
    dp: DataPlaneHandle,
    peer: Recorder,
    peer_url: String,
    shutdown: CancellationToken,
    _cp_stop: CancellationToken,
}

fn signed_in_snapshot(version: u64, peer_url: &str, revoked: &[&str]) -> pb::Snapshot {
    let mut s = snapshot(version, "http://127.0.0.1:9");
    s.token_issuer = ISSUER.into();
    s.token_audience = AUDIENCE.into();
    s.token_keys = vec![pb::TokenKey {
        kid: "kid-1".into(),
        alg: "EdDSA".into(),
        public_key: public_key(1),
    }];
    s.revoked_session_ids = revoked.iter().map(|r| (*r).to_owned()).collect();
    s.settings_documents = vec![
        pb::SettingsDocument {
            id: "doc-base".into(),
            name: "base".into(),
            priority: 0,
            group_ids: vec!["g-eng".into()],
            settings_json: r#"{"env":{"A":"1"},"permissions":{"deny":["Read(.env)"]}}"#.into(),
        },
        pb::SettingsDocument {
            id: "doc-models".into(),
            name: "models".into(),
            priority: 10,
            group_ids: vec!["g-eng".into()],
            settings_json: r#"{"availableModels":["claude-demo"],"env":{"B":"2"}}"#.into(),
        },
    ];
    s.telemetry_collector_url = peer_url.into();
    s
}

async fn start() -> SignedIn {
    let cp = FakeControlPlane::new();
    let cp_stop = CancellationToken::new();
    let cp_url = cp.serve(cp_stop.clone()).await;
    let peer = Recorder::default();
    let peer_url = peer.start().await;
    cp.publish(signed_in_snapshot(1, &peer_url, &[]));
    let mut config = config(cp_url);
    config.control_plane_http_url = Some(peer_url.clone());
    let shutdown = CancellationToken::new();
    let dp = tollgate_data_plane::spawn(config, shutdown.clone())
        .await
        .unwrap();
    assert!(
        dp.wait_for_snapshot_version(1, Duration::from_secs(10))
            .await
    );
    SignedIn {
        cp,
        dp,
        peer,
        peer_url,
        shutdown,
        _cp_stop: cp_stop,
    }
}

impl SignedIn {
    async fn stop(self) {
        self.shutdown.cancel();
        self.dp.wait().await.unwrap();
    }
}

const DEMO: &str =
    r#"{"model":"claude-demo","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
const SONNET: &str =
    r#"{"model":"claude-sonnet-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn gateway_tokens_authenticate_until_their_session_is_revoked() {
    let t = start().await;
    let addr = t.dp.addr;
    let jwt = token("sid-1", &["eng"], 1);
    let bearer = format!("Bearer {jwt}");
    let ok = send(
        addr,
        "POST",
        "/v1/messages",
        &[("authorization", &bearer)],
        DEMO,
        false,
    )
    .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let ok = send(
        addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", &jwt)],
        DEMO,
        false,
    )
    .await;
    assert_eq!(ok.status, 200);

    // A token signed by someone else (an IdP's ID token, say) is refused.
    let foreign = format!("Bearer {}", token("sid-1", &["eng"], 2));
    let refused = send(
        addr,
        "GET",
        "/v1/models",
        &[("authorization", &foreign)],
        "",
        false,
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"]["type"], "authentication_error");

    // Expired (beyond the 60 s skew): refused for good.
    let expired = format!(
        "Bearer {}",
        token_expiring("sid-1", &["eng"], 1, now() - 120)
    );
    let refused = send(
        addr,
        "POST",
        "/v1/messages",
        &[("authorization", &expired)],
        DEMO,
        false,
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.headers["x-should-retry"], "false");

    t.cp.publish(signed_in_snapshot(2, &t.peer_url, &["sid-1"]));
    assert!(
        t.dp.wait_for_snapshot_version(2, Duration::from_secs(10))
            .await
    );
    let revoked = send(
        addr,
        "POST",
        "/v1/messages",
        &[("authorization", &bearer)],
        DEMO,
        false,
    )
    .await;
    assert_eq!(revoked.status, 401);
    assert_eq!(revoked.headers["x-should-retry"], "false");
    assert_eq!(revoked.json()["error"]["type"], "authentication_error");
    t.stop().await;
}

#[tokio::test]
async fn managed_settings_are_served_with_etag_and_enforced() {
    let t = start().await;
    let addr = t.dp.addr;
    let bearer = format!("Bearer {}", token("sid-2", &["eng"], 1));
    let auth = [("authorization", bearer.as_str())];
    let got = send(addr, "GET", "/managed/settings", &auth, "", false).await;
    assert_eq!(got.status, 200);
    let body = got.json();
    assert_eq!(
        body["settings"],
        json!({
            "env": {"A": "1", "B": "2"},
            "permissions": {"deny": ["Read(.env)"]},
            "availableModels": ["claude-demo"],
            "enforceAvailableModels": true,
        })
    );
    let checksum = body["checksum"].as_str().unwrap().to_owned();
    assert!(checksum.starts_with("sha256:"));
    assert_eq!(checksum, tollgate_policy::checksum(&body["settings"]));
    assert!(uuid::Uuid::parse_str(body["uuid"].as_str().unwrap()).is_ok());
    let etag = format!("\"{checksum}\"");
    assert_eq!(got.headers["etag"], etag.as_str());

    let same = [
        ("authorization", bearer.as_str()),
        ("if-none-match", etag.as_str()),
    ];
    let unchanged = send(addr, "GET", "/managed/settings", &same, "", false).await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
    let stale = [
        ("authorization", bearer.as_str()),
        ("if-none-match", "\"sha256:old\""),
    ];
    assert_eq!(
        send(addr, "GET", "/managed/settings", &stale, "", false)
            .await
            .status,
        200
    );

    // availableModels narrows what the caller may call and list.
    let denied = send(addr, "POST", "/v1/messages", &auth, SONNET, false).await;
    assert_eq!(denied.status, 400);
    assert!(
        denied.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("claude-sonnet-5")
    );
    let models = send(addr, "GET", "/v1/models", &auth, "", false).await;
    assert_eq!(models.json()["data"].as_array().unwrap().len(), 1);
    assert_eq!(models.json()["data"][0]["id"], "claude-demo");

    // A signed-in user whose groups map to nothing (and no org default) gets no policy.
    let nobody = format!("Bearer {}", token("sid-3", &["strangers"], 1));
    let none = send(
        addr,
        "GET",
        "/managed/settings",
        &[("authorization", &nobody)],
        "",
        false,
    )
    .await;
    assert_eq!(none.status, 404);
    t.stop().await;
}

#[tokio::test]
async fn telemetry_is_relayed_unchanged_and_always_acknowledged() {
    let t = start().await;
    let addr = t.dp.addr;
    let bearer = format!("Bearer {}", token("sid-4", &["eng"], 1));
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/x-protobuf"),
    ];
    let got = send(
        addr,
        "POST",
        "/v1/metrics",
        &headers,
        "\u{1}\u{2}otlp",
        false,
    )
    .await;
    assert_eq!(got.status, 200);
    let json_headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let got = send(
        addr,
        "POST",
        "/v1/logs",
        &json_headers,
        r#"{"resourceLogs":[]}"#,
        false,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), json!({}));
    let seen = t.peer.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path_and_query, "/v1/metrics");
    assert_eq!(seen[0].headers["content-type"], "application/x-protobuf");
    assert_eq!(&seen[0].body[..], b"\x01\x02otlp");
    assert_eq!(seen[1].path_and_query, "/v1/logs");
    assert_eq!(&seen[1].body[..], br#"{"resourceLogs":[]}"#);
    assert!(
        seen.iter()
            .all(|s| !s.headers.contains_key("authorization"))
    );

    let anonymous = send(addr, "POST", "/v1/traces", &[], "x", false).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(t.peer.seen().len(), 2);
    t.stop().await;
}

#[tokio::test]
async fn oauth_paths_are_forwarded_with_forwarded_headers() {
    let t = start().await;
    let addr = t.dp.addr;
    let got = send(
        addr,
        "POST",
        "/oauth/device_authorization?x=1",
        &[
            ("host", "gateway.example.com"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "surface=claude_code",
        false,
    )
    .await;
    assert_eq!(got.status, 202);
    assert_eq!(got.headers["x-from"], "control-plane");
    assert_eq!(got.json(), json!({"ok": true}));
    let meta = send(
        addr,
        "GET",
        "/.well-known/oauth-authorization-server",
        &[],
        "",
        false,
    )
    .await;
    assert_eq!(meta.status, 202);
    let device = send(addr, "GET", "/device?user_code=ABCD-EFGH", &[], "", false).await;
    assert_eq!(device.status, 202);

    let seen = t.peer.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path_and_query, "/oauth/device_authorization?x=1");
    assert_eq!(&seen[0].body[..], b"surface=claude_code");
    assert_eq!(seen[0].headers["x-forwarded-proto"], "http");
    assert_eq!(seen[0].headers["x-forwarded-host"], "gateway.example.com");
    assert_eq!(seen[0].headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        seen[1].path_and_query,
        "/.well-known/oauth-authorization-server"
    );
    assert_eq!(seen[2].path_and_query, "/device?user_code=ABCD-EFGH");
    t.stop().await;
}
