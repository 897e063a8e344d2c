use super::*;

fn claude_code_request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json"),
        ("content-length", "1234"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "claude-code-20250219,oauth-2025-04-20"),
        ("anthropic-dangerous-direct-browser-access", "true"),
        ("authorization", "Bearer tg_client_secret"),
        ("x-api-key", "tg_client_secret"),
        ("x-app", "cli"),
        ("x-claude-code-session-id", "abc"),
        ("x-stainless-lang", "js"),
        ("x-stainless-retry-count", "0"),
        ("user-agent", "claude-cli/2.1.328 (external, cli)"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("host", "gateway.example"),
        ("cookie", "a=b"),
    ] {
        h.append(name, value.parse().unwrap());
    }
    h
}

#[test]
fn forwards_only_the_allowlist_and_adds_the_provider_key() {
    let out =
        upstream_request_headers(&claude_code_request_headers(), "sk-ant-provider", false).unwrap();
    let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "accept",
            "accept-encoding",
            "anthropic-beta",
            "anthropic-version",
            "content-type",
            "user-agent",
            "x-api-key",
            "x-stainless-lang",
            "x-stainless-retry-count",
        ]
    );
    assert_eq!(out["x-api-key"], "sk-ant-provider");
    assert!(out["x-api-key"].is_sensitive());
    assert_eq!(out["accept-encoding"], "gzip, deflate, br, zstd");
    assert_eq!(
        out["anthropic-beta"],
        "claude-code-20250219,oauth-2025-04-20"
    );
}

#[test]
fn metered_requests_ask_for_identity_encoding() {
    let out =
        upstream_request_headers(&claude_code_request_headers(), "sk-ant-provider", true).unwrap();
    assert_eq!(out["accept-encoding"], "identity");
}

#[test]
fn refuses_a_credential_that_is_not_a_header_value() {
    assert_eq!(
        upstream_request_headers(&HeaderMap::new(), "bad\nkey", false),
        Err(InvalidCredential)
    );
}

#[test]
fn response_drops_hop_by_hop_and_ratelimit_and_renames_request_id() {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("connection", "keep-alive, x-private"),
        ("x-private", "1"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "timeout=5"),
        ("request-id", "req_upstream_1"),
        ("anthropic-ratelimit-requests-limit", "4000"),
        ("anthropic-ratelimit-unified-status", "allowed"),
        ("anthropic-organization-id", "org"),
        ("retry-after", "3"),
        ("set-cookie", "__cf_bm=x"),
    ] {
        h.append(name, value.parse().unwrap());
    }
    let out = client_response_headers(&h);
    let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cache-control",
            "content-type",
            "retry-after",
            "upstream-request-id",
        ]
    );
    assert_eq!(out["upstream-request-id"], "req_upstream_1");
}

#[test]
fn cloud_betas_split_trim_and_drop_request_tags() {
    let mut h = HeaderMap::new();
    h.append(
        ANTHROPIC_BETA,
        "claude-code-20250219, request-tags-2026-01-01,interleaved-thinking-2025-05-14"
            .parse()
            .unwrap(),
    );
    h.append(ANTHROPIC_BETA, "context-1m-2025-08-07".parse().unwrap());
    assert_eq!(
        cloud_betas(&h),
        [
            "claude-code-20250219",
            "interleaved-thinking-2025-05-14",
            "context-1m-2025-08-07"
        ]
    );
}
