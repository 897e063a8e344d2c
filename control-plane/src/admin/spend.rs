//! The `SpendAdmin` gRPC service: prices, spend caps (budgets) and their settings, spend
//! reports. Same admin-key check and error mapping as `Admin`. The methods live in
//! `spend/prices.rs`, `spend/budgets.rs` and `spend/reports.rs`.

mod budgets;
mod prices;
mod reports;

use tollgate_proto::v1 as pb;
use tollgate_proto::v1::spend_admin_server::SpendAdminServer;
use tonic::{Request, Response, Status};

use super::AdminService;
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
        self.admin.authenticate(request.metadata()).await?;
        prices::list_prices(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_model_price(
        &self,
        request: Request<pb::SetModelPriceRequest>,
    ) -> Reply<pb::PriceInfo> {
        self.admin.authenticate(request.metadata()).await?;
        prices::set_model_price(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_model_price(
        &self,
        request: Request<pb::DeleteModelPriceRequest>,
    ) -> Reply<pb::DeleteModelPriceResponse> {
        self.admin.authenticate(request.metadata()).await?;
        prices::delete_model_price(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_price_fallback(
        &self,
        request: Request<pb::SetPriceFallbackRequest>,
    ) -> Reply<pb::PriceFallbackInfo> {
        self.admin.authenticate(request.metadata()).await?;
        prices::set_price_fallback(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_price_fallback(
        &self,
        request: Request<pb::GetPriceFallbackRequest>,
    ) -> Reply<pb::PriceFallbackInfo> {
        self.admin.authenticate(request.metadata()).await?;
        prices::get_price_fallback(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_provider_multiplier(
        &self,
        request: Request<pb::SetProviderMultiplierRequest>,
    ) -> Reply<pb::ProviderMultiplierInfo> {
        self.admin.authenticate(request.metadata()).await?;
        prices::set_provider_multiplier(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_budget(&self, request: Request<pb::SetBudgetRequest>) -> Reply<pb::BudgetInfo> {
        self.admin.authenticate(request.metadata()).await?;
        budgets::set_budget(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_budgets(
        &self,
        request: Request<pb::ListBudgetsRequest>,
    ) -> Reply<pb::ListBudgetsResponse> {
        self.admin.authenticate(request.metadata()).await?;
        budgets::list_budgets(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_budget(
        &self,
        request: Request<pb::DeleteBudgetRequest>,
    ) -> Reply<pb::DeleteBudgetResponse> {
        self.admin.authenticate(request.metadata()).await?;
        budgets::delete_budget(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn explain_budget(
        &self,
        request: Request<pb::ExplainBudgetRequest>,
    ) -> Reply<pb::ExplainBudgetResponse> {
        self.admin.authenticate(request.metadata()).await?;
        budgets::explain_budget(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_budget_settings(
        &self,
        request: Request<pb::GetBudgetSettingsRequest>,
    ) -> Reply<pb::BudgetSettingsInfo> {
        self.admin.authenticate(request.metadata()).await?;
        budgets::get_budget_settings(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_budget_settings(
        &self,
        request: Request<pb::SetBudgetSettingsRequest>,
    ) -> Reply<pb::BudgetSettingsInfo> {
        self.admin.authenticate(request.metadata()).await?;
        budgets::set_budget_settings(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn spend_report(
        &self,
        request: Request<pb::SpendReportRequest>,
    ) -> Reply<pb::SpendReportResponse> {
        self.admin.authenticate(request.metadata()).await?;
        reports::spend_report(self, request.into_inner())
            .await
            .map(Response::new)
    }
}
