//! TLS and mutual TLS on the gRPC listener, with certificates made here by rcgen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::{ControlPlaneConfig, GrpcTls};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::sync_client::SyncClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Status};

use crate::support::{SYNC_TOKEN, TestControlPlane, TestDb};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
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
        }
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The first snapshot over `https`, as a data plane presenting `client` (or no certificate).
async fn first_snapshot(
    cp: &TestControlPlane,
    ca: &Ca,
    client: Option<&Leaf>,
    token: &str,
) -> Result<pb::Snapshot, Status> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.pem));
    if let Some(leaf) = client {
        tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", cp.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let bearer: MetadataValue<Ascii> = format!("Bearer {token}").parse().unwrap();
    let mut sync = SyncClient::with_interceptor(channel, move |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        Ok(request)
    });
    let call = sync.watch_snapshots(pb::WatchSnapshotsRequest {
        data_plane_id: "dp-tls".to_owned(),
        known_version: 0,
    });
    let mut stream = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .map_err(|_| Status::deadline_exceeded("no answer"))??
        .into_inner();
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no snapshot"))??
        .ok_or_else(|| Status::unknown("stream ended"))
}

#[tokio::test]
async fn serves_sync_over_mutual_tls_and_refuses_callers_without_a_trusted_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster ca");
    let server = ca.leaf(
        "control plane",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let db = TestDb::create().await;
    let mut config = db.config();
    config.grpc_tls = Some(GrpcTls {
        cert_file: write(dir.path(), "cp.pem", &server.cert_pem),
        key_file: write(dir.path(), "cp.key", &server.key_pem),
        client_ca_file: Some(write(dir.path(), "ca.pem", &ca.pem)),
    });
    let cp = TestControlPlane::start_with(config).await;

    let client = ca.leaf("dp-1", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let snapshot = first_snapshot(&cp, &ca, Some(&client), SYNC_TOKEN)
        .await
        .unwrap();
    assert!(snapshot.version > 0);

    let refused = first_snapshot(&cp, &ca, None, SYNC_TOKEN).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let foreign = Ca::new("other ca").leaf("dp-2", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let refused = first_snapshot(&cp, &ca, Some(&foreign), SYNC_TOKEN).await;
    assert!(refused.is_err(), "certificate of another CA: {refused:?}");
    let no_token = first_snapshot(&cp, &ca, Some(&client), "wrong-token").await;
    assert_eq!(
        no_token.unwrap_err().code(),
        Code::Unauthenticated,
        "the sync token is still required"
    );
    cp.stop().await;
}

#[tokio::test]
async fn refuses_to_start_with_an_unreadable_grpc_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let mut config = ControlPlaneConfig::new(
        SecretString::from("postgres://nobody@127.0.0.1:1/none"),
        "127.0.0.1:0".parse().unwrap(),
        SecretString::from(SYNC_TOKEN),
    );
    config.grpc_tls = Some(GrpcTls {
        cert_file: missing.clone(),
        key_file: missing.clone(),
        client_ca_file: None,
    });
    let error = tollgate_control_plane::spawn(config, CancellationToken::new())
        .await
        .unwrap_err();
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(
        source.contains(&format!(
            "grpc_tls_cert_file: cannot read {}",
            missing.display()
        )),
        "{source}"
    );
}
