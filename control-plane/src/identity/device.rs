//! The device flow (RFC 8628): device authorization, the verification page's confirmation
//! step, approval after the IdP round trip, and token polling.

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{DEVICE_CODE_PREFIX, Identity, IdentityError, OAuthError, SignedInUser, TokenSet};
use crate::credential::generate_secret;
use crate::store::identity::{device_code, idp, session};
use crate::store::{StoreError, audit};

/// RFC 8628 §6.1: 20 consonants, no vowels (no words), no look-alikes.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Lifetime of a device code.
pub const DEVICE_CODE_TTL_SECS: i64 = 600;
/// Minimum seconds between polls.
pub const POLL_INTERVAL_SECS: i32 = 5;
/// Polls this much earlier than the interval are still tolerated (network jitter).
const POLL_TOLERANCE_MS: i64 = 750;
/// Lifetime of a confirmation form and of an IdP login in flight.
const FORM_TTL_SECS: i64 = 600;

/// What `POST /oauth/device_authorization` answers (URLs are added by the HTTP layer).
#[derive(Debug)]
pub struct DeviceAuthorization {
    pub device_code: SecretString,
    pub user_code: String,
    pub expires_in: i64,
    pub interval: i32,
}

/// A pending device code found by its user code.
#[derive(Debug, Clone)]
pub struct PendingDevice {
    pub id: Uuid,
    pub user_code: String,
}

/// A user code `XXXX-XXXX` from the RFC 8628 alphabet (20^8 ≈ 2^34.6 codes).
fn generate_user_code() -> String {
    let mut rng = rand::rng();
    let mut code = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            code.push('-');
        }
        let c = USER_CODE_ALPHABET[rng.random_range(0..USER_CODE_ALPHABET.len())];
        code.push(char::from(c));
    }
    code
}

/// A typed user code in canonical form (`XXXX-XXXX`): case and separators are ignored.
/// `None` when it cannot be a user code.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let chars: Vec<char> = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if chars.len() != 8
        || !chars
            .iter()
            .all(|c| USER_CODE_ALPHABET.contains(&(*c as u8)))
    {
        return None;
    }
    let mut code: String = chars[..4].iter().collect();
    code.push('-');
    code.extend(&chars[4..]);
    Some(code)
}

