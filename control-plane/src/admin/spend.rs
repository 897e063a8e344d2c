//! The `SpendAdmin` gRPC service: prices, spend caps (budgets) and their settings, spend
//! reports. Same admin-key check and error mapping as `Admin`. The methods live in
//! `spend/prices.rs`, `spend/budgets.rs` and `spend/reports.rs`.

mod budgets;
mod prices;
mod reports;

use tollgate_proto::v1 as pb;
use tollgate_proto::v1::spend_admin_server::SpendAdminServer;
use tonic::{Request, Response, Status};

use super::{AdminService, handle};
use crate::identity::Identity;

/// The `SpendAdmin` service, sharing `Admin`'s pool, organisation and key check; the
/// identity service's secrets key seals the alert webhook secret.
#[derive(Clone)]
pub struct SpendAdminService {
    admin: AdminService,
    identity: Identity,
}

/// The tonic server for `SpendAdmin`.
pub fn server(admin: AdminService, identity: Identity) -> SpendAdminServer<SpendAdminService> {
    SpendAdminServer::new(SpendAdminService { admin, identity })
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::spend_admin_server::SpendAdmin for SpendAdminService {
    async fn list_prices(
        &self,
        request: Request<pb::ListPricesRequest>,
    ) -> Reply<pb::ListPricesResponse> {
        handle!(self.admin => self, request, prices::list_prices)
    }

    async fn set_model_price(
        &self,
        request: Request<pb::SetModelPriceRequest>,
    ) -> Reply<pb::PriceInfo> {
        handle!(self.admin => self, request, prices::set_model_price)
    }

    async fn delete_model_price(
        &self,
        request: Request<pb::DeleteModelPriceRequest>,
    ) -> Reply<pb::DeleteModelPriceResponse> {
        handle!(self.admin => self, request, prices::delete_model_price)
    }

    async fn set_price_fallback(
        &self,
        request: Request<pb::SetPriceFallbackRequest>,
    ) -> Reply<pb::PriceFallbackInfo> {
        handle!(self.admin => self, request, prices::set_price_fallback)
    }

    async fn get_price_fallback(
        &self,
        request: Request<pb::GetPriceFallbackRequest>,
    ) -> Reply<pb::PriceFallbackInfo> {
        handle!(self.admin => self, request, prices::get_price_fallback)
    }

    async fn set_provider_multiplier(
        &self,
        request: Request<pb::SetProviderMultiplierRequest>,
    ) -> Reply<pb::ProviderMultiplierInfo> {
        handle!(self.admin => self, request, prices::set_provider_multiplier)
    }

    async fn set_budget(&self, request: Request<pb::SetBudgetRequest>) -> Reply<pb::BudgetInfo> {
        handle!(self.admin => self, request, budgets::set_budget)
    }

    async fn list_budgets(
        &self,
        request: Request<pb::ListBudgetsRequest>,
    ) -> Reply<pb::ListBudgetsResponse> {
        handle!(self.admin => self, request, budgets::list_budgets)
    }

    async fn delete_budget(
        &self,
        request: Request<pb::DeleteBudgetRequest>,
    ) -> Reply<pb::DeleteBudgetResponse> {
        handle!(self.admin => self, request, budgets::delete_budget)
    }

    async fn explain_budget(
        &self,
        request: Request<pb::ExplainBudgetRequest>,
    ) -> Reply<pb::ExplainBudgetResponse> {
        handle!(self.admin => self, request, budgets::explain_budget)
    }

    async fn get_budget_settings(
        &self,
        request: Request<pb::GetBudgetSettingsRequest>,
    ) -> Reply<pb::BudgetSettingsInfo> {
        handle!(self.admin => self, request, budgets::get_budget_settings)
    }

    async fn set_budget_settings(
        &self,
        request: Request<pb::SetBudgetSettingsRequest>,
    ) -> Reply<pb::BudgetSettingsInfo> {
        handle!(self.admin => self, request, budgets::set_budget_settings)
    }

    async fn spend_report(
        &self,
        request: Request<pb::SpendReportRequest>,
    ) -> Reply<pb::SpendReportResponse> {
        handle!(self.admin => self, request, reports::spend_report)
    }
}
