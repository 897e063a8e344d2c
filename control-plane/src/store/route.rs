//! Routes: for each client-facing model, the provider targets that serve it, with priorities
//! (tried lowest first), weights and per-target timeouts.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::provider::TimeoutsJson;
use super::{StoreError, audit, provider};

/// One target of a route, with its provider's name for display.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RouteTargetRow {
    pub model_id: String,
    pub position: i32,
    pub provider_id: Uuid,
    pub provider_name: String,
    pub upstream_model: String,
    pub weight: i32,
    /// `None`: the position.
    pub priority: Option<i32>,
    /// `route_targets.timeouts` as JSON text.
    pub timeouts: String,
}

impl RouteTargetRow {
    /// The priority in force: the stored one, else the position.
    pub fn effective_priority(&self) -> u32 {
        u32::try_from(self.priority.unwrap_or(self.position)).unwrap_or(0)
    }

    pub fn timeouts(&self) -> TimeoutsJson {
        TimeoutsJson::from_json(&self.timeouts)
    }
}

/// A target as an admin names it.
#[derive(Debug)]
pub struct TargetSpec<'a> {
    /// Provider name or id.
    pub provider: &'a str,
    /// Empty: the route's model id.
    pub upstream_model: &'a str,
    /// At least 1.
    pub weight: i32,
    /// `None`: the target's position in the list.
    pub priority: Option<i32>,
    pub timeouts: TimeoutsJson,
}

const SELECT: &str = "SELECT t.model_id, t.position, t.provider_id, p.name AS provider_name, \
     t.upstream_model, t.weight, t.priority, t.timeouts::text AS timeouts \
     FROM route_targets t JOIN providers p ON p.id = t.provider_id";

/// Replaces the route of `model` with `targets`, in order. No targets removes the route.
pub async fn set(
    pool: &PgPool,
    model: &str,
    targets: &[TargetSpec<'_>],
) -> Result<Vec<RouteTargetRow>, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let model_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM models WHERE id = $1)")
            .bind(model)
            .fetch_one(&mut *tx)
            .await?;
    if !model_exists {
        let alias_of: Option<String> =
            sqlx::query_scalar("SELECT model_id FROM model_aliases WHERE alias = $1")
                .bind(model)
                .fetch_optional(&mut *tx)
                .await?;
        return Err(StoreError::InvalidArgument(match alias_of {
            Some(target) => {
                format!("`{model}` is an alias of `{target}`; set the route of `{target}` instead")
            }
            None => format!("model `{model}` is not in the catalogue; upsert it first"),
        }));
    }
    let mut provider_ids = Vec::with_capacity(targets.len());
    for target in targets {
        let id = provider::resolve(&mut tx, target.provider)
            .await?
            .ok_or_else(|| {
                StoreError::InvalidArgument(format!(
                    "route target provider `{}` not found",
                    target.provider
                ))
            })?;
        provider_ids.push(id);
    }
    sqlx::query("DELETE FROM route_targets WHERE model_id = $1")
        .bind(model)
        .execute(&mut *tx)
        .await?;
    if !targets.is_empty() {
        let positions: Vec<i32> = (0..).take(targets.len()).collect();
        let upstream: Vec<&str> = targets.iter().map(|t| t.upstream_model).collect();
        let weights: Vec<i32> = targets.iter().map(|t| t.weight).collect();
        let priorities: Vec<Option<i32>> = targets.iter().map(|t| t.priority).collect();
        let timeouts: Vec<String> = targets.iter().map(|t| t.timeouts.to_json()).collect();
        sqlx::query(
            "INSERT INTO route_targets \
             (model_id, position, provider_id, upstream_model, weight, priority, timeouts) \
             SELECT $1, p, pr, u, w, prio, tmo::jsonb FROM UNNEST($2::int4[], $3::uuid[], \
             $4::text[], $5::int4[], $6::int4[], $7::text[]) AS x(p, pr, u, w, prio, tmo)",
        )
        .bind(model)
        .bind(&positions)
        .bind(&provider_ids)
        .bind(&upstream)
        .bind(&weights)
        .bind(&priorities)
        .bind(&timeouts)
        .execute(&mut *tx)
        .await?;
    }
    let rows = targets_of(&mut tx, model).await?;
    tx.commit().await?;
    Ok(rows)
}

async fn targets_of(
    conn: &mut PgConnection,
    model: &str,
) -> Result<Vec<RouteTargetRow>, StoreError> {
    let sql = format!("{SELECT} WHERE t.model_id = $1 ORDER BY t.position");
    Ok(sqlx::query_as(&sql).bind(model).fetch_all(conn).await?)
}

/// Every route target, ordered by model then position.
pub async fn list(pool: &PgPool) -> Result<Vec<RouteTargetRow>, StoreError> {
    let sql = format!("{SELECT} ORDER BY t.model_id, t.position");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}
