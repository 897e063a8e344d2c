use chrono::Utc;
use uuid::Uuid;

use super::*;
use crate::store::policy::{
    ApiKeyPolicyRow, GroupPolicyRow, ModelPolicyRow, ProviderPolicyRow, RouteTargetPolicyRow,
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
        providers: vec![ProviderPolicyRow {
            id: provider,
            name: "demo".to_owned(),
            kind: "demo".to_owned(),
            base_url: String::new(),
            api_key: String::new(),
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
            .map(|m| RouteTargetPolicyRow {
                model_id: m.to_owned(),
                provider_id: provider,
                upstream_model: String::new(),
                weight: 1,
            })
            .collect(),
    }
}

#[test]
fn built_snapshot_validates_and_groups_route_targets_by_model() {
    let snapshot = build(rows(), 1).unwrap();
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
    assert!(matches!(build(rows, 1), Err(CompileError::BadVersion(0))));
}

#[test]
fn snapshot_with_a_bad_provider_url_fails_validation() {
    let mut rows = rows();
    rows.providers[0].kind = "anthropic".to_owned();
    rows.providers[0].base_url = "ftp://x".to_owned();
    let snapshot = build(rows, 1).unwrap();
    assert!(matches!(
        validate(&snapshot),
        Err(CompileError::Invalid {
            source: InvalidSnapshot::BadBaseUrl { .. },
            ..
        })
    ));
}
