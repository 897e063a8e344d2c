//! The local snapshot cache: a data plane restarted while the control plane is away serves
//! from the last good snapshot it kept; a damaged cache is ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tollgate_data_plane::{DataPlaneConfig, DataPlaneHandle};

use super::support::{FakeControlPlane, PROVIDER_KEY, send, snapshot};
use super::{ADA, config};

const DEMO: &str =
    r#"{"model":"claude-demo","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;

fn cache_path(dir: &Path) -> PathBuf {
    dir.join("state").join("snapshot.cache")
}

/// A data plane with the snapshot cache (and a usage spool, since the control plane may be
/// gone when it stops) in `dir`, and the admin listener for `/readyz`.
fn cached_config(cp_url: String, dir: &Path) -> DataPlaneConfig {
    let mut config = config(cp_url);
    config.snapshot_cache_path = Some(cache_path(dir));
    config.spool_path = Some(dir.join("usage.jsonl"));
    config.shutdown_drain_timeout = Duration::from_millis(500);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    config
}

async fn start(config: DataPlaneConfig) -> (DataPlaneHandle, CancellationToken) {
    let stop = CancellationToken::new();
    let dp = tollgate_data_plane::spawn(config, stop.clone())
        .await
        .unwrap();
    (dp, stop)
}

async fn stop(dp: DataPlaneHandle, stop: CancellationToken) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), dp.wait())
        .await
        .unwrap()
        .unwrap();
}

async fn readyz(dp: &DataPlaneHandle) -> u16 {
    send(dp.admin_addr.unwrap(), "GET", "/readyz", &[], "", false)
        .await
        .status
        .as_u16()
}

/// Runs a data plane against a control plane publishing `version` until it holds it, then
/// stops both: the cache file is what is left.
async fn cache_a_snapshot(dir: &Path, version: u64) -> Vec<u8> {
    let cp = FakeControlPlane::new();
    let cp_stop = CancellationToken::new();
    let cp_url = cp.serve(cp_stop.clone()).await;
    cp.publish(snapshot(version, "http://127.0.0.1:9"));
    let (dp, dp_stop) = start(cached_config(cp_url, dir)).await;
    assert!(
        dp.wait_for_snapshot_version(version, Duration::from_secs(10))
            .await
    );
    stop(dp, dp_stop).await;
    cp_stop.cancel();
    std::fs::read(cache_path(dir)).unwrap()
}

#[tokio::test]
async fn restarted_without_a_control_plane_serves_from_the_snapshot_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cached = cache_a_snapshot(dir.path(), 4).await;
    assert!(
        !cached
            .windows(PROVIDER_KEY.len())
            .any(|w| w == PROVIDER_KEY.as_bytes()),
        "the provider credential is not on disk in the clear"
    );

    // Nothing answers at the control-plane address now.
    let (dp, dp_stop) = start(cached_config("http://127.0.0.1:9".into(), dir.path())).await;
    assert_eq!(
        dp.snapshot_version(),
        Some(4),
        "installed before any contact"
    );
    assert_eq!(readyz(&dp).await, 200);
    let answer = send(dp.addr, "POST", "/v1/messages", &[ADA], DEMO, false).await;
    assert_eq!(answer.status, 200);
    let unknown = send(
        dp.addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", "tg_nobody")],
        DEMO,
        false,
    )
    .await;
    assert_eq!(unknown.status, 401, "the cached policy is enforced");
    stop(dp, dp_stop).await;
}

#[tokio::test]
async fn a_corrupted_snapshot_cache_is_ignored_and_the_data_plane_waits_for_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let mut corrupted = cache_a_snapshot(dir.path(), 4).await;
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x01;
    std::fs::write(cache_path(dir.path()), &corrupted).unwrap();

    // A control plane that has nothing to publish yet.
    let cp = FakeControlPlane::new();
    let cp_stop = CancellationToken::new();
    let cp_url = cp.serve(cp_stop.clone()).await;
    let (dp, dp_stop) = start(cached_config(cp_url, dir.path())).await;
    assert_eq!(dp.snapshot_version(), None);
    assert_eq!(readyz(&dp).await, 503);
    let answer = send(dp.addr, "POST", "/v1/messages", &[ADA], DEMO, false).await;
    assert_eq!(answer.status, 503);

    // The control plane's snapshot is served, and replaces the damaged cache.
    cp.publish(snapshot(5, "http://127.0.0.1:9"));
    assert!(
        dp.wait_for_snapshot_version(5, Duration::from_secs(10))
            .await
    );
    assert_eq!(readyz(&dp).await, 200);
    stop(dp, dp_stop).await;
    cp_stop.cancel();
    let rewritten = std::fs::read(cache_path(dir.path())).unwrap();
    assert_ne!(rewritten, corrupted);

    let (dp, dp_stop) = start(cached_config("http://127.0.0.1:9".into(), dir.path())).await;
    assert_eq!(
        dp.snapshot_version(),
        Some(5),
        "the rewritten cache is usable"
    );
    stop(dp, dp_stop).await;
}
