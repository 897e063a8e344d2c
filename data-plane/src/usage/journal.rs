//! The usage journal (`--spool-path`): a write-ahead log of usage records on local disk.
//!
//! Every record is appended (one JSON line, a plain `write(2)`) before it is handed to the
//! shipper, so once the request path has produced it, it survives the death of the process
//! (`kill -9`, a crash): the write is in the kernel's page cache. There is no fsync per
//! record; the shipper fsyncs the journal once per flush interval and at shutdown, so a
//! machine crash (power loss, kernel panic) loses at most about one flush interval.
//!
//! At start the journal is read back and its records are sent first. Some may have been
//! acknowledged already; re-sending is safe, the control plane stores records idempotently
//! by request id. The shipper keeps the journal bounded: it is truncated once everything in
//! it is acknowledged, and otherwise rewritten (temporary file, fsync, rename) with only the
//! unacknowledged records. A line that does not parse (a torn last line from a process that
//! died mid-write) is skipped with a warning. The format is the usage spool's of earlier
//! versions, which is read the same way.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::UsageRecord;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read usage journal {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write usage journal {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("usage journal work was interrupted: {0}")]
    Interrupted(#[source] tokio::task::JoinError),
}

/// The open journal; shared by the usage sink (appends) and the shipper (fsync, compaction).
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    /// Held only for an append (one `write(2)` and a channel send) or to swap the file.
    active: Mutex<Active>,
}

#[derive(Debug)]
struct Active {
    file: Arc<File>,
    /// Bytes in `file`: what was there at open plus every complete append.
    len: u64,
    /// Bumped whenever `file` is truncated or replaced, so a stale [`Cut`] never applies.
    generation: u64,
    /// Something changed since the last fsync.
    unsynced: bool,
    /// The last append failed (logged once, until one succeeds again).
    failing: bool,
}

/// A point in the journal before which every appended record had been handed to the
/// shipper.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    generation: u64,
    offset: u64,
}

impl Journal {
    /// Opens the journal at `path` (creating it and its directory if needed) and returns the
    /// records in it. A torn last line is cut off.
    pub(crate) fn open(path: &Path) -> Result<(Journal, Vec<UsageRecord>), JournalError> {
        let read_err = |source| JournalError::Read {
            path: path.to_owned(),
            source,
        };
        let write_err = |source| JournalError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(write_err)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(write_err)?;
        let mut bytes = Vec::new();
        (&file).read_to_end(&mut bytes).map_err(read_err)?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let (whole, torn) = bytes.split_at(complete);
        let mut records = parse_lines(path, whole);
        let mut len = whole.len() as u64;
        if !torn.is_empty() {
            match serde_json::from_slice::<UsageRecord>(torn) {
                // Only the newline is missing.
                Ok(record) => {
                    records.push(record);
                    (&file).write_all(b"\n").map_err(write_err)?;
                    len += torn.len() as u64 + 1;
                }
                Err(error) => {
                    tracing::warn!(
                        path = %path.display(),
                        bytes = torn.len(),
                        %error,
                        "cutting off the torn last line of the usage journal"
                    );
                    file.set_len(len).map_err(write_err)?;
                }
            }
        }
        let journal = Journal {
            path: path.to_owned(),
            active: Mutex::new(Active {
                file: Arc::new(file),
                len,
                generation: 0,
                unsynced: false,
                failing: false,
            }),
        };
        Ok((journal, records))
    }

    /// Appends `record`, then (still holding the journal, so that a [`Cut`] never falls
    /// between the two) hands it on with `hand_on`. A failed write is logged and the record
    /// handed on all the same: it is shipped, it only would not survive a crash.
    pub(crate) fn append<R>(
        &self,
        record: UsageRecord,
        hand_on: impl FnOnce(UsageRecord) -> R,
    ) -> R {
        let line = encode_line(&record);
        let mut active = self.lock();
        let written = line.and_then(|line| active.append(&line));
        match written {
            Ok(()) if active.failing => {
                active.failing = false;
                tracing::info!(path = %self.path.display(), "usage journal writable again");
            }
            Ok(()) => {}
            Err(error) if !active.failing => {
                active.failing = true;
                tracing::error!(
                    path = %self.path.display(),
                    %error,
                    "cannot append to the usage journal; records are still shipped but would \
                     not survive a crash"
                );
            }
            Err(_) => {}
        }
        hand_on(record)
    }

