//! `tollgate admin providers|routes|aliases` against a real control plane (in-process) on a
//! fresh database: credentials given as files, environment variables and references, lists
//! that never print a secret, route targets with priorities, aliases and provider status.
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
use tollgate_cli::report::Format;
use tollgate_proto::v1 as pb;

async fn run(client: &mut AdminClient, words: &[&str], format: Format) -> anyhow::Result<String> {
    let args = parse_args(words.iter().copied()).unwrap();
    execute(client, args.command, format).await
}

async fn table(client: &mut AdminClient, words: &[&str]) -> String {
    run(client, words, Format::Table)
        .await
        .unwrap_or_else(|e| panic!("{words:?}: {e:#}"))
}

#[tokio::test]
async fn providers_routes_and_aliases_through_the_cli() {
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
    let key_file = dir.path().join("anthropic-key");
    std::fs::write(&key_file, "sk-ant-from-file\n").unwrap();
    let out = table(
        &mut client,
        &[
            "providers",
            "create",
            "direct",
            "--kind",
            "anthropic",
            "--base-url",
            "https://api.anthropic.com",
            "--api-key-file",
            key_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.contains("api_key=stored"), "{out}");
    assert!(!out.contains("sk-ant-from-file"), "{out}");

    table(
        &mut client,
        &[
            "providers",
            "create",
            "bedrock-us",
            "--kind",
            "bedrock",
            "--region",
            "us-east-1",
            "--aws-access-key-id-ref",
            "env:AWS_ACCESS_KEY_ID",
            "--aws-secret-access-key-ref",
            "file:/run/secrets/aws-secret",
            "--first-byte-timeout-ms",
            "30000",
        ],
    )
    .await;
    // The older flag form still works.
    table(
        &mut client,
        &["providers", "create", "--name", "offline", "--kind", "demo"],
    )
    .await;
    // A half-configured provider is refused with the policy crate's reason.
    let err = run(
        &mut client,
        &[
            "providers",
            "create",
            "v",
            "--kind",
            "vertex",
            "--region",
            "global",
        ],
        Format::Table,
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("project_id"), "{err:#}");

    // Update: only the region changes; the credentials and the timeout are kept.
    let out = table(
        &mut client,
        &["providers", "update", "bedrock-us", "--region", "us-west-2"],
    )
    .await;
    assert!(out.contains("region=us-west-2"), "{out}");
    assert!(out.contains("first_byte_timeout_ms=30000"), "{out}");
    assert!(
        out.contains("aws_access_key_id=env:AWS_ACCESS_KEY_ID aws_secret_access_key=file:/run/secrets/aws-secret"),
        "{out}"
    );

    let listed = run(&mut client, &["providers", "list"], Format::Json)
        .await
        .unwrap();
    assert!(!listed.contains("sk-ant-from-file"), "{listed}");
    assert!(
        listed.contains("bedrock-us") && listed.contains("offline"),
        "{listed}"
    );

    // Routes: new syntax with options, and the older `provider=model`.
    table(&mut client, &["models", "upsert", "claude-sonnet-4-5"]).await;
    let out = table(
        &mut client,
        &[
            "routes",
            "set",
            "claude-sonnet-4-5",
            "--target",
            "bedrock-us:us.anthropic.claude-sonnet-4-5-20250929-v1:0,priority=0,weight=2",
            "--target",
            "direct=claude-sonnet-4-5,priority=1,first-byte-timeout-ms=20000",
        ],
    )
    .await;
    assert!(
        out.contains("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        "{out}"
    );
    assert!(out.contains("first_byte_timeout_ms=20000"), "{out}");
    let routes = client
        .list_routes(pb::ListRoutesRequest {})
        .await
        .unwrap()
        .into_inner()
        .routes;
    let t = &routes[0].targets;
    assert_eq!((t[0].priority, t[0].weight), (0, 2));
    assert_eq!((t[1].priority, t[1].provider_name.as_str()), (1, "direct"));

    let out = table(
        &mut client,
        &[
            "aliases",
            "set",
            "claude-sonnet-latest",
            "claude-sonnet-4-5",
        ],
    )
    .await;
    assert!(
        out.contains("claude-sonnet-latest  claude-sonnet-4-5"),
        "{out}"
    );
    let out = table(&mut client, &["aliases", "list"]).await;
    assert!(out.contains("claude-sonnet-latest"), "{out}");
    table(&mut client, &["aliases", "delete", "claude-sonnet-latest"]).await;

    // Clearing a credential the provider needs is refused; clearing and replacing works.
    let err = run(
        &mut client,
        &["providers", "update", "direct", "--clear", "api-key"],
        Format::Table,
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("api_key"), "{err:#}");
    let out = table(
        &mut client,
        &[
            "providers",
            "update",
            "direct",
            "--api-key-ref",
            "env:ANTHROPIC_API_KEY",
        ],
    )
    .await;
    assert!(out.contains("api_key=env:ANTHROPIC_API_KEY"), "{out}");

    let out = run(
        &mut client,
        &["providers", "status", "--json"],
        Format::Table,
    )
    .await
    .unwrap();
    assert_eq!(out.trim(), "[]");

    shutdown.cancel();
    cp.wait().await.unwrap();
    db.drop_database().await;
}
