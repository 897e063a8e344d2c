//! Rate limits in Postgres: the limits (one per scope target, model and kind; setting an
//! existing one replaces its value and mode and keeps its id), the token buckets of the
//! per-minute kinds and the concurrency slot leases data planes hold ([`lease`]), and
//! explanations of a user's standing ([`explain`]).

pub mod explain;
pub mod lease;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tollgate_policy::{RateLimitKind, RateLimitScope};
use uuid::Uuid;

use crate::store::scope::{resolve_group, resolve_live_key, resolve_principal};
use crate::store::{StoreError, audit, provider};

/// The largest limit accepted (a full bucket, limit × 60000, must fit a bigint).
pub const MAX_LIMIT: i64 = 1_000_000_000_000;

/// A stored rate limit with the human name of what it applies to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RateLimitRow {
    pub id: Uuid,
    /// "org", "group", "user", "key" or "provider".
    pub scope: String,
    pub group_id: Option<Uuid>,
    pub principal_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
    pub per_member: bool,
    /// '' = every model.
    pub model: String,
    /// A [`RateLimitKind::as_str`] name.
    pub kind: String,
    pub limit_value: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Group name, user email (or name), key name (or id), provider name; "org" for the org.
    pub scope_name: String,
}

impl RateLimitRow {
    /// The group, principal, key or provider id; `None` for the org.
    pub fn scope_id(&self) -> Option<Uuid> {
        self.group_id
            .or(self.principal_id)
            .or(self.api_key_id)
            .or(self.provider_id)
    }

    pub fn scope(&self) -> Option<RateLimitScope> {
        scope_from_str(&self.scope)
    }

    pub fn kind(&self) -> Option<RateLimitKind> {
        RateLimitKind::parse(&self.kind)
    }
}

/// The scope named by a `rate_limits.scope` value.
pub fn scope_from_str(scope: &str) -> Option<RateLimitScope> {
    match scope {
        "org" => Some(RateLimitScope::Org),
        "group" => Some(RateLimitScope::Group),
        "user" => Some(RateLimitScope::User),
        "key" => Some(RateLimitScope::Key),
        "provider" => Some(RateLimitScope::Provider),
        _ => None,
    }
}

/// What `SetRateLimit` asks for; `scope_ref` is resolved here.
#[derive(Debug, Clone)]
pub struct RateLimitSpec<'a> {
    pub scope: RateLimitScope,
    /// Group id or name; user id, email or service-account name; key id; provider id or
    /// name. Empty for the org.
    pub scope_ref: &'a str,
    pub per_member: bool,
    /// '' = every model.
    pub model: &'a str,
    pub kind: RateLimitKind,
    pub limit: i64,
}

pub(crate) const SELECT: &str = "SELECT r.id, r.scope, r.group_id, r.principal_id, r.api_key_id, \
     r.provider_id, r.per_member, r.model, r.kind, r.limit_value, r.created_at, r.updated_at, \
     CASE r.scope WHEN 'org' THEN 'org' WHEN 'group' THEN COALESCE(g.name, '') \
       WHEN 'user' THEN COALESCE(p.email, p.name, '') \
       WHEN 'provider' THEN COALESCE(pr.name, '') \
       ELSE COALESCE(NULLIF(k.name, ''), k.id::text, '') END AS scope_name \
     FROM rate_limits r LEFT JOIN groups g ON g.id = r.group_id \
     LEFT JOIN principals p ON p.id = r.principal_id LEFT JOIN api_keys k ON k.id = r.api_key_id \
     LEFT JOIN providers pr ON pr.id = r.provider_id";

/// How listings are ordered: scope, target name, model, kind.
pub(crate) const ORDER: &str = "ORDER BY \
     array_position(ARRAY['org','group','user','key','provider'], r.scope), scope_name, \
     r.model, array_position(ARRAY['requests_per_minute','input_tokens_per_minute', \
     'output_tokens_per_minute','concurrent_requests'], r.kind)";

