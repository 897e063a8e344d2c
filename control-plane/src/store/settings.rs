//! Claude Code managed settings documents and the telemetry collector URL.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{StoreError, audit, group};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SettingsDocumentRow {
    pub id: Uuid,
    pub name: String,
    pub priority: i32,
    pub group_ids: Vec<Uuid>,
    /// The settings object as JSON text.
    pub settings_json: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a document is made of, as an admin writes it. `groups` are names or ids.
#[derive(Debug, Clone)]
pub struct SettingsDocumentSpec<'a> {
    pub name: &'a str,
    pub priority: i32,
    pub groups: &'a [String],
    /// Already validated as a JSON object.
    pub settings_json: &'a str,
}

/// The snapshot's managed-settings and telemetry sections.
#[derive(Debug, Clone, Default)]
pub struct SettingsPolicyRows {
    /// Ordered by priority, then name.
    pub documents: Vec<SettingsDocumentRow>,
    /// Empty = relay off.
    pub telemetry_collector_url: String,
}

const SELECT: &str = "SELECT d.id, d.name, d.priority, d.settings::text AS settings_json, \
     d.created_at, d.updated_at, \
     ARRAY(SELECT dg.group_id FROM settings_document_groups dg WHERE dg.document_id = d.id \
           ORDER BY dg.group_id) AS group_ids \
     FROM settings_documents d";

pub async fn create(
    pool: &PgPool,
    org_id: Uuid,
    spec: &SettingsDocumentSpec<'_>,
) -> Result<SettingsDocumentRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let id = Uuid::now_v7();
    let groups = resolve_groups(&mut tx, org_id, spec.groups).await?;
    sqlx::query(
        "INSERT INTO settings_documents (id, name, priority, settings) VALUES ($1, $2, $3, $4::jsonb)",
    )
    .bind(id)
    .bind(spec.name)
    .bind(spec.priority)
    .bind(spec.settings_json)
    .execute(&mut *tx)
    .await?;
    insert_groups(&mut tx, id, &groups).await?;
    let row = get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

/// Replaces every field of document `id`.
pub async fn update(
    pool: &PgPool,
    org_id: Uuid,
    id: Uuid,
    spec: &SettingsDocumentSpec<'_>,
) -> Result<SettingsDocumentRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    let groups = resolve_groups(&mut tx, org_id, spec.groups).await?;
    let updated = sqlx::query(
        "UPDATE settings_documents SET name = $2, priority = $3, settings = $4::jsonb, \
         updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(spec.name)
    .bind(spec.priority)
    .bind(spec.settings_json)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(not_found(id));
    }
    sqlx::query("DELETE FROM settings_document_groups WHERE document_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    insert_groups(&mut tx, id, &groups).await?;
    let row = get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn list(pool: &PgPool) -> Result<Vec<SettingsDocumentRow>, StoreError> {
    let sql = format!("{SELECT} ORDER BY d.priority, d.name");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

pub async fn delete(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    let deleted = sqlx::query("DELETE FROM settings_documents WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(not_found(id));
    }
    tx.commit().await?;
    Ok(())
}

/// Sets the OTLP/HTTP collector base URL (empty = off).
pub async fn set_telemetry_collector(pool: &PgPool, url: &str) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    sqlx::query(
        "INSERT INTO telemetry_settings (singleton, collector_url) VALUES (true, $1) \
         ON CONFLICT (singleton) DO UPDATE SET collector_url = EXCLUDED.collector_url",
    )
    .bind(url)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn telemetry_collector(pool: &PgPool) -> Result<String, StoreError> {
    let mut conn = pool.acquire().await?;
    telemetry_collector_in(&mut conn).await
}

async fn telemetry_collector_in(conn: &mut PgConnection) -> Result<String, StoreError> {
    let url: Option<String> =
        sqlx::query_scalar("SELECT collector_url FROM telemetry_settings WHERE singleton")
            .fetch_optional(conn)
            .await?;
    Ok(url.unwrap_or_default())
}

/// Reads the snapshot's settings sections inside the compiler's transaction.
pub async fn load_policy(conn: &mut PgConnection) -> Result<SettingsPolicyRows, StoreError> {
    let sql = format!("{SELECT} ORDER BY d.priority, d.name");
    let documents = sqlx::query_as(&sql).fetch_all(&mut *conn).await?;
    let telemetry_collector_url = telemetry_collector_in(conn).await?;
    Ok(SettingsPolicyRows {
        documents,
        telemetry_collector_url,
    })
}

async fn resolve_groups(
    conn: &mut PgConnection,
    org_id: Uuid,
    groups: &[String],
) -> Result<Vec<Uuid>, StoreError> {
    let mut ids = Vec::with_capacity(groups.len());
    for g in groups {
        let id = group::resolve(conn, org_id, g)
            .await?
            .ok_or_else(|| StoreError::InvalidArgument(format!("group `{g}` does not exist")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

async fn insert_groups(
    conn: &mut PgConnection,
    document_id: Uuid,
    groups: &[Uuid],
) -> Result<(), StoreError> {
    if groups.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO settings_document_groups (document_id, group_id) \
         SELECT $1, g FROM UNNEST($2::uuid[]) AS g ON CONFLICT DO NOTHING",
    )
    .bind(document_id)
    .bind(groups)
    .execute(conn)
    .await?;
    Ok(())
}

async fn get(conn: &mut PgConnection, id: Uuid) -> Result<SettingsDocumentRow, StoreError> {
    let sql = format!("{SELECT} WHERE d.id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_one(conn).await?)
}

fn not_found(id: Uuid) -> StoreError {
    StoreError::NotFound(format!("settings document `{id}` does not exist"))
}
