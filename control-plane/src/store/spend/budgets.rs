//! Budgets (spend caps): one per (scope target, period); setting an existing one replaces its
//! limit, mode and thresholds and keeps its id (and so its counters).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::store::scope::{resolve_group, resolve_live_key, resolve_principal};
use crate::store::{StoreError, audit};

/// A stored budget with the human name of what it applies to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BudgetRow {
    pub id: Uuid,
    pub scope: String,
    pub group_id: Option<Uuid>,
    pub principal_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub period: String,
    pub limit_micro_usd: i64,
    pub per_member: bool,
    pub alert_thresholds_percent: Vec<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Group name, user email (or name), key name (or id); "org" for the org.
    pub scope_name: String,
}

impl BudgetRow {
    /// The group, principal or key id; `None` for the org.
    pub fn scope_id(&self) -> Option<Uuid> {
        self.group_id.or(self.principal_id).or(self.api_key_id)
    }
}

/// What `SetBudget` asks for; `scope_ref` is resolved here.
#[derive(Debug, Clone)]
pub struct BudgetSpec<'a> {
    /// "org", "group", "user" or "key".
    pub scope: &'a str,
    pub scope_ref: &'a str,
    /// "daily", "weekly" or "monthly".
    pub period: &'a str,
    pub limit_micro_usd: i64,
    pub per_member: bool,
    pub alert_thresholds_percent: Vec<i32>,
}

pub(crate) const SELECT: &str = "SELECT b.id, b.scope, b.group_id, b.principal_id, b.api_key_id, \
     b.period, b.limit_micro_usd, b.per_member, b.alert_thresholds_percent, b.created_at, \
     b.updated_at, CASE b.scope WHEN 'org' THEN 'org' WHEN 'group' THEN COALESCE(g.name, '') \
       WHEN 'user' THEN COALESCE(p.email, p.name, '') \
       ELSE COALESCE(NULLIF(k.name, ''), k.id::text, '') END AS scope_name \
     FROM budgets b LEFT JOIN groups g ON g.id = b.group_id \
     LEFT JOIN principals p ON p.id = b.principal_id LEFT JOIN api_keys k ON k.id = b.api_key_id";

/// Creates the budget for (scope target, period) or replaces the existing one's limit and
/// thresholds. Unknown targets, contradictory arguments and a change of per-member mode
/// (which would restart the window's spend) are `InvalidArgument`.
pub async fn set(
    pool: &PgPool,
    org_id: Uuid,
    spec: &BudgetSpec<'_>,
) -> Result<BudgetRow, StoreError> {
    if spec.per_member && spec.scope != "group" {
        return Err(StoreError::InvalidArgument(
            "per_member applies to group budgets only".to_owned(),
        ));
    }
    if spec.limit_micro_usd < 0 {
        return Err(StoreError::InvalidArgument(
            "limit_micro_usd is out of range".to_owned(),
        ));
    }
    let mut tx = audit::begin(pool).await?;
    let (group_id, principal_id, api_key_id) =
        resolve_target(&mut tx, org_id, spec.scope, spec.scope_ref.trim()).await?;
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO budgets (id, org_id, scope, group_id, principal_id, api_key_id, period, \
         limit_micro_usd, per_member, alert_thresholds_percent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (org_id, scope, (coalesce(group_id, principal_id, api_key_id, \
           '00000000-0000-0000-0000-000000000000'::uuid)), period) \
         DO UPDATE SET limit_micro_usd = EXCLUDED.limit_micro_usd, \
           alert_thresholds_percent = EXCLUDED.alert_thresholds_percent, updated_at = now() \
         WHERE budgets.per_member = EXCLUDED.per_member \
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(spec.scope)
    .bind(group_id)
    .bind(principal_id)
    .bind(api_key_id)
    .bind(spec.period)
    .bind(spec.limit_micro_usd)
    .bind(spec.per_member)
    .bind(&spec.alert_thresholds_percent)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        // Switching a cap between a shared pool and per-member counters would silently
        // restart the window's spend; make it an explicit delete + set.
        StoreError::InvalidArgument(
            "this cap exists with the other per-member mode; delete it and set it again to \
             switch between a shared pool and per-member caps (its spend this window restarts)"
                .to_owned(),
        )
    })?;
    let row = get(&mut tx, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("budget {id} not found")))?;
    tx.commit().await?;
    Ok(row)
}

/// Every budget, ordered by scope, target name and period.
pub async fn list(pool: &PgPool) -> Result<Vec<BudgetRow>, StoreError> {
    let sql = format!(
        "{SELECT} ORDER BY array_position(ARRAY['org','group','user','key'], b.scope), \
         scope_name, array_position(ARRAY['daily','weekly','monthly'], b.period)"
    );
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// One budget by id.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<BudgetRow>, StoreError> {
    let sql = format!("{SELECT} WHERE b.id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?)
}

/// Several budgets by id (missing ones are simply absent), key-share locked until the
/// transaction ends so none of them is deleted under the caller's counter writes (limits may
/// still change; the caller then acted just before the change).
pub async fn get_many_locked(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<BudgetRow>, StoreError> {
    let sql = format!("{SELECT} WHERE b.id = ANY($1) FOR KEY SHARE OF b");
    Ok(sqlx::query_as(&sql).bind(ids).fetch_all(conn).await?)
}

/// Deletes a budget and (by cascade) its counters, leases and alerts; the charges recorded
/// against it stay with the usage records.
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    let deleted = sqlx::query("DELETE FROM budgets WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound(format!("budget {id} not found")));
    }
    tx.commit().await?;
    Ok(())
}

type Target = (Option<Uuid>, Option<Uuid>, Option<Uuid>);

/// (group id, principal id, key id) of the budget's target.
async fn resolve_target(
    conn: &mut PgConnection,
    org_id: Uuid,
    scope: &str,
    scope_ref: &str,
) -> Result<Target, StoreError> {
    let missing = |what: &str| {
        StoreError::InvalidArgument(format!("a {what} budget needs scope_ref ({what} to cap)"))
    };
    match scope {
        "org" if scope_ref.is_empty() => Ok((None, None, None)),
        "org" => Err(StoreError::InvalidArgument(
            "an org budget takes no scope_ref".to_owned(),
        )),
        "group" => {
            if scope_ref.is_empty() {
                return Err(missing("group"));
            }
            Ok((
                Some(resolve_group(conn, org_id, scope_ref).await?),
                None,
                None,
            ))
        }
        "user" => {
            if scope_ref.is_empty() {
                return Err(missing("user"));
            }
            Ok((
                None,
                Some(resolve_principal(conn, org_id, scope_ref).await?),
                None,
            ))
        }
        "key" => {
            if scope_ref.is_empty() {
                return Err(missing("key"));
            }
            Ok((
                None,
                None,
                Some(resolve_live_key(conn, org_id, scope_ref).await?),
            ))
        }
        other => Err(StoreError::InvalidArgument(format!(
            "unknown budget scope `{other}`"
        ))),
    }
}
