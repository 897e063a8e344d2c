//! Admin calls for providers (and their health), the model catalogue, routes and aliases.

use tollgate_proto::v1 as pb;
use tonic::Status;

use tracing::warn;

use super::{AdminService, required};
use crate::compiler::{provider_kind, provider_kind_name};
use crate::store::StoreError;
use crate::store::alias::{self, AliasRow};
use crate::store::health::{self, HealthRow};
use crate::store::model::{self, ModelRow};
use crate::store::provider::{
    self, Credential, Credentials, NewProvider, ProviderRow, Settings, TimeoutsJson,
};
use crate::store::route::{self, RouteTargetRow, TargetSpec};

pub(super) async fn create_provider(
    svc: &AdminService,
    req: pb::CreateProviderRequest,
) -> Result<pb::ProviderInfo, Status> {
    let name = required("provider name", &req.name)?;
    let kind = pb::ProviderKind::try_from(req.kind)
        .ok()
        .and_then(provider_kind_name)
        .ok_or_else(|| {
            Status::invalid_argument(
                "unknown provider kind: use demo, anthropic, bedrock, vertex or foundry",
            )
        })?;
    let config = req.config.unwrap_or_default();
    if has_stored_marker(&config) {
        return Err(Status::invalid_argument(
            "a new provider's credentials must be values or references, not `stored`",
        ));
    }
    let settings = Settings::from_pb(&config);
    let credentials = Credentials::from_pb(&config);
    validate_provider(name, req.kind, &config.base_url, &settings, &credentials)?;
    let new = NewProvider {
        name,
        kind,
        base_url: &config.base_url,
        settings: &settings,
        credentials: &credentials,
    };
    let row = provider::create(&svc.pool, svc.secrets(), &new).await?;
    Ok(provider_info(svc, row))
}

/// Replaces a provider's settings; credentials not given are kept, an empty value removes one.
pub(super) async fn update_provider(
    svc: &AdminService,
    req: pb::UpdateProviderRequest,
) -> Result<pb::ProviderInfo, Status> {
    let name = required("provider", &req.provider)?;
    let config = req.config.unwrap_or_default();
    let settings = Settings::from_pb(&config);
    let row = provider::update(&svc.pool, svc.secrets(), name, |row, current| {
        let mut credentials = current.unwrap_or_default();
        // A stored credential is sent wherever the provider points: moving it (endpoint,
        // region, resource, project, token endpoint) needs the credential given again, so a
        // changed setting can never carry a secret to a new host unseen.
        let before = row.settings();
        let moved = row.base_url != config.base_url
            || before.region != settings.region
            || before.project_id != settings.project_id
            || before.resource != settings.resource
            || before.token_uri != settings.token_uri
            || before.bedrock_api != settings.bedrock_api;
        let kept = credentials.kept_inline(&config);
        if moved && !kept.is_empty() {
            return Err(StoreError::InvalidArgument(format!(
                "changing where provider `{}` sends requests needs its stored credentials given                  again (or cleared): {}",
                row.name,
                kept.join(", ")
            )));
        }
        credentials.merge(&config);
        let kind = provider_kind(&row.kind) as i32;
        validate_provider(&row.name, kind, &config.base_url, &settings, &credentials)
            .map_err(|status| StoreError::InvalidArgument(status.message().to_owned()))?;
        Ok(provider::Update {
            base_url: config.base_url.clone(),
            settings: settings.clone(),
            credentials,
        })
    })
    .await?;
    Ok(provider_info(svc, row))
}

fn has_stored_marker(config: &pb::ProviderConfig) -> bool {
    Credential::ALL.iter().any(|c| {
        matches!(
            c.field(config).and_then(|s| s.source.as_ref()),
            Some(pb::secret_ref::Source::Stored(_))
        )
    })
}

/// Runs the provider as it would be compiled through the conversion data planes use
/// (`tollgate_policy::Provider::from_pb`), so a provider that would make the snapshot
/// invalid is refused here, with the same reason. References are accepted as references.
fn validate_provider(
    name: &str,
    kind: i32,
    base_url: &str,
    settings: &Settings,
    credentials: &Credentials,
) -> Result<(), Status> {
    let mut config = settings.to_pb(base_url);
    credentials.fill(&mut config, true);
    let probe = pb::Provider {
        id: "probe".to_owned(),
        name: name.to_owned(),
        kind,
        config: Some(config),
    };
    tollgate_policy::Provider::from_pb(probe)
        .map(drop)
        .map_err(|err| Status::invalid_argument(err.to_string()))
}

