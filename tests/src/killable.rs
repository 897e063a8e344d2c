//! A data plane that can be killed abruptly, like a crashed process: it runs on a runtime of
//! its own (its own thread), and [`KillableDataPlane::kill`] shuts that runtime down without
//! cancelling its shutdown token. Every task stops where it is: no drain, no usage flush, no
//! lease release, the listening socket closes.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tollgate_data_plane::{DataPlaneConfig, DataPlaneHandle};

/// A data plane on a runtime of its own.
pub struct KillableDataPlane {
    pub url: String,
    pub data_plane_id: String,
    handle: Option<DataPlaneHandle>,
    kill: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

type Started = Result<DataPlaneHandle, String>;

impl KillableDataPlane {
    /// Starts a data plane with `config` on a new thread and runtime.
    pub async fn start(config: DataPlaneConfig) -> anyhow::Result<KillableDataPlane> {
        let data_plane_id = config.data_plane_id.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Started>();
        let (kill_tx, kill_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("killable-{data_plane_id}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = started_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                // Never cancelled: a kill is not a shutdown.
                let token = CancellationToken::new();
                let started = rt
                    .block_on(tollgate_data_plane::spawn(config, token))
                    .map_err(|e| e.to_string());
                let ok = started.is_ok();
                let _ = started_tx.send(started);
                if ok {
                    // Tasks run on the runtime's worker until the kill (or the owner's drop).
                    let _ = kill_rx.recv();
                }
                rt.shutdown_background();
            })?;
        let handle = match started_rx.await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => anyhow::bail!("data plane did not start: {e}"),
            Err(_) => anyhow::bail!("data plane thread ended before starting"),
        };
        Ok(KillableDataPlane {
            url: format!("http://{}", handle.addr),
            data_plane_id,
            handle: Some(handle),
            kill: Some(kill_tx),
            thread: Some(thread),
        })
    }

    /// Waits until a snapshot of at least `version` is installed.
    pub async fn wait_for_snapshot_version(&self, version: u64, timeout: Duration) -> bool {
        match &self.handle {
            Some(h) => h.wait_for_snapshot_version(version, timeout).await,
            None => false,
        }
    }

    /// Kills the data plane: every task is dropped where it stands.
    pub async fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // The handle's tasks died with the runtime; dropping it only frees memory.
        self.handle.take();
    }
}

impl Drop for KillableDataPlane {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}
