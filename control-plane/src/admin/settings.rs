//! The `SettingsAdmin` gRPC service: Claude Code managed settings documents and the
//! telemetry collector URL. Same admin-key check and error mapping as `Admin`.

use tollgate_proto::v1 as pb;
use tollgate_proto::v1::settings_admin_server::SettingsAdminServer;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{AdminService, handle, required};
use crate::store::settings::{self, SettingsDocumentRow, SettingsDocumentSpec};

/// Larger settings documents are refused (Claude Code's own files are a few KiB).
const MAX_SETTINGS_BYTES: usize = 256 * 1024;

/// The `SettingsAdmin` service, sharing `Admin`'s pool, organisation and key check.
#[derive(Clone)]
pub struct SettingsAdminService {
    admin: AdminService,
}

/// The tonic server for `SettingsAdmin`.
pub fn server(admin: AdminService) -> SettingsAdminServer<SettingsAdminService> {
    SettingsAdminServer::new(SettingsAdminService { admin })
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::settings_admin_server::SettingsAdmin for SettingsAdminService {
    async fn create_settings_document(
        &self,
        request: Request<pb::CreateSettingsDocumentRequest>,
    ) -> Reply<pb::SettingsDocumentInfo> {
        handle!(self.admin => self, request, Self::create_document)
    }

    async fn update_settings_document(
        &self,
        request: Request<pb::UpdateSettingsDocumentRequest>,
    ) -> Reply<pb::SettingsDocumentInfo> {
        handle!(self.admin => self, request, Self::update_document)
    }

    async fn list_settings_documents(
        &self,
        request: Request<pb::ListSettingsDocumentsRequest>,
    ) -> Reply<pb::ListSettingsDocumentsResponse> {
        handle!(self.admin => self, request, Self::list_documents)
    }

    async fn delete_settings_document(
        &self,
        request: Request<pb::DeleteSettingsDocumentRequest>,
    ) -> Reply<pb::DeleteSettingsDocumentResponse> {
        handle!(self.admin => self, request, Self::delete_document)
    }

    async fn set_telemetry_collector(
        &self,
        request: Request<pb::SetTelemetryCollectorRequest>,
    ) -> Reply<pb::TelemetryCollectorInfo> {
        handle!(self.admin => self, request, Self::set_collector)
    }

    async fn get_telemetry_collector(
        &self,
        request: Request<pb::GetTelemetryCollectorRequest>,
    ) -> Reply<pb::TelemetryCollectorInfo> {
        handle!(self.admin => self, request, Self::get_collector)
    }
}

impl SettingsAdminService {
    async fn create_document(
        &self,
        req: pb::CreateSettingsDocumentRequest,
    ) -> Result<pb::SettingsDocumentInfo, Status> {
        let json = settings_json(&req.settings_json)?;
        let spec = SettingsDocumentSpec {
            name: required("name", &req.name)?.trim(),
            priority: req.priority,
            groups: &req.group_ids,
            settings_json: &json,
        };
        let row = settings::create(&self.admin.pool, self.admin.org_id, &spec).await?;
        Ok(info(row))
    }

    async fn update_document(
        &self,
        req: pb::UpdateSettingsDocumentRequest,
    ) -> Result<pb::SettingsDocumentInfo, Status> {
        let id = document_id(&req.id)?;
        let json = settings_json(&req.settings_json)?;
        let spec = SettingsDocumentSpec {
            name: required("name", &req.name)?.trim(),
            priority: req.priority,
            groups: &req.group_ids,
            settings_json: &json,
        };
        let row = settings::update(&self.admin.pool, self.admin.org_id, id, &spec).await?;
        Ok(info(row))
    }

    async fn list_documents(
        &self,
        _: pb::ListSettingsDocumentsRequest,
    ) -> Result<pb::ListSettingsDocumentsResponse, Status> {
        let documents = settings::list(&self.admin.pool)
            .await?
            .into_iter()
            .map(info)
            .collect();
        Ok(pb::ListSettingsDocumentsResponse { documents })
    }

    async fn delete_document(
        &self,
        req: pb::DeleteSettingsDocumentRequest,
    ) -> Result<pb::DeleteSettingsDocumentResponse, Status> {
        let id = document_id(&req.id)?;
        settings::delete(&self.admin.pool, id).await?;
        Ok(pb::DeleteSettingsDocumentResponse {})
    }

    async fn set_collector(
        &self,
        req: pb::SetTelemetryCollectorRequest,
    ) -> Result<pb::TelemetryCollectorInfo, Status> {
        let url = collector_url(&req.url)?;
        settings::set_telemetry_collector(&self.admin.pool, &url).await?;
        Ok(pb::TelemetryCollectorInfo { url })
    }

    async fn get_collector(
        &self,
        _: pb::GetTelemetryCollectorRequest,
    ) -> Result<pb::TelemetryCollectorInfo, Status> {
        let url = settings::telemetry_collector(&self.admin.pool).await?;
        Ok(pb::TelemetryCollectorInfo { url })
    }
}

fn document_id(id: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(id.trim())
        .map_err(|_| Status::invalid_argument("id must be a settings document id (a UUID)"))
}

/// Checks that `text` is a JSON object and returns it compact.
fn settings_json(text: &str) -> Result<String, Status> {
    if text.len() > MAX_SETTINGS_BYTES {
        return Err(Status::invalid_argument(format!(
            "settings_json is larger than {MAX_SETTINGS_BYTES} bytes"
        )));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value.to_string()),
        Ok(_) => Err(Status::invalid_argument(
            "settings_json must be a JSON object",
        )),
        Err(e) => Err(Status::invalid_argument(format!(
            "settings_json is not valid JSON: {e}"
        ))),
    }
}

/// An absolute http(s) base URL without query; trailing slashes and a `/v1/…` suffix are
/// the caller's mistake to avoid, so only the slashes are trimmed. Empty = off.
fn collector_url(url: &str) -> Result<String, Status> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(String::new());
    }
    let bad = || Status::invalid_argument("url must be an absolute http(s) URL without a query");
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|_| bad())?;
    if !matches!(uri.scheme_str(), Some("http" | "https"))
        || uri.host().is_none_or(str::is_empty)
        || uri.query().is_some()
    {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn info(row: SettingsDocumentRow) -> pb::SettingsDocumentInfo {
    pb::SettingsDocumentInfo {
        id: row.id.to_string(),
        name: row.name,
        priority: row.priority,
        group_ids: row.group_ids.iter().map(ToString::to_string).collect(),
        settings_json: row.settings_json,
        created_at_unix_ms: row.created_at.timestamp_millis(),
        updated_at_unix_ms: row.updated_at.timestamp_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_must_be_a_json_object() {
        assert_eq!(settings_json(r#"{ "a" : 1 }"#).unwrap(), r#"{"a":1}"#);
        for bad in ["[1]", "1", "nope", ""] {
            assert_eq!(
                settings_json(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn collector_urls_are_absolute_http() {
        assert_eq!(collector_url("http://c:4318/").unwrap(), "http://c:4318");
        assert_eq!(collector_url("").unwrap(), "");
        assert!(collector_url("ftp://c").is_err());
        assert!(collector_url("http://c/?a=1").is_err());
        assert!(collector_url("c:4318").is_err());
    }
}
