//! Admin calls for gateway API keys. The secret is minted here, returned once, and only its
//! SHA-256 is stored.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use tollgate_proto::v1 as pb;
use tonic::Status;
use uuid::Uuid;

use super::{AdminService, optional, required};
use crate::credential::{API_KEY_PREFIX, display_prefix, generate_secret};
use crate::store::api_key::{self, ApiKeyRow, NewApiKey};

pub(super) async fn create_api_key(
    svc: &AdminService,
    req: pb::CreateApiKeyRequest,
) -> Result<pb::CreateApiKeyResponse, Status> {
    let principal = required("principal", &req.principal)?;
    let expires_at = expiry(req.expires_at_unix_s, Utc::now())?;
    let secret = generate_secret(API_KEY_PREFIX);
    let prefix = display_prefix(&secret);
    let new = NewApiKey {
        principal,
        name: &req.name,
        prefix: &prefix,
        secret_sha256: tollgate_policy::secret_sha256(secret.expose_secret()),
        expires_at,
    };
    let row = api_key::create(&svc.pool, svc.org_id, &new).await?;
    Ok(pb::CreateApiKeyResponse {
        key: Some(key_info(row)),
        secret: secret.expose_secret().to_owned(),
    })
}

/// `0` never expires; otherwise a time in the future.
fn expiry(unix_s: i64, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, Status> {
    if unix_s == 0 {
        return Ok(None);
    }
    let at = DateTime::from_timestamp(unix_s, 0)
        .filter(|_| unix_s > 0)
        .ok_or_else(|| Status::invalid_argument("expires_at_unix_s is out of range"))?;
    if at <= now {
        return Err(Status::invalid_argument("expires_at_unix_s is in the past"));
    }
    Ok(Some(at))
}

pub(super) async fn list_api_keys(
    svc: &AdminService,
    req: pb::ListApiKeysRequest,
) -> Result<pb::ListApiKeysResponse, Status> {
    let principal = optional(&req.principal);
    let rows = api_key::list(&svc.pool, svc.org_id, principal, req.include_revoked).await?;
    Ok(pb::ListApiKeysResponse {
        keys: rows.into_iter().map(key_info).collect(),
    })
}

pub(super) async fn revoke_api_key(
    svc: &AdminService,
    req: pb::RevokeApiKeyRequest,
) -> Result<pb::ApiKeyInfo, Status> {
    let id = Uuid::parse_str(&req.id)
        .map_err(|_| Status::invalid_argument("API key id must be a UUID"))?;
    Ok(key_info(api_key::revoke(&svc.pool, id).await?))
}

fn key_info(row: ApiKeyRow) -> pb::ApiKeyInfo {
    pb::ApiKeyInfo {
        id: row.id.to_string(),
        name: row.name,
        principal_id: row.principal_id.to_string(),
        principal_name: row.principal_name,
        prefix: row.prefix,
        created_at_unix_s: row.created_at.timestamp(),
        expires_at_unix_s: row.expires_at.map_or(0, |t| t.timestamp()),
        revoked_at_unix_s: row.revoked_at.map_or(0, |t| t.timestamp()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_expiry_never_expires() {
        assert_eq!(expiry(0, Utc::now()).unwrap(), None);
    }

    #[test]
    fn past_or_negative_expiry_is_refused() {
        let now = Utc::now();
        assert!(expiry(now.timestamp() - 1, now).is_err());
        assert!(expiry(-5, now).is_err());
        assert!(expiry(now.timestamp() + 60, now).unwrap().is_some());
    }
}
