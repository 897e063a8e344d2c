use tollgate_control_plane::compiler;
use tollgate_proto::v1 as pb;

use crate::support::{TestControlPlane, TestDb, create_key, create_principal, seed_catalogue};

#[tokio::test]
async fn compiled_snapshot_validates_and_excludes_revoked_expired_and_disabled_keys() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let eng = seed_catalogue(&mut admin).await;
    create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Ada",
        "ada@example.com",
        &["eng"],
    )
    .await;
    create_principal(
        &mut admin,
        pb::PrincipalKind::User,
        "Bob",
        "bob@example.com",
        &["eng"],
    )
    .await;
    create_principal(&mut admin, pb::PrincipalKind::ServiceAccount, "ci", "", &[]).await;
    let ada = create_key(&mut admin, "ada@example.com", "laptop").await;
    let ci = create_key(&mut admin, "ci", "deploy").await;
    let bob = create_key(&mut admin, "Bob", "laptop").await;
    let revoked = create_key(&mut admin, "Ada", "old").await;
    let expired = create_key(&mut admin, "Ada", "expired").await;
    admin
        .revoke_api_key(pb::RevokeApiKeyRequest {
            id: revoked.key.as_ref().unwrap().id.clone(),
        })
        .await
        .unwrap();

    let pool = db.pool().await;
    sqlx::query("UPDATE principals SET disabled = true WHERE name = 'Bob'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE api_keys SET expires_at = now() - interval '8 days' WHERE name = 'expired'",
    )
    .execute(&pool)
    .await
    .unwrap();

    let snapshot = crate::support::compile(&pool).await.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT version FROM policy_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(snapshot.version, u64::try_from(version).unwrap());
    assert_eq!(snapshot.org_name, "default");
    assert_eq!(snapshot.groups.len(), 1);
    assert_eq!(snapshot.models.len(), 1);
    assert_eq!(snapshot.routes.len(), 1);

    let mut key_ids: Vec<&str> = snapshot.api_keys.iter().map(|k| k.id.as_str()).collect();
    key_ids.sort_unstable();
    let mut expected = vec![
        ada.key.as_ref().unwrap().id.as_str(),
        ci.key.as_ref().unwrap().id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(key_ids, expected);
    let ada_key = snapshot
        .api_keys
        .iter()
        .find(|k| k.name == "laptop")
        .unwrap();
    assert_eq!(ada_key.group_ids, vec![eng.id.clone()]);
    assert_eq!(ada_key.principal_email, "ada@example.com");
    assert_eq!(ada_key.principal_kind, pb::PrincipalKind::User as i32);

    // The data plane's conversion accepts it and enforces exactly these keys.
    let enforced = tollgate_policy::Snapshot::try_from(snapshot).unwrap();
    let now = chrono::Utc::now().timestamp();
    let key = enforced.authenticate(&ada.secret, now).unwrap();
    assert!(enforced.authorize(key, "claude-test").is_ok());
    let ci_key = enforced.authenticate(&ci.secret, now).unwrap();
    assert!(enforced.authorize(ci_key, "claude-test").is_err());
    for secret in [&bob.secret, &revoked.secret, &expired.secret] {
        assert!(enforced.authenticate(secret, now).is_err());
    }
    pool.close().await;
    cp.stop().await;
}

#[tokio::test]
async fn invalid_policy_is_not_compiled_into_a_snapshot() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    // Bypass the admin API's checks: a provider URL no data plane could use.
    sqlx::query(
        "INSERT INTO providers (id, name, kind, base_url) VALUES (gen_random_uuid(), 'bad', 'anthropic', 'not a url')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let err = crate::support::compile(&pool).await.unwrap_err();
    assert!(
        matches!(err, compiler::CompileError::Invalid { .. }),
        "{err:?}"
    );
    pool.close().await;
    cp.stop().await;
}
