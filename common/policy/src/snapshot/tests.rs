use proptest::prelude::*;

use super::*;

fn key(id: &str, secret: &str, groups: &[&str], expires: i64) -> pb::ApiKey {
    pb::ApiKey {
        id: id.into(),
        secret_sha256: secret_sha256(secret).to_vec(),
        principal_id: format!("p-{id}"),
        principal_kind: pb::PrincipalKind::User as i32,
        principal_name: "Ada".into(),
        principal_email: "ada@example.com".into(),
        group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
        expires_at_unix_s: expires,
        name: "laptop".into(),
    }
}

fn sample() -> pb::Snapshot {
    pb::Snapshot {
        version: 7,
        generated_at_unix_ms: 1,
        org_id: "org".into(),
        org_name: "Example".into(),
        groups: vec![
            pb::Group {
                id: "g-eng".into(),
                name: "eng".into(),
                allowed_models: vec!["claude-sonnet-5".into()],
            },
            pb::Group {
                id: "g-admin".into(),
                name: "admins".into(),
                allowed_models: vec!["*".into()],
            },
        ],
        api_keys: vec![
            key("k1", "tg_one", &["g-eng"], 0),
            key("k2", "tg_two", &["g-admin"], 0),
            key("k3", "tg_old", &["g-eng"], 100),
            key("k4", "tg_nogroup", &[], 0),
        ],
        providers: vec![
            pb::Provider {
                id: "p-demo".into(),
                name: "demo".into(),
                kind: pb::ProviderKind::Demo as i32,
                ..Default::default()
            },
            pb::Provider {
                id: "p-anth".into(),
                name: "anthropic".into(),
                kind: pb::ProviderKind::Anthropic as i32,
                config: Some(pb::ProviderConfig {
                    base_url: "https://api.anthropic.com/".into(),
                    api_key: Some(pb::SecretRef {
                        source: Some(pb::secret_ref::Source::Value("sk-secret".into())),
                    }),
                    ..Default::default()
                }),
            },
        ],
        models: vec![
            pb::Model {
                id: "claude-sonnet-5".into(),
                display_name: "Claude Sonnet 5".into(),
                ..Default::default()
            },
            pb::Model {
                id: "claude-opus-4-8".into(),
                ..Default::default()
            },
        ],
        routes: vec![
            pb::Route {
                model: "claude-sonnet-5".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-demo".into(),
                    upstream_model: String::new(),
                    weight: 0,
                    ..Default::default()
                }],
            },
            pb::Route {
                model: "claude-opus-4-8".into(),
                targets: vec![pb::RouteTarget {
                    provider_id: "p-anth".into(),
                    upstream_model: "claude-opus-4-8-20260101".into(),
                    weight: 1,
                    ..Default::default()
                }],
            },
        ],
        ..Default::default()
    }
}

#[test]
fn accepts_a_valid_snapshot() {
    let snap = Snapshot::try_from(sample()).unwrap();
    assert_eq!(snap.version, 7);
    assert_eq!(snap.key_count(), 4);
}

#[test]
fn content_capture_follows_the_snapshot_and_is_off_by_default() {
    let off = Snapshot::try_from(sample()).unwrap();
    assert!(!off.content_capture);
    let on = Snapshot::try_from(pb::Snapshot {
        content_capture: true,
        ..sample()
    })
    .unwrap();
    assert!(on.content_capture);
}

#[test]
fn authenticates_known_key_and_rejects_unknown() {
    let snap = Snapshot::try_from(sample()).unwrap();
    assert_eq!(snap.authenticate("tg_one", 50).unwrap().id, "k1");
    assert_eq!(
        snap.authenticate("tg_nope", 50).unwrap_err(),
        AuthError::Unknown
    );
    assert_eq!(snap.authenticate("", 50).unwrap_err(), AuthError::Missing);
}

#[test]
fn rejects_expired_key_at_its_expiry() {
    let snap = Snapshot::try_from(sample()).unwrap();
    assert!(snap.authenticate("tg_old", 99).is_ok());
    assert_eq!(
        snap.authenticate("tg_old", 100).unwrap_err(),
        AuthError::Expired
    );
}

