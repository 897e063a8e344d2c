//! Child processes that are always stopped, and what `/proc` says about any process.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal, kill_process};

/// How long a child gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// A child process that is terminated (SIGTERM, then SIGKILL) when dropped, on every exit path
/// of the harness: success, error, or an interrupt that drops the future owning it.
pub struct ChildGuard {
    name: String,
    child: Child,
    /// Held open so a child that watches its stdin sees EOF when the harness dies.
    _stdin: Option<ChildStdin>,
    log_path: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<ChildGuard> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create log file {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .context("cannot duplicate log file handle")?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(ChildGuard {
            name: name.to_owned(),
            child,
            _stdin: None,
            log_path,
        })
    }

    /// Spawns `cmd` with a piped stdin (kept open for the child's lifetime) and a piped stdout
    /// returned to the caller; stderr goes to `<log_dir>/<name>.log`.
    pub fn spawn_piped(
        name: &str,
        mut cmd: Command,
        log_dir: &Path,
    ) -> Result<(ChildGuard, ChildStdout)> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create log file {}", log_path.display()))?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let guard = ChildGuard {
            name: name.to_owned(),
            child,
            _stdin: stdin,
            log_path,
        };
        match stdout {
            Some(stdout) => Ok((guard, stdout)),
            None => bail!("{name} has no stdout pipe"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the end of the child's log, when the child has already exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited early ({status}); last lines of {}:\n{}",
                self.name,
                self.log_path.display(),
                self.log_tail(30)
            ),
            Err(err) => bail!("cannot query {}: {err}", self.name),
        }
    }

    /// The last `lines` lines of the child's log (at most 64 KiB are read).
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(mut file) = File::open(&self.log_path) else {
            return String::from("(no log)");
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn terminate(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw);
        if let Some(pid) = pid {
            let _ = kill_process(pid, Signal::TERM);
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "{} ignored SIGTERM for {TERM_GRACE:?}; killing it",
                self.name
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// User + system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    // After the command: state(3) ppid(4) … utime(14) stime(15), 1-based in proc(5).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The fields of `/proc/<pid>/stat` that follow the parenthesised command name.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let end = stat.rfind(')')?;
    Some(stat.get(end + 1..)?.split_whitespace().collect())
}

/// Clock ticks per second, to turn [`cpu_ticks`] into time.
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// The direct children of `parent` (e.g. nginx's workers), found by scanning `/proc`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat_fields(&stat).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()));
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Resident set size and its high-water mark, in KiB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let file = File::open(format!("/proc/{pid}/status")).ok()?;
    let mut mem = Memory::default();
    for line in BufReader::new(file).lines().map_while(|l| l.ok()) {
        let value = |prefix: &str| -> Option<u64> {
            line.strip_prefix(prefix)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        };
        if let Some(v) = value("VmRSS:") {
            mem.rss_kib = v;
        } else if let Some(v) = value("VmHWM:") {
            mem.hwm_kib = v;
        }
    }
    Some(mem)
}

/// Busy and total jiffies of the whole machine (first line of `/proc/stat`).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_command_name() {
        let stat = "42 (tokio rt (w)) S 7 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0";
        let fields = stat_fields(stat).unwrap();
        assert_eq!(fields[1], "7");
        assert_eq!(fields[11], "250");
        assert_eq!(fields[12], "31");
    }

    #[test]
    fn reads_own_cpu_and_memory() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(memory(me).unwrap().rss_kib > 0);
        assert!(machine_ticks().unwrap().1 > 0);
    }
}
