#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::TimeZone as _;

use super::*;
use crate::audit::key::AuditSigningKey;

fn at(seq: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
        + chrono::Duration::microseconds(seq * 1_000_123)
}

/// The payload text Postgres writes (jsonb text form).
fn payload(seq: i64, actor: &str, action: &str, target: &str) -> String {
    format!(
        r#"{{"v": 1, "at": "{}", "seq": {seq}, "after": null, "actor": "{actor}", "action": "{action}", "before": null, "target": "{target}", "details": {{"n": {seq}}}}}"#,
        format_signed_at(&at(seq))
    )
}

fn hash(prev: &[u8], payload: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(payload.as_bytes());
    h.finalize().to_vec()
}

fn entry(seq: i64, prev: &[u8]) -> AuditEntryRow {
    let action = format!("test.event{seq}");
    let payload = payload(seq, "admin:alice", &action, "thing/1");
    AuditEntryRow {
        seq,
        at: at(seq),
        actor: "admin:alice".into(),
        action,
        target: "thing/1".into(),
        hash: hash(prev, &payload),
        payload,
        prev_hash: prev.to_vec(),
    }
}

/// Entries `from..=to` chained from `prev`.
fn chain_from(from: i64, to: i64, prev: &[u8]) -> Vec<AuditEntryRow> {
    let mut prev = prev.to_vec();
    let mut out = Vec::new();
    for seq in from..=to {
        let e = entry(seq, &prev);
        prev = e.hash.clone();
        out.push(e);
    }
    out
}

/// Recomputes every hash (and link) from the payloads, as an attacker would.
fn recompute(entries: &mut [AuditEntryRow], start: &[u8]) {
    let mut prev = start.to_vec();
    for e in entries {
        e.prev_hash = prev.clone();
        e.hash = hash(&prev, &e.payload);
        prev = e.hash.clone();
    }
}

fn head_of(entries: &[AuditEntryRow]) -> Option<Head> {
    Some(entries.last().map_or(
        Head {
            seq: 0,
            hash: GENESIS_HASH.to_vec(),
        },
        |e| Head {
            seq: e.seq,
            hash: e.hash.clone(),
        },
    ))
}

fn row(id: i64, cp: &SignedCheckpoint) -> CheckpointRow {
    CheckpointRow {
        id,
        tree_size: cp.tree_size,
        head_hash: cp.head_hash.to_vec(),
        signed_at: cp.signed_at,
        key_id: cp.key_id.clone(),
        signature: cp.signature.to_vec(),
    }
}

fn sign_at(key: &AuditSigningKey, entries: &[AuditEntryRow], size: i64) -> SignedCheckpoint {
    let hash = if size == 0 {
        GENESIS_HASH
    } else {
        entries
            .iter()
            .find(|e| e.seq == size)
            .unwrap()
            .hash
            .clone()
            .try_into()
            .unwrap()
    };
    SignedCheckpoint::sign(key, size, hash, at(size) + chrono::Duration::seconds(1))
}

/// Ten entries, checkpoints at 0, 4, 8 and 10.
fn fixture(key: &AuditSigningKey) -> AuditLog {
    let entries = chain_from(1, 10, &GENESIS_HASH);
    let checkpoints = [0, 4, 8, 10]
        .iter()
        .enumerate()
        .map(|(i, size)| row(i as i64 + 1, &sign_at(key, &entries, *size)))
        .collect();
    AuditLog {
        head: head_of(&entries),
        entries,
        prunes: Vec::new(),
        checkpoints,
    }
}

fn exported(cp: &SignedCheckpoint, line: usize) -> ExportedCheckpoint {
    ExportedCheckpoint {
        checkpoint: cp.clone(),
        file: PathBuf::from("checkpoints.jsonl"),
        line,
    }
}

fn db_cp(log: &AuditLog, id: i64) -> SignedCheckpoint {
    SignedCheckpoint::from_row(log.checkpoints.iter().find(|r| r.id == id).unwrap()).unwrap()
}

#[test]
fn an_untouched_log_verifies_with_a_summary() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    // Two more entries after the newest checkpoint.
    let mut more = chain_from(11, 12, &log.entries[9].hash);
    log.entries.append(&mut more);
    log.head = head_of(&log.entries);
    let file = vec![exported(&db_cp(&log, 4), 1)];
    let summary = verify(&log, &file, &[key.verifying_key()]).unwrap();
    assert_eq!(summary.entries, 12);
    assert_eq!(summary.last_seq, 12);
    assert_eq!(summary.checkpoints_verified, 4);
    assert_eq!(summary.exported_checkpoints, 1);
    assert_eq!(summary.newest_checkpoint.unwrap().0, 10);
    assert_eq!(summary.uncovered, 2);
    let text = summary.to_string();
    assert!(text.contains("12 entries"), "{text}");
    assert!(text.contains("2 entries not yet covered"), "{text}");
}

