//! The per-request hot spots: body field extraction, SSE usage scanning, key lookup.
//!
//! `cargo bench -p tollgate-data-plane --bench hot_path`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tollgate_data_plane::meter::SseUsageScanner;
use tollgate_data_plane::request::extract_fields;
use tollgate_policy::{Snapshot, secret_sha256};
use tollgate_proto::v1 as pb;

/// A Claude Code-like request body of about 50 KB.
fn claude_code_body() -> Vec<u8> {
    let mut messages = Vec::new();
    for i in 0..40 {
        messages.push(serde_json::json!({"role": "user", "content": [
            {"type": "text", "text": format!("<system-reminder>turn {i}</system-reminder>")},
            {"type": "tool_result", "tool_use_id": format!("toolu_{i}"), "content": "x".repeat(900)},
        ]}));
        messages.push(serde_json::json!({"role": "assistant", "content": [
            {"type": "text", "text": "Let me look at that file. ".repeat(10)},
            {"type": "tool_use", "id": format!("toolu_{i}"), "name": "Read", "input": {"file_path": "/src/main.rs"}},
        ]}));
    }
    let body = serde_json::json!({
        "model": "claude-sonnet-5",
        "max_tokens": 32000,
        "stream": true,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328"},
                   {"type": "text", "text": "You are Claude Code. ".repeat(100), "cache_control": {"type": "ephemeral"}}],
        "messages": messages,
        "tools": (0..20).map(|i| serde_json::json!({"name": format!("tool{i}"), "description": "d".repeat(200), "input_schema": {"type": "object"}})).collect::<Vec<_>>(),
        "metadata": {"user_id": "{\"device_id\":\"abc\",\"session_id\":\"def\"}"},
        "thinking": {"type": "adaptive"},
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A stream of 300 text deltas, as the provider would send it.
fn sse_stream() -> Vec<u8> {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":1200,\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},\"output_tokens\":1}}}\n\n\
         event: ping\ndata: {\"type\": \"ping\"}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    );
    for i in 0..300 {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i} of the answer \"}}}}\n\n"));
    }
    s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
        event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":900}}\n\n\
        event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

fn snapshot_with_keys(n: usize) -> Option<Snapshot> {
    let api_keys = (0..n)
        .map(|i| pb::ApiKey {
            id: format!("k{i}"),
            secret_sha256: secret_sha256(&format!("tg_secret_{i}")).to_vec(),
            principal_id: format!("u{i}"),
            principal_kind: pb::PrincipalKind::User as i32,
            group_ids: vec!["g".into()],
            ..Default::default()
        })
        .collect();
    Snapshot::try_from(pb::Snapshot {
        version: 1,
        groups: vec![pb::Group {
            id: "g".into(),
            name: "g".into(),
            allowed_models: vec!["*".into()],
        }],
        api_keys,
        ..Default::default()
    })
    .ok()
}

fn hot_path(c: &mut Criterion) {
    let body = claude_code_body();
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("extract_fields_50k", |b| {
        b.iter(|| extract_fields(black_box(&body)).map(|f| f.model_span.start))
    });
    group.finish();

    let stream = sse_stream();
    let mut group = c.benchmark_group("meter");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("sse_scan_300_deltas_1k_chunks", |b| {
        b.iter(|| {
            let mut scanner = SseUsageScanner::new();
            for chunk in black_box(&stream).chunks(1024) {
                scanner.feed(chunk);
            }
            scanner.finish().usage.output_tokens
        })
    });
    group.finish();

    if let Some(snapshot) = snapshot_with_keys(10_000) {
        c.bench_function("auth/authenticate_10k_keys", |b| {
            b.iter(|| {
                snapshot
                    .authenticate(black_box("tg_secret_4242"), 1_800_000_000)
                    .map(|k| k.id.len())
            })
        });
    }
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
