//! Spend caps: set, list, delete, explain; org-wide budget settings (outage mode, lease TTL,
//! estimate rules, alert webhook).

use tollgate_proto::v1 as pb;
use tonic::Status;

use super::SpendAdminService;

pub(super) async fn set_budget(
    _svc: &SpendAdminService,
    _req: pb::SetBudgetRequest,
) -> Result<pb::BudgetInfo, Status> {
    Err(Status::unimplemented("budgets are not served yet"))
}

pub(super) async fn list_budgets(
    _svc: &SpendAdminService,
    _req: pb::ListBudgetsRequest,
) -> Result<pb::ListBudgetsResponse, Status> {
    Err(Status::unimplemented("budgets are not served yet"))
}

pub(super) async fn delete_budget(
    _svc: &SpendAdminService,
    _req: pb::DeleteBudgetRequest,
) -> Result<pb::DeleteBudgetResponse, Status> {
    Err(Status::unimplemented("budgets are not served yet"))
}

pub(super) async fn explain_budget(
    _svc: &SpendAdminService,
    _req: pb::ExplainBudgetRequest,
) -> Result<pb::ExplainBudgetResponse, Status> {
    Err(Status::unimplemented("budgets are not served yet"))
}

pub(super) async fn get_budget_settings(
    _svc: &SpendAdminService,
    _req: pb::GetBudgetSettingsRequest,
) -> Result<pb::BudgetSettingsInfo, Status> {
    Err(Status::unimplemented("budgets are not served yet"))
}

pub(super) async fn set_budget_settings(
    _svc: &SpendAdminService,
    _req: pb::SetBudgetSettingsRequest,
) -> Result<pb::BudgetSettingsInfo, Status> {
    Err(Status::unimplemented("budgets are not served yet"))
}
