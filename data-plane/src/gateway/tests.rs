//! The request path end to end in memory: no sockets, the demo provider answers.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tollgate_policy::{Snapshot, secret_sha256};
use tollgate_proto::v1 as pb;

use super::*;
use crate::usage::{Outcome, UsageQueue, usage_channel};

/// $3 / $15 per million input / output tokens.
pub(crate) fn sample_price() -> pb::TargetPrice {
    pb::TargetPrice {
        base: Some(pb::PriceRates {
            input: 3_000_000,
            output: 15_000_000,
            cache_write_5m: 3_750_000,
            cache_write_1h: 6_000_000,
            cache_read: 300_000,
        }),
        long_context_threshold_tokens: 0,
        long_context: None,
        multiplier_bps: 10_000,
        source: "catalogue:claude-sonnet-5".into(),
    }
}

pub(crate) fn sample_snapshot() -> pb::Snapshot {
    let key = |id: &str, secret: &str, groups: &[&str], expires: i64| pb::ApiKey {
        id: id.into(),
        secret_sha256: secret_sha256(secret).to_vec(),
        principal_id: format!("user-{id}"),
        principal_kind: pb::PrincipalKind::User as i32,
        principal_name: "Ada".into(),
        principal_email: "ada@example.com".into(),
        group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
        expires_at_unix_s: expires,
        name: "laptop".into(),
    };
    let model = |id: &str| pb::Model {
        id: id.into(),
        display_name: id.to_uppercase(),
        max_input_tokens: 200_000,
        created_at_unix_s: 1_700_000_000,
    };
    let route = |model: &str| pb::Route {
        model: model.into(),
        targets: vec![pb::RouteTarget {
            provider_id: "p-demo".into(),
            upstream_model: String::new(),
            priority: 0,
            timeouts: None,
            weight: 1,
            price: Some(sample_price()),
        }],
    };
    pb::Snapshot {
        version: 1,
        generated_at_unix_ms: 1,
        org_id: "org".into(),
        org_name: "Example".into(),
        groups: vec![pb::Group {
            id: "g-eng".into(),
            name: "eng".into(),
            allowed_models: vec!["claude-sonnet-5".into()],
        }],
        api_keys: vec![
            key("k-ada", "tg_ada", &["g-eng"], 0),
            key("k-old", "tg_old", &["g-eng"], 1),
        ],
        providers: vec![pb::Provider {
            id: "p-demo".into(),
            name: "demo".into(),
            kind: pb::ProviderKind::Demo as i32,
            ..Default::default()
        }],
        models: vec![model("claude-sonnet-5"), model("claude-opus-4-8")],
        routes: vec![route("claude-sonnet-5"), route("claude-opus-4-8")],
        ..Default::default()
    }
}

fn gateway(snapshot: Option<pb::Snapshot>, max_body_bytes: usize) -> (Gateway, UsageQueue) {
    let snapshots = Arc::new(SnapshotStore::default());
    if let Some(s) = snapshot {
        snapshots.install(Snapshot::try_from(s).unwrap());
    }
    let (usage, queue) = usage_channel();
    let rate_limits = Arc::new(crate::rate_limit::RateLimiter::new(
        crate::control_plane::sync_api("http://127.0.0.1:9", &secrecy::SecretString::from("token"))
            .unwrap(),
        "dp-test".into(),
    ));
    let gateway = Gateway {
        snapshots,
        usage,
        exchange: crate::routing::Exchange {
            router: Arc::new(crate::routing::Router::new(
                crate::config::DataPlaneConfig::new(
                    "127.0.0.1:0".parse().unwrap(),
                    "http://127.0.0.1:9".into(),
                    secrecy::SecretString::from("token"),
                )
                .routing(),
            )),
            client: UpstreamClient::new(Duration::from_secs(1), Duration::from_secs(1)),
            drain: crate::meter::DrainPolicy {
                timeout: Duration::from_secs(5),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                shutdown_grace: Duration::from_secs(1),
                drain_over: CancellationToken::new(),
            },
            rate_limits: rate_limits.clone(),
        },
        data_plane_id: "dp-test".into(),
        max_body_bytes,
        sign_in_limit: crate::sign_in_limit::SignInLimit::new(
            crate::sign_in_limit::SignInLimitSettings::default(),
        ),
        spend: Arc::new(crate::budget::Spend::new(
            crate::control_plane::sync_api(
                "http://127.0.0.1:9",
                &secrecy::SecretString::from("token"),
            )
            .unwrap(),
            "dp-test".into(),
            crate::budget::Clock::system(),
        )),
        rate_limits,
        side: SideChannels {
            client: UpstreamClient::new(Duration::from_secs(1), Duration::from_secs(1)),
            control_plane_http_url: None,
        },
    };
    (gateway, queue)
}

