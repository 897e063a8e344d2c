//! Sessions: issuing token sets, refresh with rotation and reuse detection (re-checking the
//! user at the IdP), and revocation (RFC 7009 and admin).

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgConnection;
use tracing::{info, warn};
use uuid::Uuid;

use super::oidc::RecheckError;
use super::{
    AccessClaims, Identity, IdentityError, IdpTokens, OAuthError, REFRESH_TOKEN_PREFIX, TokenSet,
    signing, token,
};
use crate::credential::generate_secret;
use crate::store::identity::{idp, session};
use crate::store::{StoreError, audit};

const IDP_TOKENS_PURPOSE: &str = "tollgate idp tokens";
/// Who revokes a session the IdP no longer vouches for (audit actor).
const IDP_RECHECK_ACTOR: &str = "system:idp-recheck";

/// The audit actor of a signed-in user.
pub(crate) fn user_actor(email: &str) -> String {
    format!("user:{email}")
}

impl Identity {
    pub(crate) fn seal_idp_tokens(&self, tokens: &IdpTokens) -> Result<Vec<u8>, IdentityError> {
        Ok(self
            .secrets()
            .seal(IDP_TOKENS_PURPOSE, &serde_json::to_vec(tokens)?))
    }

    fn open_idp_tokens(&self, sealed: &[u8]) -> Result<IdpTokens, IdentityError> {
        let bytes = self.secrets().open(IDP_TOKENS_PURPOSE, sealed)?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Mints an access token and a new refresh token for a live session, in the caller's
    /// transaction (whose audited changes are then the session user's).
    pub(crate) async fn issue_tokens(
        &self,
        conn: &mut PgConnection,
        session: &session::SessionRow,
    ) -> Result<TokenSet, IdentityError> {
        audit::set_actor(conn, &user_actor(&session.email)).await?;
        let (kid, key) = signing::current(conn, self.secrets()).await?;
        let settings = self.settings();
        let now = chrono::Utc::now();
        let ttl = i64::try_from(settings.token_ttl.as_secs()).unwrap_or(3600);
        let claims = AccessClaims {
            iss: settings.issuer.clone(),
            aud: settings.audience.clone(),
            sub: session.principal_id.to_string(),
            email: session.email.clone(),
            name: session.name.clone(),
            groups: session.groups.clone(),
            sid: session.id.to_string(),
            iat: now.timestamp(),
            exp: now.timestamp() + ttl,
        };
        let access_token = SecretString::from(token::sign(&key, &kid, &claims)?);
        let refresh_token = generate_secret(REFRESH_TOKEN_PREFIX);
        let hash = tollgate_policy::secret_sha256(refresh_token.expose_secret());
        session::insert_refresh_token(conn, &hash, session.id).await?;
        session::issued(conn, session.id, now + chrono::Duration::seconds(ttl)).await?;
        Ok(TokenSet {
            access_token,
            expires_in: ttl,
            refresh_token,
            email: session.email.clone(),
        })
    }

    /// `grant_type=refresh_token`: rotates the refresh token. A token used twice revokes its
    /// session; a user the IdP no longer vouches for, a disabled user or a revoked session get
    /// `invalid_grant`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, OAuthError> {
        const REFUSED: OAuthError = OAuthError::InvalidGrant("the refresh token is invalid");
        let hash = tollgate_policy::secret_sha256(refresh_token);
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        let Some((session_id, used)) = session::lock_refresh_token(&mut tx, &hash).await? else {
            return Err(REFUSED);
        };
        if used {
            audit::set_actor(&mut tx, "system:refresh-reuse").await?;
            session::revoke(&mut tx, session_id, "refresh_token_reuse").await?;
            tx.commit().await.map_err(StoreError::from)?;
            warn!(%session_id, "refresh token reused; session revoked");
            return Err(REFUSED);
        }
        session::use_refresh_token(&mut tx, &hash).await?;
        let Some(mut current) = session::get(&mut tx, session_id).await? else {
            return Err(REFUSED);
        };
        if current.revoked_at.is_some() || current.disabled {
            tx.commit().await.map_err(StoreError::from)?;
            return Err(REFUSED);
        }
        if let Some(sealed) = current.idp_tokens_enc.clone() {
            let tokens = self.open_idp_tokens(&sealed)?;
            let config = idp::get(self.pool()).await?;
            let Some(config) = config else {
                // The IdP was removed: nobody vouches for the user any more.
                audit::set_actor(&mut tx, IDP_RECHECK_ACTOR).await?;
                session::revoke(&mut tx, session_id, "idp_removed").await?;
                tx.commit().await.map_err(StoreError::from)?;
                return Err(REFUSED);
            };
            match self
                .inner
                .rp
                .recheck(&config, self.secrets(), &tokens)
                .await
            {
                Ok(user) => {
                    let groups = idp::map_groups(&mut tx, &user.idp_groups).await?;
                    let sealed = user
                        .idp_tokens
                        .as_ref()
                        .map(|t| self.seal_idp_tokens(t))
                        .transpose()?;
                    session::refreshed(
                        &mut tx,
                        session_id,
                        &user.email,
                        &user.name,
                        &groups,
                        sealed.as_deref(),
                    )
                    .await?;
                    current.email = user.email;
                    current.name = user.name;
                    current.groups = groups;
                }
                Err(RecheckError::Rejected(why)) => {
                    info!(%session_id, %why, "the IdP no longer vouches for the user; session revoked");
                    audit::set_actor(&mut tx, IDP_RECHECK_ACTOR).await?;
                    session::revoke(&mut tx, session_id, "idp_rejected").await?;
                    tx.commit().await.map_err(StoreError::from)?;
                    return Err(REFUSED);
                }
                Err(RecheckError::Unavailable(err)) => {
                    warn!(error = %err, "cannot re-check a user at the IdP");
                    return Err(OAuthError::Unavailable);
                }
            }
        }
        let tokens = self.issue_tokens(&mut tx, &current).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(tokens)
    }