    /// Runs `take_handed_on` while appends wait, and returns the point up to which every
    /// appended record has been handed on (and so taken by it).
    pub(crate) fn cut(&self, take_handed_on: impl FnOnce()) -> Cut {
        let active = self.lock();
        take_handed_on();
        Cut {
            generation: active.generation,
            offset: active.len,
        }
    }

    /// The journal's size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.lock().len
    }

    /// Empties the journal, everything before `cut` being acknowledged, unless something
    /// was appended after it. Returns whether it did.
    pub(crate) fn truncate(&self, cut: Cut) -> Result<bool, JournalError> {
        let mut active = self.lock();
        if active.generation != cut.generation || active.len != cut.offset {
            return Ok(false);
        }
        if active.len == 0 {
            return Ok(true);
        }
        active.file.set_len(0).map_err(|e| self.write_err(e))?;
        active.len = 0;
        active.generation += 1;
        active.unsynced = true;
        Ok(true)
    }

    /// Replaces what was appended before `cut` with `records` (the unacknowledged among
    /// them) and keeps what was appended after it: written to a temporary file, fsynced and
    /// renamed over the journal. Returns false (changing nothing) for a stale `cut`.
    pub(crate) fn rewrite(&self, cut: Cut, records: &[UsageRecord]) -> Result<bool, JournalError> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let result = self.rewrite_via(&tmp, cut, records);
        if !matches!(result, Ok(true)) {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn rewrite_via(
        &self,
        tmp: &Path,
        cut: Cut,
        records: &[UsageRecord],
    ) -> Result<bool, JournalError> {
        let err = |e| self.write_err(e);
        let mut head = Vec::new();
        for record in records {
            head.extend(encode_line(record).map_err(err)?);
        }
        match fs::remove_file(tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(tmp)
            .map_err(err)?;
        (&file).write_all(&head).map_err(err)?;
        file.sync_data().map_err(err)?;
        // The bulk is on disk; only the records appended since the cut are copied while
        // appends wait.
        let mut active = self.lock();
        if active.generation != cut.generation || active.len < cut.offset {
            return Ok(false);
        }
        let tail_len = usize::try_from(active.len - cut.offset).map_err(io::Error::other);
        let mut tail = vec![0; tail_len.map_err(err)?];
        active
            .file
            .read_exact_at(&mut tail, cut.offset)
            .map_err(err)?;
        (&file).write_all(&tail).map_err(err)?;
        fs::rename(tmp, &self.path).map_err(err)?;
        active.file = Arc::new(file);
        active.len = (head.len() + tail.len()) as u64;
        active.generation += 1;
        active.unsynced |= !tail.is_empty();
        drop(active);
        self.sync_dir();
        Ok(true)
    }

    /// Flushes what was appended (or truncated) since the last call to disk.
    pub(crate) fn sync(&self) -> Result<(), JournalError> {
        let file = {
            let mut active = self.lock();
            if !active.unsynced {
                return Ok(());
            }
            active.unsynced = false;
            active.file.clone()
        };
        file.sync_data().map_err(|e| {
            self.lock().unsynced = true;
            self.write_err(e)
        })
    }

    /// Makes a rename durable (best effort: the data itself is already synced).
    fn sync_dir(&self) {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if let Err(error) = File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %dir.display(), %error, "cannot sync the usage journal's directory");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_err(&self, source: io::Error) -> JournalError {
        JournalError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl Active {
    /// One `write(2)` of a whole line in the common case; a partial write is cut back off,
    /// so that the next line starts on a line of its own.
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        match (&*self.file).write_all(line) {
            Ok(()) => {
                self.len += line.len() as u64;
                self.unsynced = true;
                Ok(())
            }
            Err(error) => {
                let _ = self.file.set_len(self.len);
                Err(error)
            }
        }
    }
}

/// A record as one journal line.
fn encode_line(record: &UsageRecord) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// The records in newline-terminated `bytes`; lines that do not parse are logged and
/// skipped.
fn parse_lines(path: &Path, bytes: &[u8]) -> Vec<UsageRecord> {
    let mut records = Vec::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<UsageRecord>(line) {
            Ok(record) => records.push(record),
            Err(error) => tracing::warn!(
                path = %path.display(),
                line = index + 1,
                %error,
                "skipping unreadable usage journal line"
            ),
        }
    }
    records
}

#[cfg(test)]
mod tests;