#[test]
fn an_empty_log_verifies() {
    let key = AuditSigningKey::generate();
    let cp = SignedCheckpoint::sign(&key, 0, GENESIS_HASH, Utc::now());
    let log = AuditLog {
        head: head_of(&[]),
        checkpoints: vec![row(1, &cp)],
        ..AuditLog::default()
    };
    let summary = verify(&log, &[], &[key.verifying_key()]).unwrap();
    assert_eq!((summary.entries, summary.uncovered), (0, 0));
}

#[test]
fn an_edited_payload_is_reported_at_its_entry() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    log.entries[4].payload = log.entries[4].payload.replace("\"n\": 5", "\"n\": 50");
    let found = verify(&log, &[], &[key.verifying_key()]).unwrap_err();
    assert_eq!(found, Inconsistency::EntryEdited { seq: 5 });
    assert!(found.to_string().contains("entry 5 was edited"), "{found}");
}

#[test]
fn an_edited_column_is_reported_with_both_values() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    log.entries[2].actor = "admin:mallory".into();
    let found = verify(&log, &[], &[key.verifying_key()]).unwrap_err();
    assert_eq!(
        found,
        Inconsistency::ColumnMismatch {
            seq: 3,
            column: "actor",
            stored: "admin:mallory".into(),
            in_payload: "admin:alice".into(),
        }
    );
    let mut log = fixture(&key);
    log.entries[6].at += chrono::Duration::seconds(1);
    assert!(matches!(
        verify(&log, &[], &[key.verifying_key()]),
        Err(Inconsistency::ColumnMismatch {
            seq: 7,
            column: "at",
            ..
        })
    ));
}

#[test]
fn a_removed_entry_is_named() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    log.entries.remove(5);
    let found = verify(&log, &[], &[key.verifying_key()]).unwrap_err();
    assert_eq!(found, Inconsistency::EntriesRemoved { from: 6, to: 6 });
    assert!(
        found.to_string().starts_with("entry 6 was removed"),
        "{found}"
    );
    let mut log = fixture(&key);
    log.entries.drain(0..2);
    assert_eq!(
        verify(&log, &[], &[key.verifying_key()]).unwrap_err(),
        Inconsistency::EntriesRemoved { from: 1, to: 2 }
    );
}

#[test]
fn a_replaced_entry_breaks_the_next_link() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    log.entries[4].payload = log.entries[4].payload.replace("thing/1", "thing/2");
    log.entries[4].target = "thing/2".into();
    log.entries[4].hash = hash(&log.entries[4].prev_hash, &log.entries[4].payload);
    assert_eq!(
        verify(&log, &[], &[key.verifying_key()]).unwrap_err(),
        Inconsistency::BrokenLink { seq: 6 }
    );
}

#[test]
fn removed_newest_entries_are_caught_by_a_checkpoint() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    log.entries.truncate(7);
    // The attacker also moved the head back.
    log.head = head_of(&log.entries);
    let found = verify(&log, &[], &[key.verifying_key()]).unwrap_err();
    match &found {
        Inconsistency::NewestEntriesMissing {
            last_present: 7,
            expected: 10,
            evidence: Evidence::Checkpoint(cp),
        } => assert_eq!(cp.source, CheckpointSource::Database { id: 4 }),
        other => panic!("{other:?}"),
    }
    let text = found.to_string();
    assert!(text.contains("entries 8..=10 (3 entries)"), "{text}");
}

#[test]
fn removed_newest_entries_are_caught_by_the_head_row() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    let mut more = chain_from(11, 13, &log.entries[9].hash);
    log.entries.append(&mut more);
    log.head = head_of(&log.entries);
    log.entries.truncate(11);
    assert_eq!(
        verify(&log, &[], &[key.verifying_key()]).unwrap_err(),
        Inconsistency::NewestEntriesMissing {
            last_present: 11,
            expected: 13,
            evidence: Evidence::Head,
        }
    );
}

