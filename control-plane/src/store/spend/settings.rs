//! The org-wide budget settings (one row; absent = defaults).

use sqlx::{PgConnection, PgPool};

use crate::store::{StoreError, audit};

/// The stored settings. The webhook secret stays sealed (see `SecretsKey`).
#[derive(Clone, sqlx::FromRow)]
pub struct BudgetSettingsRow {
    /// "closed" or "open".
    pub outage_mode: String,
    pub lease_ttl_s: i32,
    pub input_bytes_per_token: i32,
    /// 0 = reserve `max_tokens` as sent.
    pub output_estimate_max_tokens: i32,
    pub alert_webhook_url: Option<String>,
    pub alert_webhook_secret_enc: Option<Vec<u8>>,
}

impl Default for BudgetSettingsRow {
    fn default() -> Self {
        BudgetSettingsRow {
            outage_mode: "closed".to_owned(),
            lease_ttl_s: 30,
            input_bytes_per_token: 3,
            output_estimate_max_tokens: 0,
            alert_webhook_url: None,
            alert_webhook_secret_enc: None,
        }
    }
}

impl std::fmt::Debug for BudgetSettingsRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetSettingsRow")
            .field("outage_mode", &self.outage_mode)
            .field("lease_ttl_s", &self.lease_ttl_s)
            .field("input_bytes_per_token", &self.input_bytes_per_token)
            .field(
                "output_estimate_max_tokens",
                &self.output_estimate_max_tokens,
            )
            .field("alert_webhook_url", &self.alert_webhook_url)
            .field(
                "alert_webhook_secret_set",
                &self.alert_webhook_secret_enc.is_some(),
            )
            .finish()
    }
}

/// A change to the settings; `None` keeps the current value.
#[derive(Default)]
pub struct SettingsChange {
    pub outage_mode: Option<String>,
    pub lease_ttl_s: Option<i32>,
    pub input_bytes_per_token: Option<i32>,
    pub output_estimate_max_tokens: Option<i32>,
    /// Removes the webhook URL and secret (before any new ones below are applied).
    pub clear_webhook: bool,
    pub alert_webhook_url: Option<String>,
    pub alert_webhook_secret_enc: Option<Vec<u8>>,
}

const COLUMNS: &str = "outage_mode, lease_ttl_s, input_bytes_per_token, \
     output_estimate_max_tokens, alert_webhook_url, alert_webhook_secret_enc";

/// The settings in force (defaults when never set).
pub async fn get(conn: &mut PgConnection) -> Result<BudgetSettingsRow, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM budget_settings");
    let row: Option<BudgetSettingsRow> = sqlx::query_as(&sql).fetch_optional(conn).await?;
    Ok(row.unwrap_or_default())
}

/// Applies `change` in one transaction and returns the result. Out-of-range values are
/// `InvalidArgument` (by the table's checks).
pub async fn set(pool: &PgPool, change: SettingsChange) -> Result<BudgetSettingsRow, StoreError> {
    let mut tx = audit::begin(pool).await?;
    sqlx::query("INSERT INTO budget_settings (singleton) VALUES (true) ON CONFLICT DO NOTHING")
        .execute(&mut *tx)
        .await?;
    let sql = format!("SELECT {COLUMNS} FROM budget_settings FOR UPDATE");
    let mut row: BudgetSettingsRow = sqlx::query_as(&sql).fetch_one(&mut *tx).await?;
    if let Some(mode) = change.outage_mode {
        row.outage_mode = mode;
    }
    if let Some(ttl) = change.lease_ttl_s {
        row.lease_ttl_s = ttl;
    }
    if let Some(bytes) = change.input_bytes_per_token {
        row.input_bytes_per_token = bytes;
    }
    if let Some(bound) = change.output_estimate_max_tokens {
        row.output_estimate_max_tokens = bound;
    }
    if change.clear_webhook {
        row.alert_webhook_url = None;
        row.alert_webhook_secret_enc = None;
    }
    if let Some(url) = change.alert_webhook_url {
        row.alert_webhook_url = Some(url);
    }
    if let Some(secret) = change.alert_webhook_secret_enc {
        row.alert_webhook_secret_enc = Some(secret);
    }
    sqlx::query(
        "UPDATE budget_settings SET outage_mode = $1, lease_ttl_s = $2, \
         input_bytes_per_token = $3, output_estimate_max_tokens = $4, alert_webhook_url = $5, \
         alert_webhook_secret_enc = $6, updated_at = now()",
    )
    .bind(&row.outage_mode)
    .bind(row.lease_ttl_s)
    .bind(row.input_bytes_per_token)
    .bind(row.output_estimate_max_tokens)
    .bind(&row.alert_webhook_url)
    .bind(&row.alert_webhook_secret_enc)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}
