//! The model catalogue: client-facing model ids.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{StoreError, alias, audit};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModelRow {
    pub id: String,
    pub display_name: String,
    pub max_input_tokens: i32,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, display_name, max_input_tokens, created_at";

/// Creates a model or updates its display name and limit (keeping its creation time). An
/// alias's id cannot become a model id.
pub async fn upsert(
    pool: &PgPool,
    id: &str,
    display_name: &str,
    max_input_tokens: i32,
) -> Result<ModelRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    alias::lock_names(&mut tx).await?;
    alias::check_not_alias(&mut tx, id).await?;
    let sql = format!(
        "INSERT INTO models (id, display_name, max_input_tokens) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name, \
         max_input_tokens = EXCLUDED.max_input_tokens RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as(&sql)
        .bind(id)
        .bind(display_name)
        .bind(max_input_tokens)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn list(pool: &PgPool) -> Result<Vec<ModelRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM models ORDER BY id");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// Deletes a model and its route. Groups that allowed it keep the id (it may come back).
pub async fn delete(pool: &PgPool, id: &str) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    let deleted = sqlx::query("DELETE FROM models WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound(format!("model `{id}` not found")));
    }
    tx.commit().await?;
    Ok(())
}
