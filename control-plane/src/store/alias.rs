//! Model aliases: other client-facing ids for catalogue models. An alias never equals a model
//! id (checked here, both ways, under one advisory lock so concurrent writes cannot race).

use sqlx::{PgConnection, PgPool};

use super::{StoreError, audit};

/// Serialises alias writes and model creations (arbitrary constant key).
const CATALOGUE_NAMES_LOCK: i64 = 0x7467_616c_6961_7331;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AliasRow {
    pub alias: String,
    pub model_id: String,
}

/// Takes the lock that orders alias writes against model creations (until the transaction
/// ends).
pub(super) async fn lock_names(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CATALOGUE_NAMES_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// Refuses a model id that is already an alias.
pub(super) async fn check_not_alias(conn: &mut PgConnection, id: &str) -> Result<(), StoreError> {
    let target: Option<String> =
        sqlx::query_scalar("SELECT model_id FROM model_aliases WHERE alias = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    match target {
        Some(model) => Err(StoreError::InvalidArgument(format!(
            "`{id}` is an alias of `{model}`; delete the alias before adding a model with this id"
        ))),
        None => Ok(()),
    }
}

/// Points `alias` at `model` (creating or replacing it).
pub async fn set(pool: &PgPool, alias: &str, model: &str) -> Result<AliasRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    lock_names(&mut tx).await?;
    let exists = |id: &str| {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM models WHERE id = $1)")
            .bind(id.to_owned())
    };
    if exists(alias).fetch_one(&mut *tx).await? {
        return Err(StoreError::InvalidArgument(format!(
            "`{alias}` is a model id; an alias must not shadow a model"
        )));
    }
    if !exists(model).fetch_one(&mut *tx).await? {
        return Err(StoreError::InvalidArgument(format!(
            "model `{model}` is not in the catalogue (an alias names a catalogue model)"
        )));
    }
    let row = sqlx::query_as(
        "INSERT INTO model_aliases (alias, model_id) VALUES ($1, $2) \
         ON CONFLICT (alias) DO UPDATE SET model_id = EXCLUDED.model_id \
         RETURNING alias, model_id",
    )
    .bind(alias)
    .bind(model)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn list(pool: &PgPool) -> Result<Vec<AliasRow>, StoreError> {
    let mut conn = pool.acquire().await?;
    load(&mut conn).await
}

/// Every alias, ordered by alias (also read by the snapshot compiler in its transaction).
pub async fn load(conn: &mut PgConnection) -> Result<Vec<AliasRow>, StoreError> {
    Ok(
        sqlx::query_as("SELECT alias, model_id FROM model_aliases ORDER BY alias")
            .fetch_all(conn)
            .await?,
    )
}

pub async fn delete(pool: &PgPool, alias: &str) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    let deleted = sqlx::query("DELETE FROM model_aliases WHERE alias = $1")
        .bind(alias)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound(format!("alias `{alias}` not found")));
    }
    tx.commit().await?;
    Ok(())
}
