//! `AuditAdmin`: audit entries filtered and paged, checkpoints, the observability settings
//! (audited with the admin actor, content capture in the snapshot), and retention: archive
//! before delete, exactly up to a signed checkpoint.

use chrono::{TimeDelta, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tollgate_control_plane::audit_retention::{self, RetentionOutcome};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::audit_admin_client::AuditAdminClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::support::{TestControlPlane, TestDb, compile};

pub type AuditApi = AuditAdminClient<InterceptedService<Channel, Key>>;

/// Adds `authorization: Bearer <key>` when there is a key.
#[derive(Clone)]
pub struct Key(Option<MetadataValue<Ascii>>);

impl Interceptor for Key {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// An `AuditAdmin` client sending the bootstrap admin key.
pub async fn audit_admin(cp: &TestControlPlane) -> AuditApi {
    let key = Key(Some(format!("Bearer {}", cp.admin_key).parse().unwrap()));
    AuditAdminClient::with_interceptor(cp.channel().await, key)
}

/// Appends an event to the chain with plain SQL; returns its sequence number.
async fn append(pool: &PgPool, actor: &str, action: &str, target: &str) -> u64 {
    let seq: i64 =
        sqlx::query_scalar("SELECT tollgate_audit_append($1, $2, $3, NULL, NULL, '{}'::jsonb)")
            .bind(actor)
            .bind(action)
            .bind(target)
            .fetch_one(pool)
            .await
            .unwrap();
    u64::try_from(seq).unwrap()
}

/// Stores a checkpoint of the chain at `tree_size` (its real head hash, a dummy signature).
async fn checkpoint(pool: &PgPool, tree_size: i64) -> (i64, Vec<u8>) {
    sqlx::query_as(
        "INSERT INTO audit_checkpoints (tree_size, head_hash, signed_at, key_id, signature) \
         SELECT seq, hash, now(), 'test-key', decode(repeat('ab', 64), 'hex') \
         FROM audit_entries WHERE seq = $1 RETURNING id, head_hash",
    )
    .bind(tree_size)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn head(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT seq FROM audit_head")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn list(actor: &str, action: &str, target: &str) -> pb::ListAuditEntriesRequest {
    pb::ListAuditEntriesRequest {
        actor: actor.to_owned(),
        action_prefix: action.to_owned(),
        target_prefix: target.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn audit_entries_filter_by_actor_action_target_and_time_and_page_by_seq() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let mut audit = audit_admin(&cp).await;
    let before = Utc::now().timestamp() - 1;
    let mut alice = Vec::new();
    for i in 0..5 {
        alice.push(
            append(
                &pool,
                "user:alice@example.com",
                "thing.create",
                &format!("thing/{i}"),
            )
            .await,
        );
    }
    let bob = append(&pool, "user:bob@example.com", "thing.delete", "thing/0").await;
    append(&pool, "user:bob@example.com", "things.create", "other/1").await;

    let seqs =
        |r: &pb::ListAuditEntriesResponse| r.entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    let by_actor = audit
        .list_audit_entries(list("user:alice@example.com", "", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&by_actor), alice);
    assert_eq!(by_actor.next_after_seq, 0);
    let e = &by_actor.entries[0];
    assert_eq!(
        (e.action.as_str(), e.target.as_str()),
        ("thing.create", "thing/0")
    );
    assert_eq!(
        e.hash,
        Sha256::new()
            .chain_update(&e.prev_hash)
            .chain_update(e.payload.as_bytes())
            .finalize()
            .to_vec()
    );

    // `thing.` is a prefix (not `things.`); `thing` alone matches nothing exactly.
    let by_prefix = audit
        .list_audit_entries(list("", "thing.", ""))
        .await
        .unwrap()
        .into_inner();
    let mut expected = alice.clone();
    expected.push(bob);
    assert_eq!(seqs(&by_prefix), expected);
    let exact = audit
        .list_audit_entries(list("", "thing.delete", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&exact), vec![bob]);
    let none = audit
        .list_audit_entries(list("", "thing", ""))
        .await
        .unwrap()
        .into_inner();
    assert!(none.entries.is_empty());
    let by_target = audit
        .list_audit_entries(list("", "", "thing/0"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&by_target), vec![alice[0], bob]);

    // Time bounds: everything written since the test started; nothing before 1971.
    let recent = audit
        .list_audit_entries(pb::ListAuditEntriesRequest {
            since_unix_s: before,
            until_unix_s: Utc::now().timestamp() + 60,
            actor: "user:alice@example.com".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&recent), alice);
    let old = audit
        .list_audit_entries(pb::ListAuditEntriesRequest {
            until_unix_s: 31_536_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(old.entries.is_empty());

    // Pages of two, by after_seq.
    let mut got = Vec::new();
    let mut after_seq = 0;
    let mut pages = 0;
    loop {
        let page = audit
            .list_audit_entries(pb::ListAuditEntriesRequest {
                actor: "user:alice@example.com".to_owned(),
                after_seq,
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.entries.len() <= 2);
        got.extend(seqs(&page));
        if page.next_after_seq == 0 {
            break;
        }
        after_seq = page.next_after_seq;
    }
    assert_eq!((got, pages), (alice.clone(), 3));

    for bad in [
        pb::ListAuditEntriesRequest {
            since_unix_s: 20,
            until_unix_s: 10,
            ..Default::default()
        },
        pb::ListAuditEntriesRequest {
            since_unix_s: -5,
            ..Default::default()
        },
        pb::ListAuditEntriesRequest {
            after_seq: u64::MAX,
            ..Default::default()
        },
    ] {
        let err = audit.list_audit_entries(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let mut anonymous = AuditAdminClient::with_interceptor(cp.channel().await, Key(None));
    let err = anonymous
        .list_audit_entries(pb::ListAuditEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Checkpoints, paged by id.
    let (first, _) = checkpoint(&pool, i64::try_from(alice[1]).unwrap()).await;
    let (second, _) = checkpoint(&pool, i64::try_from(bob).unwrap()).await;
    let page = audit
        .list_audit_checkpoints(pb::ListAuditCheckpointsRequest {
            after_id: 0,
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.checkpoints.len(), 1);
    let c = &page.checkpoints[0];
    assert_eq!(
        (c.id, c.tree_size),
        (u64::try_from(first).unwrap(), alice[1])
    );
    assert_eq!((c.signature.len(), c.key_id.as_str()), (64, "test-key"));
    assert!(
        c.signed_at.ends_with('Z') && c.signed_at.len() == 27,
        "{}",
        c.signed_at
    );
    let rest = audit
        .list_audit_checkpoints(pb::ListAuditCheckpointsRequest {
            after_id: page.next_after_id,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rest.checkpoints.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![u64::try_from(second).unwrap()]
    );
    assert_eq!(rest.next_after_id, 0);
    cp.stop().await;
}

#[tokio::test]
async fn observability_settings_changes_are_audited_with_the_admin_actor_and_reach_the_snapshot() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let mut audit = audit_admin(&cp).await;
    let defaults = audit
        .get_observability_settings(pb::GetObservabilitySettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(defaults, pb::ObservabilitySettings::default());
    assert!(!compile(&pool).await.unwrap().content_capture);

    let on = audit
        .update_observability_settings(pb::UpdateObservabilitySettingsRequest {
            content_capture: Some(true),
            audit_retention_days: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((on.content_capture, on.audit_retention_days), (true, 0));
    assert!(compile(&pool).await.unwrap().content_capture);
    let kept = audit
        .update_observability_settings(pb::UpdateObservabilitySettingsRequest {
            content_capture: None,
            audit_retention_days: Some(30),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (kept.content_capture, kept.audit_retention_days),
        (true, 30)
    );
    let forever = audit
        .update_observability_settings(pb::UpdateObservabilitySettingsRequest {
            content_capture: Some(false),
            audit_retention_days: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forever, pb::ObservabilitySettings::default());
    assert!(!compile(&pool).await.unwrap().content_capture);
    let err = audit
        .update_observability_settings(pb::UpdateObservabilitySettingsRequest {
            content_capture: None,
            audit_retention_days: Some(1_000_000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let changes = audit
        .list_audit_entries(list("", "observability_settings.", ""))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let actions: Vec<&str> = changes.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "observability_settings.create",
            "observability_settings.update",
            "observability_settings.update"
        ]
    );
    for e in &changes {
        assert_eq!(e.actor, "admin:bootstrap", "{e:?}");
        assert_eq!(e.target, "observability_settings");
    }
    let payload: serde_json::Value = serde_json::from_str(&changes[2].payload).unwrap();
    assert_eq!(payload["before"]["content_capture"], true);
    assert_eq!(payload["after"]["content_capture"], false);
    assert_eq!(
        payload["after"]["audit_retention_days"],
        serde_json::Value::Null
    );
    cp.stop().await;
}

/// Every line of an archive: (seq, prev_hash hex, hash hex, payload), checking the hashes.
fn archive_lines(text: &str) -> Vec<(u64, String, String, String)> {
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let payload = v["payload"].as_str().unwrap().to_owned();
            let prev = hex::decode(v["prev_hash"].as_str().unwrap()).unwrap();
            let hash = Sha256::new()
                .chain_update(&prev)
                .chain_update(payload.as_bytes())
                .finalize();
            assert_eq!(hex::encode(hash), v["hash"].as_str().unwrap(), "{line}");
            assert_eq!(v["entry"]["seq"], v["seq"]);
            (
                v["seq"].as_u64().unwrap(),
                v["prev_hash"].as_str().unwrap().to_owned(),
                v["hash"].as_str().unwrap().to_owned(),
                payload,
            )
        })
        .collect()
}

async fn set_retention(audit: &mut AuditApi, days: u32) {
    audit
        .update_observability_settings(pb::UpdateObservabilitySettingsRequest {
            content_capture: None,
            audit_retention_days: Some(days),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn retention_archives_then_deletes_exactly_the_prefix_a_checkpoint_covers() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let mut audit = audit_admin(&cp).await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        append(&pool, "system:test", "thing.create", &format!("thing/{i}")).await;
    }
    // Off: nothing happens, whatever is due.
    let later = Utc::now() + TimeDelta::days(10);
    let outcome = audit_retention::run_once(&pool, Some(dir.path()), later)
        .await
        .unwrap();
    assert_eq!(outcome, RetentionOutcome::KeepForever);

    set_retention(&mut audit, 2).await;
    let covered = head(&pool).await - 2;
    let (checkpoint_id, head_hash) = checkpoint(&pool, covered).await;
    let total_before = head(&pool).await;
    // The checkpoint's entries are not two days old yet.
    let outcome = audit_retention::run_once(&pool, Some(dir.path()), Utc::now())
        .await
        .unwrap();
    assert_eq!(outcome, RetentionOutcome::NothingDue);

    let outcome = audit_retention::run_once(&pool, Some(dir.path()), later)
        .await
        .unwrap();
    let RetentionOutcome::Pruned {
        through_seq,
        entries,
        archive,
        archive_sha256,
    } = outcome
    else {
        panic!("expected a prune, got {outcome:?}");
    };
    assert_eq!(
        (through_seq, entries),
        (covered, u64::try_from(covered).unwrap())
    );
    assert_eq!(archive, dir.path().join(format!("audit-1-{covered}.jsonl")));
    let bytes = std::fs::read(&archive).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), archive_sha256);
    let lines = archive_lines(std::str::from_utf8(&bytes).unwrap());
    assert_eq!(
        lines.iter().map(|l| l.0).collect::<Vec<_>>(),
        (1..=u64::try_from(covered).unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(lines[0].1, "0".repeat(64));
    assert_eq!(lines.last().unwrap().2, hex::encode(&head_hash));
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // Exactly the covered prefix is gone; the rest links to the checkpoint head.
    let (min_seq, remaining): (i64, i64) =
        sqlx::query_as("SELECT min(seq), count(*) FROM audit_entries")
            .fetch_one(&pool)
            .await
            .unwrap();
    let pruned_event = total_before + 1;
    assert_eq!((min_seq, remaining), (covered + 1, pruned_event - covered));
    let first_prev: Vec<u8> =
        sqlx::query_scalar("SELECT prev_hash FROM audit_entries ORDER BY seq LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(first_prev, head_hash);
    let prune: (i64, Vec<u8>, i64, String, String) = sqlx::query_as(
        "SELECT through_seq, head_hash, checkpoint_id, archive, archive_sha256 FROM audit_prunes",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        prune,
        (
            covered,
            head_hash.clone(),
            checkpoint_id,
            archive.to_string_lossy().into_owned(),
            archive_sha256.clone()
        )
    );
    let event = audit
        .list_audit_entries(list("", "audit.pruned", ""))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(event.len(), 1);
    assert_eq!(
        (event[0].seq, event[0].actor.as_str()),
        (u64::try_from(pruned_event).unwrap(), "system:retention")
    );
    let details: serde_json::Value = serde_json::from_str(&event[0].payload).unwrap();
    assert_eq!(details["details"]["through_seq"], covered);
    assert_eq!(
        details["details"]["archive_sha256"],
        archive_sha256.as_str()
    );
    assert_eq!(
        details["details"]["archive"],
        archive.to_string_lossy().as_ref()
    );

    // Nothing more is due until a newer checkpoint; then only the next range is archived,
    // starting from the previous head.
    let outcome = audit_retention::run_once(&pool, Some(dir.path()), later)
        .await
        .unwrap();
    assert_eq!(outcome, RetentionOutcome::NothingDue);
    let (_, next_head) = checkpoint(&pool, pruned_event).await;
    let outcome = audit_retention::run_once(&pool, Some(dir.path()), later)
        .await
        .unwrap();
    let RetentionOutcome::Pruned {
        through_seq,
        archive,
        ..
    } = outcome
    else {
        panic!("expected a second prune, got {outcome:?}");
    };
    assert_eq!(through_seq, pruned_event);
    assert_eq!(
        archive,
        dir.path()
            .join(format!("audit-{}-{pruned_event}.jsonl", covered + 1))
    );
    let lines = archive_lines(&std::fs::read_to_string(&archive).unwrap());
    assert_eq!(lines[0].0, u64::try_from(covered + 1).unwrap());
    assert_eq!(lines[0].1, hex::encode(&head_hash));
    assert_eq!(lines.last().unwrap().2, hex::encode(&next_head));
    // Checkpoints and prune records stay.
    let kept: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM audit_checkpoints), (SELECT count(*) FROM audit_prunes)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept, (2, 2));
    cp.stop().await;
}

#[tokio::test]
async fn retention_without_an_archive_directory_deletes_nothing() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let mut audit = audit_admin(&cp).await;
    append(&pool, "system:test", "thing.create", "thing/1").await;
    set_retention(&mut audit, 1).await;
    checkpoint(&pool, head(&pool).await).await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_entries")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = count().await;
    let later = Utc::now() + TimeDelta::days(30);
    let outcome = audit_retention::run_once(&pool, None, later).await.unwrap();
    assert_eq!(outcome, RetentionOutcome::NoArchiveDir);
    assert_eq!(count().await, before);
    let prunes: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_prunes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(prunes, 0);
    cp.stop().await;
}

#[tokio::test]
async fn retention_refuses_to_prune_a_chain_that_does_not_verify() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let pool = db.pool().await;
    let mut audit = audit_admin(&cp).await;
    let dir = tempfile::tempdir().unwrap();
    let edited = append(&pool, "system:test", "thing.create", "thing/1").await;
    append(&pool, "system:test", "thing.create", "thing/2").await;
    set_retention(&mut audit, 1).await;
    checkpoint(&pool, head(&pool).await).await;
    // A superuser edits one entry behind the triggers' back.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE audit_entries DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE audit_entries SET payload = replace(payload, 'thing/1', 'thing/9') WHERE seq = $1",
    )
    .bind(i64::try_from(edited).unwrap())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE audit_entries ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_entries")
        .fetch_one(&pool)
        .await
        .unwrap();

    let later = Utc::now() + TimeDelta::days(30);
    let err = audit_retention::run_once(&pool, Some(dir.path()), later)
        .await
        .unwrap_err();
    assert!(
        matches!(err, audit_retention::RetentionError::Chain { seq } if seq == i64::try_from(edited).unwrap()),
        "{err:?}"
    );
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_entries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no archive is left"
    );
    cp.stop().await;
}
