//! The per-request hot spots: body field extraction, SSE usage scanning, key lookup, and
//! spend-cap and rate-limit admission on the fast path (a leased slice held, no
//! control-plane call).
//!
//! `cargo bench -p tollgate-data-plane --bench hot_path`

use std::hint::black_box;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tollgate_data_plane::budget::Ledger;
use tollgate_data_plane::meter::SseUsageScanner;
use tollgate_data_plane::rate_limit::{Charge, Ledger as RateLedger};
use tollgate_data_plane::request::extract_fields;
use tollgate_policy::{Caller, CounterKey, Snapshot, TargetPrice, secret_sha256};
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

/// An org monthly cap, a group daily pool and a user weekly cap, all applying to `u1`.
fn snapshot_with_caps() -> Option<Snapshot> {
    let budget =
        |id: &str, scope: pb::BudgetScope, scope_id: &str, period: pb::BudgetPeriod| pb::Budget {
            id: id.into(),
            scope: scope as i32,
            scope_id: scope_id.into(),
            period: period as i32,
            limit_micro_usd: 1_000_000_000,
            per_member: false,
            alert_thresholds_percent: vec![80],
        };
    Snapshot::try_from(pb::Snapshot {
        version: 1,
        groups: vec![pb::Group {
            id: "g".into(),
            name: "g".into(),
            allowed_models: vec!["*".into()],
        }],
        api_keys: vec![pb::ApiKey {
            id: "k1".into(),
            secret_sha256: secret_sha256("tg_secret_1").to_vec(),
            principal_id: "u1".into(),
            principal_kind: pb::PrincipalKind::User as i32,
            group_ids: vec!["g".into()],
            ..Default::default()
        }],
        budgets: vec![
            budget("b-org", pb::BudgetScope::Org, "", pb::BudgetPeriod::Monthly),
            budget("b-g", pb::BudgetScope::Group, "g", pb::BudgetPeriod::Daily),
            budget("b-u", pb::BudgetScope::User, "u1", pb::BudgetPeriod::Weekly),
        ],
        ..Default::default()
    })
    .ok()
}

fn sonnet_price() -> Option<TargetPrice> {
    TargetPrice::try_from(pb::TargetPrice {
        base: Some(pb::PriceRates {
            input: 3_000_000,
            output: 15_000_000,
            cache_write_5m: 3_750_000,
            cache_write_1h: 6_000_000,
            cache_read: 300_000,
        }),
        multiplier_bps: 10_000,
        source: "catalogue:claude-sonnet-5".into(),
        ..Default::default()
    })
    .ok()
}

/// Spend-cap admission far from the caps: find the applicable caps, estimate, reserve on
/// every counter from the held slices, then settle (as the response end would).
fn budget_fast_path(c: &mut Criterion, body_len: usize) {
    let (Some(snapshot), Some(price)) = (snapshot_with_caps(), sonnet_price()) else {
        return;
    };
    let now_unix_s = 1_800_000_000;
    let Ok(key) = snapshot.authenticate("tg_secret_1", now_unix_s) else {
        return;
    };
    let caller = Caller::Key(key.clone());
    let budgets = snapshot.budgets();
    let ledger = Ledger::new();
    for applied in budgets.applicable(&caller, now_unix_s) {
        ledger.seed(
            applied.counter,
            u64::MAX / 4,
            applied.budget.limit_micro_usd,
            Duration::from_secs(3_600),
        );
    }
    let mut group = c.benchmark_group("budget");
    let counters: Vec<CounterKey> = budgets
        .applicable(&caller, now_unix_s)
        .into_iter()
        .map(|a| a.counter)
        .collect();
    group.bench_function("ledger_reserve_settle_3_counters", |b| {
        b.iter(|| {
            let now = Instant::now();
            let rep = ledger.try_reserve(black_box(&counters), 480_000, now);
            ledger.settle(&counters, 480_000, 2_640);
            rep.map(|r| r.index)
        })
    });
    group.bench_function("admit_fast_path_3_caps", |b| {
        b.iter(|| {
            let applied = budgets.applicable(black_box(&caller), now_unix_s);
            let estimate = budgets.settings.estimate(&price, body_len, 32_000);
            let counters: Arc<[CounterKey]> = applied.iter().map(|a| a.counter.clone()).collect();
            let rep = ledger.try_reserve(&counters, estimate, Instant::now());
            ledger.settle(&counters, estimate, 2_640);
            rep.map(|r| r.index)
        })
    });
    group.finish();
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

    budget_fast_path(c, body.len());
    rate_limit_fast_path(c, body.len());
}

