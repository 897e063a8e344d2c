//! The audit chain as written by the control plane: admin changes attributed to the admin
//! key's name with before/after, start-up and sign-in actors, plain SQL attributed to the
//! database user, provider credentials never in a payload, an admin change rolled back when
//! its audit entry cannot be written, and audit records that cannot be edited.

use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sqlx::PgPool;
use tollgate_control_plane::identity::{
    Identity, IdentitySettings, SecretsKey, SignedInUser, TOKEN_AUDIENCE,
};
use tollgate_proto::v1 as pb;
use tonic::Code;

use crate::spend::{org_daily_cap, spend_admin};
use crate::support::{TestControlPlane, TestDb};

/// An admin key of our own, so the actor shows a name the test chose.
const ALICE_KEY: &str = "tga_audit-test-alice-0123456789";
const CANARY: &str = "canary-secret-5f1d2a7c";

/// One audit entry: actor, target and the parsed payload.
#[derive(Debug)]
struct Entry {
    actor: String,
    target: String,
    payload: Value,
}

/// The entries with `action`, oldest first.
async fn entries(pool: &PgPool, action: &str) -> Vec<Entry> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT actor, target, payload FROM audit_entries WHERE action = $1 ORDER BY seq",
    )
    .bind(action)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(actor, target, payload)| Entry {
            actor,
            target,
            payload: serde_json::from_str(&payload).unwrap(),
        })
        .collect()
}

/// The only entry with `action`.
async fn only(pool: &PgPool, action: &str) -> Entry {
    let mut all = entries(pool, action).await;
    assert_eq!(all.len(), 1, "one `{action}` entry: {all:?}");
    all.remove(0)
}

/// Adds the admin key `name` (plain SQL, as an operator would).
async fn add_admin_key(pool: &PgPool, name: &str, secret: &str) {
    sqlx::query(
        "INSERT INTO admin_keys (id, name, secret_sha256) \
         VALUES (gen_random_uuid(), $1, sha256(convert_to($2, 'UTF8')))",
    )
    .bind(name)
    .bind(secret)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn start_up_is_attributed_to_bootstrap_and_startup() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    assert_eq!(only(&pool, "org.create").await.actor, "system:bootstrap");
    let key = only(&pool, "admin_key.create").await;
    assert_eq!(key.actor, "system:bootstrap");
    assert_eq!(key.payload["after"]["name"], "bootstrap");
    let secret = key.payload["after"]["secret_sha256"].as_str().unwrap();
    assert!(secret.starts_with("redacted:sha256:"), "{secret}");
    assert_eq!(
        only(&pool, "signing_key.create").await.actor,
        "system:startup"
    );
    assert_eq!(
        only(&pool, "token_settings.create").await.actor,
        "system:startup"
    );
    cp.stop().await;
}