#[test]
fn the_exported_file_catches_removed_newest_entries_and_checkpoints() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    let file = vec![exported(&db_cp(&log, 3), 1), exported(&db_cp(&log, 4), 2)];
    log.entries.truncate(7);
    log.head = head_of(&log.entries);
    log.checkpoints.truncate(2);
    let found = verify(&log, &file, &[key.verifying_key()]).unwrap_err();
    match found {
        Inconsistency::NewestEntriesMissing {
            last_present: 7,
            expected: 10,
            evidence: Evidence::Checkpoint(cp),
        } => assert_eq!(
            cp.source,
            CheckpointSource::Exported {
                file: PathBuf::from("checkpoints.jsonl"),
                line: 2
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_exported_checkpoint_missing_from_the_database_is_reported() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    let file = vec![exported(&db_cp(&log, 2), 7)];
    log.checkpoints.remove(1);
    let found = verify(&log, &file, &[key.verifying_key()]).unwrap_err();
    assert!(
        matches!(&found, Inconsistency::ExportedCheckpointMissing { checkpoint } if checkpoint.tree_size == 4),
        "{found:?}"
    );
    assert!(found.to_string().contains("line 7"), "{found}");
}

#[test]
fn a_recomputed_chain_is_caught_by_the_checkpoints_around_the_change() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    log.entries[5].payload = log.entries[5].payload.replace("\"n\": 6", "\"n\": 60");
    recompute(&mut log.entries, &GENESIS_HASH);
    log.head = head_of(&log.entries);
    let found = verify(&log, &[], &[key.verifying_key()]).unwrap_err();
    match &found {
        Inconsistency::CheckpointMismatch {
            first_failing,
            last_matching: Some(last),
            chain_start: 1,
        } => {
            assert_eq!(first_failing.source, CheckpointSource::Database { id: 3 });
            assert_eq!(first_failing.tree_size, 8);
            assert_eq!(last.tree_size, 4);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        found.to_string().contains("entries 5..=8 changed"),
        "{found}"
    );
}

#[test]
fn a_checkpoint_from_an_unknown_key_or_edited_fails_its_signature() {
    let key = AuditSigningKey::generate();
    let other = AuditSigningKey::generate();
    let log = fixture(&key);
    let found = verify(&log, &[], &[other.verifying_key()]).unwrap_err();
    match &found {
        Inconsistency::UnknownKey { key_id, known, .. } => {
            assert_eq!(key_id, key.key_id());
            assert_eq!(known, &vec![other.key_id().to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    // Several keys: any one may sign.
    assert!(verify(&log, &[], &[other.verifying_key(), key.verifying_key()]).is_ok());
    let mut log = fixture(&key);
    log.checkpoints[2].tree_size = 9;
    assert!(matches!(
        verify(&log, &[], &[key.verifying_key()]),
        Err(Inconsistency::BadSignature { checkpoint }) if checkpoint.source == CheckpointSource::Database { id: 3 }
    ));
}

#[test]
fn a_pruned_prefix_restarts_at_its_signed_checkpoint() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    let cp8 = db_cp(&log, 3);
    log.entries.drain(0..8);
    log.prunes = vec![Prune {
        through_seq: 8,
        head_hash: cp8.head_hash.to_vec(),
        checkpoint_id: 3,
    }];
    let summary = verify(&log, &[], &[key.verifying_key()]).unwrap();
    assert_eq!((summary.entries, summary.pruned_through), (2, 8));

    // A prune point no checkpoint vouches for.
    let mut forged = log.clone();
    forged.prunes[0].head_hash = vec![7; 32];
    assert_eq!(
        verify(&forged, &[], &[key.verifying_key()]).unwrap_err(),
        Inconsistency::PruneUnverified { through_seq: 8 }
    );
    // An entry after the prune point removed.
    let mut removed = log;
    removed.entries.remove(0);
    assert_eq!(
        verify(&removed, &[], &[key.verifying_key()]).unwrap_err(),
        Inconsistency::EntriesRemoved { from: 9, to: 9 }
    );
}

#[test]
fn a_head_row_that_disagrees_is_reported() {
    let key = AuditSigningKey::generate();
    let mut log = fixture(&key);
    log.head.as_mut().unwrap().hash = vec![9; 32];
    assert_eq!(
        verify(&log, &[], &[key.verifying_key()]).unwrap_err(),
        Inconsistency::HeadMismatch { seq: 10 }
    );
    log.head = None;
    assert_eq!(
        verify(&log, &[], &[key.verifying_key()]).unwrap_err(),
        Inconsistency::HeadMissing
    );
}