    /// RFC 7009: revokes the session of an access or refresh token, as the session's user.
    /// Unknown tokens are not an error (the endpoint answers 200 regardless).
    pub async fn revoke_token(&self, token: &str) -> Result<(), IdentityError> {
        let mut tx = audit::begin(self.pool()).await?;
        let session_id = if token.starts_with(REFRESH_TOKEN_PREFIX) {
            let hash = tollgate_policy::secret_sha256(token);
            session::lock_refresh_token(&mut tx, &hash)
                .await?
                .map(|(sid, _)| sid)
        } else if signing::signature_is_valid(&mut tx, token).await? {
            token::unverified_sid(token).and_then(|s| Uuid::parse_str(&s).ok())
        } else {
            None
        };
        let Some(session_id) = session_id else {
            return Ok(());
        };
        if let Some(session) = session::get(&mut tx, session_id).await? {
            audit::set_actor(&mut tx, &user_actor(&session.email)).await?;
            session::revoke(&mut tx, session_id, "client_revoked").await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Admin revocation of a session (audited as the admin of the current call); whether it
    /// exists.
    pub async fn revoke_session(&self, session_id: Uuid) -> Result<bool, IdentityError> {
        let mut tx = audit::begin(self.pool()).await?;
        let found = session::revoke(&mut tx, session_id, "admin_revoked").await?;
        tx.commit().await?;
        Ok(found)
    }

    /// Disables or enables a user; disabling also revokes the user's sessions. Whether the
    /// user exists.
    pub async fn set_user_disabled(
        &self,
        principal_id: Uuid,
        disabled: bool,
    ) -> Result<bool, IdentityError> {
        let mut tx = audit::begin(self.pool()).await?;
        let found = idp::set_disabled(&mut tx, principal_id, disabled).await?;
        if found && disabled {
            session::revoke_all_of(&mut tx, principal_id, "user_disabled").await?;
        }
        tx.commit().await?;
        Ok(found)
    }
}
