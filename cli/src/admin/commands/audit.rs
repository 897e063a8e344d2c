//! `tollgate admin audit|content-capture`: commands of the AuditAdmin service for the audit
//! log (list, SIEM export, checkpoints, retention) and content capture.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::DateTime;
use tollgate_proto::v1 as pb;

use super::super::args::{AuditCmd, AuditFilterArgs, AuditRetentionArgs, ContentCaptureArg};
use super::super::client::AdminClient;
use super::super::time_arg::parse_instant;
use super::status;
use crate::report::{Format, Report};

/// Entries asked for per call (the service's maximum).
const PAGE: u32 = 1000;

pub(super) async fn audit(
    client: &mut AdminClient,
    cmd: AuditCmd,
    format: Format,
) -> anyhow::Result<String> {
    match cmd {
        AuditCmd::List { filter, limit } => {
            let mut r = Report::new(["seq", "time", "actor", "action", "target"]);
            each_entry(client, &filter, Some(limit), |e| {
                r.push(vec![
                    e.seq.to_string(),
                    entry_time(e.at_unix_us),
                    e.actor,
                    e.action,
                    e.target,
                ]);
                Ok(())
            })
            .await?;
            Ok(r.render(format))
        }
        AuditCmd::Export { filter, output } => {
            let mut out = Output::open(output.as_deref())?;
            let n = each_entry(client, &filter, None, |e| {
                let line = tollgate_control_plane::audit_retention::json_line(&e);
                writeln!(out, "{line}").context("cannot write the export")
            })
            .await?;
            out.finish()?;
            eprintln!(
                "exported {n} audit entr{}",
                if n == 1 { "y" } else { "ies" }
            );
            Ok(String::new())
        }
        AuditCmd::Checkpoints => checkpoints(client).await.map(|r| r.render(format)),
        AuditCmd::Retention(args) => retention(client, args).await.map(|r| r.render(format)),
    }
}

pub(super) async fn content_capture(
    client: &mut AdminClient,
    state: ContentCaptureArg,
) -> anyhow::Result<Report> {
    let settings = match state {
        ContentCaptureArg::Status => get_settings(client).await?,
        ContentCaptureArg::On | ContentCaptureArg::Off => {
            let req = pb::UpdateObservabilitySettingsRequest {
                content_capture: Some(state == ContentCaptureArg::On),
                audit_retention_days: None,
            };
            update_settings(client, req).await?
        }
    };
    Ok(settings_report(&settings))
}

