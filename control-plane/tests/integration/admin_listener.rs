//! The control plane's admin listener: `/healthz`, `/readyz` (database answered and a
//! snapshot compiled), `/metrics`, and 404 elsewhere.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::TestDb;

#[tokio::test]
async fn the_admin_listener_reports_health_readiness_and_metrics() {
    let db = TestDb::create().await;
    let mut config = db.config();
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let shutdown = CancellationToken::new();
    let handle = tollgate_control_plane::spawn(config, shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", handle.admin_addr.unwrap());
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = get("/readyz").await.unwrap();
        if ready.status() == 200 {
            assert!(ready.text().await.unwrap().starts_with("ready: snapshot "));
            break;
        }
        assert_eq!(ready.status(), 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready within 10 s: {}",
            ready.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get("/metrics").await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert_eq!(get("/elsewhere").await.unwrap().status(), 404);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("control plane stops within 10 s")
        .unwrap();
}
