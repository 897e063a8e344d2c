//! Groups and the models their members may use (`*` = the whole catalogue).
//!
//! Allowed model ids are not checked against the catalogue: a group may be granted a model
//! before it is added (or after it is removed), and the snapshot only ever grants models that
//! are in the catalogue at the time.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{StoreError, audit, parse_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRow {
    pub id: Uuid,
    pub name: String,
    pub allowed_models: Vec<String>,
    pub member_count: i64,
    pub created_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT g.id, g.name, g.created_at, \
     COALESCE((SELECT array_agg(m.model_id ORDER BY m.model_id) FROM group_models m \
               WHERE m.group_id = g.id), '{}') AS allowed_models, \
     (SELECT count(*) FROM group_members gm WHERE gm.group_id = g.id) AS member_count \
     FROM groups g";

pub async fn create(
    pool: &PgPool,
    org_id: Uuid,
    name: &str,
    allowed_models: &[String],
) -> Result<GroupRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO groups (id, org_id, name) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(org_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    insert_models(&mut tx, id, allowed_models).await?;
    let row = get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn list(pool: &PgPool, org_id: Uuid) -> Result<Vec<GroupRow>, StoreError> {
    let sql = format!("{SELECT} WHERE g.org_id = $1 ORDER BY g.name");
    Ok(sqlx::query_as(&sql).bind(org_id).fetch_all(pool).await?)
}

/// Deletes a group (name or id); its memberships and grants go with it.
pub async fn delete(pool: &PgPool, org_id: Uuid, group: &str) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    let id = resolve(&mut tx, org_id, group)
        .await?
        .ok_or_else(|| not_found(group))?;
    sqlx::query("DELETE FROM groups WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces the models a group (name or id) may use.
pub async fn set_models(
    pool: &PgPool,
    org_id: Uuid,
    group: &str,
    allowed_models: &[String],
) -> Result<GroupRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let id = resolve(&mut tx, org_id, group)
        .await?
        .ok_or_else(|| not_found(group))?;
    sqlx::query("DELETE FROM group_models WHERE group_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    insert_models(&mut tx, id, allowed_models).await?;
    let row = get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

async fn insert_models(
    conn: &mut PgConnection,
    group_id: Uuid,
    allowed_models: &[String],
) -> Result<(), StoreError> {
    if allowed_models.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO group_models (group_id, model_id) \
         SELECT $1, m FROM UNNEST($2::text[]) AS m ON CONFLICT DO NOTHING",
    )
    .bind(group_id)
    .bind(allowed_models)
    .execute(conn)
    .await?;
    Ok(())
}

async fn get(conn: &mut PgConnection, id: Uuid) -> Result<GroupRow, StoreError> {
    let sql = format!("{SELECT} WHERE g.id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_one(conn).await?)
}

/// The id of the group with this id or name, preferring an id match.
pub async fn resolve(
    conn: &mut PgConnection,
    org_id: Uuid,
    group: &str,
) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM groups WHERE org_id = $1 AND (name = $2 OR id IS NOT DISTINCT FROM $3) \
         ORDER BY (id IS NOT DISTINCT FROM $3) DESC LIMIT 1",
    )
    .bind(org_id)
    .bind(group)
    .bind(parse_uuid(group))
    .fetch_optional(conn)
    .await?)
}

/// Resolves every group name or id, failing with `InvalidArgument` on the first unknown one.
pub async fn resolve_all(
    conn: &mut PgConnection,
    org_id: Uuid,
    groups: &[String],
) -> Result<Vec<Uuid>, StoreError> {
    let mut ids = Vec::with_capacity(groups.len());
    for group in groups {
        let id = resolve(conn, org_id, group)
            .await?
            .ok_or_else(|| StoreError::InvalidArgument(format!("group `{group}` not found")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn not_found(group: &str) -> StoreError {
    StoreError::NotFound(format!("group `{group}` not found"))
}
