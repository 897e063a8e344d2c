//! Claude Code-shaped requests through Tollgate to each fake cloud provider, which checks the
//! request as the real provider would (signature, token, body fields) and records it.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tollgate_e2e::Stack;
use tollgate_e2e::fake_bedrock::{self, FakeBedrock, FakeBedrockConfig, Operation};
use tollgate_e2e::fake_foundry::{FakeFoundry, FakeFoundryConfig};
use tollgate_e2e::fake_vertex::{self, VertexMethod};
use tollgate_e2e::stack::{secret_file, target};
use tollgate_proto::v1 as pb;

use crate::providers_common::*;
use crate::support::{eventually, sse_events};

/// Headers that must never reach a provider.
fn assert_client_headers_dropped(headers: &http::HeaderMap, bot_key: &str) {
    for h in [
        "x-app",
        "x-claude-code-session-id",
        "anthropic-dangerous-direct-browser-access",
    ] {
        assert!(!headers.contains_key(h), "{h} forwarded");
    }
    for (name, value) in headers {
        assert!(
            !value.to_str().unwrap_or_default().contains(bot_key),
            "the client's key reached the provider in {name}"
        );
    }
}

/// The Claude Code body fields every provider must still get.
fn assert_body_kept(upstream: &[u8]) {
    let text = std::str::from_utf8(upstream).unwrap();
    assert!(
        text.contains(SYSTEM_RAW),
        "system array not byte-identical: {text}"
    );
    let v: Value = serde_json::from_slice(upstream).unwrap();
    assert_eq!(v["messages"][1]["role"], "system");
    assert_eq!(v["safeguards"][0]["type"], "auto_mode_classifier");
    assert_eq!(v["thinking"]["type"], "adaptive");
    assert!(v["metadata"]["user_id"].is_string());
    assert_eq!(v["max_tokens"], 32000);
}

#[tokio::test]
async fn claude_code_request_reaches_bedrock_invoke_signed_and_in_bedrock_form() {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    stack
        .set_route(CLIENT_MODEL, vec![target("bedrock", BEDROCK_MODEL, None)])
        .await
        .unwrap();
    let listed = stack
        .admin()
        .await
        .unwrap()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner();
    let listed = format!("{listed:?}");
    for secret in [SECRET_ACCESS_KEY, SESSION_TOKEN, FOUNDRY_KEY, "PRIVATE KEY"] {
        assert!(
            !listed.contains(secret),
            "the admin API returned a credential"
        );
    }
    let dp = stack.data_plane().await.unwrap();

    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = resp.text().await.unwrap();
    assert_eq!(
        assert_anthropic_stream(&body, CLIENT_MODEL),
        "Hello from Bedrock"
    );

    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], CLIENT_MODEL);
    assert_eq!(v["content"][0]["text"], "Hello from Bedrock");
    assert_eq!(v["usage"]["input_tokens"], 14);

    let got = clouds.bedrock.received();
    assert!(
        got.iter().all(|r| r.request.accepted()),
        "the fake refused: {:?}",
        got.iter().map(|r| &r.request.rejected).collect::<Vec<_>>()
    );
    assert_eq!(
        got.iter().map(|r| r.operation).collect::<Vec<_>>(),
        [Operation::InvokeStream, Operation::Invoke]
    );
    for r in &got {
        assert_eq!(r.model_id.as_deref(), Some(BEDROCK_MODEL));
        for h in ["host", "x-amz-date", "x-amz-security-token"] {
            assert!(r.signed_headers.iter().any(|s| s == h), "{h} not signed");
        }
        let b = r.request.json();
        for absent in ["model", "stream", "tags"] {
            assert!(b.get(absent).is_none(), "{absent} sent to Bedrock");
        }
        assert_eq!(b["anthropic_version"], fake_bedrock::BEDROCK_VERSION);
        assert_eq!(b["anthropic_beta"], json!(CLOUD_BETAS));
        assert!(
            !r.request.headers.contains_key("anthropic-beta"),
            "the beta header moves into the body"
        );
        assert_body_kept(&r.request.body);
        assert_client_headers_dropped(&r.request.headers, &stack.bot_key);
    }
    stack.finish().await;
}

