//! Providers: where requests are sent. Non-secret settings live in `providers.config` (JSON)
//! and `base_url`; credentials in `providers.credentials`, sealed with the secrets key
//! ([`CREDENTIALS_PURPOSE`]). Inline credential values are write-only: the admin API shows them
//! as stored, and only the snapshot compiler opens them.

mod config;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tracing::warn;
use uuid::Uuid;

pub use config::{Credential, Credentials, Settings, StoredSecret, TimeoutsJson};

use super::{StoreError, audit, parse_uuid};
use crate::identity::SecretsKey;

/// Associated data of sealed provider credentials.
pub const CREDENTIALS_PURPOSE: &str = "provider-credentials";

/// A provider as stored (credentials still sealed).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderRow {
    pub id: Uuid,
    pub name: String,
    /// `demo`, `anthropic`, `bedrock`, `vertex` or `foundry` (enforced by the schema).
    pub kind: String,
    pub base_url: String,
    /// `providers.config` as JSON text.
    pub config: String,
    /// Sealed [`Credentials`] JSON, if any credential is stored.
    pub credentials: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

impl ProviderRow {
    /// The non-secret settings (an unreadable document reads as empty, with a warning).
    pub fn settings(&self) -> Settings {
        Settings::from_json(&self.config).unwrap_or_else(|err| {
            warn!(provider = %self.name, error = %err, "unreadable provider settings");
            Settings::default()
        })
    }

    /// Opens the credentials; `Ok` of an empty set when none are stored.
    pub fn credentials(&self, key: &SecretsKey) -> Result<Credentials, CredentialsError> {
        open_credentials(key, self.credentials.as_deref())
    }
}

/// Why stored credentials cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the stored credentials cannot be decrypted (wrong secrets key?)")]
    Decrypt,
    #[error("the stored credentials are not valid JSON")]
    Format,
}

fn open_credentials(
    key: &SecretsKey,
    sealed: Option<&[u8]>,
) -> Result<Credentials, CredentialsError> {
    let Some(sealed) = sealed else {
        return Ok(Credentials::default());
    };
    let plain = key
        .open(CREDENTIALS_PURPOSE, sealed)
        .map_err(|_| CredentialsError::Decrypt)?;
    Credentials::from_json(&plain).map_err(|_| CredentialsError::Format)
}

/// `None` when there is nothing to store.
fn seal_credentials(key: &SecretsKey, credentials: &Credentials) -> Option<Vec<u8>> {
    (!credentials.is_empty()).then(|| key.seal(CREDENTIALS_PURPOSE, &credentials.to_json()))
}

/// A provider to create; inputs are validated by the caller.
#[derive(Debug)]
pub struct NewProvider<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub base_url: &'a str,
    pub settings: &'a Settings,
    pub credentials: &'a Credentials,
}

const COLUMNS: &str = "id, name, kind, base_url, config::text AS config, credentials, created_at";

