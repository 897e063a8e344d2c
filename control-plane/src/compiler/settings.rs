//! The snapshot's managed-settings and telemetry sections.

use tollgate_proto::v1 as pb;

use crate::store::settings::SettingsPolicyRows;

/// Fills `settings_documents` and `telemetry_collector_url`.
pub(crate) fn apply(snapshot: &mut pb::Snapshot, rows: SettingsPolicyRows) {
    snapshot.settings_documents = rows
        .documents
        .into_iter()
        .map(|d| pb::SettingsDocument {
            id: d.id.to_string(),
            name: d.name,
            priority: d.priority,
            group_ids: d.group_ids.iter().map(ToString::to_string).collect(),
            settings_json: d.settings_json,
        })
        .collect();
    snapshot.telemetry_collector_url = rows.telemetry_collector_url;
}