fn request(
    method: &str,
    uri: &str,
    headers: &[(&'static str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap()
}

async fn call(
    gw: &Gateway,
    req: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let response = gw.handle(req).await;
    let status = response.status();
    let headers = response.headers().clone();
    let id: Uuid = headers["request-id"].to_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 7, "request-id is a UUIDv7");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::String(
            String::from_utf8_lossy(&body).into_owned(),
        ))
    };
    (status, headers, json)
}

const ADA: (&str, &str) = ("x-api-key", "tg_ada");
const MESSAGE: &str = r#"{"model":"claude-sonnet-5","max_tokens":1024,"messages":[{"role":"user","content":"hello there"}]}"#;

fn assert_error(json: &serde_json::Value, kind: &str) -> String {
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], kind, "{json}");
    json["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn hello_needs_no_auth_and_no_snapshot() {
    let (gw, _q) = gateway(None, 1024);
    for method in ["HEAD", "GET"] {
        let (status, _, body) = call(&gw, request(method, "/api/hello", &[], "")).await;
        assert_eq!((status, body), (StatusCode::OK, serde_json::Value::Null));
    }
}

#[tokio::test]
async fn not_ready_before_the_first_snapshot() {
    let (gw, _q) = gateway(None, 1024);
    let (status, _, body) = call(
        &gw,
        request("POST", "/v1/messages?beta=true", &[ADA], MESSAGE),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        assert_error(&body, "api_error"),
        "gateway not ready: no policy snapshot yet"
    );
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods() {
    let (gw, _q) = gateway(Some(sample_snapshot()), 1024);
    let (status, _, body) = call(&gw, request("GET", "/v1/complete", &[ADA], "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found_error");
    let (status, headers, body) = call(&gw, request("GET", "/v1/messages", &[ADA], "")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_error(&body, "invalid_request_error");
    let (status, headers, _) = call(&gw, request("POST", "/api/oauth/usage", &[ADA], "")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET");
}

#[tokio::test]
async fn authentication_failures_are_401() {
    let (gw, _q) = gateway(Some(sample_snapshot()), 1024);
    let (status, headers, body) = call(&gw, request("POST", "/v1/messages", &[], MESSAGE)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(assert_error(&body, "authentication_error").contains("x-api-key"));
    assert!(headers.get("x-should-retry").is_none());

    let bad = [("authorization", "Bearer tg_nope")];
    let (status, _, body) = call(&gw, request("POST", "/v1/messages", &bad, MESSAGE)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        assert_error(&body, "authentication_error"),
        "invalid API key"
    );

    let old = [("x-api-key", "tg_old")];
    let (status, headers, _) = call(&gw, request("POST", "/v1/messages", &old, MESSAGE)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["x-should-retry"], "false");
}

#[tokio::test]
async fn body_problems_are_400_and_413() {
    let (gw, mut q) = gateway(Some(sample_snapshot()), 200);
    let (status, _, body) =
        call(&gw, request("POST", "/v1/messages", &[ADA], r#"{"model":"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "invalid_request_error").starts_with("invalid JSON body"));

    let (status, _, body) = call(
        &gw,
        request("POST", "/v1/messages", &[ADA], r#"{"messages":[]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        assert_error(&body, "invalid_request_error"),
        "model: field required"
    );

    let big = format!(
        r#"{{"model":"claude-sonnet-5","pad":"{}"}}"#,
        "x".repeat(300)
    );
    let declared = [ADA, ("content-length", "400")];
    let (status, _, body) = call(&gw, request("POST", "/v1/messages", &declared, &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "request_too_large");
    // Without a declared length the limit is enforced while reading.
    let (status, _, _) = call(&gw, request("POST", "/v1/messages", &[ADA], &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(q.try_recv().is_err(), "refused requests produce no usage");
}

#[tokio::test]
async fn denied_and_unknown_models_are_400_naming_the_model() {
    let (gw, _q) = gateway(Some(sample_snapshot()), 1024);
    let opus = MESSAGE.replace("claude-sonnet-5", "claude-opus-4-8");
    let (status, _, body) = call(&gw, request("POST", "/v1/messages", &[ADA], &opus)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "invalid_request_error").contains("`claude-opus-4-8`"));
    let other = MESSAGE.replace("claude-sonnet-5", "gpt-9");
    let (status, _, body) = call(&gw, request("POST", "/v1/messages", &[ADA], &other)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "invalid_request_error").contains("`gpt-9`"));
}

#[tokio::test]
async fn models_lists_only_allowed_models() {
    let (gw, _q) = gateway(Some(sample_snapshot()), 1024);
    let (status, _, body) = call(&gw, request("GET", "/v1/models?limit=1000", &[ADA], "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], "claude-sonnet-5");
    assert_eq!(body["data"][0]["type"], "model");
    assert_eq!(body["data"][0]["created_at"], "2023-11-14T22:13:20Z");
    assert_eq!(body["first_id"], "claude-sonnet-5");
    assert_eq!(body["has_more"], false);
}

#[tokio::test]
async fn demo_answers_and_records_usage() {
    let (gw, mut q) = gateway(Some(sample_snapshot()), 1024);
    let (status, headers, body) = call(&gw, request("POST", "/v1/messages", &[ADA], MESSAGE)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert!(body["id"].as_str().unwrap().starts_with("msg_demo_"));
    assert_eq!(body["model"], "claude-sonnet-5");
    assert!(
        body["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hello there")
    );
    let record = q.recv().await.unwrap();
    assert_eq!(record.request_id, headers["request-id"].to_str().unwrap());
    assert_eq!(record.outcome, Outcome::Complete);
    assert_eq!(
        (record.api_key_id.as_str(), record.principal_id.as_str()),
        ("k-ada", "user-k-ada")
    );
    assert_eq!(record.input_tokens, (MESSAGE.len() as u64).div_ceil(4));
    assert_eq!(
        record.output_tokens,
        body["usage"]["output_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        (record.status, record.stream, record.endpoint.as_str()),
        (200, false, "messages")
    );
    // Priced whether or not a cap applies ($3 / $15 per million tokens); no caps, no charges.
    assert_eq!(
        record.cost_micro_usd,
        record.input_tokens * 3 + record.output_tokens * 15
    );
    assert_eq!(record.price_source, "catalogue:claude-sonnet-5");
    assert_eq!(record.group_ids, ["g-eng"]);
    assert!(record.charges.is_empty());
    assert!(headers.get("anthropic-ratelimit-unified-status").is_none());
}

#[tokio::test]
async fn count_tokens_answers_without_usage() {
    let (gw, mut q) = gateway(Some(sample_snapshot()), 1024);
    let (status, _, body) = call(
        &gw,
        request("POST", "/v1/messages/count_tokens", &[ADA], MESSAGE),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["input_tokens"], (MESSAGE.len() as u64).div_ceil(4));
    assert!(q.try_recv().is_err());
}

#[tokio::test]
async fn demo_streams_sse() {
    let (gw, mut q) = gateway(Some(sample_snapshot()), 1024);
    let stream = MESSAGE.replace("\"max_tokens\"", "\"stream\":true,\"max_tokens\"");
    let response = gw
        .handle(request("POST", "/v1/messages", &[ADA], &stream))
        .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut frames = 0;
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        text.extend_from_slice(frame.unwrap().data_ref().unwrap());
        frames += 1;
    }
    assert!(frames >= 7, "events are relayed one by one");
    assert!(
        String::from_utf8(text)
            .unwrap()
            .ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    );
    drop(body);
    let record = q.recv().await.unwrap();
    assert!(record.stream);
    assert!(record.output_tokens > 0);
}

mod telemetry;
