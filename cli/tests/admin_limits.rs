//! `tollgate admin limits` against a real control plane (in-process) on a fresh database:
//! limits set at every scope (one per kind given), replaced in place, listed as a table and
//! as JSON, explained for a user and a key (with a bucket emptied and slots taken through
//! the data planes' `RateLease` call, so the limit shows as blocking), and deleted.
//!
//! Postgres: `TOLLGATE_TEST_DATABASE_URL` (an admin URL allowed to create databases), else
//! `postgres://postgres@127.0.0.1:5432/postgres`.

// An integration-test crate: every item in it is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use secrecy::{ExposeSecret as _, SecretString};
use support::Db;
use tokio_util::sync::CancellationToken;
use tollgate_cli::admin::{AdminClient, connect, execute, parse_args};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::sync_client::SyncClient;

async fn run(client: &mut AdminClient, words: &[&str]) -> anyhow::Result<String> {
    let args = parse_args(words.iter().copied()).unwrap();
    execute(client, args.command, args.format).await
}

async fn ok(client: &mut AdminClient, words: &[&str]) -> String {
    run(client, words)
        .await
        .unwrap_or_else(|e| panic!("{words:?}: {e:#}"))
}

/// The rows of a `--format json` answer.
async fn json(client: &mut AdminClient, words: &[&str]) -> Vec<serde_json::Value> {
    let mut all: Vec<&str> = words.to_vec();
    all.extend(["--format", "json"]);
    let out = ok(client, &all).await;
    match serde_json::from_str(&out) {
        Ok(serde_json::Value::Array(rows)) => rows,
        other => panic!("{words:?}: not a JSON array: {other:?}\n{out}"),
    }
}

/// The listed limit of this scope name and kind.
fn find<'a>(rows: &'a [serde_json::Value], name: &str, kind: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["name"] == name && r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {name} {kind} limit in {rows:#?}"))
}

