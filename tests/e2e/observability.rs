//! Telemetry from the real server binaries: both planes export metrics, spans and logs over
//! OTLP/HTTP to a collector stand-in (configured only by the standard `OTEL_*` variables),
//! serve Prometheus `/metrics`, `/healthz` and `/readyz` on their admin listeners, write JSON
//! logs with the request id, user and outcome, and carry the trace context upstream. A secret
//! canary (the provider credential and a user's API key) appears in no log line, metric, span,
//! OTLP payload or audit entry.

use std::collections::HashMap;
use std::time::Duration;

use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tollgate_e2e::fake_otlp::FakeOtlp;
use tollgate_e2e::postgres::TestDatabase;
use tollgate_e2e::servers::{ControlPlane, DataPlane, seed_alice};
use tollgate_e2e::stack::{SONNET, secret_value, target};
use tollgate_e2e::{FakeAnthropic, Reply};
use tollgate_proto::v1 as pb;

use crate::support::{eventually, message_body};

/// Trace id the client sends in its `traceparent`.
const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

struct Servers {
    cp: ControlPlane,
    dp: DataPlane,
    cp_admin: String,
    dp_admin: String,
    dp_url: String,
    user_key: String,
    provider_secret: String,
    _dir: TempDir,
}

fn otel_env(otlp: &FakeOtlp) -> HashMap<String, String> {
    HashMap::from([
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), otlp.endpoint()),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
            "http/protobuf".to_owned(),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL".to_owned(), "500".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "200".to_owned()),
        ("OTEL_BLRP_SCHEDULE_DELAY".to_owned(), "200".to_owned()),
    ])
}

async fn start(db: &TestDatabase, otlp: &FakeOtlp, fake: &FakeAnthropic) -> Servers {
    let dir = tempfile::tempdir().unwrap();
    let mut cp = ControlPlane::new(dir.path(), &db.url).unwrap();
    cp.envs(otel_env(otlp))
        .arg("--audit-checkpoint-interval-secs", "1")
        .arg(
            "--audit-checkpoint-file",
            dir.path().join("checkpoints.jsonl").display().to_string(),
        );
    cp.start().await.unwrap();
    let cp_admin = cp.admin_url.clone();
    let provider_secret = format!("sk-canary-{}", uuid::Uuid::new_v4().simple());
    let user_key = seed(
        &cp.grpc_url,
        &cp.admin_key().unwrap(),
        fake,
        &provider_secret,
    )
    .await;

    // Ready, and holding the policy the seeding produced (compiles run behind the writes).
    let seeded: i64 = {
        let pool = db.pool().await.unwrap();
        let v = sqlx::query_scalar("SELECT version FROM policy_version")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        v
    };
    let mut dp = DataPlane::new("dp-otel", dir.path(), &cp).unwrap();
    dp.wait_for_policy_version(seeded)
        .envs(cp.env().clone())
        .arg("--usage-flush-interval-ms", "100");
    dp.start().await.unwrap();
    let dp_admin = dp.admin_url.clone();
    let dp_url = dp.url.clone();
    Servers {
        cp,
        dp,
        cp_admin,
        dp_admin,
        dp_url,
        user_key,
        provider_secret,
        _dir: dir,
    }
}

