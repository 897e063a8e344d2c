use super::*;
use crate::usage::test_record as record;

fn journal_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool").join("usage.jsonl");
    (dir, path)
}

fn ids(records: &[UsageRecord]) -> Vec<&str> {
    records.iter().map(|r| r.request_id.as_str()).collect()
}

fn line(id: &str) -> Vec<u8> {
    encode_line(&record(id)).unwrap()
}

#[test]
fn appended_records_are_read_back_at_the_next_open() {
    let (_dir, path) = journal_path();
    let (journal, found) = Journal::open(&path).unwrap();
    assert!(found.is_empty());
    journal.append(record("a"), drop);
    journal.append(record("b"), drop);
    // No fsync, no close: what a process killed now leaves behind.
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2);
    drop(journal);
    let (_, found) = Journal::open(&path).unwrap();
    assert_eq!(found, [record("a"), record("b")]);
}

#[test]
fn a_record_is_written_before_it_is_handed_on() {
    let (_dir, path) = journal_path();
    let (journal, _) = Journal::open(&path).unwrap();
    let on_disk = journal.append(record("a"), |r| {
        let text = fs::read_to_string(&path).unwrap();
        text.contains(&r.request_id)
    });
    assert!(on_disk);
}

#[test]
fn a_torn_last_line_is_skipped_and_cut_off() {
    let (_dir, path) = journal_path();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut bytes = line("a");
    let torn = line("b");
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    fs::write(&path, &bytes).unwrap();

    let (journal, found) = Journal::open(&path).unwrap();
    assert_eq!(ids(&found), ["a"]);
    journal.append(record("c"), drop);
    drop(journal);
    let (_, found) = Journal::open(&path).unwrap();
    assert_eq!(ids(&found), ["a", "c"]);
}

#[test]
fn a_last_line_missing_only_its_newline_is_kept() {
    let (_dir, path) = journal_path();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut bytes = line("a");
    bytes.pop();
    fs::write(&path, &bytes).unwrap();

    let (journal, found) = Journal::open(&path).unwrap();
    assert_eq!(ids(&found), ["a"]);
    journal.append(record("b"), drop);
    drop(journal);
    let (_, found) = Journal::open(&path).unwrap();
    assert_eq!(ids(&found), ["a", "b"]);
}

#[test]
fn unreadable_lines_are_skipped() {
    let (_dir, path) = journal_path();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut bytes = line("a");
    bytes.extend_from_slice(b"not json\n\n\0\0\xff\n");
    bytes.extend(line("b"));
    fs::write(&path, &bytes).unwrap();
    let (_, found) = Journal::open(&path).unwrap();
    assert_eq!(ids(&found), ["a", "b"]);
}

#[test]
fn records_spooled_before_spend_fields_existed_still_load() {
    let (_dir, path) = journal_path();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let old = r#"{"request_id":"old","data_plane_id":"dp","started_at_unix_ms":1,"duration_ms":2,"api_key_id":"k","principal_id":"p","model":"m","provider_id":"pr","upstream_model":"um","endpoint":"messages","stream":true,"status":200,"outcome":"complete","input_tokens":3,"output_tokens":4,"cache_creation_5m_tokens":5,"cache_creation_1h_tokens":6,"cache_read_tokens":7}"#;
    fs::write(&path, format!("{old}\n")).unwrap();
    let (_, loaded) = Journal::open(&path).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].request_id, "old");
    assert_eq!(loaded[0].cost_micro_usd, 0);
    assert!(loaded[0].charges.is_empty() && loaded[0].group_ids.is_empty());
    assert_eq!(loaded[0].price_source, "");
}

#[test]
fn truncate_empties_the_journal_once_everything_is_acknowledged() {
    let (_dir, path) = journal_path();
    let (journal, _) = Journal::open(&path).unwrap();
    journal.append(record("a"), drop);
    let cut = journal.cut(|| {});
    assert!(journal.truncate(cut).unwrap());
    journal.sync().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(journal.len(), 0);
    // Appends go on at the (new) end.
    journal.append(record("b"), drop);
    drop(journal);
    let (_, found) = Journal::open(&path).unwrap();
    assert_eq!(ids(&found), ["b"]);
}

#[test]
fn truncate_keeps_records_appended_after_the_cut() {
    let (_dir, path) = journal_path();
    let (journal, _) = Journal::open(&path).unwrap();
    journal.append(record("a"), drop);
    let cut = journal.cut(|| {});
    journal.append(record("b"), drop);
    assert!(!journal.truncate(cut).unwrap());
    drop(journal);
    let (_, found) = Journal::open(&path).unwrap();
    assert_eq!(ids(&found), ["a", "b"]);
}

#[test]
fn rewrite_keeps_the_unacknowledged_and_what_was_appended_after_the_cut() {
    let (_dir, path) = journal_path();
    let (journal, _) = Journal::open(&path).unwrap();
    for id in ["a", "b", "c"] {
        journal.append(record(id), drop);
    }
    let before = journal.len();
    let cut = journal.cut(|| {});
    journal.append(record("d"), drop);
    // "a" and "b" were acknowledged.
    assert!(journal.rewrite(cut, &[record("c")]).unwrap());
    assert!(journal.len() < before);
    assert_eq!(journal.len(), fs::metadata(&path).unwrap().len());
    journal.append(record("e"), drop);
    journal.sync().unwrap();
    assert!(!path.with_extension("jsonl.tmp").exists());
    drop(journal);
    let (_, found) = Journal::open(&path).unwrap();
    assert_eq!(ids(&found), ["c", "d", "e"]);
}

#[test]
fn a_stale_cut_changes_nothing() {
    let (_dir, path) = journal_path();
    let (journal, _) = Journal::open(&path).unwrap();
    journal.append(record("a"), drop);
    let stale = journal.cut(|| {});
    let cut = journal.cut(|| {});
    assert!(journal.rewrite(cut, &[record("a")]).unwrap());
    assert!(!journal.truncate(stale).unwrap());
    assert!(!journal.rewrite(stale, &[]).unwrap());
    drop(journal);
    let (_, found) = Journal::open(&path).unwrap();
    assert_eq!(ids(&found), ["a"]);
}
