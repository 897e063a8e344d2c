//! Compiles the policy in Postgres into one `tollgate_proto::v1::Snapshot` and validates it
//! with `tollgate_policy::Snapshot::try_from`, the very conversion every data plane runs.

use sqlx::PgPool;
use tollgate_policy::InvalidSnapshot;
use tollgate_proto::v1 as pb;

use crate::identity::SecretsKey;
use crate::store::StoreError;
use crate::store::policy::{self, PolicyRows};
use crate::store::provider::{CredentialsError, ProviderRow, TimeoutsJson};

/// Why no snapshot could be produced.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("cannot read the policy")]
    Store(#[from] StoreError),
    #[error("policy version {0} is not positive")]
    BadVersion(i64),
    #[error("the compiled snapshot (version {version}) is invalid")]
    Invalid {
        version: u64,
        #[source]
        source: InvalidSnapshot,
    },
    #[error("cannot price route targets: {0}")]
    Pricing(String),
    #[error("provider `{provider}`: {source}")]
    Credentials {
        provider: String,
        #[source]
        source: CredentialsError,
    },
}

/// Reads the whole policy (core, identity, settings) and its version in one read-only
/// `REPEATABLE READ` transaction, compiles and validates it. `secrets` opens provider
/// credentials, which snapshots carry to data planes.
pub async fn compile(pool: &PgPool, secrets: &SecretsKey) -> Result<pb::Snapshot, CompileError> {
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    let rows = policy::load(&mut tx).await?;
    let identity_rows = identity::load(&mut tx).await?;
    let settings_rows = crate::store::settings::load_policy(&mut tx).await?;
    let budget_rows = budgets::load(&mut tx).await?;
    let rate_limit_rows = rate_limits::load(&mut tx).await?;
    let price_rows = crate::store::price::load(&mut tx).await?;
    let observability = crate::store::observability::get_in(&mut tx).await?;
    tx.commit().await.map_err(StoreError::from)?;
    let mut snapshot = build(rows, chrono::Utc::now().timestamp_millis(), secrets)?;
    identity::apply(&mut snapshot, identity_rows);
    settings::apply(&mut snapshot, settings_rows);
    budgets::apply(&mut snapshot, budget_rows);
    rate_limits::apply(&mut snapshot, rate_limit_rows);
    pricing::apply(&mut snapshot, &price_rows)?;
    snapshot.content_capture = observability.content_capture;
    validate(&snapshot)?;
    Ok(snapshot)
}

/// Checks a snapshot with the data plane's own conversion.
pub fn validate(snapshot: &pb::Snapshot) -> Result<(), CompileError> {
    tollgate_policy::Snapshot::try_from(snapshot.clone())
        .map(drop)
        .map_err(|source| CompileError::Invalid {
            version: snapshot.version,
            source,
        })
}

/// Turns policy rows into a snapshot (pure; validation is separate).
pub(crate) fn build(
    rows: PolicyRows,
    generated_at_unix_ms: i64,
    secrets: &SecretsKey,
) -> Result<pb::Snapshot, CompileError> {
    let version = u64::try_from(rows.version)
        .ok()
        .filter(|v| *v > 0)
        .ok_or(CompileError::BadVersion(rows.version))?;
    let (org_id, org_name) = rows
        .org
        .map(|(id, name)| (id.to_string(), name))
        .unwrap_or_default();
    // A provider whose credentials cannot be opened fails the compile: the last good snapshot
    // stays published and data planes keep serving it. (Leaving the provider out instead would
    // let one replica started with the wrong secrets key remove providers from every data
    // plane.) The error names the provider.
    let providers = rows
        .providers
        .into_iter()
        .map(|p| provider(p, secrets))
        .collect::<Result<Vec<_>, _>>()?;
    let route_targets = rows.route_targets;
    Ok(pb::Snapshot {
        version,
        generated_at_unix_ms,
        org_id,
        org_name,
        groups: rows
            .groups
            .into_iter()
            .map(|g| pb::Group {
                id: g.id.to_string(),
                name: g.name,
                allowed_models: g.allowed_models,
            })
            .collect(),
        api_keys: rows
            .api_keys
            .into_iter()
            .map(|k| pb::ApiKey {
                id: k.id.to_string(),
                secret_sha256: k.secret_sha256,
                principal_id: k.principal_id.to_string(),
                principal_kind: principal_kind(&k.principal_kind) as i32,
                principal_name: k.principal_name,
                principal_email: k.principal_email,
                group_ids: k.group_ids.iter().map(ToString::to_string).collect(),
                expires_at_unix_s: k.expires_at.map_or(0, |t| t.timestamp()),
                name: k.name,
            })
            .collect(),
        providers,
        models: rows
            .models
            .into_iter()
            .map(|m| pb::Model {
                id: m.id,
                display_name: m.display_name,
                max_input_tokens: u32::try_from(m.max_input_tokens).unwrap_or(0),
                created_at_unix_s: m.created_at.timestamp(),
            })
            .collect(),
        routes: routes(route_targets),
        aliases: rows
            .aliases
            .into_iter()
            .map(|a| pb::ModelAlias {
                alias: a.alias,
                model: a.model_id,
            })
            .collect(),
        ..Default::default()
    })
}