#[tokio::test]
async fn admin_changes_are_attributed_to_the_admin_key_with_before_and_after() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    add_admin_key(&pool, "alice", ALICE_KEY).await;
    // The key itself was added with plain SQL: attributed to the database user.
    let added = entries(&pool, "admin_key.create").await;
    assert_eq!(added.len(), 2);
    assert_eq!(added[1].actor, "db:postgres");

    let mut admin = cp.admin_with(Some(ALICE_KEY)).await;
    let group = admin
        .create_group(pb::CreateGroupRequest {
            name: "eng".to_owned(),
            allowed_models: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let created = only(&pool, "group.create").await;
    assert_eq!(created.actor, "admin:alice");
    assert_eq!(created.target, format!("group/{}", group.id));
    assert_eq!(created.payload["before"], Value::Null);
    assert_eq!(created.payload["after"]["name"], "eng");
    assert_eq!(created.payload["actor"], "admin:alice");

    // An API key issued and revoked by the admin.
    let principal = crate::support::create_principal(
        &mut admin,
        pb::PrincipalKind::ServiceAccount,
        "ci-bot",
        "",
        &["eng"],
    )
    .await;
    let key = crate::support::create_key(&mut admin, &principal.id, "ci").await;
    let key_id = key.key.unwrap().id;
    assert_eq!(only(&pool, "principal.create").await.actor, "admin:alice");
    assert_eq!(
        only(&pool, "group_member.create").await.actor,
        "admin:alice"
    );
    let issued = only(&pool, "api_key.create").await;
    assert_eq!(issued.actor, "admin:alice");
    assert_eq!(issued.target, format!("api_key/{key_id}"));
    admin
        .revoke_api_key(pb::RevokeApiKeyRequest { id: key_id.clone() })
        .await
        .unwrap();
    let revoked = only(&pool, "api_key.update").await;
    assert_eq!(revoked.actor, "admin:alice");
    assert_eq!(revoked.target, format!("api_key/{key_id}"));
    assert_eq!(revoked.payload["before"]["revoked_at"], Value::Null);
    assert_ne!(revoked.payload["after"]["revoked_at"], Value::Null);

    // A cap change through SpendAdmin (the bootstrap key this time).
    let mut spend = spend_admin(&cp).await;
    let budget = org_daily_cap(&mut spend, 5_000_000).await;
    org_daily_cap(&mut spend, 7_000_000).await;
    let cap = only(&pool, "budget.update").await;
    assert_eq!(cap.actor, "admin:bootstrap");
    assert_eq!(cap.target, format!("budget/{}", budget.id));
    assert_eq!(cap.payload["before"]["limit_micro_usd"], 5_000_000);
    assert_eq!(cap.payload["after"]["limit_micro_usd"], 7_000_000);
    assert_eq!(only(&pool, "budget.create").await.actor, "admin:bootstrap");
    cp.stop().await;
}

#[tokio::test]
async fn provider_credentials_never_reach_the_audit_payload() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let mut admin = cp.admin().await;
    let config = |secret: &str| pb::ProviderConfig {
        resource: "acme".to_owned(),
        api_key: Some(pb::SecretRef {
            source: Some(pb::secret_ref::Source::Value(secret.to_owned())),
        }),
        ..Default::default()
    };
    admin
        .create_provider(pb::CreateProviderRequest {
            name: "foundry".to_owned(),
            kind: pb::ProviderKind::Foundry as i32,
            config: Some(config(&format!("{CANARY}-1"))),
        })
        .await
        .unwrap();
    admin
        .update_provider(pb::UpdateProviderRequest {
            provider: "foundry".to_owned(),
            config: Some(config(&format!("{CANARY}-2"))),
        })
        .await
        .unwrap();

    let created = only(&pool, "provider.create").await;
    assert_eq!(created.actor, "admin:bootstrap");
    let changed = only(&pool, "provider.update").await;
    assert_eq!(changed.actor, "admin:bootstrap");
    let before = changed.payload["before"]["credentials"].as_str().unwrap();
    let after = changed.payload["after"]["credentials"].as_str().unwrap();
    assert!(before.starts_with("redacted:sha256:"), "{before}");
    assert!(after.starts_with("redacted:sha256:"), "{after}");
    assert_ne!(
        before, after,
        "a credential change shows as a new fingerprint"
    );

    let leaks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_entries WHERE payload LIKE '%' || $1 || '%' \
         OR actor LIKE '%' || $1 || '%' OR target LIKE '%' || $1 || '%'",
    )
    .bind(CANARY)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaks, 0);
    cp.stop().await;
}

#[tokio::test]
async fn a_plain_sql_change_is_attributed_to_the_database_user() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    sqlx::query(
        "INSERT INTO groups (id, org_id, name) SELECT gen_random_uuid(), id, 'ops' FROM orgs",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE groups SET name = 'ops-2' WHERE name = 'ops'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(only(&pool, "group.create").await.actor, "db:postgres");
    let renamed = only(&pool, "group.update").await;
    assert_eq!(renamed.actor, "db:postgres");
    assert_eq!(renamed.payload["before"]["name"], "ops");
    assert_eq!(renamed.payload["after"]["name"], "ops-2");
    cp.stop().await;
}