impl Identity {
    /// Starts a device flow.
    pub async fn authorize_device(&self) -> Result<DeviceAuthorization, IdentityError> {
        // Housekeeping rides on new flows: old codes are useless.
        device_code::delete_stale(self.pool()).await?;
        let device_code = generate_secret(DEVICE_CODE_PREFIX);
        let hash = tollgate_policy::secret_sha256(device_code.expose_secret());
        // A user-code collision among live codes is rare; retry a few times.
        for _ in 0..5 {
            let user_code = generate_user_code();
            match device_code::insert(
                self.pool(),
                &hash,
                &user_code,
                POLL_INTERVAL_SECS,
                DEVICE_CODE_TTL_SECS,
            )
            .await
            {
                Ok(_) => {
                    return Ok(DeviceAuthorization {
                        device_code,
                        user_code,
                        expires_in: DEVICE_CODE_TTL_SECS,
                        interval: POLL_INTERVAL_SECS,
                    });
                }
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(IdentityError::Store(StoreError::Aborted(
            "no free user code".to_owned(),
        )))
    }

    /// Polls a device code (`grant_type=urn:ietf:params:oauth:grant-type:device_code`).
    pub async fn poll_device(&self, device_code: &str) -> Result<TokenSet, OAuthError> {
        let hash = tollgate_policy::secret_sha256(device_code);
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        let Some(row) = device_code::lock_by_hash(&mut tx, &hash).await? else {
            return Err(OAuthError::InvalidGrant("unknown device code"));
        };
        if row.status == "consumed" {
            return Err(OAuthError::InvalidGrant("the device code was already used"));
        }
        if row.status != "approved" && row.expires_at <= row.now {
            return Err(OAuthError::ExpiredToken);
        }
        let too_fast = row.last_polled_at.is_some_and(|last| {
            (row.now - last).num_milliseconds()
                < i64::from(row.interval_secs) * 1000 - POLL_TOLERANCE_MS
        });
        device_code::mark_polled(&mut tx, row.id).await?;
        let outcome = match (row.status.as_str(), row.session_id) {
            _ if too_fast => Err(OAuthError::SlowDown),
            ("denied", _) => Err(OAuthError::AccessDenied),
            ("approved", Some(session_id)) => {
                device_code::set_status(&mut tx, row.id, "consumed", None).await?;
                let Some(session) = session::get(&mut tx, session_id).await? else {
                    return Err(OAuthError::AccessDenied);
                };
                if session.revoked_at.is_some() || session.disabled {
                    Err(OAuthError::AccessDenied)
                } else {
                    Ok(self.issue_tokens(&mut tx, &session).await?)
                }
            }
            _ => Err(OAuthError::AuthorizationPending),
        };
        tx.commit().await.map_err(StoreError::from)?;
        outcome
    }

    /// The pending device code a typed user code names.
    pub async fn pending_device(
        &self,
        user_code: &str,
    ) -> Result<Option<PendingDevice>, IdentityError> {
        let Some(code) = normalize_user_code(user_code) else {
            return Ok(None);
        };
        Ok(device_code::pending_by_user_code(self.pool(), &code)
            .await?
            .map(|row| PendingDevice {
                id: row.id,
                user_code: row.user_code,
            }))
    }

    /// A single-use CSRF token for the confirmation form of `device`.
    pub async fn confirmation_token(
        &self,
        device: &PendingDevice,
    ) -> Result<SecretString, IdentityError> {
        let csrf = generate_secret("");
        let hash = tollgate_policy::secret_sha256(csrf.expose_secret());
        device_code::insert_confirmation(self.pool(), &hash, device.id, FORM_TTL_SECS).await?;
        Ok(csrf)
    }

    /// Consumes a confirmation form: the device code it confirms when the CSRF token is valid,
    /// unexpired, issued for that very user code, and the code is still pending.
    pub async fn confirm(
        &self,
        csrf: &str,
        user_code: &str,
    ) -> Result<Option<PendingDevice>, IdentityError> {
        let hash = tollgate_policy::secret_sha256(csrf);
        let Some(device_id) = device_code::take_confirmation(self.pool(), &hash).await? else {
            return Ok(None);
        };
        Ok(self
            .pending_device(user_code)
            .await?
            .filter(|device| device.id == device_id))
    }

    /// Marks a pending device code denied (the user declined, or the IdP refused).
    pub async fn deny_device(&self, device_id: Uuid) -> Result<(), IdentityError> {
        let mut tx = self.pool().begin().await?;
        if let Some(row) = device_code::lock_by_id(&mut tx, device_id).await?
            && row.status == "pending"
        {
            device_code::set_status(&mut tx, device_id, "denied", None).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Approves a pending device code for a user the IdP vouched for: upserts the user
    /// principal, maps its groups and opens a session. `Ok(false)` when the code is no longer
    /// pending or the user is disabled (the code is then denied).
    pub async fn approve_device(
        &self,
        device_id: Uuid,
        user: &SignedInUser,
    ) -> Result<bool, IdentityError> {
        let mut tx = audit::begin(self.pool()).await?;
        audit::set_actor(&mut tx, &super::session::user_actor(&user.email)).await?;
        let Some(row) = device_code::lock_by_id(&mut tx, device_id).await? else {
            return Ok(false);
        };
        if row.status != "pending" || row.expires_at <= row.now {
            return Ok(false);
        }
        let (principal_id, disabled) = idp::upsert_user(
            &mut tx,
            self.inner.org_id,
            &user.subject,
            &user.email,
            &user.name,
        )
        .await?;
        if disabled {
            device_code::set_status(&mut tx, device_id, "denied", None).await?;
            tx.commit().await?;
            return Ok(false);
        }
        let groups = idp::map_groups(&mut tx, &user.idp_groups).await?;
        let tokens = user
            .idp_tokens
            .as_ref()
            .map(|t| self.seal_idp_tokens(t))
            .transpose()?;
        let session_id = session::insert(
            &mut tx,
            session::NewSession {
                principal_id,
                email: &user.email,
                name: &user.name,
                groups: &groups,
                idp_tokens_enc: tokens.as_deref(),
            },
        )
        .await?;
        device_code::set_status(&mut tx, device_id, "approved", Some(session_id)).await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_rfc_8628_alphabet_in_two_groups_of_four() {
        for _ in 0..100 {
            let code = generate_user_code();
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert!(
                code.replace('-', "")
                    .bytes()
                    .all(|b| USER_CODE_ALPHABET.contains(&b))
            );
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
        }
    }

    #[test]
    fn typed_user_codes_ignore_case_and_separators() {
        assert_eq!(
            normalize_user_code("bcdf ghjk").as_deref(),
            Some("BCDF-GHJK")
        );
        assert_eq!(
            normalize_user_code("BCDFGHJK").as_deref(),
            Some("BCDF-GHJK")
        );
        assert_eq!(normalize_user_code("BCDF-GHJA"), None);
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
    }
}
