use std::os::unix::fs::PermissionsExt;

use secrecy::ExposeSecret;
use tollgate_proto::v1 as pb;

use crate::support::{TestControlPlane, TestDb, temp_path};

#[tokio::test]
async fn first_start_writes_an_owner_only_admin_key_file_and_restarts_reuse_it() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir, "keys/admin.key");
    let mut config = db.config();
    config.admin_key_file = Some(path.clone());

    let cp = TestControlPlane::start_with(config.clone()).await;
    let key = cp.admin_key.clone();
    assert!(key.starts_with("tga_") && key.len() == 4 + 43, "{key}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    cp.stop().await;

    // A restart finds a usable key: nothing new is generated, the old key still works.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tollgate_control_plane::spawn(config, shutdown.clone())
        .await
        .unwrap();
    assert!(handle.bootstrap_admin_key.is_none());
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", handle.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::ListProvidersRequest {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    pb::admin_client::AdminClient::new(channel)
        .list_providers(request)
        .await
        .unwrap();
    shutdown.cancel();
    handle.wait().await.unwrap();

    let pool = db.pool().await;
    let (orgs, admin_keys): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orgs WHERE name = 'default'), (SELECT count(*) FROM admin_keys)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((orgs, admin_keys), (1, 1));
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_sha256 FROM admin_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, tollgate_policy::secret_sha256(&key).to_vec());
    pool.close().await;
}

#[tokio::test]
async fn replicas_starting_together_create_one_org_and_one_admin_key() {
    let db = TestDb::create().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (a, b) = tokio::join!(
        tollgate_control_plane::spawn(db.config(), shutdown.clone()),
        tollgate_control_plane::spawn(db.config(), shutdown.clone()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let generated = [&a, &b]
        .iter()
        .filter(|h| {
            h.bootstrap_admin_key
                .as_ref()
                .is_some_and(|k| !k.expose_secret().is_empty())
        })
        .count();
    assert_eq!(generated, 1);
    let pool = db.pool().await;
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM orgs), (SELECT count(*) FROM admin_keys)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(counts, (1, 1));
    pool.close().await;
    shutdown.cancel();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
}