#[tokio::test]
async fn an_admin_change_whose_audit_insert_fails_is_rolled_back() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let head_before: i64 = sqlx::query_scalar("SELECT seq FROM audit_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'audit store unavailable'; END; $$; \
         CREATE TRIGGER test_refuse_group_create BEFORE INSERT ON audit_entries \
         FOR EACH ROW WHEN (NEW.action = 'group.create') EXECUTE FUNCTION test_refuse_audit();",
    )
    .execute(&pool)
    .await
    .unwrap();

    let mut admin = cp.admin().await;
    let err = admin
        .create_group(pb::CreateGroupRequest {
            name: "eng".to_owned(),
            allowed_models: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert_eq!(err.message(), "internal error");
    let groups = admin
        .list_groups(pb::ListGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert!(groups.is_empty(), "{groups:?}");
    let groups_in_db: i64 = sqlx::query_scalar("SELECT count(*) FROM groups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(groups_in_db, 0);
    let head_after: i64 = sqlx::query_scalar("SELECT seq FROM audit_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        entries(&pool, "group.create").await.is_empty(),
        "nothing of the failed change was chained"
    );

    sqlx::raw_sql(
        "DROP TRIGGER test_refuse_group_create ON audit_entries; \
         DROP FUNCTION test_refuse_audit();",
    )
    .execute(&pool)
    .await
    .unwrap();
    admin
        .create_group(pb::CreateGroupRequest {
            name: "eng".to_owned(),
            allowed_models: vec![],
        })
        .await
        .unwrap();
    assert_eq!(only(&pool, "group.create").await.actor, "admin:bootstrap");
    // Other writers (e.g. checkpoints) may append meanwhile; the head never went back.
    assert!(head_after >= head_before);
    cp.stop().await;
}

#[tokio::test]
async fn audit_records_cannot_be_updated_deleted_or_truncated() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    sqlx::query(
        "INSERT INTO audit_checkpoints (tree_size, head_hash, signed_at, key_id, signature) \
         VALUES (0, decode(repeat('00', 32), 'hex'), now(), 'test', decode(repeat('00', 64), 'hex'))",
    )
    .execute(&pool)
    .await
    .unwrap();
    let entries_before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_entries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(entries_before > 0);
    for sql in [
        "UPDATE audit_entries SET actor = 'someone-else'",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        let db_err = err.as_database_error().unwrap();
        assert_eq!(db_err.code().as_deref(), Some("42501"), "{sql}: {db_err}");
        assert!(db_err.message().contains("append-only"), "{sql}: {db_err}");
    }
    for sql in [
        "UPDATE audit_checkpoints SET key_id = 'forged'",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        let db_err = err.as_database_error().unwrap();
        assert_eq!(db_err.code().as_deref(), Some("42501"), "{sql}: {db_err}");
        assert!(db_err.message().contains("append-only"), "{sql}: {db_err}");
    }
    // TRUNCATE stops at the guard or first at the prune records' foreign key; refused either way.
    for sql in [
        "TRUNCATE audit_checkpoints",
        "TRUNCATE audit_checkpoints CASCADE",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(err.as_database_error().is_some(), "{sql}: {err}");
    }
    let checkpoint: String =
        sqlx::query_scalar("SELECT key_id FROM audit_checkpoints WHERE key_id = 'test'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(checkpoint, "test");
    let entries_after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_entries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(entries_after >= entries_before);
    let edited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_entries WHERE actor = 'someone-else'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(edited, 0);
    cp.stop().await;
}

#[tokio::test]
async fn sign_in_revocation_and_refresh_reuse_name_their_actors() {
    let db = TestDb::create().await;
    let secrets = SecretString::from(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let mut config = db.config();
    config.secrets_key = Some(secrets.clone());
    let cp = TestControlPlane::start_with(config).await;
    let pool = db.pool().await;
    let org_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM orgs")
        .fetch_one(&pool)
        .await
        .unwrap();
    // A second replica on the same database stands in for the HTTP endpoints and the IdP.
    let identity = Identity::start(
        pool.clone(),
        org_id,
        SecretsKey::from_base64(&secrets).unwrap(),
        false,
        IdentitySettings {
            issuer: "tollgate".to_owned(),
            audience: TOKEN_AUDIENCE.to_owned(),
            token_ttl: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    let sign_in = async |email: &str| {
        let device = identity.authorize_device().await.unwrap();
        let pending = identity
            .pending_device(&device.user_code)
            .await
            .unwrap()
            .unwrap();
        let user = SignedInUser {
            subject: format!("sub-{email}"),
            email: email.to_owned(),
            name: "Ada Lovelace".to_owned(),
            idp_groups: vec![],
            idp_tokens: None,
        };
        assert!(identity.approve_device(pending.id, &user).await.unwrap());
        identity
            .poll_device(device.device_code.expose_secret())
            .await
            .unwrap()
    };

    // Sign-in: the user principal and the session, as the user.
    let first = sign_in("ada@example.com").await;
    assert_eq!(
        only(&pool, "principal.create").await.actor,
        "user:ada@example.com"
    );
    let session = only(&pool, "session.create").await;
    assert_eq!(session.actor, "user:ada@example.com");
    assert!(
        !session
            .payload
            .to_string()
            .contains(first.refresh_token.expose_secret()),
        "no token in the entry"
    );

    // RFC 7009 revocation by the user.
    identity
        .revoke_token(first.refresh_token.expose_secret())
        .await
        .unwrap();
    let revoked = only(&pool, "session.update").await;
    assert_eq!(revoked.actor, "user:ada@example.com");
    assert_eq!(revoked.payload["after"]["revoked_reason"], "client_revoked");

    // A reused refresh token revokes the session, as the system.
    let second = sign_in("ada@example.com").await;
    let rotated = identity
        .refresh(second.refresh_token.expose_secret())
        .await
        .unwrap();
    assert!(
        identity
            .refresh(second.refresh_token.expose_secret())
            .await
            .is_err()
    );
    drop(rotated);
    let updates = entries(&pool, "session.update").await;
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[1].actor, "system:refresh-reuse");
    assert_eq!(
        updates[1].payload["after"]["revoked_reason"],
        "refresh_token_reuse"
    );
    // Refreshing is not audited.
    assert_eq!(entries(&pool, "session.create").await.len(), 2);
    cp.stop().await;
}

/// Adds the admin key to every call of the other admin services.
fn with_key(
    key: &str,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone + use<> {
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", value.clone());
        Ok(req)
    }
}

#[tokio::test]
async fn settings_and_identity_admin_changes_are_attributed_to_the_admin_key() {
    use tollgate_proto::v1::identity_admin_client::IdentityAdminClient;
    use tollgate_proto::v1::settings_admin_client::SettingsAdminClient;

    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let mut settings =
        SettingsAdminClient::with_interceptor(cp.channel().await, with_key(&cp.admin_key));
    settings
        .set_telemetry_collector(pb::SetTelemetryCollectorRequest {
            url: "http://127.0.0.1:4318".to_owned(),
        })
        .await
        .unwrap();
    let collector = only(&pool, "telemetry_settings.create").await;
    assert_eq!(collector.actor, "admin:bootstrap");
    assert_eq!(
        collector.payload["after"]["collector_url"],
        "http://127.0.0.1:4318"
    );

    let mut identity =
        IdentityAdminClient::with_interceptor(cp.channel().await, with_key(&cp.admin_key));
    let kid = identity
        .rotate_signing_key(pb::RotateSigningKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .kid;
    let created = entries(&pool, "signing_key.create").await;
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].actor, "system:startup");
    assert_eq!(created[1].actor, "admin:bootstrap");
    assert_eq!(created[1].target, format!("signing_key/{kid}"));
    let private = created[1].payload["after"]["private_key_enc"]
        .as_str()
        .unwrap();
    assert!(private.starts_with("redacted:sha256:"), "{private}");
    assert_eq!(
        only(&pool, "signing_key.update").await.actor,
        "admin:bootstrap"
    );
    cp.stop().await;
}