#[test]
fn authorizes_by_group_and_names_the_denied_model() {
    let snap = Snapshot::try_from(sample()).unwrap();
    let eng = snap.authenticate("tg_one", 0).unwrap().clone();
    let route = snap.authorize(&eng, "claude-sonnet-5").unwrap();
    assert_eq!(route.primary().unwrap().upstream_model, "claude-sonnet-5");
    let err = snap.authorize(&eng, "claude-opus-4-8").unwrap_err();
    assert_eq!(err, AccessError::Denied("claude-opus-4-8".into()));
    assert!(err.to_string().contains("claude-opus-4-8"));
    let admin = snap.authenticate("tg_two", 0).unwrap().clone();
    let route = snap.authorize(&admin, "claude-opus-4-8").unwrap();
    assert_eq!(
        route.primary().unwrap().upstream_model,
        "claude-opus-4-8-20260101"
    );
    assert_eq!(
        snap.authorize(&admin, "gpt-4").unwrap_err(),
        AccessError::UnknownModel("gpt-4".into())
    );
}

#[test]
fn key_without_groups_may_use_nothing() {
    let snap = Snapshot::try_from(sample()).unwrap();
    let k = snap.authenticate("tg_nogroup", 0).unwrap().clone();
    assert!(snap.visible_models(&k).next().is_none());
}

#[test]
fn visible_models_are_filtered_and_sorted() {
    let snap = Snapshot::try_from(sample()).unwrap();
    let admin = snap.authenticate("tg_two", 0).unwrap().clone();
    let ids: Vec<_> = snap.visible_models(&admin).map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["claude-opus-4-8", "claude-sonnet-5"]);
    let eng = snap.authenticate("tg_one", 0).unwrap().clone();
    let ids: Vec<_> = snap.visible_models(&eng).map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["claude-sonnet-5"]);
}

#[test]
fn strips_trailing_slash_from_base_url() {
    let snap = Snapshot::try_from(sample()).unwrap();
    match &snap.provider("p-anth").unwrap().kind {
        crate::ProviderKind::Anthropic(a) => {
            assert_eq!(a.base_url, "https://api.anthropic.com")
        }
        _ => unreachable!(),
    }
}

#[test]
fn provider_secret_is_not_in_debug_output() {
    let snap = Snapshot::try_from(sample()).unwrap();
    assert!(!format!("{snap:?}").contains("sk-secret"));
}

#[test]
fn rejects_route_to_unknown_provider() {
    let mut s = sample();
    s.routes[0].targets[0].provider_id = "ghost".into();
    assert!(matches!(
        Snapshot::try_from(s).unwrap_err(),
        InvalidSnapshot::UnknownProvider { .. }
    ));
}

#[test]
fn rejects_key_in_unknown_group() {
    let mut s = sample();
    s.api_keys[0].group_ids.push("ghost".into());
    assert!(matches!(
        Snapshot::try_from(s).unwrap_err(),
        InvalidSnapshot::UnknownGroup { .. }
    ));
}

#[test]
fn rejects_bad_hash_length_zero_version_and_bad_url() {
    let mut s = sample();
    s.api_keys[0].secret_sha256.pop();
    assert!(matches!(
        Snapshot::try_from(s).unwrap_err(),
        InvalidSnapshot::BadKeyHash { .. }
    ));
    let mut s = sample();
    s.version = 0;
    assert_eq!(
        Snapshot::try_from(s).unwrap_err(),
        InvalidSnapshot::ZeroVersion
    );
    let mut s = sample();
    if let Some(c) = s.providers[1].config.as_mut() {
        c.base_url = "ftp://x".into();
    }
    assert!(matches!(
        Snapshot::try_from(s).unwrap_err(),
        InvalidSnapshot::Provider(_)
    ));
}

#[test]
fn rejects_empty_route_and_route_for_unknown_model() {
    let mut s = sample();
    s.routes[0].targets.clear();
    assert!(matches!(
        Snapshot::try_from(s).unwrap_err(),
        InvalidSnapshot::EmptyRoute(_)
    ));
    let mut s = sample();
    s.routes[0].model = "nope".into();
    assert!(matches!(
        Snapshot::try_from(s).unwrap_err(),
        InvalidSnapshot::RouteForUnknownModel(_)
    ));
}

