//! Tampering with the audit log as a database superuser (append-only triggers switched off
//! with `session_replication_role = replica`), and `audit::verify` catching each case: an
//! edited entry, a removed entry, removed newest entries (also with the stored checkpoints
//! deleted, caught by the exported file), an edit followed by a recomputed chain, and
//! checkpoints checked with the wrong public key. An untouched log passes, and checkpoints are
//! signed on schedule even when nothing changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;
use tollgate_control_plane::audit::sink::{self, ExportedCheckpoint};
use tollgate_control_plane::audit::verify::{
    self, CheckpointSource, Evidence, Inconsistency, Summary,
};
use tollgate_control_plane::audit::{AuditSigningKey, CheckpointOutcome, Checkpointer};

use crate::support::{TestControlPlane, TestDb};

/// A migrated database, a signing key and a checkpointer writing to a file in `dir`.
struct Fixture {
    _db: TestDb,
    pool: PgPool,
    dir: tempfile::TempDir,
    checkpointer: Checkpointer,
}

impl Fixture {
    async fn new() -> Fixture {
        let db = TestDb::create().await;
        let pool = db.pool().await;
        tollgate_control_plane::migrate(&pool).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Interval zero: every pass signs (no replica coordination window).
        let checkpointer = Checkpointer::new(AuditSigningKey::generate(), Duration::ZERO)
            .with_file(dir.path().join("checkpoints.jsonl"));
        Fixture {
            _db: db,
            pool,
            dir,
            checkpointer,
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("checkpoints.jsonl")
    }

    /// Appends `n` entries; returns the last sequence number.
    async fn changes(&self, n: usize) -> i64 {
        let mut last = 0;
        for _ in 0..n {
            last = sqlx::query_scalar(
                "SELECT tollgate_audit_append('admin:alice', 'test.change', 'thing/' || \
                 (SELECT seq + 1 FROM audit_head), NULL, NULL, \
                 jsonb_build_object('note', 'entry-' || (SELECT seq + 1 FROM audit_head)))",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
        }
        // And a real audited row change, by plain SQL.
        sqlx::query(
            "INSERT INTO admin_keys (id, name, secret_sha256) \
             VALUES (gen_random_uuid(), 'k' || (SELECT seq + 1 FROM audit_head), \
                     sha256(convert_to(gen_random_uuid()::text, 'UTF8')))",
        )
        .execute(&self.pool)
        .await
        .unwrap();
        last + 1
    }

    async fn checkpoint(&self) -> i64 {
        match self.checkpointer.run_once(&self.pool).await.unwrap() {
            CheckpointOutcome::Signed { checkpoint, .. } => checkpoint.tree_size,
            CheckpointOutcome::Skipped => unreachable!("an interval of zero never skips"),
        }
    }

    async fn exported(&self) -> Vec<ExportedCheckpoint> {
        if !self.file().exists() {
            return Vec::new();
        }
        sink::read_file(&self.file()).await.unwrap()
    }

    async fn verify_with(
        &self,
        key: &AuditSigningKey,
        exported: &[ExportedCheckpoint],
    ) -> Result<Summary, Inconsistency> {
        verify::verify_database(&self.pool, exported, &[key.verifying_key()])
            .await
            .unwrap()
    }

    async fn verify(&self) -> Result<Summary, Inconsistency> {
        let exported = self.exported().await;
        self.verify_with(self.checkpointer.key(), &exported).await
    }

    /// Runs `sql` as the superuser with every trigger off (append-only guards included).
    async fn tamper(&self, sql: &str) {
        let mut tx = self.pool.begin().await.unwrap();
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Moves the head back to entry `seq`, as a careful attacker would.
    async fn move_head_to(&self, seq: i64) {
        self.tamper(&format!(
            "UPDATE audit_head SET seq = {seq}, hash = \
             coalesce((SELECT hash FROM audit_entries WHERE seq = {seq}), \
                      decode(repeat('00', 32), 'hex'))"
        ))
        .await;
    }
}

/// The whole chain rehashed from its payloads (links, hashes and the head), as an attacker
/// covering an edit would.
const RECOMPUTE_CHAIN: &str = "DO $$
DECLARE
    r     record;
    prev  bytea := decode(repeat('00', 32), 'hex');
    h     bytea;
BEGIN
    FOR r IN SELECT seq, payload FROM audit_entries ORDER BY seq LOOP
        h := sha256(prev || convert_to(r.payload, 'UTF8'));
        UPDATE audit_entries SET prev_hash = prev, hash = h WHERE seq = r.seq;
        prev := h;
    END LOOP;
    UPDATE audit_head SET hash = prev;
END $$";

fn exported_at(evidence: &Evidence) -> Option<&Path> {
    match evidence {
        Evidence::Checkpoint(cp) => match &cp.source {
            CheckpointSource::Exported { file, .. } => Some(file),
            CheckpointSource::Database { .. } => None,
        },
        Evidence::Head => None,
    }
}

#[tokio::test]
async fn an_untouched_log_passes_and_is_signed_even_when_nothing_changed() {
    let f = Fixture::new().await;
    let size = f.changes(3).await;
    assert_eq!(f.checkpoint().await, size);
    // Nothing happened since: still a new checkpoint, of the same size.
    assert_eq!(f.checkpoint().await, size);
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints WHERE tree_size = $1")
            .bind(size)
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!(count, 2);
    assert_eq!(f.exported().await.len(), 2);
    f.changes(2).await;
    let summary = f.verify().await.unwrap();
    assert_eq!(summary.checkpoints_verified, 2);
    assert_eq!(summary.exported_checkpoints, 2);
    assert_eq!(summary.newest_checkpoint.unwrap().0, size);
    assert_eq!(summary.uncovered, 3);
    assert_eq!(summary.last_seq, size + 3);
    // The library's loaded form agrees.
    let log = verify::load(&f.pool).await.unwrap();
    let key = [f.checkpointer.key().verifying_key()];
    assert_eq!(verify::verify(&log, &f.exported().await, &key), Ok(summary));
}

#[tokio::test]
async fn a_second_replica_skips_within_half_an_interval() {
    let f = Fixture::new().await;
    let key = f.checkpointer.key().to_pkcs8_pem().unwrap();
    let replica = |_| {
        Checkpointer::new(
            AuditSigningKey::from_pkcs8_pem(&key).unwrap(),
            Duration::from_secs(600),
        )
    };
    let (a, b) = (replica(0), replica(1));
    assert!(matches!(
        a.run_once(&f.pool).await.unwrap(),
        CheckpointOutcome::Signed { .. }
    ));
    assert_eq!(
        b.run_once(&f.pool).await.unwrap(),
        CheckpointOutcome::Skipped
    );
}

#[tokio::test]
async fn an_edited_entry_is_reported_at_its_sequence_number() {
    let f = Fixture::new().await;
    f.changes(5).await;
    f.checkpoint().await;
    f.tamper(
        "UPDATE audit_entries SET payload = replace(payload, 'entry-3', 'entry-X') WHERE seq = 3",
    )
    .await;
    let found = f.verify().await.unwrap_err();
    assert_eq!(found, Inconsistency::EntryEdited { seq: 3 });
    assert!(found.to_string().contains("entry 3 was edited"), "{found}");

    // Only a query column edited (the payload kept): still caught.
    let f = Fixture::new().await;
    f.changes(4).await;
    f.tamper("UPDATE audit_entries SET actor = 'admin:mallory' WHERE seq = 2")
        .await;
    assert!(matches!(
        f.verify().await,
        Err(Inconsistency::ColumnMismatch {
            seq: 2,
            column: "actor",
            ..
        })
    ));
}

#[tokio::test]
async fn a_removed_entry_is_reported_at_its_sequence_number() {
    let f = Fixture::new().await;
    f.changes(5).await;
    f.checkpoint().await;
    f.tamper("DELETE FROM audit_entries WHERE seq = 3").await;
    let found = f.verify().await.unwrap_err();
    assert_eq!(found, Inconsistency::EntriesRemoved { from: 3, to: 3 });
    assert!(
        found.to_string().starts_with("entry 3 was removed"),
        "{found}"
    );
}

#[tokio::test]
async fn removed_newest_entries_are_caught_by_the_checkpoint_covering_them() {
    let f = Fixture::new().await;
    let size = f.changes(6).await;
    f.checkpoint().await;
    f.tamper(&format!(
        "DELETE FROM audit_entries WHERE seq > {}",
        size - 2
    ))
    .await;
    f.move_head_to(size - 2).await;
    let found = f.verify_with(f.checkpointer.key(), &[]).await.unwrap_err();
    match &found {
        Inconsistency::NewestEntriesMissing {
            last_present,
            expected,
            evidence: Evidence::Checkpoint(cp),
        } => {
            assert_eq!((*last_present, *expected), (size - 2, size));
            assert!(matches!(cp.source, CheckpointSource::Database { .. }));
        }
        other => panic!("{other:?}"),
    }
    let text = found.to_string();
    assert!(
        text.contains(&format!("entries {}..={size} (2 entries)", size - 1)),
        "{text}"
    );
}

#[tokio::test]
async fn removed_newest_entries_and_checkpoints_are_caught_by_the_exported_file() {
    let f = Fixture::new().await;
    let early = f.checkpoint().await;
    let size = f.changes(4).await;
    f.checkpoint().await;
    f.tamper(&format!(
        "DELETE FROM audit_entries WHERE seq > {early};
         DELETE FROM audit_checkpoints WHERE tree_size > {early};"
    ))
    .await;
    f.move_head_to(early).await;
    // The database alone looks consistent now…
    assert!(f.verify_with(f.checkpointer.key(), &[]).await.is_ok());
    // …the exported checkpoints are not fooled.
    let found = f.verify().await.unwrap_err();
    match &found {
        Inconsistency::NewestEntriesMissing {
            last_present,
            expected,
            evidence,
        } => {
            assert_eq!((*last_present, *expected), (early, size));
            assert_eq!(exported_at(evidence), Some(f.file().as_path()));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_edit_hidden_by_a_recomputed_chain_is_caught_by_the_checkpoints_around_it() {
    let f = Fixture::new().await;
    let first = f.changes(3).await;
    f.checkpoint().await;
    let second = f.changes(3).await;
    f.checkpoint().await;
    f.changes(1).await;
    let edited = first + 2;
    f.tamper(&format!(
        "UPDATE audit_entries SET payload = replace(payload, 'entry-{edited}', 'entry-X') \
         WHERE seq = {edited};
         {RECOMPUTE_CHAIN};"
    ))
    .await;
    let found = f.verify().await.unwrap_err();
    match &found {
        Inconsistency::CheckpointMismatch {
            first_failing,
            last_matching: Some(last),
            ..
        } => {
            assert_eq!(first_failing.tree_size, second);
            assert_eq!(last.tree_size, first);
        }
        other => panic!("{other:?}"),
    }
    let text = found.to_string();
    assert!(
        text.contains(&format!("entries {}..={second} changed", first + 1)),
        "{text}"
    );
}

#[tokio::test]
async fn checkpoints_do_not_verify_with_another_public_key() {
    let f = Fixture::new().await;
    f.changes(2).await;
    f.checkpoint().await;
    let other = AuditSigningKey::generate();
    let found = f.verify_with(&other, &[]).await.unwrap_err();
    assert!(
        matches!(&found, Inconsistency::UnknownKey { key_id, .. } if key_id == f.checkpointer.key().key_id()),
        "{found:?}"
    );
    // A checkpoint re-signed by another key (or edited) in the database fails too.
    f.tamper("UPDATE audit_checkpoints SET tree_size = tree_size + 1")
        .await;
    assert!(matches!(
        f.verify_with(f.checkpointer.key(), &[]).await,
        Err(Inconsistency::BadSignature { .. })
    ));
}

#[tokio::test]
async fn the_control_plane_signs_and_exports_checkpoints_on_schedule() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("audit.pem");
    let file = dir.path().join("checkpoints.jsonl");
    let mut config = db.config();
    config.audit_signing_key_file = Some(key_file.clone());
    config.audit_checkpoint_file = Some(file.clone());
    config.audit_checkpoint_interval = Duration::from_millis(200);
    let cp = TestControlPlane::start_with(config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let exported = loop {
        let exported = sink::read_file(&file).await.unwrap_or_default();
        if exported.len() >= 2 {
            break exported;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "two checkpoints within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cp.stop().await;
    let key = AuditSigningKey::load(&key_file).await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pool = db.pool().await;
    let summary = verify::verify_database(&pool, &exported, &[key.verifying_key()])
        .await
        .unwrap()
        .unwrap();
    assert!(summary.checkpoints_verified >= 2, "{summary}");
    assert!(summary.entries > 0, "start-up is audited: {summary}");
}
