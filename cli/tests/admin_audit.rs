//! `tollgate admin audit|content-capture|usage export` against a real control plane
//! (in-process) on a fresh database: a SIEM export whose lines re-verify as a hash chain,
//! filters, retention and content capture settings, and a usage export whose totals reconcile
//! with the spend counters (and a `--reconcile` that fails once a counter is changed).
//!
//! Postgres: `TOLLGATE_TEST_DATABASE_URL` (an admin URL allowed to create databases), else
//! `postgres://postgres@127.0.0.1:5432/postgres`.

// An integration-test crate: every item in it is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use chrono::{TimeZone as _, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use sqlx::{Connection as _, Executor as _, PgConnection};
use support::{Db, random_hex};
use tokio_util::sync::CancellationToken;
use tollgate_cli::admin::{AdminClient, connect, execute, parse_args};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::sync_client::SyncClient;

/// A random UUID in its text form.
fn random_uuid() -> String {
    let h = random_hex();
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

async fn run(client: &mut AdminClient, words: &[&str]) -> anyhow::Result<String> {
    let args = parse_args(words.iter().copied()).unwrap();
    execute(client, args.command, args.format).await
}

async fn ok(client: &mut AdminClient, words: &[&str]) -> String {
    run(client, words)
        .await
        .unwrap_or_else(|e| panic!("{words:?}: {e:#}"))
}

#[tokio::test]
async fn audit_export_reverifies_and_usage_export_reconciles_through_the_cli() {
    let db = Db::create().await;
    let shutdown = CancellationToken::new();
    let config = tollgate_control_plane::ControlPlaneConfig::new(
        SecretString::from(db.url.clone()),
        "127.0.0.1:0".parse().unwrap(),
        SecretString::from("sync-token"),
    );
    let cp = tollgate_control_plane::spawn(config, shutdown.clone())
        .await
        .unwrap();
    let endpoint = format!("http://{}", cp.grpc_addr);
    let key = cp.bootstrap_admin_key.clone().unwrap();
    let mut client = connect(&endpoint, key.expose_secret()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    ok(
        &mut client,
        &["providers", "create", "demo", "--kind", "demo"],
    )
    .await;
    ok(&mut client, &["models", "upsert", "claude-test"]).await;

    // Settings: shown, changed, audited.
    let out = ok(&mut client, &["content-capture", "status"]).await;
    assert!(out.contains("off") && out.contains("forever"), "{out}");
    let out = ok(&mut client, &["content-capture", "on"]).await;
    assert!(out.contains("on"), "{out}");
    let out = ok(&mut client, &["audit", "retention", "--days", "30"]).await;
    assert!(out.contains("30"), "{out}");
    let out = ok(&mut client, &["audit", "retention"]).await;
    assert!(out.contains("30") && out.contains("on"), "{out}");
    let out = ok(&mut client, &["audit", "retention", "--forever"]).await;
    assert!(out.contains("forever"), "{out}");

    let out = ok(&mut client, &["audit", "list", "--action", "provider."]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("SEQ") && lines[0].contains("ACTOR"),
        "{out}"
    );
    assert!(
        lines[1].contains("provider.create") && lines[1].contains("provider/"),
        "{out}"
    );
    let out = ok(&mut client, &["audit", "list", "--limit", "2"]).await;
    assert_eq!(out.lines().count(), 3, "{out}");

    // The SIEM export: every entry, each line re-verifiable and linked to the one before.
    let export = dir.path().join("audit.jsonl");
    ok(
        &mut client,
        &["audit", "export", "--output", export.to_str().unwrap()],
    )
    .await;
    let text = std::fs::read_to_string(&export).unwrap();
    let mut prev = "0".repeat(64);
    let mut seqs = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let payload = v["payload"].as_str().unwrap();
        assert_eq!(v["prev_hash"].as_str().unwrap(), prev, "{line}");
        let hash = Sha256::new()
            .chain_update(hex::decode(&prev).unwrap())
            .chain_update(payload.as_bytes())
            .finalize();
        assert_eq!(v["hash"].as_str().unwrap(), hex::encode(hash), "{line}");
        assert_eq!(v["entry"]["action"], v["action"]);
        assert_eq!(v["entry"]["seq"], v["seq"]);
        prev = v["hash"].as_str().unwrap().to_owned();
        seqs.push(v["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        text.contains("\"observability_settings.update\""),
        "the content-capture switch is in the export"
    );
    let filtered = dir.path().join("models.jsonl");
    ok(
        &mut client,
        &[
            "audit",
            "export",
            "--action",
            "model.create",
            "--output",
            filtered.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&filtered).unwrap().lines().count(),
        1
    );
    ok(&mut client, &["audit", "checkpoints"]).await;

    // Usage on one day, charged to the org's daily cap.
    ok(
        &mut client,
        &[
            "budget",
            "set",
            "--org",
            "--period",
            "daily",
            "--limit-usd",
            "100",
        ],
    )
    .await;
    let budget = client
        .spend()
        .list_budgets(pb::ListBudgetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .budgets
        .remove(0);
    let day = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    let counter = pb::CounterKey {
        budget_id: budget.id.clone(),
        subject_id: String::new(),
        window_start_unix_s: day.timestamp(),
    };
    let records: Vec<pb::UsageRecord> = [120_000u64, 30_000, 5]
        .iter()
        .enumerate()
        .map(|(i, cost)| pb::UsageRecord {
            request_id: random_uuid(),
            data_plane_id: "dp-1".to_owned(),
            started_at_unix_ms: (day + chrono::TimeDelta::hours(9 + i as i64)).timestamp_millis(),
            duration_ms: 10,
            model: "claude-test".to_owned(),
            upstream_model: "claude-test".to_owned(),
            endpoint: "/v1/messages".to_owned(),
            status: 200,
            outcome: pb::UsageOutcome::Complete as i32,
            input_tokens: 10,
            output_tokens: 20,
            cost_micro_usd: *cost,
            charges: vec![counter.clone()],
            price_source: "catalogue".to_owned(),
            ..Default::default()
        })
        .collect();
    let channel = tonic::transport::Channel::from_shared(endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token: tonic::metadata::MetadataValue<_> = "Bearer sync-token".parse().unwrap();
    let mut sync = SyncClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", token.clone());
        Ok(req)
    });
    sync.report_usage(pb::UsageBatch { records }).await.unwrap();

    let usage = dir.path().join("usage.jsonl");
    let words = [
        "usage",
        "export",
        "--from",
        "2026-11-02",
        "--to",
        "2026-11-03",
        "--reconcile",
        "--output",
        usage.to_str().unwrap(),
    ];
    ok(&mut client, &words).await;
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&usage)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    let total: u64 = rows
        .iter()
        .map(|r| r["cost_micro_usd"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 150_005);
    assert_eq!(rows[0]["cost_usd"], "0.12");

    let csv = dir.path().join("usage.csv");
    ok(
        &mut client,
        &[
            "usage",
            "export",
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-03",
            "--format",
            "csv",
            "--output",
            csv.to_str().unwrap(),
        ],
    )
    .await;
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv_text.lines().count(), 4, "{csv_text}");
    assert!(csv_text.starts_with("request_id,"));

    // A counter changed behind the ledger's back fails the reconciliation.
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    conn.execute("UPDATE spend_counters SET spent_micro_usd = spent_micro_usd + 1")
        .await
        .unwrap();
    conn.close().await.unwrap();
    let err = run(&mut client, &words).await.unwrap_err();
    assert!(err.to_string().contains("differ"), "{err:#}");

    // `usage` without a subcommand still groups.
    let out = ok(&mut client, &["usage", "--by", "model"]).await;
    assert!(out.contains("claude-test"), "{out}");

    drop(client);
    shutdown.cancel();
    cp.wait().await.unwrap();
    db.drop_database().await;
}
