//! The observability settings (one row, `observability_settings`): whether data planes log
//! prompts and completions (content capture) and how long audit entries are kept before they
//! are archived and deleted. An absent row means the defaults: no capture, kept forever.
//!
//! Every change goes through [`audit::begin`], so the row trigger records it in the audit chain
//! with the acting admin, in the transaction of the change.

use sqlx::{PgConnection, PgPool};

use super::{StoreError, audit};

/// The settings in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct ObservabilitySettingsRow {
    /// Prompts and completions are written to the data planes' logs.
    pub content_capture: bool,
    /// Audit entries older than this many days are archived, then deleted; `None` = forever.
    pub audit_retention_days: Option<i32>,
}

/// A change: `None` fields keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObservabilityUpdate {
    pub content_capture: Option<bool>,
    /// `Some(None)` = keep forever.
    pub audit_retention_days: Option<Option<i32>>,
}

/// The settings in force (defaults when never set).
pub async fn get(pool: &PgPool) -> Result<ObservabilitySettingsRow, StoreError> {
    let mut conn = pool.acquire().await?;
    get_in(&mut conn).await
}

/// Like [`get`], on the caller's connection or transaction (the snapshot compiler's).
pub async fn get_in(conn: &mut PgConnection) -> Result<ObservabilitySettingsRow, StoreError> {
    let row: Option<ObservabilitySettingsRow> = sqlx::query_as(
        "SELECT content_capture, audit_retention_days FROM observability_settings WHERE singleton",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.unwrap_or_default())
}

/// Applies `update` and returns the settings in force. The change (if any) lands in the audit
/// chain attributed to the current actor. An empty update changes nothing.
pub async fn update(
    pool: &PgPool,
    update: ObservabilityUpdate,
) -> Result<ObservabilitySettingsRow, StoreError> {
    if update == ObservabilityUpdate::default() {
        return get(pool).await;
    }
    if let Some(Some(days)) = update.audit_retention_days
        && days < 1
    {
        return Err(StoreError::InvalidArgument(
            "audit retention must be at least one day (or forever)".to_owned(),
        ));
    }
    let mut tx = audit::begin(pool).await?;
    let row = sqlx::query_as(
        "INSERT INTO observability_settings AS s (singleton, content_capture, audit_retention_days) \
         VALUES (true, COALESCE($1, false), CASE WHEN $2 THEN $3 END) \
         ON CONFLICT (singleton) DO UPDATE SET \
           content_capture = COALESCE($1, s.content_capture), \
           audit_retention_days = CASE WHEN $2 THEN $3 ELSE s.audit_retention_days END, \
           updated_at = now() \
         RETURNING content_capture, audit_retention_days",
    )
    .bind(update.content_capture)
    .bind(update.audit_retention_days.is_some())
    .bind(update.audit_retention_days.flatten())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}