/// Creates the limit for (scope target, model, kind) or replaces the existing one's value
/// and per-member mode (a mode switch drops the buckets of the other mode: they restart
/// full). Unknown targets and contradictory arguments are `InvalidArgument`.
pub async fn set(
    pool: &PgPool,
    org_id: Uuid,
    spec: &RateLimitSpec<'_>,
) -> Result<RateLimitRow, StoreError> {
    if spec.per_member && spec.scope != RateLimitScope::Group {
        return Err(StoreError::InvalidArgument(
            "per_member applies to group limits only".to_owned(),
        ));
    }
    if !(1..=MAX_LIMIT).contains(&spec.limit) {
        return Err(StoreError::InvalidArgument(format!(
            "the limit must be from 1 to {MAX_LIMIT}"
        )));
    }
    let model = spec.model.trim();
    let mut tx = audit::begin(pool).await?;
    let target = resolve_target(&mut tx, org_id, spec.scope, spec.scope_ref.trim()).await?;
    let (id, switched): (Uuid, bool) = sqlx::query_as(
        "WITH before AS (SELECT per_member FROM rate_limits WHERE org_id = $2 AND scope = $3 \
           AND coalesce(group_id, principal_id, api_key_id, provider_id, \
             '00000000-0000-0000-0000-000000000000'::uuid) = coalesce($4, $5, $6, $7, \
             '00000000-0000-0000-0000-000000000000'::uuid) AND model = $9 AND kind = $10) \
         INSERT INTO rate_limits (id, org_id, scope, group_id, principal_id, api_key_id, \
           provider_id, per_member, model, kind, limit_value) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (org_id, scope, (coalesce(group_id, principal_id, api_key_id, provider_id, \
           '00000000-0000-0000-0000-000000000000'::uuid)), model, kind) \
         DO UPDATE SET limit_value = EXCLUDED.limit_value, per_member = EXCLUDED.per_member, \
           updated_at = now() \
         RETURNING id, COALESCE((SELECT per_member FROM before) <> $8, false)",
    )
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(spec.scope.as_str())
    .bind(target.group_id)
    .bind(target.principal_id)
    .bind(target.api_key_id)
    .bind(target.provider_id)
    .bind(spec.per_member)
    .bind(model)
    .bind(spec.kind.as_str())
    .bind(spec.limit)
    .fetch_one(&mut *tx)
    .await?;
    if switched {
        // Buckets of the other mode are never asked for again.
        for table in ["rate_buckets", "rate_slot_leases"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE limit_id = $1 AND (subject_id = '') = $2"
            ))
            .bind(id)
            .bind(spec.per_member)
            .execute(&mut *tx)
            .await?;
        }
    }
    let row = get(&mut tx, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("rate limit {id} not found")))?;
    tx.commit().await?;
    Ok(row)
}

/// Every limit, ordered by scope, target name, model and kind.
pub async fn list(pool: &PgPool) -> Result<Vec<RateLimitRow>, StoreError> {
    let sql = format!("{SELECT} {ORDER}");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// One limit by id.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<RateLimitRow>, StoreError> {
    let sql = format!("{SELECT} WHERE r.id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?)
}

/// Deletes a limit and (by cascade) its buckets and slot leases.
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    let deleted = sqlx::query("DELETE FROM rate_limits WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound(format!("rate limit {id} not found")));
    }
    tx.commit().await?;
    Ok(())
}

/// The resolved target of a limit (at most one id set; none for the org).
#[derive(Debug, Clone, Copy, Default)]
struct Target {
    group_id: Option<Uuid>,
    principal_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    provider_id: Option<Uuid>,
}

async fn resolve_target(
    conn: &mut PgConnection,
    org_id: Uuid,
    scope: RateLimitScope,
    scope_ref: &str,
) -> Result<Target, StoreError> {
    if scope == RateLimitScope::Org {
        return if scope_ref.is_empty() {
            Ok(Target::default())
        } else {
            Err(StoreError::InvalidArgument(
                "an org limit takes no scope_ref".to_owned(),
            ))
        };
    }
    if scope_ref.is_empty() {
        let what = scope.as_str();
        return Err(StoreError::InvalidArgument(format!(
            "a {what} limit needs scope_ref (the {what} to limit)"
        )));
    }
    match scope {
        RateLimitScope::Org => Ok(Target::default()),
        RateLimitScope::Group => Ok(Target {
            group_id: Some(resolve_group(conn, org_id, scope_ref).await?),
            ..Target::default()
        }),
        RateLimitScope::User => Ok(Target {
            principal_id: Some(resolve_principal(conn, org_id, scope_ref).await?),
            ..Target::default()
        }),
        RateLimitScope::Key => Ok(Target {
            api_key_id: Some(resolve_live_key(conn, org_id, scope_ref).await?),
            ..Target::default()
        }),
        RateLimitScope::Provider => {
            let id = provider::resolve(conn, scope_ref).await?.ok_or_else(|| {
                StoreError::InvalidArgument(format!("provider `{scope_ref}` not found"))
            })?;
            Ok(Target {
                provider_id: Some(id),
                ..Target::default()
            })
        }
    }
}
