//! Providers end to end: sealed credentials in snapshots, the legacy plaintext column moved
//! at start, route priorities and aliases in snapshots, target health reports and status.

use std::time::Duration;

use base64::Engine as _;
use secrecy::SecretString;
use tollgate_control_plane::compiler;
use tollgate_control_plane::identity::SecretsKey;
use tollgate_proto::v1 as pb;
use tonic::Code;

use crate::support::{TestControlPlane, TestDb, seed_catalogue};

const KEY: [u8; 32] = [42; 32];

fn key_b64() -> SecretString {
    SecretString::from(base64::engine::general_purpose::STANDARD.encode(KEY))
}

fn key() -> SecretsKey {
    SecretsKey::from_base64(&key_b64()).unwrap()
}

async fn start(db: &TestDb) -> TestControlPlane {
    let mut config = db.config();
    config.secrets_key = Some(key_b64());
    TestControlPlane::start_with(config).await
}

fn source(s: Option<&pb::SecretRef>) -> Option<&pb::secret_ref::Source> {
    s.and_then(|s| s.source.as_ref())
}

#[tokio::test]
async fn snapshots_carry_inline_credentials_and_references_to_data_planes() {
    let db = TestDb::create().await;
    let cp = start(&db).await;
    let mut admin = cp.admin().await;
    admin
        .create_provider(pb::CreateProviderRequest {
            name: "vertex".to_owned(),
            kind: pb::ProviderKind::Vertex as i32,
            config: Some(pb::ProviderConfig {
                region: "us-east5".to_owned(),
                project_id: "acme-prod".to_owned(),
                service_account_json: Some(pb::SecretRef {
                    source: Some(pb::secret_ref::Source::Value(r#"{"type":"x"}"#.to_owned())),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    admin
        .create_provider(pb::CreateProviderRequest {
            name: "foundry".to_owned(),
            kind: pb::ProviderKind::Foundry as i32,
            config: Some(pb::ProviderConfig {
                resource: "acme".to_owned(),
                api_key: Some(pb::SecretRef {
                    source: Some(pb::secret_ref::Source::File("/run/foundry-key".to_owned())),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let snapshot = compiler::compile(&db.pool().await, &key()).await.unwrap();
    let by_name = |n: &str| {
        snapshot
            .providers
            .iter()
            .find(|p| p.name == n)
            .and_then(|p| p.config.clone())
            .unwrap()
    };
    let vertex = by_name("vertex");
    assert_eq!(vertex.project_id, "acme-prod");
    assert_eq!(
        source(vertex.service_account_json.as_ref()),
        Some(&pb::secret_ref::Source::Value(r#"{"type":"x"}"#.to_owned()))
    );
    assert_eq!(
        source(by_name("foundry").api_key.as_ref()),
        Some(&pb::secret_ref::Source::File("/run/foundry-key".to_owned()))
    );
    cp.stop().await;
}

#[tokio::test]
async fn plaintext_api_keys_are_sealed_at_start_once() {
    let db = TestDb::create().await;
    let cp = start(&db).await;
    let admin_key = cp.admin_key.clone();
    cp.stop().await;
    let pool = db.pool().await;
    sqlx::query(
        "INSERT INTO providers (id, name, kind, base_url, api_key) \
         VALUES (gen_random_uuid(), 'legacy', 'anthropic', 'https://api.anthropic.com', 'sk-legacy')",
    )
    .execute(&pool)
    .await
    .unwrap();
    for _ in 0..2 {
        let cp = start(&db).await;
        let (api_key, sealed): (String, Option<Vec<u8>>) =
            sqlx::query_as("SELECT api_key, credentials FROM providers WHERE name = 'legacy'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(api_key, "");
        let sealed = sealed.unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("sk-legacy"));
        let snapshot = compiler::compile(&pool, &key()).await.unwrap();
        let config = snapshot.providers[0].config.clone().unwrap();
        assert_eq!(
            source(config.api_key.as_ref()),
            Some(&pb::secret_ref::Source::Value("sk-legacy".to_owned()))
        );
        let listed = cp
            .admin_with(Some(&admin_key))
            .await
            .list_providers(pb::ListProvidersRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!format!("{listed:?}").contains("sk-legacy"));
        cp.stop().await;
    }
    pool.close().await;
}

#[tokio::test]
async fn snapshots_carry_route_priorities_timeouts_and_aliases() {
    let db = TestDb::create().await;
    let cp = start(&db).await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;
    admin
        .set_route(pb::SetRouteRequest {
            model: "claude-test".to_owned(),
            targets: vec![
                pb::RouteTargetSpec {
                    provider: "demo".to_owned(),
                    upstream_model: "primary".to_owned(),
                    priority: Some(1),
                    ..Default::default()
                },
                pb::RouteTargetSpec {
                    provider: "demo".to_owned(),
                    upstream_model: "secondary".to_owned(),
                    priority: Some(0),
                    timeouts: Some(pb::Timeouts {
                        idle_ms: 30_000,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
        })
        .await
        .unwrap();
    admin
        .set_alias(pb::SetAliasRequest {
            alias: "claude-latest".to_owned(),
            model: "claude-test".to_owned(),
        })
        .await
        .unwrap();
    let snapshot = compiler::compile(&db.pool().await, &key()).await.unwrap();
    let targets = &snapshot.routes[0].targets;
    assert_eq!(
        targets
            .iter()
            .map(|t| (t.upstream_model.as_str(), t.priority))
            .collect::<Vec<_>>(),
        [("primary", 1), ("secondary", 0)]
    );
    assert_eq!(targets[1].timeouts.unwrap().idle_ms, 30_000);
    assert_eq!(snapshot.aliases[0].alias, "claude-latest");
    let policy = tollgate_policy::Snapshot::try_from(snapshot).unwrap();
    assert_eq!(policy.canonical_model("claude-latest"), "claude-test");
    // Deleting the model takes its alias with it.
    admin
        .delete_model(pb::DeleteModelRequest {
            id: "claude-test".to_owned(),
        })
        .await
        .unwrap();
    let left = admin
        .list_aliases(pb::ListAliasesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(left.aliases.is_empty());
    cp.stop().await;
}

fn health(provider_id: &str, model: &str, state: pb::BreakerState) -> pb::TargetHealth {
    pb::TargetHealth {
        provider_id: provider_id.to_owned(),
        upstream_model: model.to_owned(),
        state: state as i32,
        consecutive_failures: 5,
        retry_at_unix_ms: 1_900_000_000_000,
        attempts: 10,
        failures: 6,
        last_error: "status 529".to_owned(),
        last_failure_unix_ms: 1_800_000_000_000,
    }
}

#[tokio::test]
async fn target_health_reports_are_stored_per_data_plane_and_shown_in_provider_status() {
    let db = TestDb::create().await;
    let cp = start(&db).await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;
    let demo = admin
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers
        .remove(0);
    let mut sync = cp.sync().await;
    for (dp, state) in [
        ("dp-a", pb::BreakerState::Closed),
        ("dp-b", pb::BreakerState::HalfOpen),
        ("dp-a", pb::BreakerState::Open),
    ] {
        sync.report_target_health(pb::TargetHealthReport {
            data_plane_id: dp.to_owned(),
            targets: vec![
                health(&demo.id, "claude-test", state),
                // A provider deleted meanwhile is skipped, not an error.
                health(&uuid::Uuid::now_v7().to_string(), "x", state),
            ],
        })
        .await
        .unwrap();
    }
    let status = admin
        .provider_status(pb::ProviderStatusRequest { max_age_s: 0 })
        .await
        .unwrap()
        .into_inner()
        .targets;
    assert_eq!(status.len(), 2);
    let a = status.iter().find(|t| t.data_plane_id == "dp-a").unwrap();
    assert_eq!(a.provider_name, "demo");
    let h = a.health.clone().unwrap();
    assert_eq!(h.state, pb::BreakerState::Open as i32);
    assert_eq!((h.consecutive_failures, h.attempts, h.failures), (5, 10, 6));
    assert_eq!(h.retry_at_unix_ms, 1_900_000_000_000);
    assert_eq!(h.last_error, "status 529");
    assert!(a.reported_at_unix_ms > 0);

    // Stale reports are left out.
    let pool = db.pool().await;
    sqlx::query("UPDATE target_health SET reported_at = now() - interval '10 minutes' WHERE data_plane_id = 'dp-b'")
        .execute(&pool)
        .await
        .unwrap();
    let status = admin
        .provider_status(pb::ProviderStatusRequest { max_age_s: 0 })
        .await
        .unwrap()
        .into_inner()
        .targets;
    assert_eq!(status.len(), 1);
    let status = admin
        .provider_status(pb::ProviderStatusRequest { max_age_s: 3600 })
        .await
        .unwrap()
        .into_inner()
        .targets;
    assert_eq!(status.len(), 2);

    // Wrong token, bad ids.
    let err = cp
        .sync_with(Some("wrong"))
        .await
        .report_target_health(pb::TargetHealthReport {
            data_plane_id: "dp-a".to_owned(),
            targets: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = sync
        .report_target_health(pb::TargetHealthReport {
            data_plane_id: "dp-a".to_owned(),
            targets: vec![health("not-a-uuid", "m", pb::BreakerState::Closed)],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Health reports are not policy: the snapshot version does not move.
    let before = crate::support::policy_version(&pool).await;
    sync.report_target_health(pb::TargetHealthReport {
        data_plane_id: "dp-a".to_owned(),
        targets: vec![health(&demo.id, "claude-test", pb::BreakerState::Closed)],
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(crate::support::policy_version(&pool).await, before);
    pool.close().await;
    cp.stop().await;
}