proptest! {
    /// Whatever bytes arrive, conversion returns a value or an error, never panics.
    #[test]
    fn conversion_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        use prost::Message;
        if let Ok(pb) = pb::Snapshot::decode(bytes.as_slice()) {
            let _ = Snapshot::try_from(pb);
        }
    }

    #[test]
    fn mutated_snapshots_never_panic(version in 0u64..3, drop_group in any::<bool>(), url in ".{0,20}") {
        let mut s = sample();
        s.version = version;
        if drop_group { s.groups.pop(); }
        if let Some(c) = s.providers[1].config.as_mut() { c.base_url = url; }
        let _ = Snapshot::try_from(s);
    }
}

mod bearer {
    use serde_json::json;

    use super::*;
    use crate::token::tests::{NOW, claims, public_key, sign};

    fn signed_in_snapshot() -> Snapshot {
        let mut pb = sample();
        pb.token_issuer = "https://gw.example.com".into();
        pb.token_audience = "tollgate".into();
        pb.token_keys = vec![pb::TokenKey {
            kid: "k1".into(),
            alg: "EdDSA".into(),
            public_key: public_key(1),
        }];
        pb.revoked_session_ids = vec!["sid-revoked".into()];
        pb.default_group_ids = vec!["g-eng".into()];
        pb.settings_documents = vec![pb::SettingsDocument {
            id: "s1".into(),
            name: "eng".into(),
            priority: 0,
            group_ids: vec!["g-eng".into()],
            settings_json: r#"{"availableModels":["claude-sonnet-5"]}"#.into(),
        }];
        Snapshot::try_from(pb).unwrap()
    }

    fn token(groups: serde_json::Value) -> String {
        let mut c = claims();
        c["groups"] = groups;
        sign(&c, "k1", 1)
    }

    #[test]
    fn a_gateway_token_gets_the_union_of_its_named_groups() {
        let snap = signed_in_snapshot();
        let caller = snap
            .authenticate_bearer(&token(json!(["eng", "admins", "nope"])), NOW)
            .unwrap();
        assert_eq!(caller.principal().id, "user-1");
        assert_eq!(caller.session_id(), Some("sid-1"));
        assert_eq!(caller.key_id(), None);
        assert_eq!(
            caller.group_ids(),
            ["g-eng".to_owned(), "g-admin".to_owned()]
        );
        assert_eq!(caller.access(), &ModelAccess::All);
    }

    #[test]
    fn a_token_whose_groups_map_to_nothing_gets_the_org_defaults() {
        let snap = signed_in_snapshot();
        let caller = snap
            .authenticate_bearer(&token(json!(["unknown"])), NOW)
            .unwrap();
        assert_eq!(caller.group_ids(), ["g-eng".to_owned()]);
        assert!(caller.access().allows("claude-sonnet-5"));
        assert!(!caller.access().allows("claude-opus-4-8"));
    }

    #[test]
    fn api_keys_still_authenticate_through_the_bearer_path() {
        let snap = signed_in_snapshot();
        let caller = snap.authenticate_bearer("tg_one", NOW).unwrap();
        assert_eq!(caller.key_id(), Some("k1"));
        assert_eq!(
            snap.authenticate_bearer("tg_nope", NOW).unwrap_err(),
            AuthError::Unknown
        );
    }

    #[test]
    fn a_revoked_session_is_refused_for_good() {
        let snap = signed_in_snapshot();
        let mut c = claims();
        c["sid"] = json!("sid-revoked");
        let err = snap
            .authenticate_bearer(&sign(&c, "k1", 1), NOW)
            .unwrap_err();
        assert_eq!(err, AuthError::Revoked);
        assert!(err.is_final());
    }

    #[test]
    fn tokens_are_refused_when_no_keys_are_published() {
        let snap = Snapshot::try_from(sample()).unwrap();
        assert_eq!(
            snap.authenticate_bearer(&token(json!(["eng"])), NOW)
                .unwrap_err(),
            AuthError::InvalidToken
        );
    }

