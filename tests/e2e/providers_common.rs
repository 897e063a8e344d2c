//! Shared setup for the provider tests: the fake clouds configured as Tollgate providers, a
//! Claude Code-shaped request, and SSE checks.

use std::time::Duration;

use serde_json::Value;
use tollgate_data_plane::DataPlaneConfig;
use tollgate_e2e::Stack;
use tollgate_e2e::fake_bedrock::{FakeBedrock, FakeBedrockConfig};
use tollgate_e2e::fake_foundry::{FakeFoundry, FakeFoundryConfig};
use tollgate_e2e::fake_vertex::{self, FakeVertex, FakeVertexConfig};
use tollgate_e2e::stack::secret_value;
use tollgate_proto::v1 as pb;

use crate::support::sse_events;

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY_ID: &str = "AKIATOLLGATETEST0001";
pub const SECRET_ACCESS_KEY: &str = "tollgate/Test+Secret/AccessKey0000000001";
pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEFakeSessionToken//for+tests==";
pub const BEDROCK_MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
pub const MANTLE_MODEL: &str = "anthropic.claude-opus-4-8";
pub const VERTEX_PROJECT: &str = "tollgate-test-project";
pub const VERTEX_REGION: &str = "us-east5";
pub const VERTEX_MODEL: &str = "claude-sonnet-4-5@20250929";
pub const FOUNDRY_KEY: &str = "foundry-test-key-0001";
pub const FOUNDRY_DEPLOYMENT: &str = "claude-sonnet-4-5-prod";

/// The betas a Claude Code session sends (one of them the request-tags beta clouds reject).
pub const CLAUDE_CODE_BETAS: &str = "claude-code-20250219,interleaved-thinking-2025-05-14, \
     request-tags-2026-01-01,context-management-2025-06-27,fine-grained-tool-streaming-2025-05-14";
/// The same without `request-tags-…`, in order: what Bedrock gets as `anthropic_beta`.
pub const CLOUD_BETAS: [&str; 4] = [
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "fine-grained-tool-streaming-2025-05-14",
];

/// The client-facing model the provider tests route.
pub const CLIENT_MODEL: &str = "claude-sonnet-4-5";

/// The `system` array exactly as the client sends it (odd spacing on purpose: a re-serialised
/// body would not contain these bytes).
pub const SYSTEM_RAW: &str = r#"[ {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328.e1f; cc_entrypoint=cli;"},  {"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude.","cache_control":{"type":"ephemeral"}} ]"#;

/// A Claude Code-shaped Messages body: `role: "system"` message, `safeguards`, `tags`,
/// `metadata.user_id` as a JSON string, adaptive thinking, a system array.
pub fn claude_code_body(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":32000,"stream":{stream},"system":{SYSTEM_RAW},"messages":[{{"role":"user","content":[{{"type":"text","text":"Say hello"}}]}},{{"role":"system","content":"Auto mode is active."}}],"thinking":{{"type":"adaptive","display":"summarized"}},"metadata":{{"user_id":"{{\"device_id\":\"5e1d\",\"session_id\":\"0b7c\"}}"}},"safeguards":[{{"type":"auto_mode_classifier"}}],"tags":["session:0b7c","repo:tollgate"],"context_management":{{"edits":[{{"type":"clear_thinking_20251015","keep":"all"}}]}}}}"#
    )
}

