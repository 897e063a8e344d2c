//! Price list, per-model overrides, the fallback rule and provider multipliers.

use tollgate_proto::v1 as pb;
use tonic::Status;

use super::SpendAdminService;

pub(super) async fn list_prices(
    _svc: &SpendAdminService,
    _req: pb::ListPricesRequest,
) -> Result<pb::ListPricesResponse, Status> {
    Err(Status::unimplemented("prices are not served yet"))
}

pub(super) async fn set_model_price(
    _svc: &SpendAdminService,
    _req: pb::SetModelPriceRequest,
) -> Result<pb::PriceInfo, Status> {
    Err(Status::unimplemented("prices are not served yet"))
}

pub(super) async fn delete_model_price(
    _svc: &SpendAdminService,
    _req: pb::DeleteModelPriceRequest,
) -> Result<pb::DeleteModelPriceResponse, Status> {
    Err(Status::unimplemented("prices are not served yet"))
}

pub(super) async fn set_price_fallback(
    _svc: &SpendAdminService,
    _req: pb::SetPriceFallbackRequest,
) -> Result<pb::PriceFallbackInfo, Status> {
    Err(Status::unimplemented("prices are not served yet"))
}

pub(super) async fn get_price_fallback(
    _svc: &SpendAdminService,
    _req: pb::GetPriceFallbackRequest,
) -> Result<pb::PriceFallbackInfo, Status> {
    Err(Status::unimplemented("prices are not served yet"))
}

pub(super) async fn set_provider_multiplier(
    _svc: &SpendAdminService,
    _req: pb::SetProviderMultiplierRequest,
) -> Result<pb::ProviderMultiplierInfo, Status> {
    Err(Status::unimplemented("prices are not served yet"))
}