/// The caps' snapshot with four rate limits on the key's caller: org RPM, group ITPM per
/// member, user OTPM and key concurrency.
fn snapshot_with_limits() -> Option<Snapshot> {
    let mut pb_snapshot = pb::Snapshot {
        version: 1,
        groups: vec![pb::Group {
            id: "g".into(),
            name: "g".into(),
            allowed_models: vec!["*".into()],
        }],
        api_keys: vec![pb::ApiKey {
            id: "k1".into(),
            secret_sha256: secret_sha256("tg_secret_1").to_vec(),
            principal_id: "u1".into(),
            principal_kind: pb::PrincipalKind::User as i32,
            group_ids: vec!["g".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let limit = |id: &str, scope: pb::RateLimitScope, scope_id: &str, kind: pb::RateLimitKind| {
        pb::RateLimit {
            id: id.into(),
            scope: scope as i32,
            scope_id: scope_id.into(),
            per_member: scope == pb::RateLimitScope::Group,
            model: String::new(),
            kind: kind as i32,
            limit: 1_000_000_000,
        }
    };
    pb_snapshot.rate_limits = vec![
        limit(
            "r-org",
            pb::RateLimitScope::Org,
            "",
            pb::RateLimitKind::RequestsPerMinute,
        ),
        limit(
            "r-g",
            pb::RateLimitScope::Group,
            "g",
            pb::RateLimitKind::InputTokensPerMinute,
        ),
        limit(
            "r-u",
            pb::RateLimitScope::User,
            "u1",
            pb::RateLimitKind::OutputTokensPerMinute,
        ),
        limit(
            "r-k",
            pb::RateLimitScope::Key,
            "k1",
            pb::RateLimitKind::ConcurrentRequests,
        ),
    ];
    Snapshot::try_from(pb_snapshot).ok()
}

/// Rate-limit admission far from the limits: find the applicable limits, reserve on every
/// bucket from the held slices, then settle (as the response end would).
fn rate_limit_fast_path(c: &mut Criterion, body_len: usize) {
    let Some(snapshot) = snapshot_with_limits() else {
        return;
    };
    let Ok(key) = snapshot.authenticate("tg_secret_1", 1_800_000_000) else {
        return;
    };
    let caller = Caller::Key(key.clone());
    let limits = snapshot.rate_limits();
    let ledger = RateLedger::new();
    let (input, output) = snapshot
        .budgets()
        .settings
        .estimate_tokens(body_len, 32_000);
    let charges_of = |applied: Vec<tollgate_policy::AppliedLimit>| -> Vec<Charge> {
        applied
            .into_iter()
            .map(|a| {
                let amount = match a.limit.kind {
                    tollgate_policy::RateLimitKind::InputTokensPerMinute => input,
                    tollgate_policy::RateLimitKind::OutputTokensPerMinute => output,
                    _ => 1,
                };
                Charge {
                    bucket: a.bucket,
                    limit: a.limit,
                    amount,
                }
            })
            .collect()
    };
    let charges = charges_of(limits.applicable(&caller, "claude-sonnet-5"));
    for charge in &charges {
        ledger.seed(
            charge.bucket.clone(),
            charge.limit.clone(),
            u64::MAX / 4,
            Duration::from_secs(3_600),
        );
    }
    let mut group = c.benchmark_group("rate_limit");
    group.bench_function("ledger_reserve_settle_4_buckets", |b| {
        b.iter(|| {
            let admitted = ledger.try_reserve(black_box(&charges), Instant::now());
            ledger.settle(&charges, 16_000, 2_640, false);
            admitted
        })
    });
    group.bench_function("admit_fast_path_4_limits", |b| {
        b.iter(|| {
            let charges = charges_of(limits.applicable(black_box(&caller), "claude-sonnet-5"));
            let admitted = ledger.try_reserve(&charges, Instant::now());
            ledger.settle(&charges, 16_000, 2_640, false);
            admitted
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