#[tokio::test]
async fn bedrock_api_key_from_a_file_reference_authenticates_and_counts_tokens() {
    let stack = Stack::start().await.unwrap();
    let fake = FakeBedrock::start(
        FakeBedrockConfig::api_key(REGION, "bedrock-api-key-ABSKQmVkcm9jaw=="),
        stack.child_token(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("bedrock-key");
    std::fs::write(&key_file, "bedrock-api-key-ABSKQmVkcm9jaw==\n").unwrap();
    stack
        .create_provider(
            "bedrock-key",
            pb::ProviderKind::Bedrock,
            pb::ProviderConfig {
                base_url: fake.url(),
                region: REGION.into(),
                api_key: secret_file(&key_file),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let info = stack
        .admin()
        .await
        .unwrap()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner();
    let listed = format!("{info:?}");
    assert!(listed.contains("bedrock-key") && !listed.contains("ABSKQmVkcm9jaw"));
    stack
        .set_route(
            CLIENT_MODEL,
            vec![target("bedrock-key", BEDROCK_MODEL, None)],
        )
        .await
        .unwrap();
    let dp = stack.data_plane().await.unwrap();

    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_anthropic_stream(&resp.text().await.unwrap(), CLIENT_MODEL);

    let resp = crate::support::client()
        .post(format!("{}/v1/messages/count_tokens", dp.url))
        .header("x-api-key", &stack.bot_key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(
            json!({"model": CLIENT_MODEL, "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"input_tokens": 14})
    );

    let got = fake.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|r| r.request.accepted()), "{got:?}");
    assert_eq!(
        got[0].request.header("authorization"),
        Some("Bearer bedrock-api-key-ABSKQmVkcm9jaw==")
    );
    assert_eq!(got[1].operation, Operation::CountTokens);
    let inner = got[1].request.json()["input"]["invokeModel"]["body"]
        .as_str()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
        .unwrap();
    let inner: Value = serde_json::from_slice(&inner).unwrap();
    assert!(inner.get("model").is_none());
    assert_eq!(inner["anthropic_version"], fake_bedrock::BEDROCK_VERSION);
    stack.finish().await;
}

#[tokio::test]
async fn claude_code_request_reaches_bedrock_messages_endpoint_signed_for_bedrock_mantle() {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    stack
        .set_route(
            "claude-opus-4-8",
            vec![target("mantle", MANTLE_MODEL, None)],
        )
        .await
        .unwrap();
    let dp = stack.data_plane().await.unwrap();

    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body("claude-opus-4-8", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = assert_anthropic_stream(&resp.text().await.unwrap(), "claude-opus-4-8");
    assert_eq!(text, "Hello from Bedrock");

    let got = clouds.bedrock.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert!(r.request.accepted(), "{:?}", r.request.rejected);
    assert_eq!(r.operation, Operation::Messages);
    assert!(r.signed_headers.iter().any(|h| h == "x-amz-security-token"));
    let b = r.request.json();
    assert_eq!(b["model"], MANTLE_MODEL);
    assert_eq!(b["stream"], true);
    assert_eq!(r.request.header("anthropic-version"), Some("2023-06-01"));
    assert_body_kept(&r.request.body);
    assert_client_headers_dropped(&r.request.headers, &stack.bot_key);
    stack.finish().await;
}

#[tokio::test]
async fn claude_code_request_reaches_vertex_with_one_token_exchange() {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    stack
        .set_route(CLIENT_MODEL, vec![target("vertex", VERTEX_MODEL, None)])
        .await
        .unwrap();
    let dp = stack.data_plane().await.unwrap();

    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert_eq!(
        assert_anthropic_stream(&body, CLIENT_MODEL),
        "Hello from Vertex"
    );
    assert!(
        sse_events(&body).iter().any(|(e, _)| e == "ping"),
        "Vertex pings reach the client"
    );
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], CLIENT_MODEL);
    assert_eq!(v["content"][0]["text"], "Hello from Vertex");

    assert_eq!(clouds.vertex.exchanges(), 1, "the token is reused");
    let claims = &clouds.vertex.assertions()[0];
    assert_eq!(
        claims["iss"],
        "tollgate-e2e@tollgate-test-project.iam.gserviceaccount.com"
    );
    assert_eq!(claims["scope"], fake_vertex::CLOUD_PLATFORM_SCOPE);

    let got = clouds.vertex.received();
    let predictions: Vec<_> = got
        .iter()
        .filter(|r| r.method != VertexMethod::Token)
        .collect();
    assert!(predictions.iter().all(|r| r.request.accepted()), "{got:?}");
    assert_eq!(
        predictions.iter().map(|r| r.method).collect::<Vec<_>>(),
        [VertexMethod::StreamRawPredict, VertexMethod::RawPredict]
    );
    for r in predictions {
        assert_eq!(r.model, VERTEX_MODEL);
        assert_eq!(
            (r.project.as_str(), r.region.as_str()),
            (VERTEX_PROJECT, VERTEX_REGION)
        );
        let b = r.request.json();
        assert!(b.get("model").is_none() && b.get("tags").is_none());
        assert_eq!(b["anthropic_version"], fake_vertex::VERTEX_VERSION);
        let betas: Vec<&str> = r
            .request
            .header("anthropic-beta")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .collect();
        assert_eq!(betas, CLOUD_BETAS);
        assert_body_kept(&r.request.body);
        assert_client_headers_dropped(&r.request.headers, &stack.bot_key);
    }
    stack.finish().await;
}

#[tokio::test]
async fn vertex_token_is_refreshed_when_it_is_about_to_expire() {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    // Tokens that live 2 s are always inside any refresh margin: each request needs a new one,
    // and the fake refuses expired ones.
    clouds.vertex.set_expires_in(2);
    stack
        .set_route(CLIENT_MODEL, vec![target("vertex", VERTEX_MODEL, None)])
        .await
        .unwrap();
    let dp = stack.data_plane().await.unwrap();
    for _ in 0..2 {
        let resp = claude_code_request(
            &dp.url,
            &stack.bot_key,
            claude_code_body(CLIENT_MODEL, false),
        )
        .await;
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(2100)).await;
    }
    assert!(
        clouds.vertex.exchanges() >= 2,
        "refreshed: {}",
        clouds.vertex.exchanges()
    );
    assert!(clouds.vertex.accepted().len() == 2);
    stack.finish().await;
}

#[tokio::test]
async fn claude_code_request_reaches_foundry_deployment_with_api_key() {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    stack
        .set_route(
            CLIENT_MODEL,
            vec![target("foundry", FOUNDRY_DEPLOYMENT, None)],
        )
        .await
        .unwrap();
    let dp = stack.data_plane().await.unwrap();

    assert_eq!(
        streamed_text(&dp.url, &stack.bot_key).await,
        "Hello from Foundry"
    );
    let got = clouds.foundry.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].accepted(), "{:?}", got[0].rejected);
    assert_eq!(got[0].json()["model"], FOUNDRY_DEPLOYMENT);
    assert_eq!(got[0].json()["stream"], true);
    assert!(
        got[0].header("api-key") == Some(FOUNDRY_KEY)
            || got[0].header("x-api-key") == Some(FOUNDRY_KEY)
    );
    assert!(
        got[0]
            .header("anthropic-beta")
            .is_some_and(|b| b.contains("claude-code-20250219"))
    );
    assert_body_kept(&got[0].body);
    assert_client_headers_dropped(&got[0].headers, &stack.bot_key);
    stack.finish().await;
}

#[tokio::test]
async fn foundry_entra_token_from_a_file_and_an_alias_report_the_client_model() {
    let stack = Stack::start().await.unwrap();
    let fake = FakeFoundry::start(
        FakeFoundryConfig::entra(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra.token",
            &["haiku"],
        ),
        stack.child_token(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("entra-token");
    std::fs::write(
        &token_file,
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra.token\n",
    )
    .unwrap();
    stack
        .create_provider(
            "foundry-entra",
            pb::ProviderKind::Foundry,
            pb::ProviderConfig {
                base_url: fake.url(),
                bearer_token: secret_file(&token_file),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    stack
        .set_route(
            "claude-haiku-4-5",
            vec![target("foundry-entra", "haiku", None)],
        )
        .await
        .unwrap();
    stack
        .set_alias("claude-haiku-latest", "claude-haiku-4-5")
        .await
        .unwrap();
    let dp = stack.data_plane().await.unwrap();

    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body("claude-haiku-latest", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "claude-haiku-latest", "the id the client sent");
    let got = fake.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].accepted(), "{:?}", got[0].rejected);
    assert_eq!(got[0].json()["model"], "haiku");

    let pool = stack.db.pool().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            usage_by_provider(&pool).await.len() == 1
        })
        .await
    );
    pool.close().await;
    stack.finish().await;
}

