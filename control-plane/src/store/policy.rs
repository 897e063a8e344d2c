//! The whole policy, read consistently for the snapshot compiler.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::StoreError;
use super::alias::AliasRow;
use super::provider::ProviderRow;

/// Everything a snapshot is compiled from, read in one `REPEATABLE READ` transaction, so the
/// rows are exactly those of `version`.
#[derive(Debug, Clone)]
pub struct PolicyRows {
    pub version: i64,
    /// `None` before the organisation row exists.
    pub org: Option<(Uuid, String)>,
    pub groups: Vec<GroupPolicyRow>,
    pub api_keys: Vec<ApiKeyPolicyRow>,
    /// Credentials still sealed: the compiler opens them.
    pub providers: Vec<ProviderRow>,
    pub models: Vec<ModelPolicyRow>,
    /// Ordered by model, then position.
    pub route_targets: Vec<RouteTargetPolicyRow>,
    pub aliases: Vec<AliasRow>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupPolicyRow {
    pub id: Uuid,
    pub name: String,
    pub allowed_models: Vec<String>,
}

/// An enforceable key: not revoked, not yet expired, principal not disabled.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyPolicyRow {
    pub id: Uuid,
    pub name: String,
    pub secret_sha256: Vec<u8>,
    pub principal_id: Uuid,
    pub principal_kind: String,
    pub principal_name: String,
    pub principal_email: String,
    pub group_ids: Vec<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModelPolicyRow {
    pub id: String,
    pub display_name: String,
    pub max_input_tokens: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RouteTargetPolicyRow {
    pub model_id: String,
    pub provider_id: Uuid,
    pub upstream_model: String,
    pub weight: i32,
    pub position: i32,
    /// `None`: the position.
    pub priority: Option<i32>,
    /// `route_targets.timeouts` as JSON text.
    pub timeouts: String,
}

/// Reads the whole core policy and its version. Run it inside the compiler's read-only
/// `REPEATABLE READ` transaction so the rows and the version agree.
pub async fn load(tx: &mut PgConnection) -> Result<PolicyRows, StoreError> {
    let version: i64 = sqlx::query_scalar("SELECT version FROM policy_version WHERE singleton")
        .fetch_one(&mut *tx)
        .await?;
    let org: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, name FROM orgs ORDER BY created_at, id LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let org_id = org.as_ref().map(|(id, _)| *id);
    let groups = sqlx::query_as(
        "SELECT g.id, g.name, COALESCE((SELECT array_agg(m.model_id ORDER BY m.model_id) \
         FROM group_models m WHERE m.group_id = g.id), '{}') AS allowed_models \
         FROM groups g WHERE g.org_id = $1 ORDER BY g.name",
    )
    .bind(org_id)
    .fetch_all(&mut *tx)
    .await?;
    let api_keys = sqlx::query_as(
        "SELECT k.id, k.name, k.secret_sha256, k.principal_id, p.kind AS principal_kind, \
         p.name AS principal_name, COALESCE(p.email, '') AS principal_email, \
         ARRAY(SELECT gm.group_id FROM group_members gm WHERE gm.principal_id = p.id \
               ORDER BY gm.group_id) AS group_ids, k.expires_at \
         FROM api_keys k JOIN principals p ON p.id = k.principal_id \
         WHERE p.org_id = $1 AND NOT p.disabled AND k.revoked_at IS NULL \
         AND (k.expires_at IS NULL OR k.expires_at > now() - interval '7 days') ORDER BY k.id",
    )
    .bind(org_id)
    .fetch_all(&mut *tx)
    .await?;
    let providers = super::provider::load(&mut *tx).await?;
    let models = sqlx::query_as(
        "SELECT id, display_name, max_input_tokens, created_at FROM models ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let route_targets = sqlx::query_as(
        "SELECT model_id, provider_id, upstream_model, weight, position, priority, \
         timeouts::text AS timeouts FROM route_targets ORDER BY model_id, position",
    )
    .fetch_all(&mut *tx)
    .await?;
    let aliases = super::alias::load(&mut *tx).await?;
    Ok(PolicyRows {
        version,
        org,
        groups,
        api_keys,
        providers,
        models,
        route_targets,
        aliases,
    })
}
