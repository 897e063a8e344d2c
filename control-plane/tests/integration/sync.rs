use std::time::{Duration, Instant};

use tollgate_proto::v1 as pb;
use tonic::{Code, Streaming};

use crate::support::{SYNC_TOKEN, TestControlPlane, TestDb};

async fn watch(cp: &TestControlPlane) -> Streaming<pb::Snapshot> {
    cp.sync()
        .await
        .watch_snapshots(pb::WatchSnapshotsRequest {
            data_plane_id: "dp-test".to_owned(),
            known_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn next(stream: &mut Streaming<pb::Snapshot>, within: Duration) -> pb::Snapshot {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("a snapshot in time")
        .unwrap()
        .expect("stream still open")
}

async fn create_group(cp: &TestControlPlane, name: &str) {
    cp.admin()
        .await
        .create_group(pb::CreateGroupRequest {
            name: name.to_owned(),
            allowed_models: vec!["*".to_owned()],
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn watch_snapshots_delivers_the_current_snapshot_then_a_change_within_one_second() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut stream = watch(&cp).await;
    let first = next(&mut stream, Duration::from_secs(5)).await;
    assert!(first.version > 0);
    assert!(first.groups.is_empty());

    create_group(&cp, "eng").await;
    let changed_at = Instant::now();
    let second = next(&mut stream, Duration::from_secs(1)).await;
    assert!(changed_at.elapsed() < Duration::from_secs(1));
    assert!(second.version > first.version);
    assert_eq!(second.groups.len(), 1);

    create_group(&cp, "ops").await;
    let third = next(&mut stream, Duration::from_secs(1)).await;
    assert!(third.version > second.version);
    assert_eq!(third.groups.len(), 2);
    cp.stop().await;
}

#[tokio::test]
async fn a_change_made_through_one_replica_reaches_watchers_of_another() {
    let db = TestDb::create().await;
    let a = TestControlPlane::start(&db).await;
    let b = TestControlPlane::start_with(db.config()).await;
    let mut stream = watch(&b).await;
    let first = next(&mut stream, Duration::from_secs(5)).await;
    create_group(&a, "eng").await;
    let second = next(&mut stream, Duration::from_secs(1)).await;
    assert!(second.version > first.version);
    assert_eq!(second.groups[0].name, "eng");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn invalid_policy_keeps_the_previous_snapshot_published() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut stream = watch(&cp).await;
    let first = next(&mut stream, Duration::from_secs(5)).await;

    let pool = db.pool().await;
    sqlx::query(
        "INSERT INTO providers (id, name, kind, base_url) VALUES (gen_random_uuid(), 'bad', 'anthropic', 'not a url')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stream.message())
            .await
            .is_err(),
        "an invalid snapshot must not be streamed"
    );

    sqlx::query("DELETE FROM providers WHERE name = 'bad'")
        .execute(&pool)
        .await
        .unwrap();
    let fixed = next(&mut stream, Duration::from_secs(1)).await;
    assert!(fixed.version > first.version);
    pool.close().await;
    cp.stop().await;
}

#[tokio::test]
async fn policy_changes_still_arrive_after_the_listen_connection_is_killed() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut stream = watch(&cp).await;
    let first = next(&mut stream, Duration::from_secs(5)).await;

    let pool = db.pool().await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 1);

    create_group(&cp, "eng").await;
    let second = next(&mut stream, Duration::from_secs(3)).await;
    assert!(second.version > first.version);
    assert_eq!(second.groups.len(), 1);

    // And the fast path works again once re-listening.
    tokio::time::sleep(Duration::from_millis(300)).await;
    create_group(&cp, "ops").await;
    let third = next(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(third.groups.len(), 2);
    pool.close().await;
    cp.stop().await;
}

#[tokio::test]
async fn sync_calls_without_the_sync_token_are_unauthenticated() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    for token in [None, Some("wrong"), Some(&cp.admin_key[..])] {
        let mut sync = cp.sync_with(token).await;
        let err = sync
            .watch_snapshots(pb::WatchSnapshotsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}");
        let err = sync
            .report_usage(pb::UsageBatch::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let ack = cp
        .sync_with(Some(SYNC_TOKEN))
        .await
        .report_usage(pb::UsageBatch::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ack.inserted, ack.duplicates), (0, 0));
    cp.stop().await;
}

#[tokio::test]
async fn snapshot_streams_end_when_the_control_plane_shuts_down() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut stream = watch(&cp).await;
    next(&mut stream, Duration::from_secs(5)).await;
    cp.shutdown_token().cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends promptly");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    cp.stop().await;
}