/// The real `claude` CLI, routed to Bedrock and then to Vertex: every request it makes reaches
/// the fake in a form the provider accepts (the fakes refuse anything else), and the CLI prints
/// the provider's answer.
#[tokio::test]
async fn real_claude_cli_completes_a_prompt_through_bedrock_and_vertex() {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    let dp = stack.data_plane().await.unwrap();
    for (provider, upstream, answer) in [
        ("bedrock", BEDROCK_MODEL, "Hello from Bedrock"),
        ("vertex", VERTEX_MODEL, "Hello from Vertex"),
    ] {
        stack
            .set_route(CLIENT_MODEL, vec![target(provider, upstream, None)])
            .await
            .unwrap();
        stack.await_policy(&[dp.handle()]).await.unwrap();
        let run =
            tollgate_e2e::claude_cli::print_mode(&dp.url, &stack.bot_key, CLIENT_MODEL, "say hi")
                .await
                .unwrap();
        assert!(
            run.success && run.stdout.contains(answer),
            "{provider}: stdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
    }
    let bedrock_refused: Vec<_> = clouds
        .bedrock
        .received()
        .into_iter()
        .filter_map(|r| r.request.rejected)
        .collect();
    assert_eq!(bedrock_refused, [], "Bedrock refused nothing the CLI sent");
    let vertex_refused: Vec<_> = clouds
        .vertex
        .received()
        .into_iter()
        .filter_map(|r| r.request.rejected)
        .collect();
    assert_eq!(vertex_refused, [], "Vertex refused nothing the CLI sent");
    assert!(!clouds.bedrock.accepted().is_empty() && !clouds.vertex.accepted().is_empty());
    stack.finish().await;
}