/// Seeds a provider (with the canary credential), a model, a group and a user with an API key;
/// returns the key.
async fn seed(grpc_url: &str, admin_key: &str, fake: &FakeAnthropic, secret: &str) -> String {
    let mut a = tollgate_cli::admin::connect(grpc_url, admin_key)
        .await
        .unwrap();
    a.create_provider(pb::CreateProviderRequest {
        name: "fake".into(),
        kind: pb::ProviderKind::Anthropic as i32,
        config: Some(pb::ProviderConfig {
            base_url: fake.url(),
            api_key: secret_value(secret),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    a.upsert_model(pb::UpsertModelRequest {
        id: SONNET.into(),
        display_name: SONNET.into(),
        max_input_tokens: 200_000,
    })
    .await
    .unwrap();
    a.set_route(pb::SetRouteRequest {
        model: SONNET.into(),
        targets: vec![target("fake", "", None)],
    })
    .await
    .unwrap();
    seed_alice(&mut a, vec![SONNET.into()]).await.unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

async fn post(s: &Servers, stream: bool) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/messages", s.dp_url))
        .header("x-api-key", &s.user_key)
        .header("anthropic-version", "2023-06-01")
        .header(
            "traceparent",
            format!("00-{CLIENT_TRACE_ID}-00f067aa0ba902b7-01"),
        )
        .header("content-type", "application/json")
        .body(message_body(SONNET, stream))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn both_planes_export_otlp_and_prometheus_and_no_secret_leaks() {
    let root = CancellationToken::new();
    let otlp = FakeOtlp::start(root.child_token()).await.unwrap();
    let fake = FakeAnthropic::start(root.child_token()).await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let mut s = start(&db, &otlp, &fake).await;

    fake.reply_with(Reply::stream(SONNET, 25, &["a", "b"], 9));
    let resp = post(&s, true).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    fake.reply_with(Reply::message(SONNET, "hi", 12, 5));
    let resp = post(&s, false).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    resp.text().await.unwrap();

    // Trace context reached the provider: same trace, a span of the gateway as parent.
    let upstream = fake.received();
    assert_eq!(upstream.len(), 2);
    for r in &upstream {
        let traceparent = r
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            traceparent.starts_with(&format!("00-{CLIENT_TRACE_ID}-")),
            "upstream traceparent {traceparent:?}"
        );
        assert!(!traceparent.contains("00f067aa0ba902b7"));
    }

    // Metrics over OTLP with per-user attributes, from both planes.
    let wanted = [
        "tollgate.requests",
        "tollgate.tokens",
        "tollgate.cost",
        "tollgate.request.duration",
        "tollgate.time_to_first_token",
        "tollgate.upstream.attempts",
        "tollgate.snapshot.version",
        "tollgate.snapshot.staleness",
        "tollgate.usage.backlog",
    ];
    let complete = eventually(Duration::from_secs(20), || async {
        let points = otlp.points();
        wanted.iter().all(|m| points.iter().any(|p| p.metric == *m))
            && points.iter().any(|p| p.service == "tollgate-control-plane")
    })
    .await;
    let points = otlp.points();
    assert!(
        complete,
        "metrics received: {:?}",
        points
            .iter()
            .map(|p| &p.metric)
            .collect::<std::collections::BTreeSet<_>>()
    );
    let requests = points
        .iter()
        .find(|p| p.metric == "tollgate.requests" && p.service == "tollgate-data-plane")
        .unwrap();
    assert_eq!(requests.attributes["user.email"], "alice@example.com");
    assert_eq!(requests.attributes["user.groups"], "eng");
    assert_eq!(requests.attributes["model"], SONNET);
    assert_eq!(requests.attributes["provider"], "fake");
    let token_types: std::collections::BTreeSet<_> = points
        .iter()
        .filter(|p| p.metric == "tollgate.tokens")
        .filter_map(|p| p.attributes.get("token.type").cloned())
        .collect();
    for t in ["input", "output", "cache_read"] {
        assert!(token_types.contains(t), "token types {token_types:?}");
    }
    for p in &points {
        for (k, v) in &p.attributes {
            assert!(
                !k.contains("request_id") && (request_id.is_empty() || !v.contains(&request_id)),
                "request id as a metric label: {} {k}={v}",
                p.metric
            );
        }
    }

    // Spans: one request span per request in the client's trace, with the phases as children.
    assert!(
        eventually(Duration::from_secs(20), || async {
            let spans = otlp.spans();
            ["request", "auth", "admission", "upstream", "stream"]
                .iter()
                .all(|n| spans.iter().any(|sp| sp.name == *n))
        })
        .await,
        "spans received: {:?}",
        otlp.spans().iter().map(|sp| &sp.name).collect::<Vec<_>>()
    );
    let spans = otlp.spans();
    let roots: Vec<_> = spans.iter().filter(|sp| sp.name == "request").collect();
    assert!(roots.len() >= 2);
    for root in &roots {
        assert_eq!(root.trace_id, CLIENT_TRACE_ID);
        assert_eq!(root.parent_span_id, "00f067aa0ba902b7");
    }
    let upstream_span = spans.iter().find(|sp| sp.name == "upstream").unwrap();
    assert!(roots.iter().any(|r| r.trace_id == upstream_span.trace_id));

    // Usage events as OTLP logs.
    assert!(
        eventually(Duration::from_secs(20), || async {
            otlp.logs().iter().filter(|l| is_usage_log(l)).count() >= 2
        })
        .await,
        "logs received: {:?}",
        otlp.logs()
            .iter()
            .map(|l| (&l.scope, &l.body))
            .collect::<Vec<_>>()
    );

    // Prometheus and health on both admin listeners.
    let (status, dp_metrics) = get(&format!("{}/metrics", s.dp_admin)).await;
    assert_eq!(status, 200);
    assert!(dp_metrics.contains("tollgate_requests"), "{dp_metrics}");
    assert!(dp_metrics.contains("user_email=\"alice@example.com\""));
    let (status, cp_metrics) = get(&format!("{}/metrics", s.cp_admin)).await;
    assert_eq!(status, 200);
    assert!(cp_metrics.contains("tollgate_snapshot"), "{cp_metrics}");
    // A scraper refuses an exposition that declares a family twice.
    for text in [&dp_metrics, &cp_metrics] {
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let declared = families.len();
        families.sort_unstable();
        families.dedup();
        assert_eq!(
            families.len(),
            declared,
            "a metric family declared twice:\n{text}"
        );
    }
    assert!(
        dp_metrics.contains("tollgate_upstream_attempts_total{"),
        "{dp_metrics}"
    );
    assert!(
        dp_metrics.contains("tollgate_upstream_target_attempts_total{"),
        "{dp_metrics}"
    );
    for admin in [&s.cp_admin, &s.dp_admin] {
        assert_eq!(get(&format!("{admin}/healthz")).await.0, 200);
        assert_eq!(get(&format!("{admin}/readyz")).await.0, 200);
    }

    // JSON logs: the usage line names the request, the user and the outcome.
    let dp_log = s.dp.output();
    let usage_line = dp_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["target"] == "tollgate::usage"
                && (request_id.is_empty() || v.to_string().contains(&request_id))
        });
    let usage_line = usage_line.unwrap_or_else(|| panic!("no JSON usage line in {dp_log}"));
    let text = usage_line.to_string();
    assert!(text.contains("alice@example.com"), "{text}");
    assert!(text.contains("outcome"), "{text}");

    // Graceful stop flushes and exits 0.
    assert!(s.dp.terminate(Duration::from_secs(30)).await.unwrap());
    assert!(s.cp.terminate(Duration::from_secs(30)).await.unwrap());

    // The canaries appear nowhere.
    let pool = db.pool().await.unwrap();
    let audit: Vec<String> = sqlx::query_scalar("SELECT payload FROM audit_entries")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(audit.iter().any(|p| p.contains("provider.create")));
    pool.close().await;
    let cp_log = s.cp.output();
    let dp_log = s.dp.output();
    for canary in [s.provider_secret.as_str(), s.user_key.as_str()] {
        assert!(!cp_log.contains(canary), "canary in control-plane log");
        assert!(!dp_log.contains(canary), "canary in data-plane log");
        assert!(!dp_metrics.contains(canary) && !cp_metrics.contains(canary));
        assert!(
            !audit.iter().any(|p| p.contains(canary)),
            "canary in audit log"
        );
        for body in otlp.raw() {
            assert!(
                !body.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "canary in an OTLP export"
            );
        }
    }
    assert!(otlp.rejected().is_empty(), "{:?}", otlp.rejected());
    root.cancel();
}

fn is_usage_log(l: &tollgate_e2e::fake_otlp::ReceivedLog) -> bool {
    l.service == "tollgate-data-plane"
        && (l.scope == "tollgate::usage"
            || l.attributes.get("target").map(String::as_str) == Some("tollgate::usage"))
        && l.attributes.values().any(|v| v == "alice@example.com")
}
