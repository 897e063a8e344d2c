//! The snapshot's managed-settings and telemetry sections.

use sqlx::PgPool;
use tollgate_proto::v1 as pb;

use crate::store::StoreError;
use crate::store::settings::{self, SettingsPolicyRows};

/// Reads the settings rows in a `REPEATABLE READ` transaction of their own (like the
/// identity rows): when a change lands in between, its notification triggers a compile at
/// its own version right after.
pub(crate) async fn load(pool: &PgPool) -> Result<SettingsPolicyRows, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = settings::load_policy(&mut tx).await?;
    tx.commit().await?;
    Ok(rows)
}

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
