//! The snapshot's spend caps and budget settings (defaults when no settings row exists).

use sqlx::PgConnection;
use tollgate_policy::Period;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::spend::settings::{self, BudgetSettingsRow};

/// One budget as the snapshot needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct BudgetPolicyRow {
    id: Uuid,
    scope: String,
    scope_id: Option<Uuid>,
    period: String,
    limit_micro_usd: i64,
    per_member: bool,
    alert_thresholds_percent: Vec<i32>,
}

/// Budgets and settings read in the compiler's transaction.
#[derive(Debug, Clone, Default)]
pub(crate) struct BudgetPolicyRows {
    budgets: Vec<BudgetPolicyRow>,
    settings: BudgetSettingsRow,
}

/// Reads every budget and the settings.
pub(crate) async fn load(conn: &mut PgConnection) -> Result<BudgetPolicyRows, StoreError> {
    let budgets = sqlx::query_as(
        "SELECT id, scope, COALESCE(group_id, principal_id, api_key_id) AS scope_id, period, \
         limit_micro_usd, per_member, alert_thresholds_percent FROM budgets ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let settings = settings::get(conn).await?;
    Ok(BudgetPolicyRows { budgets, settings })
}

/// Fills `budgets` and `budget_settings`.
pub(crate) fn apply(snapshot: &mut pb::Snapshot, rows: BudgetPolicyRows) {
    snapshot.budgets = rows
        .budgets
        .into_iter()
        .map(|b| pb::Budget {
            id: b.id.to_string(),
            scope: scope(&b.scope) as i32,
            scope_id: b.scope_id.map(|id| id.to_string()).unwrap_or_default(),
            period: period(&b.period) as i32,
            limit_micro_usd: u64::try_from(b.limit_micro_usd).unwrap_or(0),
            per_member: b.per_member,
            alert_thresholds_percent: b
                .alert_thresholds_percent
                .into_iter()
                .filter_map(|t| u32::try_from(t).ok())
                .collect(),
        })
        .collect();
    let s = rows.settings;
    snapshot.budget_settings = Some(pb::BudgetSettings {
        outage_mode: outage_mode(&s.outage_mode) as i32,
        lease_ttl_s: u32::try_from(s.lease_ttl_s).unwrap_or(30),
        input_bytes_per_token: u32::try_from(s.input_bytes_per_token).unwrap_or(3),
        output_estimate_max_tokens: u32::try_from(s.output_estimate_max_tokens).unwrap_or(0),
    });
}

/// The wire scope of a `budgets.scope` value.
pub(crate) fn scope(scope: &str) -> pb::BudgetScope {
    match scope {
        "org" => pb::BudgetScope::Org,
        "group" => pb::BudgetScope::Group,
        "user" => pb::BudgetScope::User,
        "key" => pb::BudgetScope::Key,
        _ => pb::BudgetScope::Unspecified,
    }
}

/// The wire period of a `budgets.period` value.
pub(crate) fn period(period: &str) -> pb::BudgetPeriod {
    Period::parse(period).map_or(pb::BudgetPeriod::Unspecified, Period::to_pb)
}

/// The wire outage mode of a `budget_settings.outage_mode` value.
pub(crate) fn outage_mode(mode: &str) -> pb::OutageMode {
    match mode {
        "open" => pb::OutageMode::Open,
        _ => pb::OutageMode::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_fill_the_snapshot() {
        let mut snapshot = pb::Snapshot::default();
        apply(&mut snapshot, BudgetPolicyRows::default());
        assert!(snapshot.budgets.is_empty());
        let s = snapshot.budget_settings.unwrap();
        assert_eq!(s.outage_mode, pb::OutageMode::Closed as i32);
        assert_eq!(s.lease_ttl_s, 30);
        assert_eq!(s.input_bytes_per_token, 3);
        assert_eq!(s.output_estimate_max_tokens, 0);
    }

    #[test]
    fn budget_rows_become_snapshot_budgets() {
        let id = Uuid::now_v7();
        let group = Uuid::now_v7();
        let mut snapshot = pb::Snapshot::default();
        apply(
            &mut snapshot,
            BudgetPolicyRows {
                budgets: vec![BudgetPolicyRow {
                    id,
                    scope: "group".to_owned(),
                    scope_id: Some(group),
                    period: "weekly".to_owned(),
                    limit_micro_usd: 20_000_000,
                    per_member: true,
                    alert_thresholds_percent: vec![50, 80, 100],
                }],
                settings: BudgetSettingsRow::default(),
            },
        );
        let b = &snapshot.budgets[0];
        assert_eq!(b.id, id.to_string());
        assert_eq!(b.scope, pb::BudgetScope::Group as i32);
        assert_eq!(b.scope_id, group.to_string());
        assert_eq!(b.period, pb::BudgetPeriod::Weekly as i32);
        assert!(b.per_member);
        assert_eq!(b.alert_thresholds_percent, vec![50, 80, 100]);
    }
}