/// Sends a Claude Code-shaped request (headers per the protocol summary §A).
pub async fn claude_code_request(base: &str, key: &str, body: String) -> reqwest::Response {
    crate::support::client()
        .post(format!("{base}/v1/messages?beta=true"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", CLAUDE_CODE_BETAS)
        .header("content-type", "application/json")
        .header("x-app", "cli")
        .header(
            "x-claude-code-session-id",
            "0b7c6a52-1111-4222-8333-944455556666",
        )
        .header("user-agent", "claude-cli/2.1.328 (external, cli)")
        .header("x-stainless-lang", "js")
        .header("anthropic-dangerous-direct-browser-access", "true")
        .body(body)
        .send()
        .await
        .expect("request")
}

/// Streams a Claude Code-shaped request for [`CLIENT_MODEL`] through the data plane at `base`,
/// checks the answer is a well-formed Anthropic stream reporting that model, and returns its
/// text.
pub async fn streamed_text(base: &str, key: &str) -> String {
    let resp = claude_code_request(base, key, claude_code_body(CLIENT_MODEL, true)).await;
    assert_eq!(resp.status(), 200);
    assert_anthropic_stream(&resp.text().await.unwrap(), CLIENT_MODEL)
}

/// Checks an Anthropic SSE body: `message_start` reporting `model`, one JSON object per
/// `data:` whose `type` is the event name, `message_stop` last. Returns the text.
pub fn assert_anthropic_stream(body: &str, model: &str) -> String {
    let events = sse_events(body);
    assert!(!events.is_empty(), "empty stream");
    for (event, data) in &events {
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
        assert_eq!(v["type"], event.as_str(), "{data}");
    }
    let first: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(events[0].0, "message_start", "{body}");
    assert_eq!(
        first["message"]["model"], model,
        "the model the client asked for"
    );
    assert_eq!(events.last().unwrap().0, "message_stop", "{body}");
    text_of(&events)
}

/// The text of the `text_delta`s.
pub fn text_of(events: &[(String, String)]) -> String {
    events
        .iter()
        .filter(|(e, _)| e == "content_block_delta")
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect()
}

/// The data-plane knobs the failover, breaker and ping tests need short: a `ping` after
/// 300 ms of upstream silence, breakers that open after 2 consecutive failures and probe
/// after 1.5 s, health reported to the control plane every 200 ms.
pub fn fast_knobs(c: &mut DataPlaneConfig) {
    c.ping_interval = Duration::from_millis(300);
    c.breaker_failure_threshold = 2;
    c.breaker_cooldown = Duration::from_millis(1500);
    c.health_report_interval = Duration::from_millis(200);
}

/// The fake clouds, each registered as a provider named after it.
pub struct Clouds {
    pub bedrock: FakeBedrock,
    pub vertex: FakeVertex,
    pub foundry: FakeFoundry,
    /// Provider ids by name.
    pub ids: std::collections::HashMap<String, String>,
}

impl Clouds {
    /// Starts the fakes and creates providers `bedrock` (InvokeModel, SigV4 with a session
    /// token), `mantle` (Bedrock Messages, SigV4), `vertex` (service-account key) and
    /// `foundry` (API key), all with inline credentials.
    pub async fn start(stack: &Stack) -> Clouds {
        let bedrock = FakeBedrock::start(
            FakeBedrockConfig::sigv4(
                REGION,
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                Some(SESSION_TOKEN),
            ),
            stack.child_token(),
        )
        .await
        .unwrap();
        let vertex = FakeVertex::start(
            FakeVertexConfig::from_fixture(VERTEX_PROJECT, VERTEX_REGION).unwrap(),
            stack.child_token(),
        )
        .await
        .unwrap();
        let foundry = FakeFoundry::start(
            FakeFoundryConfig::api_key(FOUNDRY_KEY, &[FOUNDRY_DEPLOYMENT]),
            stack.child_token(),
        )
        .await
        .unwrap();
        let mut ids = std::collections::HashMap::new();
        let sigv4 = |base_url: String, api: pb::BedrockApi| pb::ProviderConfig {
            base_url,
            region: REGION.into(),
            bedrock_api: api as i32,
            aws_access_key_id: secret_value(ACCESS_KEY_ID),
            aws_secret_access_key: secret_value(SECRET_ACCESS_KEY),
            aws_session_token: secret_value(SESSION_TOKEN),
            ..Default::default()
        };
        for (name, kind, config) in [
            (
                "bedrock",
                pb::ProviderKind::Bedrock,
                sigv4(bedrock.url(), pb::BedrockApi::Invoke),
            ),
            (
                "mantle",
                pb::ProviderKind::Bedrock,
                sigv4(bedrock.mantle_url(), pb::BedrockApi::Messages),
            ),
            (
                "vertex",
                pb::ProviderKind::Vertex,
                pb::ProviderConfig {
                    base_url: vertex.url(),
                    region: VERTEX_REGION.into(),
                    project_id: VERTEX_PROJECT.into(),
                    token_uri: vertex.token_uri(),
                    service_account_json: secret_value(
                        &fake_vertex::service_account_json(fake_vertex::GOOGLE_TOKEN_URI).unwrap(),
                    ),
                    ..Default::default()
                },
            ),
            (
                "foundry",
                pb::ProviderKind::Foundry,
                pb::ProviderConfig {
                    base_url: foundry.url(),
                    api_key: secret_value(FOUNDRY_KEY),
                    ..Default::default()
                },
            ),
        ] {
            let info = stack.create_provider(name, kind, config).await.unwrap();
            ids.insert(name.to_owned(), info.id);
        }
        Clouds {
            bedrock,
            vertex,
            foundry,
            ids,
        }
    }

    pub fn id(&self, provider: &str) -> &str {
        self.ids
            .get(provider)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// The upstream model id each provider is routed with.
pub fn upstream_of(provider: &str) -> &'static str {
    match provider {
        "bedrock" => BEDROCK_MODEL,
        "mantle" => MANTLE_MODEL,
        "vertex" => VERTEX_MODEL,
        "foundry" => FOUNDRY_DEPLOYMENT,
        _ => "",
    }
}

/// `(provider_id, upstream_model, status, input, output)` of every usage record.
pub async fn usage_by_provider(pool: &sqlx::PgPool) -> Vec<(String, String, i32, i64, i64)> {
    sqlx::query_as(
        "SELECT coalesce(provider_id::text, ''), upstream_model, status, input_tokens, \
         output_tokens FROM usage_records ORDER BY started_at",
    )
    .fetch_all(pool)
    .await
    .expect("usage rows")
}
