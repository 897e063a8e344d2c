//! A private PostgreSQL cluster started from the server binaries, for `tollgate dev` and the
//! test harness on machines where no server answers.
//!
//! PostgreSQL refuses to run as root; when we are root the cluster is owned by and run as an
//! unprivileged account (`postgres` if it exists, else `nobody`) through `runuser`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// Why a private cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found; install them \
         (Debian/Ubuntu: `apt-get install -y postgresql`) or set DATABASE_URL to an existing server"
    )]
    BinariesMissing,
    #[error("{step} failed: {detail}")]
    Command { step: &'static str, detail: String },
    #[error("io error while {action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A running private cluster. Stop it with [`PrivateCluster::stop`]; dropping it leaves the
/// server running (use stop on every exit path).
#[derive(Debug)]
pub struct PrivateCluster {
    bindir: PathBuf,
    data_dir: PathBuf,
    run_as: Option<String>,
    port: u16,
}

/// Options for [`PrivateCluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Directory holding the cluster (created and initialised when empty).
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Trade durability for speed (tests): fsync off.
    pub ephemeral: bool,
}

impl PrivateCluster {
    /// Initialises the cluster if needed and starts it, waiting until it accepts connections.
    pub async fn start(opts: &ClusterOptions) -> Result<Self, ClusterError> {
        let bindir = find_bindir().ok_or(ClusterError::BinariesMissing)?;
        let run_as = unprivileged_user().await;
        let mut dir = absolute(&opts.dir)?;
        create_dir(&dir)?;
        if let Some(user) = &run_as {
            run("chown", Command::new("chown").arg("-R").arg(user).arg(&dir)).await?;
            if !user_can_write(user, &dir).await {
                // The unprivileged account cannot reach the directory (e.g. under /root):
                // keep the cluster in a stable place under the system temp directory instead.
                dir = std::env::temp_dir().join(format!("tollgate-pg-{}", path_tag(&dir)));
                create_dir(&dir)?;
                run("chown", Command::new("chown").arg("-R").arg(user).arg(&dir)).await?;
            }
        }
        let data_dir = dir.join("data");
        let socket_dir = dir.join("socket");
        create_dir(&socket_dir)?;
        if let Some(user) = &run_as {
            run("chown", Command::new("chown").arg(user).arg(&socket_dir)).await?;
        }
        let port = if opts.port == 0 {
            free_port()?
        } else {
            opts.port
        };
        let cluster = PrivateCluster {
            bindir,
            data_dir,
            run_as,
            port,
        };
        if !cluster.data_dir.join("PG_VERSION").exists() {
            let mut cmd = cluster.pg_command("initdb");
            cmd.arg("-D").arg(&cluster.data_dir).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]);
            run("initdb", &mut cmd).await?;
        }
        let mut server_opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {}",
            socket_dir.display()
        );
        if opts.ephemeral {
            server_opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let mut cmd = cluster.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(&cluster.data_dir)
            .arg("-o")
            .arg(server_opts)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .args(["-w", "-t", "60", "start"]);
        run("pg_ctl start", &mut cmd).await?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (where `PG_VERSION` lives).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The account the server runs as when we are root.
    pub fn run_as(&self) -> Option<&str> {
        self.run_as.as_deref()
    }

    /// Stops the server (fast mode: running transactions are rolled back).
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "stop"]);
        run("pg_ctl stop", &mut cmd).await
    }

    fn pg_command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(path);
                cmd
            }
            None => Command::new(path),
        }
    }
}

fn create_dir(d: &Path) -> Result<(), ClusterError> {
    std::fs::create_dir_all(d).map_err(|source| ClusterError::Io {
        action: "creating the cluster directory",
        source,
    })
}

/// A short stable tag for a path (FNV-1a), to name a fallback directory.
fn path_tag(p: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in p.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

async fn user_can_write(user: &str, dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", user, "--", "test", "-w"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

fn absolute(p: &Path) -> Result<PathBuf, ClusterError> {
    std::path::absolute(p).map_err(|source| ClusterError::Io {
        action: "resolving the cluster directory",
        source,
    })
}

fn free_port() -> Result<u16, ClusterError> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(|source| {
        ClusterError::Io {
            action: "picking a free port",
            source,
        }
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| ClusterError::Io {
            action: "picking a free port",
            source,
        })
}

async fn run(step: &'static str, cmd: &mut Command) -> Result<(), ClusterError> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| ClusterError::Command {
            step,
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        Err(ClusterError::Command { step, detail })
    }
}

/// Where `initdb` and `pg_ctl` live: `TOLLGATE_PG_BINDIR` is read by callers; here we search
/// PATH, then Debian's versioned directories (newest first).
pub fn find_bindir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_both(&d) {
                return Some(d);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// The account to run PostgreSQL as when we are root; `None` when we are not root.
async fn unprivileged_user() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    for user in ["postgres", "nobody"] {
        let ok = Command::new("id")
            .arg("-u")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if ok {
            return Some(user.to_owned());
        }
    }
    Some("nobody".to_owned())
}
