use crate::support::TestDb;

#[tokio::test]
async fn migrations_apply_twice_idempotently() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    tollgate_control_plane::migrate(&pool).await.unwrap();
    tollgate_control_plane::migrate(&pool).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();
    assert_eq!(applied, i64::try_from(files).unwrap());
    pool.close().await;
}

#[tokio::test]
async fn concurrent_migrations_from_two_replicas_both_succeed() {
    let db = TestDb::create().await;
    let (a, b) = (db.pool().await, db.pool().await);
    let (ra, rb) = tokio::join!(
        tollgate_control_plane::migrate(&a),
        tollgate_control_plane::migrate(&b)
    );
    ra.unwrap();
    rb.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT version FROM policy_version")
        .fetch_one(&a)
        .await
        .unwrap();
    assert_eq!(version, 1);
    a.close().await;
    b.close().await;
}
