//! Spend caps: set, list, delete, explain; org-wide budget settings (outage mode, lease TTL,
//! estimate rules, alert webhook).

use tollgate_policy::Period;
use tollgate_proto::v1 as pb;
use tonic::Status;
use uuid::Uuid;

use super::SpendAdminService;
use crate::admin::optional;
use crate::compiler::budgets::{outage_mode, period, scope};
use crate::store::spend::budgets::{self, BudgetRow, BudgetSpec};
use crate::store::spend::explain;
use crate::store::spend::from_micro;
use crate::store::spend::settings::{self, BudgetSettingsRow, SettingsChange};
use crate::webhook::WEBHOOK_SECRET_PURPOSE;

/// Alert thresholds when none are given.
const DEFAULT_THRESHOLDS: [i32; 3] = [50, 80, 100];

pub(super) async fn set_budget(
    svc: &SpendAdminService,
    req: pb::SetBudgetRequest,
) -> Result<pb::BudgetInfo, Status> {
    let scope = match pb::BudgetScope::try_from(req.scope) {
        Ok(pb::BudgetScope::Org) => "org",
        Ok(pb::BudgetScope::Group) => "group",
        Ok(pb::BudgetScope::User) => "user",
        Ok(pb::BudgetScope::Key) => "key",
        _ => {
            return Err(Status::invalid_argument(
                "scope must be org, group, user or key",
            ));
        }
    };
    let period = Period::from_pb(req.period)
        .ok_or_else(|| Status::invalid_argument("period must be daily, weekly or monthly"))?
        .as_str();
    let limit = i64::try_from(req.limit_micro_usd)
        .map_err(|_| Status::invalid_argument("limit_micro_usd is out of range"))?;
    let mut thresholds = Vec::with_capacity(req.alert_thresholds_percent.len());
    for t in &req.alert_thresholds_percent {
        match i32::try_from(*t) {
            Ok(t @ 1..=100) => thresholds.push(t),
            _ => {
                return Err(Status::invalid_argument(
                    "alert thresholds are whole percents from 1 to 100",
                ));
            }
        }
    }
    if thresholds.is_empty() {
        thresholds = DEFAULT_THRESHOLDS.to_vec();
    }
    thresholds.sort_unstable();
    thresholds.dedup();
    let spec = BudgetSpec {
        scope,
        scope_ref: &req.scope_ref,
        period,
        limit_micro_usd: limit,
        per_member: req.per_member,
        alert_thresholds_percent: thresholds,
    };
    let row = budgets::set(&svc.admin.pool, svc.admin.org_id, &spec).await?;
    Ok(budget_info(&row))
}

pub(super) async fn list_budgets(
    svc: &SpendAdminService,
    _req: pb::ListBudgetsRequest,
) -> Result<pb::ListBudgetsResponse, Status> {
    let rows = budgets::list(&svc.admin.pool).await?;
    Ok(pb::ListBudgetsResponse {
        budgets: rows.iter().map(budget_info).collect(),
    })
}

pub(super) async fn delete_budget(
    svc: &SpendAdminService,
    req: pb::DeleteBudgetRequest,
) -> Result<pb::DeleteBudgetResponse, Status> {
    let id = Uuid::parse_str(req.id.trim())
        .map_err(|_| Status::invalid_argument("budget id must be a UUID"))?;
    budgets::delete(&svc.admin.pool, id).await?;
    Ok(pb::DeleteBudgetResponse {})
}

pub(super) async fn explain_budget(
    svc: &SpendAdminService,
    req: pb::ExplainBudgetRequest,
) -> Result<pb::ExplainBudgetResponse, Status> {
    let e = explain::explain(
        &svc.admin.pool,
        svc.admin.org_id,
        optional(req.user.trim()),
        optional(req.api_key_id.trim()),
        chrono::Utc::now(),
    )
    .await?;
    Ok(pb::ExplainBudgetResponse {
        principal_id: e.principal_id.to_string(),
        principal_name: e.principal_name,
        group_names: e.group_names,
        blocked: e.blocked,
        standings: e
            .standings
            .into_iter()
            .map(|s| pb::BudgetStanding {
                budget: Some(budget_info(&s.budget)),
                counter: Some(s.counter.to_pb()),
                spent_micro_usd: from_micro(s.spent),
                leased_micro_usd: from_micro(s.leased),
                remaining_micro_usd: from_micro(s.remaining),
                window_start_unix_s: s.window.start_unix_s,
                resets_at_unix_s: s.window.end_unix_s,
                blocks: s.blocks,
                explanation: s.explanation,
            })
            .collect(),
    })
}