#[tokio::test]
async fn limits_are_set_listed_explained_and_deleted_through_the_cli() {
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

    ok(
        &mut client,
        &["providers", "create", "demo", "--kind", "demo"],
    )
    .await;
    ok(&mut client, &["models", "upsert", "claude-test"]).await;
    ok(&mut client, &["groups", "create", "eng", "--models", "*"]).await;
    ok(
        &mut client,
        &[
            "users",
            "create",
            "--name",
            "alice",
            "--email",
            "alice@example.com",
            "--group",
            "eng",
        ],
    )
    .await;
    let keys = json(
        &mut client,
        &[
            "keys",
            "create",
            "--principal",
            "alice@example.com",
            "--name",
            "laptop",
        ],
    )
    .await;
    let key_id = keys[0]["id"].as_str().unwrap().to_owned();

    // One limit per kind given, all for the same scope.
    let out = ok(
        &mut client,
        &[
            "limits",
            "set",
            "--group",
            "eng",
            "--per-member",
            "--rpm",
            "10",
            "--concurrency",
            "4",
        ],
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("KIND"),
        "{out}"
    );
    assert!(
        lines[1].contains("per member") && lines[1].contains("requests_per_minute"),
        "{out}"
    );
    assert!(lines[2].contains("concurrent_requests"), "{out}");
    ok(
        &mut client,
        &[
            "limits",
            "set",
            "--user",
            "alice@example.com",
            "--model",
            "claude-test",
            "--input-tpm",
            "5000",
            "--output-tpm",
            "2000",
        ],
    )
    .await;
    ok(&mut client, &["limits", "set", "--org", "--rpm", "1000"]).await;
    ok(
        &mut client,
        &["limits", "set", "--key", &key_id, "--rpm", "100"],
    )
    .await;
    ok(
        &mut client,
        &["limits", "set", "--provider", "demo", "--concurrency", "50"],
    )
    .await;

    let rows = json(&mut client, &["limits", "list"]).await;
    assert_eq!(rows.len(), 7, "{rows:#?}");
    let group_rpm = find(&rows, "eng", "requests_per_minute");
    assert_eq!(
        (
            &group_rpm["scope"],
            &group_rpm["sharing"],
            &group_rpm["model"]
        ),
        (&"group".into(), &"per member".into(), &"*".into())
    );
    assert_eq!(group_rpm["limit"], 10);
    let itpm = find(&rows, "alice@example.com", "input_tokens_per_minute");
    assert_eq!(
        (&itpm["scope"], &itpm["model"]),
        (&"user".into(), &"claude-test".into())
    );
    assert_eq!(itpm["limit"], 5000);
    let ceiling = find(&rows, "demo", "concurrent_requests");
    assert_eq!(
        (&ceiling["scope"], &ceiling["limit"]),
        (&"provider".into(), &50.into())
    );
    let org = rows.iter().find(|r| r["scope"] == "org").unwrap();
    assert_eq!(
        (&org["kind"], &org["limit"]),
        (&"requests_per_minute".into(), &1000.into())
    );

    // Setting the same scope, model and kind again replaces the value in place.
    ok(
        &mut client,
        &[
            "limits",
            "set",
            "--group",
            "eng",
            "--per-member",
            "--rpm",
            "20",
        ],
    )
    .await;
    let rows = json(&mut client, &["limits", "list"]).await;
    assert_eq!(rows.len(), 7, "{rows:#?}");
    assert_eq!(find(&rows, "eng", "requests_per_minute")["limit"], 20);

    // The table: one line per limit, every-model limits shown as `*`.
    let table = ok(&mut client, &["limits", "list"]).await;
    assert_eq!(table.lines().count(), 8, "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("provider") && l.contains("demo") && l.contains('*')),
        "{table}"
    );

    // Explain: the user's limits (org, group per member, user), not their key's or the
    // provider's; nothing is used yet, so nothing blocks.
    let out = ok(
        &mut client,
        &["limits", "explain", "--user", "alice@example.com"],
    )
    .await;
    let summary = out.lines().next().unwrap();
    assert!(
        summary.contains("eng") && summary.contains("none blocks"),
        "{out}"
    );
    let standings = json(
        &mut client,
        &["limits", "explain", "--user", "alice@example.com"],
    )
    .await;
    assert_eq!(standings.len(), 5, "{standings:#?}");
    assert!(
        standings.iter().all(|s| s["blocks"] == "-"),
        "{standings:#?}"
    );
    assert!(
        !standings
            .iter()
            .any(|s| s["scope"] == "key" || s["scope"] == "provider")
    );
    let group_rpm = find(&standings, "eng", "requests_per_minute");
    assert_eq!(group_rpm["available"], 20);

    // Only the limits counting one model: the claude-test token limits are left out for
    // another model.
    let other = json(
        &mut client,
        &[
            "limits",
            "explain",
            "--user",
            "alice@example.com",
            "--model",
            "claude-other",
        ],
    )
    .await;
    assert_eq!(other.len(), 3, "{other:#?}");
    assert!(other.iter().all(|s| s["model"] == "*"), "{other:#?}");

    // A key: its own limit plus its owner's.
    let by_key = json(&mut client, &["limits", "explain", "--key", &key_id]).await;
    assert_eq!(by_key.len(), 6, "{by_key:#?}");
    assert!(
        by_key
            .iter()
            .any(|s| s["scope"] == "key" && s["limit"] == 100)
    );

    // Empty alice's per-member bucket and take every slot of hers the way a data plane
    // does; explain then names the limits that block.
    let principal = ok(&mut client, &["users", "list", "--format", "json"]).await;
    let principal: Vec<serde_json::Value> = serde_json::from_str(&principal).unwrap();
    let alice_id = principal
        .iter()
        .find(|p| p["email"] == "alice@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rpm_id = group_rpm["limit_id"].as_str().unwrap().to_owned();
    let slots_id = find(&standings, "eng", "concurrent_requests")["limit_id"]
        .as_str()
        .unwrap()
        .to_owned();
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
    let ask = |limit_id: &str, n: u64| pb::RateLeaseAsk {
        bucket: Some(pb::BucketKey {
            limit_id: limit_id.to_owned(),
            subject_id: alice_id.clone(),
        }),
        need: n,
        want: n,
        release: 0,
    };
    let lease = sync
        .rate_lease(pb::RateLeaseRequest {
            data_plane_id: "dp-test".to_owned(),
            asks: vec![ask(&rpm_id, 20), ask(&slots_id, 4)],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(lease.granted, "{lease:?}");

    let out = ok(
        &mut client,
        &["limits", "explain", "--user", "alice@example.com"],
    )
    .await;
    let summary = out.lines().next().unwrap();
    assert!(
        summary.contains("BLOCKED by the group eng (per member) requests_per_minute limit")
            && summary.contains("concurrent_requests"),
        "{out}"
    );
    let standings = json(
        &mut client,
        &["limits", "explain", "--user", "alice@example.com"],
    )
    .await;
    let rpm = find(&standings, "eng", "requests_per_minute");
    assert_eq!(
        (&rpm["blocks"], &rpm["available"]),
        (&"BLOCKS".into(), &0.into())
    );
    let slots = find(&standings, "eng", "concurrent_requests");
    assert_eq!(
        (&slots["blocks"], &slots["held"]),
        (&"BLOCKS".into(), &4.into())
    );
    assert_eq!(
        find(&standings, "org", "requests_per_minute")["blocks"],
        "-"
    );

    // Delete: gone from the list; an unknown id is an error.
    let org_id = org["id"].as_str().unwrap().to_owned();
    ok(&mut client, &["limits", "delete", &org_id]).await;
    let rows = json(&mut client, &["limits", "list"]).await;
    assert_eq!(rows.len(), 6, "{rows:#?}");
    assert!(!rows.iter().any(|r| r["id"] == org_id.as_str()));
    assert!(
        run(&mut client, &["limits", "delete", &org_id])
            .await
            .is_err()
    );

    // Refused: an unknown group; per member outside a group (before any call).
    let err = run(
        &mut client,
        &["limits", "set", "--group", "nope", "--rpm", "1"],
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("requests_per_minute"),
        "{err:#}"
    );
    assert!(
        run(
            &mut client,
            &[
                "limits",
                "set",
                "--user",
                "alice@example.com",
                "--per-member",
                "--rpm",
                "1"
            ],
        )
        .await
        .is_err()
    );
    assert_eq!(json(&mut client, &["limits", "list"]).await.len(), 6);

    shutdown.cancel();
    drop(client);
    db.drop_database().await;
}
