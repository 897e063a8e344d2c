//! `tollgate admin` commands of the SettingsAdmin service.

use anyhow::{Context as _, bail};
use tollgate_proto::v1 as pb;

use super::super::args::*;
use super::super::client::AdminClient;
use super::identity::format_instant_ms;
use super::identity::non_empty;
use super::status;
use crate::report::Report;

/// The settings JSON from `--json` or `--file` (`-` reads stdin).
pub(super) fn settings_json(doc: &SettingsDocArgs) -> anyhow::Result<String> {
    let text = match (&doc.json, &doc.file) {
        (Some(json), _) => json.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        (None, None) => bail!("pass the settings with --file or --json"),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).context("the settings are not valid JSON")?;
    if !value.is_object() {
        bail!("the settings must be a JSON object");
    }
    Ok(text)
}

pub(super) async fn settings(client: &mut AdminClient, cmd: SettingsCmd) -> anyhow::Result<Report> {
    let mut r = Report::new([
        "id",
        "name",
        "priority",
        "group_ids",
        "settings",
        "created_at",
        "updated_at",
    ]);
    let row = |d: pb::SettingsDocumentInfo| {
        vec![
            d.id,
            d.name,
            d.priority.to_string(),
            d.group_ids.join(","),
            d.settings_json,
            format_instant_ms(d.created_at_unix_ms),
            format_instant_ms(d.updated_at_unix_ms),
        ]
    };
    match cmd {
        SettingsCmd::Create(doc) => {
            let req = pb::CreateSettingsDocumentRequest {
                settings_json: settings_json(&doc)?,
                name: doc.name,
                priority: doc.priority,
                group_ids: non_empty(doc.groups),
            };
            r.push(row(client
                .settings()
                .create_settings_document(req)
                .await
                .map_err(status)?
                .into_inner()));
        }
        SettingsCmd::Update { id, doc } => {
            let req = pb::UpdateSettingsDocumentRequest {
                id,
                settings_json: settings_json(&doc)?,
                name: doc.name,
                priority: doc.priority,
                group_ids: non_empty(doc.groups),
            };
            r.push(row(client
                .settings()
                .update_settings_document(req)
                .await
                .map_err(status)?
                .into_inner()));
        }
        SettingsCmd::List => {
            let resp = client
                .settings()
                .list_settings_documents(pb::ListSettingsDocumentsRequest {})
                .await
                .map_err(status)?;
            resp.into_inner()
                .documents
                .into_iter()
                .for_each(|d| r.push(row(d)));
        }
        SettingsCmd::Delete { id } => {
            client
                .settings()
                .delete_settings_document(pb::DeleteSettingsDocumentRequest { id })
                .await
                .map_err(status)?;
        }
    }
    Ok(r)
}

pub(super) async fn telemetry(
    client: &mut AdminClient,
    cmd: TelemetryCmd,
) -> anyhow::Result<Report> {
    let info = match cmd {
        TelemetryCmd::SetCollector { url } => {
            client
                .settings()
                .set_telemetry_collector(pb::SetTelemetryCollectorRequest { url })
                .await
        }
        TelemetryCmd::Show => {
            client
                .settings()
                .get_telemetry_collector(pb::GetTelemetryCollectorRequest {})
                .await
        }
    }
    .map_err(status)?
    .into_inner();
    let mut r = Report::new(["collector_url"]);
    r.push(vec![if info.url.is_empty() {
        "-".to_owned()
    } else {
        info.url
    }]);
    Ok(r)
}