pub(super) async fn get_budget_settings(
    svc: &SpendAdminService,
    _req: pb::GetBudgetSettingsRequest,
) -> Result<pb::BudgetSettingsInfo, Status> {
    let mut conn = svc
        .admin
        .pool
        .acquire()
        .await
        .map_err(crate::store::StoreError::from)?;
    Ok(settings_info(&settings::get(&mut conn).await?))
}

pub(super) async fn set_budget_settings(
    svc: &SpendAdminService,
    req: pb::SetBudgetSettingsRequest,
) -> Result<pb::BudgetSettingsInfo, Status> {
    let outage_mode = match pb::OutageMode::try_from(req.outage_mode) {
        Ok(pb::OutageMode::Unspecified) => None,
        Ok(pb::OutageMode::Closed) => Some("closed".to_owned()),
        Ok(pb::OutageMode::Open) => Some("open".to_owned()),
        Err(_) => return Err(Status::invalid_argument("unknown outage mode")),
    };
    let lease_ttl_s = match req.lease_ttl_s {
        0 => None,
        ttl @ 1..=3600 => i32::try_from(ttl).ok(),
        _ => return Err(Status::invalid_argument("lease_ttl_s must be 1 to 3600")),
    };
    let input_bytes_per_token = match req.input_bytes_per_token {
        0 => None,
        b @ 1..=64 => i32::try_from(b).ok(),
        _ => {
            return Err(Status::invalid_argument(
                "input_bytes_per_token must be 1 to 64",
            ));
        }
    };
    let output_estimate_max_tokens = match req.output_estimate_max_tokens {
        -1 => None,
        n => Some(i32::try_from(n).ok().filter(|n| *n >= 0).ok_or_else(|| {
            Status::invalid_argument("output_estimate_max_tokens must be -1, 0 or a token count")
        })?),
    };
    let url = optional(req.alert_webhook_url.trim());
    if let Some(url) = url {
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| Status::invalid_argument("alert_webhook_url is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Status::invalid_argument(
                "alert_webhook_url must be an http(s) URL",
            ));
        }
    }
    let change = SettingsChange {
        outage_mode,
        lease_ttl_s,
        input_bytes_per_token,
        output_estimate_max_tokens,
        clear_webhook: req.clear_webhook,
        alert_webhook_url: url.map(str::to_owned),
        alert_webhook_secret_enc: optional(&req.alert_webhook_secret).map(|secret| {
            svc.identity
                .secrets()
                .seal(WEBHOOK_SECRET_PURPOSE, secret.as_bytes())
        }),
    };
    let row = settings::set(&svc.admin.pool, change).await?;
    Ok(settings_info(&row))
}

fn budget_info(b: &BudgetRow) -> pb::BudgetInfo {
    pb::BudgetInfo {
        id: b.id.to_string(),
        scope: scope(&b.scope) as i32,
        scope_id: b.scope_id().map(|id| id.to_string()).unwrap_or_default(),
        scope_name: b.scope_name.clone(),
        period: period(&b.period) as i32,
        limit_micro_usd: from_micro(b.limit_micro_usd),
        per_member: b.per_member,
        alert_thresholds_percent: b
            .alert_thresholds_percent
            .iter()
            .filter_map(|t| u32::try_from(*t).ok())
            .collect(),
        created_at_unix_ms: b.created_at.timestamp_millis(),
        updated_at_unix_ms: b.updated_at.timestamp_millis(),
    }
}

fn settings_info(s: &BudgetSettingsRow) -> pb::BudgetSettingsInfo {
    pb::BudgetSettingsInfo {
        outage_mode: outage_mode(&s.outage_mode) as i32,
        lease_ttl_s: u32::try_from(s.lease_ttl_s).unwrap_or(0),
        input_bytes_per_token: u32::try_from(s.input_bytes_per_token).unwrap_or(0),
        output_estimate_max_tokens: u32::try_from(s.output_estimate_max_tokens).unwrap_or(0),
        alert_webhook_url: s.alert_webhook_url.clone().unwrap_or_default(),
        alert_webhook_secret_set: s.alert_webhook_secret_enc.is_some(),
    }
}
