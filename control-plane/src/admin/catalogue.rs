//! Admin calls for providers, the model catalogue and routes.

use tollgate_proto::v1 as pb;
use tonic::Status;

use super::{AdminService, required};
use crate::compiler::provider_kind;
use crate::store::model::{self, ModelRow};
use crate::store::provider::{self, NewProvider, ProviderRow};
use crate::store::route::{self, RouteTargetRow, TargetSpec};

pub(super) async fn create_provider(
    svc: &AdminService,
    req: pb::CreateProviderRequest,
) -> Result<pb::ProviderInfo, Status> {
    let name = required("provider name", &req.name)?;
    let kind = match pb::ProviderKind::try_from(req.kind) {
        Ok(pb::ProviderKind::Demo) => "demo",
        Ok(pb::ProviderKind::Anthropic) => {
            required("base_url of an anthropic provider", &req.base_url)?;
            "anthropic"
        }
        _ => {
            return Err(Status::invalid_argument(
                "unknown provider kind: use demo or anthropic",
            ));
        }
    };
    validate_provider(name, &req)?;
    let new = NewProvider {
        name,
        kind,
        base_url: &req.base_url,
        api_key: &req.api_key,
    };
    Ok(provider_info(provider::create(&svc.pool, &new).await?))
}

/// Runs the provider through the snapshot conversion data planes use, so a provider that
/// would make the snapshot invalid is refused here, with the same reason.
fn validate_provider(name: &str, req: &pb::CreateProviderRequest) -> Result<(), Status> {
    let probe = pb::Snapshot {
        version: 1,
        providers: vec![pb::Provider {
            id: "probe".to_owned(),
            name: name.to_owned(),
            kind: req.kind,
            base_url: req.base_url.clone(),
            api_key: String::new(),
        }],
        ..Default::default()
    };
    tollgate_policy::Snapshot::try_from(probe)
        .map(drop)
        .map_err(|err| Status::invalid_argument(err.to_string()))
}

pub(super) async fn list_providers(
    svc: &AdminService,
    _req: pb::ListProvidersRequest,
) -> Result<pb::ListProvidersResponse, Status> {
    let providers = provider::list(&svc.pool).await?;
    Ok(pb::ListProvidersResponse {
        providers: providers.into_iter().map(provider_info).collect(),
    })
}

pub(super) async fn delete_provider(
    svc: &AdminService,
    req: pb::DeleteProviderRequest,
) -> Result<pb::DeleteResponse, Status> {
    let name = required("provider", &req.provider)?;
    provider::delete(&svc.pool, name).await?;
    Ok(pb::DeleteResponse {})
}

fn provider_info(row: ProviderRow) -> pb::ProviderInfo {
    pb::ProviderInfo {
        id: row.id.to_string(),
        name: row.name,
        kind: provider_kind(&row.kind) as i32,
        base_url: row.base_url,
        has_api_key: row.has_api_key,
        created_at_unix_s: row.created_at.timestamp(),
    }
}

pub(super) async fn upsert_model(
    svc: &AdminService,
    req: pb::UpsertModelRequest,
) -> Result<pb::ModelInfo, Status> {
    let id = required("model id", &req.id)?;
    if id == "*" {
        return Err(Status::invalid_argument(
            "model id `*` is reserved (it means every model in group grants)",
        ));
    }
    let max_input_tokens = i32::try_from(req.max_input_tokens)
        .map_err(|_| Status::invalid_argument("max_input_tokens is too large"))?;
    let row = model::upsert(&svc.pool, id, &req.display_name, max_input_tokens).await?;
    Ok(model_info(row))
}

pub(super) async fn list_models(
    svc: &AdminService,
    _req: pb::ListModelsRequest,
) -> Result<pb::ListModelsResponse, Status> {
    let models = model::list(&svc.pool).await?;
    Ok(pb::ListModelsResponse {
        models: models.into_iter().map(model_info).collect(),
    })
}

pub(super) async fn delete_model(
    svc: &AdminService,
    req: pb::DeleteModelRequest,
) -> Result<pb::DeleteResponse, Status> {
    let id = required("model id", &req.id)?;
    model::delete(&svc.pool, id).await?;
    Ok(pb::DeleteResponse {})
}

fn model_info(row: ModelRow) -> pb::ModelInfo {
    pb::ModelInfo {
        id: row.id,
        display_name: row.display_name,
        max_input_tokens: u32::try_from(row.max_input_tokens).unwrap_or(0),
        created_at_unix_s: row.created_at.timestamp(),
    }
}

/// Replaces a model's route; an empty target list removes the route.
pub(super) async fn set_route(
    svc: &AdminService,
    req: pb::SetRouteRequest,
) -> Result<pb::RouteInfo, Status> {
    let model = required("route model", &req.model)?;
    let targets = req
        .targets
        .iter()
        .map(|t| {
            Ok(TargetSpec {
                provider: required("route target provider", &t.provider)?,
                upstream_model: &t.upstream_model,
                weight: i32::try_from(t.weight.max(1))
                    .map_err(|_| Status::invalid_argument("route target weight is too large"))?,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    let rows = route::set(&svc.pool, model, &targets).await?;
    Ok(pb::RouteInfo {
        model: model.to_owned(),
        targets: rows.into_iter().map(target_info).collect(),
    })
}

pub(super) async fn list_routes(
    svc: &AdminService,
    _req: pb::ListRoutesRequest,
) -> Result<pb::ListRoutesResponse, Status> {
    let mut routes: Vec<pb::RouteInfo> = Vec::new();
    for row in route::list(&svc.pool).await? {
        match routes.last_mut() {
            Some(route) if route.model == row.model_id => route.targets.push(target_info(row)),
            _ => routes.push(pb::RouteInfo {
                model: row.model_id.clone(),
                targets: vec![target_info(row)],
            }),
        }
    }
    Ok(pb::ListRoutesResponse { routes })
}

fn target_info(row: RouteTargetRow) -> pb::RouteTargetInfo {
    pb::RouteTargetInfo {
        provider_id: row.provider_id.to_string(),
        provider_name: row.provider_name,
        upstream_model: row.upstream_model,
        weight: u32::try_from(row.weight).unwrap_or(1),
    }
}
