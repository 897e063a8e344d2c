//! The browser leg of the device flow: send the user to the IdP, then turn the callback into
//! an approved (or denied) device code. `state`, the PKCE verifier and the nonce are kept in
//! Postgres so the callback may reach any replica.

use secrecy::ExposeSecret;
use tracing::info;

use super::{Identity, IdentityError, PendingDevice};
use crate::store::identity::{device_code, idp};

/// Lifetime of a login in flight at the IdP.
const LOGIN_TTL_SECS: i64 = 600;
/// Verification-page requests allowed per client IP per minute.
pub const VERIFICATION_HITS_PER_MINUTE: i32 = 30;

/// How an IdP callback ended.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The device code is approved; the device's next poll gets tokens.
    Approved { email: String },
    /// The device code is denied (IdP error, invalid ID token, disallowed or disabled user).
    Denied { reason: String },
    /// No login in flight has this `state` (unknown, used or expired).
    UnknownState,
}

impl Identity {
    /// Whether the identity provider is configured.
    pub async fn idp_configured(&self) -> Result<bool, IdentityError> {
        Ok(idp::get(self.pool()).await?.is_some())
    }

    /// Starts the IdP round trip for a confirmed device code; the URL to redirect to.
    pub async fn begin_login(
        &self,
        device: &PendingDevice,
        redirect_uri: &str,
    ) -> Result<String, IdentityError> {
        let config = idp::get(self.pool()).await?.ok_or(IdentityError::NoIdp)?;
        let auth = self
            .inner
            .rp
            .authorize(&config, self.secrets(), redirect_uri)
            .await?;
        let state_hash = tollgate_policy::secret_sha256(auth.state.expose_secret());
        device_code::insert_login(
            self.pool(),
            &state_hash,
            device.id,
            auth.pkce_verifier.expose_secret(),
            auth.nonce.expose_secret(),
            LOGIN_TTL_SECS,
        )
        .await?;
        Ok(auth.url)
    }

    /// Handles the IdP's redirect back: `code` on success, `error` otherwise.
    pub async fn finish_login(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
        redirect_uri: &str,
    ) -> Result<LoginOutcome, IdentityError> {
        let state_hash = tollgate_policy::secret_sha256(state);
        let Some(login) = device_code::take_login(self.pool(), &state_hash).await? else {
            return Ok(LoginOutcome::UnknownState);
        };
        let code = match (code, error) {
            (Some(code), None) => code,
            (_, error) => {
                self.deny_device(login.device_code_id).await?;
                return Ok(LoginOutcome::Denied {
                    reason: format!(
                        "the identity provider answered {}",
                        error.unwrap_or("no code")
                    ),
                });
            }
        };
        let config = idp::get(self.pool()).await?.ok_or(IdentityError::NoIdp)?;
        let user = match self
            .inner
            .rp
            .complete(
                &config,
                self.secrets(),
                redirect_uri,
                code,
                &login.pkce_verifier,
                &login.nonce,
            )
            .await
        {
            Ok(user) => user,
            Err(err) => {
                info!(error = %err, "IdP sign-in refused");
                self.deny_device(login.device_code_id).await?;
                return Ok(LoginOutcome::Denied {
                    reason: err.to_string(),
                });
            }
        };
        if self.approve_device(login.device_code_id, &user).await? {
            Ok(LoginOutcome::Approved { email: user.email })
        } else {
            Ok(LoginOutcome::Denied {
                reason: "the code expired, was already used, or the account is disabled".to_owned(),
            })
        }
    }

    /// Counts a verification-page request from `ip`; whether it is within the limit.
    pub async fn verification_allowed(&self, ip: &str) -> Result<bool, IdentityError> {
        Ok(device_code::hit(self.pool(), ip).await? <= VERIFICATION_HITS_PER_MINUTE)
    }
}
