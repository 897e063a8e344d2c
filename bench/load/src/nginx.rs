//! The baseline: a bare nginx reverse-proxy hop in front of the same fake upstream.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{ChildGuard, children_of};
use crate::stack::free_port;

pub struct Nginx {
    /// Stops nginx when dropped.
    _guard: ChildGuard,
    pub addr: SocketAddr,
    /// The master process and its workers, for CPU accounting.
    pub pids: Vec<u32>,
    pub version: String,
}

/// `nginx` on PATH (or in /usr/sbin, which is not on every PATH).
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
}

fn config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        "# Written by tollgate-load: the smallest sensible reverse-proxy hop.
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream fake {{
        server {upstream};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
        }}
    }}
}}
"
    )
}

/// Starts nginx in the foreground with its own prefix and config under `dir`.
pub async fn start(binary: &Path, dir: &Path, upstream: SocketAddr) -> Result<Nginx> {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, listen, upstream))
        .with_context(|| format!("cannot write {}", conf.display()))?;
    let version = Command::new(binary)
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace("nginx version: ", "")
        })
        .unwrap_or_default();
    let mut cmd = Command::new(binary);
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"]);
    let mut guard = ChildGuard::spawn("nginx", cmd, dir)?;
    for _ in 0..100 {
        guard.ensure_running()?;
        let workers = children_of(guard.pid());
        if !workers.is_empty() && tokio::net::TcpStream::connect(listen).await.is_ok() {
            let mut pids = vec![guard.pid()];
            pids.extend(workers);
            return Ok(Nginx {
                _guard: guard,
                addr: listen,
                pids,
                version,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "nginx did not start listening on {listen} within 5 s:\n{}",
        guard.log_tail(20)
    )
}