/// Calls `f` with every matching entry in sequence order (at most `max`); returns how many.
async fn each_entry(
    client: &mut AdminClient,
    filter: &AuditFilterArgs,
    max: Option<u32>,
    mut f: impl FnMut(pb::AuditEntry) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let instant = |s: &Option<String>| -> anyhow::Result<i64> {
        s.as_deref()
            .map(|s| parse_instant(s).map_err(anyhow::Error::msg))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let mut req = pb::ListAuditEntriesRequest {
        actor: filter.actor.clone().unwrap_or_default(),
        action_prefix: filter.action.clone().unwrap_or_default(),
        target_prefix: filter.target.clone().unwrap_or_default(),
        since_unix_s: instant(&filter.since)?,
        until_unix_s: instant(&filter.until)?,
        after_seq: 0,
        limit: PAGE,
    };
    let mut seen: u64 = 0;
    loop {
        let remaining = max.map(|m| u64::from(m).saturating_sub(seen));
        if remaining == Some(0) {
            return Ok(seen);
        }
        req.limit = remaining.map_or(PAGE, |r| u32::try_from(r).unwrap_or(PAGE).min(PAGE));
        let page = client
            .audit()
            .list_audit_entries(req.clone())
            .await
            .map_err(status)?
            .into_inner();
        for e in page.entries {
            f(e)?;
            seen += 1;
        }
        if page.next_after_seq == 0 {
            return Ok(seen);
        }
        req.after_seq = page.next_after_seq;
    }
}

/// An entry's time to the second, UTC.
fn entry_time(at_unix_us: i64) -> String {
    DateTime::from_timestamp_micros(at_unix_us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| at_unix_us.to_string())
}

async fn checkpoints(client: &mut AdminClient) -> anyhow::Result<Report> {
    let mut r = Report::new(["id", "tree_size", "head_hash", "signed_at", "key_id"]);
    let mut after_id = 0;
    loop {
        let page = client
            .audit()
            .list_audit_checkpoints(pb::ListAuditCheckpointsRequest {
                after_id,
                limit: PAGE,
            })
            .await
            .map_err(status)?
            .into_inner();
        for c in page.checkpoints {
            r.push(vec![
                c.id.to_string(),
                c.tree_size.to_string(),
                hex::encode(&c.head_hash),
                c.signed_at,
                c.key_id,
            ]);
        }
        if page.next_after_id == 0 {
            return Ok(r);
        }
        after_id = page.next_after_id;
    }
}

async fn retention(client: &mut AdminClient, args: AuditRetentionArgs) -> anyhow::Result<Report> {
    let days = match (args.days, args.forever) {
        (Some(days), _) => Some(days),
        (None, true) => Some(0),
        (None, false) => None,
    };
    let settings = match days {
        None => get_settings(client).await?,
        Some(days) => {
            let req = pb::UpdateObservabilitySettingsRequest {
                content_capture: None,
                audit_retention_days: Some(days),
            };
            update_settings(client, req).await?
        }
    };
    Ok(settings_report(&settings))
}

async fn get_settings(client: &mut AdminClient) -> anyhow::Result<pb::ObservabilitySettings> {
    Ok(client
        .audit()
        .get_observability_settings(pb::GetObservabilitySettingsRequest {})
        .await
        .map_err(status)?
        .into_inner())
}

async fn update_settings(
    client: &mut AdminClient,
    req: pb::UpdateObservabilitySettingsRequest,
) -> anyhow::Result<pb::ObservabilitySettings> {
    Ok(client
        .audit()
        .update_observability_settings(req)
        .await
        .map_err(status)?
        .into_inner())
}

fn settings_report(s: &pb::ObservabilitySettings) -> Report {
    let mut r = Report::new(["content_capture", "audit_retention_days"]);
    r.push(vec![
        if s.content_capture { "on" } else { "off" }.to_owned(),
        match s.audit_retention_days {
            0 => "forever".to_owned(),
            days => days.to_string(),
        },
    ]);
    r
}

/// Where an export goes: stdout, or a file written as `<file>.partial` and renamed into place
/// once complete (so an interrupted export never looks finished).
pub(super) enum Output {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        writer: BufWriter<File>,
        partial: PathBuf,
        path: PathBuf,
    },
}

impl Output {
    pub(super) fn open(path: Option<&Path>) -> anyhow::Result<Output> {
        let Some(path) = path else {
            return Ok(Output::Stdout(BufWriter::new(std::io::stdout())));
        };
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Ok(Output::File {
            writer: BufWriter::new(file),
            partial,
            path: path.to_owned(),
        })
    }

    /// Flushes, and for a file syncs it and moves it into place.
    pub(super) fn finish(self) -> anyhow::Result<()> {
        match self {
            Output::Stdout(mut out) => out.flush().context("cannot write to stdout"),
            Output::File {
                writer,
                partial,
                path,
            } => {
                let file = writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| format!("cannot write {}", partial.display()))?;
                file.sync_all()
                    .with_context(|| format!("cannot write {}", partial.display()))?;
                std::fs::rename(&partial, &path)
                    .with_context(|| format!("cannot move the export to {}", path.display()))
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Stdout(out) => out.write(buf),
            Output::File { writer, .. } => writer.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush(),
            Output::File { writer, .. } => writer.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_zero_shows_as_forever() {
        let r = settings_report(&pb::ObservabilitySettings {
            content_capture: true,
            audit_retention_days: 0,
        });
        assert_eq!(r.rows, vec![vec!["on".to_owned(), "forever".to_owned()]]);
    }

    #[test]
    fn entry_times_are_utc_seconds() {
        assert_eq!(entry_time(1_767_312_000_999_999), "2026-01-02T00:00:00Z");
    }

    #[test]
    fn file_exports_appear_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut out = Output::open(Some(&path)).unwrap();
        writeln!(out, "{{}}").unwrap();
        assert!(!path.exists());
        out.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
