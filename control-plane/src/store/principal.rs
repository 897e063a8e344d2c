//! Users and service accounts, and their group memberships.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{StoreError, audit, group, parse_uuid};

/// A principal with the names of its groups.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PrincipalRow {
    pub id: Uuid,
    /// `user` or `service_account` (enforced by the schema).
    pub kind: String,
    pub name: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A principal to create; inputs are validated by the caller.
#[derive(Debug)]
pub struct NewPrincipal<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub email: Option<&'a str>,
    /// Group names or ids.
    pub groups: &'a [String],
}

const SELECT: &str = "SELECT p.id, p.kind, p.name, p.email, p.disabled, p.created_at, \
     COALESCE((SELECT array_agg(g.name ORDER BY g.name) FROM group_members gm \
               JOIN groups g ON g.id = gm.group_id WHERE gm.principal_id = p.id), '{}') AS groups \
     FROM principals p";

pub async fn create(
    pool: &PgPool,
    org_id: Uuid,
    new: &NewPrincipal<'_>,
) -> Result<PrincipalRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let group_ids = group::resolve_all(&mut tx, org_id, new.groups).await?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO principals (id, org_id, kind, name, email) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(org_id)
    .bind(new.kind)
    .bind(new.name)
    .bind(new.email)
    .execute(&mut *tx)
    .await?;
    insert_memberships(&mut tx, id, &group_ids).await?;
    let row = get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

/// Principals of one kind (`None`: both), by name.
pub async fn list(
    pool: &PgPool,
    org_id: Uuid,
    kind: Option<&str>,
) -> Result<Vec<PrincipalRow>, StoreError> {
    let sql = format!(
        "{SELECT} WHERE p.org_id = $1 AND ($2::text IS NULL OR p.kind = $2) ORDER BY p.name, p.id"
    );
    Ok(sqlx::query_as(&sql)
        .bind(org_id)
        .bind(kind)
        .fetch_all(pool)
        .await?)
}

/// Replaces the groups of a principal (id, email or name).
pub async fn set_groups(
    pool: &PgPool,
    org_id: Uuid,
    principal: &str,
    groups: &[String],
) -> Result<PrincipalRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let id = resolve(&mut tx, org_id, principal).await?;
    let group_ids = group::resolve_all(&mut tx, org_id, groups).await?;
    sqlx::query("DELETE FROM group_members WHERE principal_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    insert_memberships(&mut tx, id, &group_ids).await?;
    let row = get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

async fn insert_memberships(
    conn: &mut PgConnection,
    principal_id: Uuid,
    group_ids: &[Uuid],
) -> Result<(), StoreError> {
    if group_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO group_members (group_id, principal_id) \
         SELECT g, $1 FROM UNNEST($2::uuid[]) AS g ON CONFLICT DO NOTHING",
    )
    .bind(principal_id)
    .bind(group_ids)
    .execute(conn)
    .await?;
    Ok(())
}

async fn get(conn: &mut PgConnection, id: Uuid) -> Result<PrincipalRow, StoreError> {
    let sql = format!("{SELECT} WHERE p.id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_one(conn).await?)
}

#[derive(sqlx::FromRow)]
struct Candidate {
    id: Uuid,
    by_id: bool,
    by_email: bool,
}

/// The principal named by id, email or name. An id match wins, then an email match; a name
/// shared by several principals (a user and a service account) is refused as ambiguous.
pub async fn resolve(
    conn: &mut PgConnection,
    org_id: Uuid,
    principal: &str,
) -> Result<Uuid, StoreError> {
    let candidates: Vec<Candidate> = sqlx::query_as(
        "SELECT id, (id IS NOT DISTINCT FROM $3) AS by_id, COALESCE(email = $2, false) AS by_email \
         FROM principals WHERE org_id = $1 \
         AND (id IS NOT DISTINCT FROM $3 OR email = $2 OR name = $2)",
    )
    .bind(org_id)
    .bind(principal)
    .bind(parse_uuid(principal))
    .fetch_all(conn)
    .await?;
    if let Some(c) = candidates
        .iter()
        .find(|c| c.by_id)
        .or_else(|| candidates.iter().find(|c| c.by_email))
    {
        return Ok(c.id);
    }
    match candidates.as_slice() {
        [] => Err(StoreError::NotFound(format!(
            "principal `{principal}` not found"
        ))),
        [one] => Ok(one.id),
        _ => Err(StoreError::InvalidArgument(format!(
            "principal name `{principal}` is ambiguous; use the principal id"
        ))),
    }
}