pub(super) async fn list_providers(
    svc: &AdminService,
    _req: pb::ListProvidersRequest,
) -> Result<pb::ListProvidersResponse, Status> {
    let providers = provider::list(&svc.pool).await?;
    Ok(pb::ListProvidersResponse {
        providers: providers
            .into_iter()
            .map(|row| provider_info(svc, row))
            .collect(),
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

/// A provider as the API shows it: settings, references, and inline credentials only as
/// `stored` (never their value). Unreadable credentials are left out (and logged).
fn provider_info(svc: &AdminService, row: ProviderRow) -> pb::ProviderInfo {
    let mut config = row.settings().to_pb(&row.base_url);
    match row.credentials(svc.secrets()) {
        Ok(credentials) => credentials.fill(&mut config, false),
        Err(err) => warn!(provider = %row.name, error = %err, "cannot show provider credentials"),
    }
    pb::ProviderInfo {
        id: row.id.to_string(),
        kind: provider_kind(&row.kind) as i32,
        name: row.name,
        created_at_unix_s: row.created_at.timestamp(),
        config: Some(config),
    }
}

/// Breaker states of route targets as data planes last reported them.
pub(super) async fn provider_status(
    svc: &AdminService,
    req: pb::ProviderStatusRequest,
) -> Result<pb::ProviderStatusResponse, Status> {
    let max_age_s = if req.max_age_s == 0 {
        DEFAULT_STATUS_MAX_AGE_S
    } else {
        req.max_age_s
    };
    let rows = health::list(&svc.pool, max_age_s).await?;
    Ok(pb::ProviderStatusResponse {
        targets: rows.into_iter().map(target_status).collect(),
    })
}

/// Reports older than this are left out of `ProviderStatus` by default.
const DEFAULT_STATUS_MAX_AGE_S: u32 = 120;

fn target_status(row: HealthRow) -> pb::TargetStatus {
    let ms = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or(0, |t| t.timestamp_millis());
    let state = match row.state.as_str() {
        "open" => pb::BreakerState::Open,
        "half_open" => pb::BreakerState::HalfOpen,
        _ => pb::BreakerState::Closed,
    };
    pb::TargetStatus {
        data_plane_id: row.data_plane_id,
        provider_id: row.provider_id.to_string(),
        provider_name: row.provider_name,
        upstream_model: row.upstream_model.clone(),
        health: Some(pb::TargetHealth {
            provider_id: row.provider_id.to_string(),
            upstream_model: row.upstream_model,
            state: state as i32,
            consecutive_failures: u32::try_from(row.consecutive_failures).unwrap_or(0),
            retry_at_unix_ms: ms(row.retry_at),
            attempts: u64::try_from(row.attempts).unwrap_or(0),
            failures: u64::try_from(row.failures).unwrap_or(0),
            last_error: row.last_error,
            last_failure_unix_ms: ms(row.last_failure_at),
        }),
        reported_at_unix_ms: row.reported_at.timestamp_millis(),
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
    let targets =
        req.targets
            .iter()
            .map(|t| {
                Ok(TargetSpec {
                    provider: required("route target provider", &t.provider)?,
                    upstream_model: &t.upstream_model,
                    weight: i32::try_from(t.weight.max(1)).map_err(|_| {
                        Status::invalid_argument("route target weight is too large")
                    })?,
                    priority: t.priority.map(i32::try_from).transpose().map_err(|_| {
                        Status::invalid_argument("route target priority is too large")
                    })?,
                    timeouts: TimeoutsJson::from_pb(t.timeouts.as_ref()),
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
        priority: row.effective_priority(),
        timeouts: row.timeouts().to_pb(),
        provider_id: row.provider_id.to_string(),
        provider_name: row.provider_name,
        upstream_model: row.upstream_model,
        weight: u32::try_from(row.weight).unwrap_or(1),
    }
}

/// Points an alias at a catalogue model (replacing what it pointed at).
pub(super) async fn set_alias(
    svc: &AdminService,
    req: pb::SetAliasRequest,
) -> Result<pb::AliasInfo, Status> {
    let alias = required("alias", &req.alias)?;
    if alias == "*" {
        return Err(Status::invalid_argument(
            "`*` is reserved (it means every model in group grants)",
        ));
    }
    let model = required("alias model", &req.model)?;
    Ok(alias_info(alias::set(&svc.pool, alias, model).await?))
}

pub(super) async fn list_aliases(
    svc: &AdminService,
    _req: pb::ListAliasesRequest,
) -> Result<pb::ListAliasesResponse, Status> {
    Ok(pb::ListAliasesResponse {
        aliases: alias::list(&svc.pool)
            .await?
            .into_iter()
            .map(alias_info)
            .collect(),
    })
}

pub(super) async fn delete_alias(
    svc: &AdminService,
    req: pb::DeleteAliasRequest,
) -> Result<pb::DeleteResponse, Status> {
    let name = required("alias", &req.alias)?;
    alias::delete(&svc.pool, name).await?;
    Ok(pb::DeleteResponse {})
}

fn alias_info(row: AliasRow) -> pb::AliasInfo {
    pb::AliasInfo {
        alias: row.alias,
        model: row.model_id,
    }
}
