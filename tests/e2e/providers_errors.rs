//! Provider errors reach clients in Anthropic's envelope: size errors with the wording Claude
//! Code's recovery expects, account ids, ARNs and project numbers never.

use tollgate_e2e::Stack;
use tollgate_e2e::fake_bedrock::BedrockReply;
use tollgate_e2e::fake_vertex::{self, FakeVertex, FakeVertexConfig};
use tollgate_e2e::stack::{secret_value, target};
use tollgate_proto::v1 as pb;

use crate::providers_common::*;
use crate::support::error_of;

async fn single(provider: &str) -> (Stack, Clouds) {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    stack
        .set_route(
            CLIENT_MODEL,
            vec![target(provider, upstream_of(provider), None)],
        )
        .await
        .unwrap();
    (stack, clouds)
}

#[tokio::test]
async fn bedrock_input_too_long_reaches_the_client_as_prompt_is_too_long() {
    let (stack, clouds) = single("bedrock").await;
    clouds.bedrock.reply_with(BedrockReply::input_too_long());
    let dp = stack.data_plane().await.unwrap();
    for stream in [false, true] {
        let resp = claude_code_request(
            &dp.url,
            &stack.bot_key,
            claude_code_body(CLIENT_MODEL, stream),
        )
        .await;
        let message = error_of(resp, 400, "invalid_request_error").await;
        assert!(
            message.to_lowercase().contains("prompt is too long"),
            "Claude Code's recovery keys on this wording: {message}"
        );
    }
    assert_eq!(clouds.bedrock.accepted().len(), 2, "a 400 is not retried");
    stack.finish().await;
}

/// An IAM denial concerns the gateway's own AWS identity, not the client: a 502 `api_error`
/// (the data plane's mapping), and never the ARN or account id Bedrock's message names.
#[tokio::test]
async fn bedrock_access_denied_is_a_gateway_error_without_the_arn() {
    let (stack, clouds) = single("bedrock").await;
    clouds.bedrock.reply_with(BedrockReply::access_denied());
    let dp = stack.data_plane().await.unwrap();
    for stream in [false, true] {
        let resp = claude_code_request(
            &dp.url,
            &stack.bot_key,
            claude_code_body(CLIENT_MODEL, stream),
        )
        .await;
        let message = error_of(resp, 502, "api_error").await;
        assert!(!message.contains("arn:"), "{message}");
        assert!(!message.contains("123456789012"), "{message}");
    }
    assert_eq!(clouds.bedrock.accepted().len(), 2, "not retried");
    stack.finish().await;
}

#[tokio::test]
async fn bedrock_throttling_is_a_rate_limit_error() {
    let (stack, clouds) = single("bedrock").await;
    clouds.bedrock.reply_with(BedrockReply::throttling());
    let dp = stack.data_plane().await.unwrap();
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    error_of(resp, 429, "rate_limit_error").await;
    stack.finish().await;
}

#[tokio::test]
async fn vertex_quota_errors_hide_the_project_number() {
    let (stack, clouds) = single("vertex").await;
    let dp = stack.data_plane().await.unwrap();
    for (stream, wrapped) in [(false, false), (true, true)] {
        clouds
            .vertex
            .reply_with(fake_vertex::quota_exhausted(wrapped));
        let resp = claude_code_request(
            &dp.url,
            &stack.bot_key,
            claude_code_body(CLIENT_MODEL, stream),
        )
        .await;
        let message = error_of(resp, 429, "rate_limit_error").await;
        assert!(!message.contains("123456789012"), "{message}");
    }
    stack.finish().await;
}

#[tokio::test]
async fn vertex_overloaded_passes_through_as_overloaded_error() {
    let (stack, clouds) = single("vertex").await;
    clouds.vertex.reply_with(fake_vertex::overloaded());
    let dp = stack.data_plane().await.unwrap();
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, true),
    )
    .await;
    error_of(resp, 529, "overloaded_error").await;
    stack.finish().await;
}

/// A static Vertex token is sent as is; when Google refuses it (401 UNAUTHENTICATED), the
/// client gets a gateway error, not a 401 that would make Claude Code re-authenticate.
#[tokio::test]
async fn vertex_static_token_works_and_its_rejection_is_not_a_client_401() {
    let stack = Stack::start().await.unwrap();
    let mut config = FakeVertexConfig::from_fixture(VERTEX_PROJECT, "global").unwrap();
    config.static_tokens = vec!["ya29.static-good".into()];
    let fake = FakeVertex::start(config, stack.child_token())
        .await
        .unwrap();
    for (name, token) in [
        ("vertex-good", "ya29.static-good"),
        ("vertex-bad", "ya29.revoked"),
    ] {
        stack
            .create_provider(
                name,
                pb::ProviderKind::Vertex,
                pb::ProviderConfig {
                    base_url: fake.url(),
                    region: "global".into(),
                    project_id: VERTEX_PROJECT.into(),
                    bearer_token: secret_value(token),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    stack
        .set_route(
            "claude-opus-4-8",
            vec![target("vertex-good", "claude-opus-4-8", None)],
        )
        .await
        .unwrap();
    stack
        .set_route(CLIENT_MODEL, vec![target("vertex-bad", VERTEX_MODEL, None)])
        .await
        .unwrap();
    let dp = stack.data_plane().await.unwrap();

    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body("claude-opus-4-8", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = claude_code_request(
        &dp.url,
        &stack.bot_key,
        claude_code_body(CLIENT_MODEL, false),
    )
    .await;
    let message = error_of(resp, 502, "api_error").await;
    assert!(!message.contains("OAuth"), "{message}");
    assert_eq!(fake.exchanges(), 0, "static tokens need no exchange");
    let got = fake.received();
    assert_eq!(got.len(), 2);
    assert!(got[0].request.accepted());
    assert_eq!(
        got[0].request.header("authorization"),
        Some("Bearer ya29.static-good")
    );
    assert_eq!(got[1].request.rejected.as_ref().map(|r| r.0), Some(401));
    stack.finish().await;
}