    #[test]
    fn available_models_narrow_authorization_and_listing() {
        let snap = signed_in_snapshot();
        let caller = snap
            .authenticate_bearer(&token(json!(["admins", "eng"])), NOW)
            .unwrap();
        assert!(snap.authorize_caller(&caller, "claude-sonnet-5").is_ok());
        assert_eq!(
            snap.authorize_caller(&caller, "claude-opus-4-8")
                .unwrap_err(),
            AccessError::NotInAvailableModels("claude-opus-4-8".into())
        );
        let ids: Vec<&str> = snap
            .visible_models_for(&caller)
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(ids, ["claude-sonnet-5"]);
        let settings = snap.managed_settings(caller.group_ids()).unwrap();
        assert_eq!(settings.settings["enforceAvailableModels"], json!(true));
        assert!(snap.managed_settings(&["g-admin".to_owned()]).is_none());
    }

    #[test]
    fn rejects_bad_identity_sections() {
        let mut pb = sample();
        pb.token_keys = vec![pb::TokenKey {
            kid: "k".into(),
            alg: "EdDSA".into(),
            public_key: vec![0; 32],
        }];
        assert_eq!(
            Snapshot::try_from(pb.clone()).unwrap_err(),
            InvalidSnapshot::MissingTokenIssuer
        );
        pb.token_issuer = "i".into();
        pb.token_audience = "a".into();
        pb.token_keys[0].alg = "RS256".into();
        assert!(matches!(
            Snapshot::try_from(pb).unwrap_err(),
            InvalidSnapshot::BadTokenKey { .. }
        ));
        let mut pb = sample();
        pb.settings_documents = vec![pb::SettingsDocument {
            id: "s".into(),
            name: "bad".into(),
            settings_json: "[1]".into(),
            ..Default::default()
        }];
        assert!(matches!(
            Snapshot::try_from(pb).unwrap_err(),
            InvalidSnapshot::BadSettingsDocument { .. }
        ));
        let mut pb = sample();
        pb.default_group_ids = vec!["g-nope".into()];
        assert_eq!(
            Snapshot::try_from(pb).unwrap_err(),
            InvalidSnapshot::UnknownDefaultGroup("g-nope".into())
        );
        let mut pb = sample();
        pb.telemetry_collector_url = "ftp://x".into();
        assert!(matches!(
            Snapshot::try_from(pb).unwrap_err(),
            InvalidSnapshot::BadTelemetryUrl(_)
        ));
    }
}

#[test]
fn aliases_resolve_to_the_catalogue_model_and_may_not_shadow_one() {
    let mut s = sample();
    s.aliases.push(pb::ModelAlias {
        alias: "sonnet".into(),
        model: "claude-sonnet-5".into(),
    });
    let snap = Snapshot::try_from(s.clone()).unwrap();
    assert_eq!(snap.canonical_model("sonnet"), "claude-sonnet-5");
    assert_eq!(snap.canonical_model("claude-opus-4-8"), "claude-opus-4-8");
    let eng = snap.authenticate("tg_one", 0).unwrap().clone();
    assert_eq!(
        snap.authorize(&eng, "sonnet").unwrap().model,
        "claude-sonnet-5"
    );
    s.aliases.push(pb::ModelAlias {
        alias: "claude-opus-4-8".into(),
        model: "claude-sonnet-5".into(),
    });
    assert!(matches!(
        Snapshot::try_from(s).unwrap_err(),
        InvalidSnapshot::DuplicateAlias(_)
    ));
}

#[test]
fn route_targets_are_ordered_by_priority() {
    let mut s = sample();
    s.routes[1].targets = vec![
        pb::RouteTarget {
            provider_id: "p-anth".into(),
            upstream_model: "second".into(),
            priority: 2,
            ..Default::default()
        },
        pb::RouteTarget {
            provider_id: "p-demo".into(),
            upstream_model: "first".into(),
            priority: 1,
            ..Default::default()
        },
    ];
    let snap = Snapshot::try_from(s).unwrap();
    let route = snap.route("claude-opus-4-8").unwrap();
    let order: Vec<_> = route
        .targets
        .iter()
        .map(|t| t.upstream_model.as_str())
        .collect();
    assert_eq!(order, ["first", "second"]);
}