/// A snapshot provider: its settings, and its credentials opened (inline values as values,
/// references as references).
fn provider(p: ProviderRow, secrets: &SecretsKey) -> Result<pb::Provider, CompileError> {
    let credentials = p
        .credentials(secrets)
        .map_err(|source| CompileError::Credentials {
            provider: p.name.clone(),
            source,
        })?;
    let mut config = p.settings().to_pb(&p.base_url);
    credentials.fill(&mut config, true);
    Ok(pb::Provider {
        id: p.id.to_string(),
        name: p.name,
        kind: provider_kind(&p.kind) as i32,
        config: Some(config),
    })
}

/// Groups route targets (ordered by model, then position) into routes.
fn routes(targets: Vec<policy::RouteTargetPolicyRow>) -> Vec<pb::Route> {
    let mut routes: Vec<pb::Route> = Vec::new();
    for t in targets {
        let target = pb::RouteTarget {
            provider_id: t.provider_id.to_string(),
            upstream_model: t.upstream_model,
            weight: u32::try_from(t.weight).unwrap_or(1),
            priority: u32::try_from(t.priority.unwrap_or(t.position)).unwrap_or(0),
            // The target's own; data planes fall back to the provider's field by field.
            timeouts: TimeoutsJson::from_json(&t.timeouts).to_pb(),
            price: None,
        };
        match routes.last_mut() {
            Some(route) if route.model == t.model_id => route.targets.push(target),
            _ => routes.push(pb::Route {
                model: t.model_id,
                targets: vec![target],
            }),
        }
    }
    routes
}

/// The snapshot's principal kind for a `principals.kind` value.
pub fn principal_kind(kind: &str) -> pb::PrincipalKind {
    match kind {
        "user" => pb::PrincipalKind::User,
        "service_account" => pb::PrincipalKind::ServiceAccount,
        _ => pb::PrincipalKind::Unspecified,
    }
}

/// The `providers.kind` value of a provider kind (`None` for an unset or unknown kind).
pub fn provider_kind_name(kind: pb::ProviderKind) -> Option<&'static str> {
    match kind {
        pb::ProviderKind::Demo => Some("demo"),
        pb::ProviderKind::Anthropic => Some("anthropic"),
        pb::ProviderKind::Bedrock => Some("bedrock"),
        pb::ProviderKind::Vertex => Some("vertex"),
        pb::ProviderKind::Foundry => Some("foundry"),
        pb::ProviderKind::Unspecified => None,
    }
}

/// The snapshot's provider kind for a `providers.kind` value.
pub fn provider_kind(kind: &str) -> pb::ProviderKind {
    match kind {
        "demo" => pb::ProviderKind::Demo,
        "anthropic" => pb::ProviderKind::Anthropic,
        "bedrock" => pb::ProviderKind::Bedrock,
        "vertex" => pb::ProviderKind::Vertex,
        "foundry" => pb::ProviderKind::Foundry,
        _ => pb::ProviderKind::Unspecified,
    }
}

pub(crate) mod budgets;
mod identity;
mod pricing;
mod rate_limits;
mod settings;
#[cfg(test)]
mod tests;
