//! TLS on the client listener (HTTP/1.1 and h2, certificate reload) and to the control plane
//! (mutual TLS), with certificates made here by rcgen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tollgate_data_plane::{ControlPlaneTls, DataPlaneConfig, TlsSettings};
use tollgate_proto::v1::sync_server::SyncServer;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::support::{FakeControlPlane, snapshot};
use crate::{ADA, setup_with};

/// A test certificate authority.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, as PEM, and the certificate as DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    fn server(&self, name: &str) -> Leaf {
        self.leaf(
            name,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, name: &str) -> Leaf {
        self.leaf(name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, name: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// Writes `leaf` to `cert.pem` and `key.pem` in `dir` (each replaced whole, by a rename).
fn install(dir: &Path, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    replace(&key, leaf.key_pem.as_bytes());
    replace(&cert, leaf.cert_pem.as_bytes());
    (cert, key)
}

fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn tls_settings(cert: PathBuf, key: PathBuf) -> TlsSettings {
    TlsSettings {
        reload_interval: Duration::from_millis(100),
        ..TlsSettings::new(cert, key)
    }
}

/// The certificate the data plane presents to a new connection (DER).
async fn presented_certificate(addr: std::net::SocketAddr, ca_pem: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp),
    )
    .await
    .unwrap()
    .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn https_client(ca_pem: &str, http1_only: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().unwrap()
}

#[tokio::test]
async fn serves_https_over_http1_and_h2_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let leaf = ca.server("data plane");
    let (cert, key) = install(dir.path(), &leaf);
    let s = setup_with(
        Duration::ZERO,
        |_| {},
        |c| c.tls = Some(tls_settings(cert, key)),
    )
    .await;
    let url = format!("https://127.0.0.1:{}/v1/models", s.dp.addr.port());

    for (http1_only, version) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        let answer = https_client(&ca.pem, http1_only)
            .get(&url)
            .header(ADA.0, ADA.1)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.version(), version, "ALPN picks the protocol");
        assert_eq!(answer.status(), 200);
        let models: serde_json::Value = answer.json().await.unwrap();
        assert!(models["data"].as_array().is_some_and(|m| !m.is_empty()));
    }

    // Cleartext on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/models", s.dp.addr.port()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    assert_eq!(presented_certificate(s.dp.addr, &ca.pem).await, leaf.der);
    s.stop().await;
}

#[tokio::test]
async fn presents_a_replaced_certificate_without_restart_and_keeps_it_over_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let first = ca.server("first");
    let (cert, key) = install(dir.path(), &first);
    let s = setup_with(
        Duration::ZERO,
        |_| {},
        |c| c.tls = Some(tls_settings(cert.clone(), key.clone())),
    )
    .await;
    assert_eq!(presented_certificate(s.dp.addr, &ca.pem).await, first.der);

    let second = ca.server("second");
    install(dir.path(), &second);
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented_certificate(s.dp.addr, &ca.pem).await != second.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate is served within the reload interval"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A corrupt certificate, then a key that does not belong to the certificate: both are
    // refused and the second certificate stays.
    replace(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(presented_certificate(s.dp.addr, &ca.pem).await, second.der);
    let third = ca.server("third");
    replace(&cert, third.cert_pem.as_bytes());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        presented_certificate(s.dp.addr, &ca.pem).await,
        second.der,
        "a certificate without its key is not served"
    );
    replace(&key, third.key_pem.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented_certificate(s.dp.addr, &ca.pem).await != third.der {
        assert!(Instant::now() < deadline, "a good pair is picked up again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn refuses_to_start_with_an_unreadable_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&key, b"not a key").unwrap();
    let mut config = crate::config("http://127.0.0.1:9".into());
    config.tls = Some(TlsSettings::new(missing.clone(), key));
    let error = tollgate_data_plane::spawn(config, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("tls_cert_file: cannot read {}", missing.display())),
        "{error}"
    );
}

#[test]
fn check_config_rejects_a_missing_certificate_file_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&key, Ca::new("ca").server("dp").key_pem).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-data-plane"))
        .env_clear()
        .arg("--check-config")
        .args(["--sync-token", "token"])
        .arg("--tls-cert-file")
        .arg(&missing)
        .arg("--tls-key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("tls_cert_file: cannot read {}", missing.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}

/// A fake control plane serving `Sync` over TLS, requiring client certificates from
/// `client_ca`.
async fn serve_mtls(
    cp: &FakeControlPlane,
    server: &Leaf,
    client_ca: &Ca,
    stop: CancellationToken,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&server.cert_pem, &server.key_pem))
        .client_ca_root(Certificate::from_pem(&client_ca.pem));
    let serve = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(SyncServer::new(cp.clone()))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned());
    tokio::spawn(serve);
    format!("https://127.0.0.1:{}", addr.port())
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn syncs_from_a_control_plane_over_mutual_tls_and_is_refused_without_a_trusted_client_certificate()
 {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster ca");
    let cp_leaf = ca.server("control plane");
    let cp = FakeControlPlane::new();
    let stop = CancellationToken::new();
    let url = serve_mtls(&cp, &cp_leaf, &ca, stop.clone()).await;
    cp.publish(snapshot(1, "http://127.0.0.1:9"));
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);

    let start = |tls: ControlPlaneTls| {
        let mut config = DataPlaneConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            url.clone(),
            SecretString::from(crate::support::SYNC_TOKEN),
        );
        config.control_plane_tls = tls;
        config.shutdown_drain_timeout = Duration::from_secs(2);
        async move {
            let stop = CancellationToken::new();
            let dp = tollgate_data_plane::spawn(config, stop.clone())
                .await
                .unwrap();
            let synced = dp
                .wait_for_snapshot_version(1, Duration::from_secs(3))
                .await;
            stop.cancel();
            dp.wait().await.unwrap();
            synced
        }
    };

    let client = ca.client("dp-1");
    let trusted = ControlPlaneTls {
        ca_file: Some(ca_file.clone()),
        client_cert_file: Some(write(dir.path(), "client.pem", &client.cert_pem)),
        client_key_file: Some(write(dir.path(), "client.key", &client.key_pem)),
    };
    assert!(
        start(trusted).await,
        "a data plane with a client certificate syncs"
    );

    let without = ControlPlaneTls {
        ca_file: Some(ca_file.clone()),
        ..ControlPlaneTls::default()
    };
    assert!(!start(without).await, "no client certificate: refused");

    let other = Ca::new("other ca").client("dp-2");
    let foreign = ControlPlaneTls {
        ca_file: Some(ca_file),
        client_cert_file: Some(write(dir.path(), "other.pem", &other.cert_pem)),
        client_key_file: Some(write(dir.path(), "other.key", &other.key_pem)),
    };
    assert!(
        !start(foreign).await,
        "a client certificate from another CA: refused"
    );
    stop.cancel();
}
