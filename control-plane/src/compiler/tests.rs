use chrono::Utc;
use uuid::Uuid;

use super::*;
use crate::identity::SecretsKey;
use crate::store::alias::AliasRow;
use crate::store::policy::{ApiKeyPolicyRow, GroupPolicyRow, ModelPolicyRow, RouteTargetPolicyRow};
use crate::store::provider::{
    CREDENTIALS_PURPOSE, Credential, Credentials, ProviderRow, StoredSecret,
};

fn rows() -> PolicyRows {
    let group = Uuid::now_v7();
    let provider = Uuid::now_v7();
    PolicyRows {
        version: 7,
        org: Some((Uuid::now_v7(), "default".to_owned())),
        groups: vec![GroupPolicyRow {
            id: group,
            name: "eng".to_owned(),
            allowed_models: vec!["m1".to_owned()],
        }],
        api_keys: vec![ApiKeyPolicyRow {
            id: Uuid::now_v7(),
            name: "ci".to_owned(),
            secret_sha256: vec![7; 32],
            principal_id: Uuid::now_v7(),
            principal_kind: "service_account".to_owned(),
            principal_name: "ci".to_owned(),
            principal_email: String::new(),
            group_ids: vec![group],
            expires_at: None,
        }],
        providers: vec![ProviderRow {
            id: provider,
            name: "demo".to_owned(),
            kind: "demo".to_owned(),
            base_url: String::new(),
            config: "{}".to_owned(),
            credentials: None,
            created_at: Utc::now(),
        }],
        models: vec![
            ModelPolicyRow {
                id: "m1".to_owned(),
                display_name: String::new(),
                max_input_tokens: 0,
                created_at: Utc::now(),
            },
            ModelPolicyRow {
                id: "m2".to_owned(),
                display_name: String::new(),
                max_input_tokens: 1000,
                created_at: Utc::now(),
            },
        ],
        route_targets: ["m1", "m1", "m2"]
            .into_iter()
            .enumerate()
            .map(|(i, m)| RouteTargetPolicyRow {
                model_id: m.to_owned(),
                provider_id: provider,
                upstream_model: String::new(),
                weight: 1,
                position: i32::try_from(i).unwrap(),
                priority: None,
                timeouts: "{}".to_owned(),
            })
            .collect(),
        aliases: vec![],
    }
}

fn key() -> SecretsKey {
    SecretsKey::generate()
}

#[test]
fn built_snapshot_validates_and_groups_route_targets_by_model() {
    let snapshot = build(rows(), 1, &key()).unwrap();
    validate(&snapshot).unwrap();
    assert_eq!(snapshot.version, 7);
    assert_eq!(snapshot.routes.len(), 2);
    assert_eq!(snapshot.routes[0].targets.len(), 2);
    assert_eq!(
        snapshot.api_keys[0].principal_kind,
        pb::PrincipalKind::ServiceAccount as i32
    );
}

#[test]
fn zero_version_is_refused() {
    let mut rows = rows();
    rows.version = 0;
    assert!(matches!(
        build(rows, 1, &key()),
        Err(CompileError::BadVersion(0))
    ));
}

#[test]
fn snapshot_with_a_bad_provider_url_fails_validation() {
    let mut rows = rows();
    rows.providers[0].kind = "anthropic".to_owned();
    rows.providers[0].base_url = "ftp://x".to_owned();
    let snapshot = build(rows, 1, &key()).unwrap();
    assert!(matches!(
        validate(&snapshot),
        Err(CompileError::Invalid {
            source: InvalidSnapshot::Provider(_),
            ..
        })
    ));
}

fn bedrock_rows(key: &SecretsKey) -> PolicyRows {
    let mut rows = rows();
    let mut credentials = Credentials::default();
    credentials.set(
        Credential::AwsAccessKeyId,
        StoredSecret::Value("AKIDEXAMPLE".to_owned()),
    );
    credentials.set(
        Credential::AwsSecretAccessKey,
        StoredSecret::Env("AWS_SECRET_ACCESS_KEY".to_owned()),
    );
    let p = &mut rows.providers[0];
    p.kind = "bedrock".to_owned();
    p.config = r#"{"region":"eu-west-1","timeouts":{"connect_ms":2000}}"#.to_owned();
    p.credentials = Some(key.seal(CREDENTIALS_PURPOSE, &credentials.to_json()));
    rows
}

#[test]
fn providers_carry_settings_and_opened_credentials_with_references_kept() {
    let key = key();
    let snapshot = build(bedrock_rows(&key), 1, &key).unwrap();
    validate(&snapshot).unwrap();
    let config = snapshot.providers[0].config.clone().unwrap();
    assert_eq!(snapshot.providers[0].kind, pb::ProviderKind::Bedrock as i32);
    assert_eq!(config.region, "eu-west-1");
    assert_eq!(config.timeouts.unwrap().connect_ms, 2000);
    assert_eq!(
        config.aws_access_key_id.unwrap().source,
        Some(pb::secret_ref::Source::Value("AKIDEXAMPLE".to_owned()))
    );
    assert_eq!(
        config.aws_secret_access_key.unwrap().source,
        Some(pb::secret_ref::Source::Env(
            "AWS_SECRET_ACCESS_KEY".to_owned()
        ))
    );
}

#[test]
fn credentials_sealed_with_another_key_fail_the_compile_naming_the_provider() {
    // Fails rather than leaving the provider out: a replica with the wrong secrets key must
    // not remove providers from every data plane.
    let rows = bedrock_rows(&key());
    let err = build(rows, 1, &key()).unwrap_err();
    assert!(matches!(&err, CompileError::Credentials { provider, .. } if provider == "demo"));
}

#[test]
fn route_priorities_default_to_position_and_targets_keep_their_own_timeouts() {
    let mut rows = rows();
    rows.route_targets[1].priority = Some(0);
    rows.route_targets[1].timeouts = r#"{"first_byte_ms":7000}"#.to_owned();
    rows.aliases = vec![AliasRow {
        alias: "latest".to_owned(),
        model_id: "m2".to_owned(),
    }];
    let snapshot = build(rows, 1, &key()).unwrap();
    validate(&snapshot).unwrap();
    let m1 = &snapshot.routes[0].targets;
    assert_eq!((m1[0].priority, m1[1].priority), (0, 0));
    assert_eq!(m1[0].timeouts, None);
    assert_eq!(m1[1].timeouts.unwrap().first_byte_ms, 7000);
    assert_eq!(snapshot.routes[1].targets[0].priority, 2);
    assert_eq!(
        snapshot.aliases,
        vec![pb::ModelAlias {
            alias: "latest".to_owned(),
            model: "m2".to_owned(),
        }]
    );
}