pub async fn create(
    pool: &PgPool,
    key: &SecretsKey,
    new: &NewProvider<'_>,
) -> Result<ProviderRow, StoreError> {
    let sql = format!(
        "INSERT INTO providers (id, name, kind, base_url, config, credentials) \
         VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING {COLUMNS}"
    );
    let mut tx = audit::begin(pool).await?;
    let row = sqlx::query_as(&sql)
        .bind(Uuid::now_v7())
        .bind(new.name)
        .bind(new.kind)
        .bind(new.base_url)
        .bind(new.settings.to_json())
        .bind(seal_credentials(key, new.credentials))
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

/// The new state of a provider being updated, computed from its current row and credentials
/// (which may be unreadable: `None`).
pub struct Update {
    pub base_url: String,
    pub settings: Settings,
    pub credentials: Credentials,
}

/// Replaces a provider's settings and credentials with what `change` computes from the
/// current row, in one transaction (the row is locked meanwhile).
pub async fn update<F>(
    pool: &PgPool,
    key: &SecretsKey,
    provider: &str,
    change: F,
) -> Result<ProviderRow, StoreError>
where
    F: FnOnce(&ProviderRow, Option<Credentials>) -> Result<Update, StoreError>,
{
    let mut tx = audit::begin(pool).await?;
    let id = resolve(&mut tx, provider)
        .await?
        .ok_or_else(|| not_found(provider))?;
    let sql = format!("SELECT {COLUMNS} FROM providers WHERE id = $1 FOR UPDATE");
    let row: ProviderRow = sqlx::query_as(&sql).bind(id).fetch_one(&mut *tx).await?;
    let current = match row.credentials(key) {
        Ok(c) => Some(c),
        Err(err) => {
            warn!(provider = %row.name, error = %err, "replacing unreadable provider credentials");
            None
        }
    };
    let next = change(&row, current)?;
    let sql = format!(
        "UPDATE providers SET base_url = $2, config = $3::jsonb, credentials = $4, \
         api_key = '' WHERE id = $1 RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as(&sql)
        .bind(id)
        .bind(&next.base_url)
        .bind(next.settings.to_json())
        .bind(seal_credentials(key, &next.credentials))
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn list(pool: &PgPool) -> Result<Vec<ProviderRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM providers ORDER BY name");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// Every provider, for the snapshot compiler (inside its transaction).
pub async fn load(conn: &mut PgConnection) -> Result<Vec<ProviderRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM providers ORDER BY name");
    Ok(sqlx::query_as(&sql).fetch_all(conn).await?)
}

/// Deletes a provider by name or id. A provider still used by a route cannot be deleted.
pub async fn delete(pool: &PgPool, provider: &str) -> Result<(), StoreError> {
    let mut tx = audit::begin(pool).await?;
    let id = resolve(&mut tx, provider)
        .await?
        .ok_or_else(|| not_found(provider))?;
    sqlx::query("DELETE FROM providers WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Moves plaintext `providers.api_key` values (written before credentials were sealed) into
/// the sealed credentials and blanks the column. Idempotent and safe when replicas start
/// together (rows are locked; a blanked row no longer matches). Returns how many moved. Run at
/// start: audited as `system:startup`.
pub async fn seal_legacy_api_keys(pool: &PgPool, key: &SecretsKey) -> Result<u64, StoreError> {
    let mut tx = audit::begin(pool).await?;
    audit::set_actor(&mut tx, "system:startup").await?;
    let rows: Vec<(Uuid, String, String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT id, name, api_key, credentials FROM providers WHERE api_key <> '' \
         ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut moved = 0;
    for (id, name, api_key, sealed) in rows {
        let mut credentials = match open_credentials(key, sealed.as_deref()) {
            Ok(credentials) => credentials,
            Err(err) => {
                // Another secrets key (or a damaged row): leave it for a replica that can
                // read it rather than overwrite what it holds.
                warn!(provider = %name, error = %err, "legacy API key left in place: sealed credentials unreadable");
                continue;
            }
        };
        moved += 1;
        // A sealed api_key (written later) wins over the legacy column.
        if credentials.get(Credential::ApiKey).is_none() {
            credentials.set(Credential::ApiKey, StoredSecret::Value(api_key));
        }
        sqlx::query("UPDATE providers SET credentials = $2, api_key = '' WHERE id = $1")
            .bind(id)
            .bind(seal_credentials(key, &credentials))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(moved)
}

/// The id of the provider with this id or name, preferring an id match.
pub async fn resolve(conn: &mut PgConnection, provider: &str) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM providers WHERE name = $1 OR id IS NOT DISTINCT FROM $2 \
         ORDER BY (id IS NOT DISTINCT FROM $2) DESC LIMIT 1",
    )
    .bind(provider)
    .bind(parse_uuid(provider))
    .fetch_optional(conn)
    .await?)
}

pub fn not_found(provider: &str) -> StoreError {
    StoreError::NotFound(format!("provider `{provider}` not found"))
}
