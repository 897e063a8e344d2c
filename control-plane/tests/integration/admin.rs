use tollgate_proto::v1 as pb;
use tonic::Code;

use crate::support::{
    TestControlPlane, TestDb, create_key, create_principal, policy_version, seed_catalogue,
};

#[tokio::test]
async fn admin_calls_without_or_with_a_wrong_admin_key_are_unauthenticated() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let wrong_key = format!("tga_{}", "x".repeat(43));
    for key in [
        None,
        Some(wrong_key.as_str()),
        Some("tg_not-an-admin-key"),
        Some(""),
    ] {
        let mut admin = cp.admin_with(key).await;
        let err = admin
            .list_groups(pb::ListGroupsRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "key {key:?}: {err:?}");
        let err = admin
            .create_group(pb::CreateGroupRequest {
                name: "eng".to_owned(),
                allowed_models: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    cp.admin()
        .await
        .list_groups(pb::ListGroupsRequest {})
        .await
        .unwrap();

    // Revocation takes effect on the next call.
    let pool = db.pool().await;
    sqlx::query("UPDATE admin_keys SET revoked_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    let err = cp
        .admin()
        .await
        .list_groups(pb::ListGroupsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    pool.close().await;
    cp.stop().await;
}

#[tokio::test]
async fn api_key_secret_is_returned_once_and_only_its_hash_is_stored() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;
    let ci = create_principal(
        &mut admin,
        pb::PrincipalKind::ServiceAccount,
        "ci",
        "",
        &["eng"],
    )
    .await;

    let created = create_key(&mut admin, "ci", "deploy").await;
    let secret = created.secret.clone();
    assert!(
        secret.starts_with("tg_") && secret.len() == 3 + 43,
        "{secret}"
    );
    assert!(secret[3..].chars().all(|c| c.is_ascii_alphanumeric()));
    let info = created.key.unwrap();
    assert_eq!(info.prefix, secret[..10]);
    assert_eq!(info.principal_id, ci.id);
    assert_eq!(info.principal_name, "ci");

    let listed = admin
        .list_api_keys(pb::ListApiKeysRequest {
            principal: "ci".to_owned(),
            include_revoked: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.keys, vec![info.clone()]);
    assert!(!format!("{listed:?}").contains(&secret));

    let pool = db.pool().await;
    let (hash, prefix): (Vec<u8>, String) =
        sqlx::query_as("SELECT secret_sha256, prefix FROM api_keys WHERE id = $1::uuid")
            .bind(&info.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(hash, tollgate_policy::secret_sha256(&secret).to_vec());
    assert_eq!(prefix, secret[..10]);
    let whole_row: String = sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys k")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!whole_row.contains(&secret));
    pool.close().await;
    cp.stop().await;
}

fn value(v: &str) -> Option<pb::SecretRef> {
    Some(pb::SecretRef {
        source: Some(pb::secret_ref::Source::Value(v.to_owned())),
    })
}

fn env_ref(name: &str) -> Option<pb::SecretRef> {
    Some(pb::SecretRef {
        source: Some(pb::secret_ref::Source::Env(name.to_owned())),
    })
}

fn stored() -> Option<pb::SecretRef> {
    Some(pb::SecretRef {
        source: Some(pb::secret_ref::Source::Stored(true)),
    })
}

#[tokio::test]
async fn provider_api_key_is_write_only() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let created = admin
        .create_provider(pb::CreateProviderRequest {
            name: "anthropic".to_owned(),
            kind: pb::ProviderKind::Anthropic as i32,
            config: Some(pb::ProviderConfig {
                base_url: "https://api.anthropic.com".to_owned(),
                api_key: value("sk-ant-secret"),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.config.as_ref().unwrap().api_key, stored());
    let listed = admin
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.providers, vec![created]);
    assert!(!format!("{listed:?}").contains("sk-ant-secret"));
    // Not in the database in clear either.
    let whole_row: String = sqlx::query_scalar("SELECT row_to_json(p)::text FROM providers p")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!whole_row.contains("sk-ant-secret"), "{whole_row}");
    pool.close().await;
    cp.stop().await;
}

#[tokio::test]
async fn cloud_providers_keep_references_and_updates_keep_unsent_credentials() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let created = admin
        .create_provider(pb::CreateProviderRequest {
            name: "bedrock-eu".to_owned(),
            kind: pb::ProviderKind::Bedrock as i32,
            config: Some(pb::ProviderConfig {
                region: "eu-west-1".to_owned(),
                aws_access_key_id: value("AKIDEXAMPLE"),
                aws_secret_access_key: env_ref("AWS_SECRET_ACCESS_KEY"),
                timeouts: Some(pb::Timeouts {
                    first_byte_ms: 60_000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let config = created.config.unwrap();
    assert_eq!(created.kind, pb::ProviderKind::Bedrock as i32);
    assert_eq!(config.region, "eu-west-1");
    assert_eq!(config.aws_access_key_id, stored());
    assert_eq!(
        config.aws_secret_access_key,
        env_ref("AWS_SECRET_ACCESS_KEY")
    );
    assert_eq!(config.timeouts.unwrap().first_byte_ms, 60_000);

    // A stored secret never follows the provider to a new place unseen: moving it needs the
    // inline credential again (the reference may stay).
    let err = failure(
        admin
            .update_provider(pb::UpdateProviderRequest {
                provider: "bedrock-eu".to_owned(),
                config: Some(pb::ProviderConfig {
                    region: "eu-central-1".to_owned(),
                    aws_session_token: value("token"),
                    ..Default::default()
                }),
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("aws_access_key_id"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("AKIDEXAMPLE"), "{}", err.message());
    let err = failure(
        admin
            .update_provider(pb::UpdateProviderRequest {
                provider: "bedrock-eu".to_owned(),
                config: Some(pb::ProviderConfig {
                    region: "eu-west-1".to_owned(),
                    base_url: "https://attacker.example".to_owned(),
                    ..Default::default()
                }),
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());

    // New region with the key given again and a session token; the reference is kept.
    let updated = admin
        .update_provider(pb::UpdateProviderRequest {
            provider: "bedrock-eu".to_owned(),
            config: Some(pb::ProviderConfig {
                region: "eu-central-1".to_owned(),
                aws_access_key_id: value("AKIDEXAMPLE"),
                aws_session_token: value("token"),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(updated.region, "eu-central-1");
    assert_eq!(updated.timeouts, None, "settings are replaced");
    assert_eq!(updated.aws_access_key_id, stored());
    assert_eq!(updated.aws_session_token, stored());

    // Removing half of the key pair leaves an unusable provider: refused with the reason.
    let err = failure(
        admin
            .update_provider(pb::UpdateProviderRequest {
                provider: "bedrock-eu".to_owned(),
                config: Some(pb::ProviderConfig {
                    region: "eu-central-1".to_owned(),
                    aws_access_key_id: value(""),
                    ..Default::default()
                }),
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("bedrock"), "{}", err.message());

    // Switching to a Bedrock API key: remove the SigV4 credentials, add the key.
    let switched = admin
        .update_provider(pb::UpdateProviderRequest {
            provider: "bedrock-eu".to_owned(),
            config: Some(pb::ProviderConfig {
                region: "eu-central-1".to_owned(),
                aws_access_key_id: value(""),
                aws_secret_access_key: value(""),
                aws_session_token: value(""),
                api_key: value("bedrock-api-key"),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(switched.api_key, stored());
    assert_eq!(switched.aws_access_key_id, None);
    assert_eq!(switched.aws_secret_access_key, None);

    let err = failure(
        admin
            .update_provider(pb::UpdateProviderRequest {
                provider: "nope".to_owned(),
                config: None,
            })
            .await,
    );
    assert_eq!(err.code(), Code::NotFound);

    let err = failure(
        admin
            .create_provider(pb::CreateProviderRequest {
                name: "vertex".to_owned(),
                kind: pb::ProviderKind::Vertex as i32,
                config: Some(pb::ProviderConfig {
                    region: "global".to_owned(),
                    ..Default::default()
                }),
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("project_id"), "{}", err.message());
    cp.stop().await;
}

#[tokio::test]
async fn aliases_name_catalogue_models_and_never_shadow_one() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;
    let alias = admin
        .set_alias(pb::SetAliasRequest {
            alias: "claude-latest".to_owned(),
            model: "claude-test".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alias.model, "claude-test");
    for (alias, model) in [
        ("claude-test", "claude-test"),
        ("x", "not-a-model"),
        ("*", "claude-test"),
    ] {
        let err = failure(
            admin
                .set_alias(pb::SetAliasRequest {
                    alias: alias.to_owned(),
                    model: model.to_owned(),
                })
                .await,
        );
        assert_eq!(err.code(), Code::InvalidArgument, "{alias} → {model}");
    }
    let err = failure(
        admin
            .upsert_model(pb::UpsertModelRequest {
                id: "claude-latest".to_owned(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("alias"), "{}", err.message());
    let err = failure(
        admin
            .set_route(pb::SetRouteRequest {
                model: "claude-latest".to_owned(),
                targets: vec![pb::RouteTargetSpec {
                    provider: "demo".to_owned(),
                    ..Default::default()
                }],
            })
            .await,
    );
    assert!(err.message().contains("alias"), "{}", err.message());

    let listed = admin
        .list_aliases(pb::ListAliasesRequest {})
        .await
        .unwrap()
        .into_inner()
        .aliases;
    assert_eq!(listed, vec![alias]);
    admin
        .delete_alias(pb::DeleteAliasRequest {
            alias: "claude-latest".to_owned(),
        })
        .await
        .unwrap();
    let err = failure(
        admin
            .delete_alias(pb::DeleteAliasRequest {
                alias: "claude-latest".to_owned(),
            })
            .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    cp.stop().await;
}

#[tokio::test]
async fn route_targets_keep_priorities_and_timeouts() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;
    let timeouts = pb::Timeouts {
        first_byte_ms: 5_000,
        ..Default::default()
    };
    let route = admin
        .set_route(pb::SetRouteRequest {
            model: "claude-test".to_owned(),
            targets: vec![
                pb::RouteTargetSpec {
                    provider: "demo".to_owned(),
                    upstream_model: "a".to_owned(),
                    weight: 3,
                    priority: Some(5),
                    timeouts: Some(timeouts),
                },
                pb::RouteTargetSpec {
                    provider: "demo".to_owned(),
                    upstream_model: "b".to_owned(),
                    ..Default::default()
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let t = &route.targets;
    assert_eq!(
        (t[0].priority, t[0].weight, t[0].timeouts),
        (5, 3, Some(timeouts))
    );
    assert_eq!((t[1].priority, t[1].weight, t[1].timeouts), (1, 1, None));
    let listed = admin
        .list_routes(pb::ListRoutesRequest {})
        .await
        .unwrap()
        .into_inner()
        .routes;
    assert_eq!(listed, vec![route]);
    cp.stop().await;
}

#[tokio::test]
async fn policy_version_strictly_increases_after_each_admin_change() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let mut last = policy_version(&pool).await;
    let mut check = async |what: &str| {
        let now = policy_version(&pool).await;
        assert!(
            now > last,
            "{what}: version {now} did not increase from {last}"
        );
        last = now;
    };

    admin
        .create_provider(pb::CreateProviderRequest {
            name: "demo".to_owned(),
            kind: pb::ProviderKind::Demo as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    check("create provider").await;
    admin
        .upsert_model(pb::UpsertModelRequest {
            id: "m".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    check("upsert model").await;
    admin
        .set_route(pb::SetRouteRequest {
            model: "m".to_owned(),
            targets: vec![pb::RouteTargetSpec {
                provider: "demo".to_owned(),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    check("set route").await;
    admin
        .create_group(pb::CreateGroupRequest {
            name: "eng".to_owned(),
            allowed_models: vec!["*".to_owned()],
        })
        .await
        .unwrap();
    check("create group").await;
    admin
        .set_group_models(pb::SetGroupModelsRequest {
            group: "eng".to_owned(),
            allowed_models: vec!["m".to_owned()],
        })
        .await
        .unwrap();
    check("set group models").await;
    create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Ada",
        "ada@example.com",
        &[],
    )
    .await;
    check("create principal").await;
    admin
        .set_principal_groups(pb::SetPrincipalGroupsRequest {
            principal: "ada@example.com".to_owned(),
            groups: vec!["eng".to_owned()],
        })
        .await
        .unwrap();
    check("set principal groups").await;
    let key = create_key(&mut admin, "Ada", "laptop").await.key.unwrap();
    check("create key").await;
    admin
        .revoke_api_key(pb::RevokeApiKeyRequest { id: key.id })
        .await
        .unwrap();
    check("revoke key").await;
    admin
        .delete_model(pb::DeleteModelRequest { id: "m".to_owned() })
        .await
        .unwrap();
    check("delete model").await;
    admin
        .delete_provider(pb::DeleteProviderRequest {
            provider: "demo".to_owned(),
        })
        .await
        .unwrap();
    check("delete provider").await;
    admin
        .delete_group(pb::DeleteGroupRequest {
            group: "eng".to_owned(),
        })
        .await
        .unwrap();
    check("delete group").await;
    pool.close().await;
    cp.stop().await;
}

#[tokio::test]
async fn admin_errors_map_to_precise_grpc_codes() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;

    let err = failure(
        admin
            .create_group(pb::CreateGroupRequest {
                name: "eng".to_owned(),
                allowed_models: vec![],
            })
            .await,
    );
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(err.message(), "a group with this name already exists");

    let err = failure(
        admin
            .delete_group(pb::DeleteGroupRequest {
                group: "nope".to_owned(),
            })
            .await,
    );
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "group `nope` not found")
    );

    let err = failure(
        admin
            .create_group(pb::CreateGroupRequest {
                name: " ".to_owned(),
                allowed_models: vec![],
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = failure(
        admin
            .create_provider(pb::CreateProviderRequest {
                name: "up".to_owned(),
                kind: pb::ProviderKind::Anthropic as i32,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("base URL"), "{}", err.message());

    let err = failure(
        admin
            .create_provider(pb::CreateProviderRequest {
                name: "up".to_owned(),
                kind: pb::ProviderKind::Anthropic as i32,
                config: Some(pb::ProviderConfig {
                    base_url: "ftp://example.com".to_owned(),
                    api_key: value("k"),
                    ..Default::default()
                }),
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = failure(
        admin
            .create_provider(pb::CreateProviderRequest {
                name: "up".to_owned(),
                kind: 42,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);

    for (model, provider) in [("claude-test", "missing"), ("not-a-model", "demo")] {
        let err = failure(
            admin
                .set_route(pb::SetRouteRequest {
                    model: model.to_owned(),
                    targets: vec![pb::RouteTargetSpec {
                        provider: provider.to_owned(),
                        ..Default::default()
                    }],
                })
                .await,
        );
        assert_eq!(err.code(), Code::InvalidArgument, "{model} → {provider}");
    }

    let err = failure(
        admin
            .delete_provider(pb::DeleteProviderRequest {
                provider: "demo".to_owned(),
            })
            .await,
    );
    assert_eq!(err.code(), Code::FailedPrecondition);

    // A user and a service account may share a name; the name alone is then ambiguous.
    create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "build",
        "build@example.com",
        &[],
    )
    .await;
    let sa = create_principal(
        &mut admin,
        pb::PrincipalKind::ServiceAccount,
        "build",
        "",
        &[],
    )
    .await;
    let err = failure(
        admin
            .create_api_key(pb::CreateApiKeyRequest {
                principal: "build".to_owned(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("use the principal id"),
        "{}",
        err.message()
    );
    let key = create_key(&mut admin, &sa.id, "by id").await.key.unwrap();
    assert_eq!(key.principal_id, sa.id);

    let err = failure(
        admin
            .create_principal(pb::CreatePrincipalRequest {
                kind: pb::PrincipalKind::User as i32,
                name: "other".to_owned(),
                email: "build@example.com".to_owned(),
                groups: vec![],
            })
            .await,
    );
    assert_eq!(err.code(), Code::AlreadyExists);

    let err = failure(
        admin
            .create_principal(pb::CreatePrincipalRequest {
                kind: pb::PrincipalKind::User as i32,
                name: "eve".to_owned(),
                email: String::new(),
                groups: vec!["no-such-group".to_owned()],
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = failure(
        admin
            .revoke_api_key(pb::RevokeApiKeyRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    cp.stop().await;
}

#[tokio::test]
async fn listings_reflect_admin_changes() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let eng = seed_catalogue(&mut admin).await;
    assert_eq!(eng.allowed_models, vec!["claude-test"]);
    let ada = create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Ada",
        "ada@example.com",
        &["eng"],
    )
    .await;
    assert_eq!(ada.groups, vec!["eng"]);

    let groups = admin
        .list_groups(pb::ListGroupsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(groups.groups.len(), 1);
    assert_eq!(groups.groups[0].member_count, 1);

    let routes = admin
        .list_routes(pb::ListRoutesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(routes.routes.len(), 1);
    assert_eq!(routes.routes[0].targets[0].provider_name, "demo");

    let users = admin
        .list_principals(pb::ListPrincipalsRequest {
            kind: pb::PrincipalKind::User as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(users.principals, vec![ada]);
    let accounts = admin
        .list_principals(pb::ListPrincipalsRequest {
            kind: pb::PrincipalKind::ServiceAccount as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(accounts.principals.is_empty());

    // Revoked keys are hidden unless asked for.
    let key = create_key(&mut admin, "ada@example.com", "laptop")
        .await
        .key
        .unwrap();
    let revoked = admin
        .revoke_api_key(pb::RevokeApiKeyRequest { id: key.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at_unix_s > 0);
    let active = admin
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(active.keys.is_empty());
    let all = admin
        .list_api_keys(pb::ListApiKeysRequest {
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.keys, vec![revoked]);
    cp.stop().await;
}

fn failure<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    result.unwrap_err()
}
