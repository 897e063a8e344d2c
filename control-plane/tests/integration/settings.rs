//! `SettingsAdmin`: managed settings documents and the telemetry collector reach the snapshot.

use tollgate_proto::v1 as pb;
use tollgate_proto::v1::settings_admin_client::SettingsAdminClient;
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};

use crate::support::{TestControlPlane, TestDb, seed_catalogue};

type Interceptor =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send + Sync>;
type SettingsApi = SettingsAdminClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Interceptor>,
>;

async fn settings_admin(cp: &TestControlPlane, key: Option<&str>) -> SettingsApi {
    let value: Option<MetadataValue<Ascii>> = key.map(|k| format!("Bearer {k}").parse().unwrap());
    let interceptor: Interceptor = Box::new(move |mut request: tonic::Request<()>| {
        if let Some(v) = &value {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    });
    SettingsAdminClient::with_interceptor(cp.channel().await, interceptor)
}

#[tokio::test]
async fn settings_documents_and_the_collector_reach_the_snapshot() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let eng = seed_catalogue(&mut admin).await;
    let mut settings = settings_admin(&cp, Some(&cp.admin_key)).await;

    let anonymous = settings_admin(&cp, None)
        .await
        .list_settings_documents(pb::ListSettingsDocumentsRequest {})
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    for (json, groups) in [
        ("[1]", vec!["eng"]),
        ("{", vec!["eng"]),
        ("{}", vec!["nope"]),
    ] {
        let err = settings
            .create_settings_document(pb::CreateSettingsDocumentRequest {
                name: "bad".into(),
                priority: 0,
                group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
                settings_json: json.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{json} {groups:?}");
    }

    let created = settings
        .create_settings_document(pb::CreateSettingsDocumentRequest {
            name: "eng-defaults".into(),
            priority: 5,
            group_ids: vec!["eng".into()],
            settings_json: r#"{"env": {"A": "1"}, "availableModels": ["claude-test"]}"#.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.group_ids, vec![eng.id.clone()]);
    let duplicate = settings
        .create_settings_document(pb::CreateSettingsDocumentRequest {
            name: "eng-defaults".into(),
            settings_json: "{}".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);

    let updated = settings
        .update_settings_document(pb::UpdateSettingsDocumentRequest {
            id: created.id.clone(),
            name: "eng-defaults".into(),
            priority: 7,
            group_ids: vec![eng.id.clone()],
            settings_json: r#"{"env": {"A": "2"}}"#.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.priority, 7);
    let collector = settings
        .set_telemetry_collector(pb::SetTelemetryCollectorRequest {
            url: "http://collector:4318/".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(collector.url, "http://collector:4318");
    let bad_url = settings
        .set_telemetry_collector(pb::SetTelemetryCollectorRequest {
            url: "collector".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_url.code(), Code::InvalidArgument);

    let pool = db.pool().await;
    let snapshot = crate::support::compile(&pool).await.unwrap();
    assert_eq!(snapshot.telemetry_collector_url, "http://collector:4318");
    assert_eq!(snapshot.settings_documents.len(), 1);
    let doc = &snapshot.settings_documents[0];
    assert_eq!(doc.id, created.id);
    assert_eq!(doc.priority, 7);
    assert_eq!(doc.group_ids, vec![eng.id.clone()]);
    let json: serde_json::Value = serde_json::from_str(&doc.settings_json).unwrap();
    assert_eq!(json, serde_json::json!({"env": {"A": "2"}}));
    let enforced = tollgate_policy::Snapshot::try_from(snapshot).unwrap();
    let merged = enforced
        .managed_settings(std::slice::from_ref(&eng.id))
        .unwrap();
    assert_eq!(merged.settings, serde_json::json!({"env": {"A": "2"}}));

    let listed = settings
        .list_settings_documents(pb::ListSettingsDocumentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.documents.len(), 1);
    let before: i64 = sqlx::query_scalar("SELECT version FROM policy_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    settings
        .delete_settings_document(pb::DeleteSettingsDocumentRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap();
    let snapshot = crate::support::compile(&pool).await.unwrap();
    assert!(snapshot.settings_documents.is_empty());
    assert!(snapshot.version > u64::try_from(before).unwrap());
    let gone = settings
        .delete_settings_document(pb::DeleteSettingsDocumentRequest { id: created.id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(
        settings
            .get_telemetry_collector(pb::GetTelemetryCollectorRequest {})
            .await
            .unwrap()
            .into_inner()
            .url,
        "http://collector:4318"
    );
    cp.stop().await;
}
