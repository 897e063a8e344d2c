//! The `IdentityAdmin` gRPC service: IdP configuration, group mappings, org default groups,
//! users, sessions and signing-key rotation. Authenticated exactly like `Admin`.

use chrono::{DateTime, Utc};
use tollgate_proto::v1 as pb;
use tonic::{Request, Response, Status};
use tracing::error;
use uuid::Uuid;

use super::{AdminService, Reply, optional, required};
use crate::error_report::Report;
use crate::identity::oidc::CLIENT_SECRET_PURPOSE;
use crate::identity::{Identity, IdentityError};
use crate::store::audit::with_actor;
use crate::store::identity::{idp, session};
use crate::store::{group, principal};

/// The `IdentityAdmin` service of one organisation.
#[derive(Clone)]
pub struct IdentityAdminService {
    admin: AdminService,
    identity: Identity,
}

impl IdentityAdminService {
    pub fn new(admin: AdminService, identity: Identity) -> Self {
        IdentityAdminService { admin, identity }
    }

    async fn groups(&self, groups: &[String]) -> Result<Vec<Uuid>, Status> {
        let mut conn = self.admin.pool.acquire().await.map_err(internal_sqlx)?;
        Ok(group::resolve_all(&mut conn, self.admin.org_id, groups).await?)
    }

    async fn user(&self, user: &str) -> Result<Uuid, Status> {
        let mut conn = self.admin.pool.acquire().await.map_err(internal_sqlx)?;
        Ok(principal::resolve(&mut conn, self.admin.org_id, required("user", user)?).await?)
    }
}

fn internal_sqlx(err: sqlx::Error) -> Status {
    Status::from(crate::store::StoreError::from(err))
}

fn internal(err: &IdentityError) -> Status {
    if let IdentityError::Store(e) = err
        && !matches!(
            e,
            crate::store::StoreError::Database(_) | crate::store::StoreError::Migrate(_)
        )
    {
        return Status::failed_precondition(e.to_string());
    }
    error!(error = %Report(err), "identity admin call failed");
    Status::internal("internal error")
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn config_info(row: Option<idp::IdpConfigRow>) -> pb::IdpConfigInfo {
    row.map_or_else(pb::IdpConfigInfo::default, |r| pb::IdpConfigInfo {
        configured: true,
        issuer_url: r.issuer_url,
        client_id: r.client_id,
        client_secret_set: r.client_secret_enc.is_some(),
        scopes: r.scopes,
        groups_claim: r.groups_claim,
        email_claim: r.email_claim,
        allowed_email_domains: r.allowed_email_domains,
        clock_skew_secs: r.clock_skew_secs,
        updated_at_unix_ms: ms(r.updated_at),
    })
}

fn session_info(s: session::SessionInfoRow) -> pb::SessionInfo {
    pb::SessionInfo {
        id: s.id.to_string(),
        user_id: s.principal_id.to_string(),
        email: s.email,
        groups: s.groups,
        created_at_unix_ms: ms(s.created_at),
        last_refreshed_at_unix_ms: ms(s.last_refreshed_at),
        revoked_at_unix_ms: s.revoked_at.map_or(0, ms),
        revoked_reason: s.revoked_reason.unwrap_or_default(),
    }
}

fn user_info(u: idp::UserRow) -> pb::UserInfo {
    pb::UserInfo {
        id: u.id.to_string(),
        name: u.name,
        email: u.email.unwrap_or_default(),
        disabled: u.disabled,
        last_sign_in_unix_ms: u.last_sign_in_at.map_or(0, ms),
        created_at_unix_ms: ms(u.created_at),
    }
}

impl IdentityAdminService {
    async fn set_idp_config(
        &self,
        req: pb::SetIdpConfigRequest,
    ) -> Result<pb::IdpConfigInfo, Status> {
        let issuer = required("issuer_url", &req.issuer_url)?.trim().to_owned();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(Status::invalid_argument(
                "issuer_url must be an http(s) URL",
            ));
        }
        if req.clock_skew_secs < 0 {
            return Err(Status::invalid_argument(
                "clock_skew_secs must not be negative",
            ));
        }
        let mut scopes = if req.scopes.is_empty() {
            vec![
                "openid".to_owned(),
                "email".to_owned(),
                "profile".to_owned(),
            ]
        } else {
            req.scopes
        };
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".to_owned());
        }
        let row = idp::IdpConfigRow {
            issuer_url: issuer,
            client_id: required("client_id", &req.client_id)?.to_owned(),
            client_secret_enc: optional(&req.client_secret).map(|s| {
                self.identity
                    .secrets()
                    .seal(CLIENT_SECRET_PURPOSE, s.as_bytes())
            }),
            scopes,
            groups_claim: optional(&req.groups_claim).unwrap_or("groups").to_owned(),
            email_claim: optional(&req.email_claim).unwrap_or("email").to_owned(),
            allowed_email_domains: req
                .allowed_email_domains
                .iter()
                .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            clock_skew_secs: if req.clock_skew_secs == 0 {
                60
            } else {
                req.clock_skew_secs
            },
            updated_at: Utc::now(),
        };
        idp::set(&self.admin.pool, &row).await?;
        Ok(config_info(idp::get(&self.admin.pool).await?))
    }

    async fn get_idp_config(
        &self,
        _: pb::GetIdpConfigRequest,
    ) -> Result<pb::IdpConfigInfo, Status> {
        Ok(config_info(idp::get(&self.admin.pool).await?))
    }

    async fn mappings(&self) -> Result<Vec<pb::GroupMappingInfo>, Status> {
        let mut out: Vec<pb::GroupMappingInfo> = Vec::new();
        for (idp_group, id, name) in idp::list_mappings(&self.admin.pool).await? {
            match out.last_mut() {
                Some(m) if m.idp_group == idp_group => {
                    m.group_ids.push(id.to_string());
                    m.group_names.push(name);
                }
                _ => out.push(pb::GroupMappingInfo {
                    idp_group,
                    group_ids: vec![id.to_string()],
                    group_names: vec![name],
                }),
            }
        }
        Ok(out)
    }

    async fn set_group_mapping(
        &self,
        req: pb::SetGroupMappingRequest,
    ) -> Result<pb::GroupMappingInfo, Status> {
        let idp_group = required("idp_group", &req.idp_group)?;
        let ids = self.groups(&req.groups).await?;
        idp::set_mapping(&self.admin.pool, idp_group, &ids).await?;
        Ok(self
            .mappings()
            .await?
            .into_iter()
            .find(|m| m.idp_group == idp_group)
            .unwrap_or_else(|| pb::GroupMappingInfo {
                idp_group: idp_group.to_owned(),
                ..Default::default()
            }))
    }

    async fn list_group_mappings(
        &self,
        _: pb::ListGroupMappingsRequest,
    ) -> Result<pb::ListGroupMappingsResponse, Status> {
        Ok(pb::ListGroupMappingsResponse {
            mappings: self.mappings().await?,
        })
    }

    async fn delete_group_mapping(
        &self,
        req: pb::DeleteGroupMappingRequest,
    ) -> Result<pb::DeleteGroupMappingResponse, Status> {
        idp::set_mapping(
            &self.admin.pool,
            required("idp_group", &req.idp_group)?,
            &[],
        )
        .await?;
        Ok(pb::DeleteGroupMappingResponse {})
    }

    async fn default_groups(&self) -> Result<pb::DefaultGroupsInfo, Status> {
        let mut conn = self.admin.pool.acquire().await.map_err(internal_sqlx)?;
        let groups = idp::default_groups(&mut conn).await?;
        Ok(pb::DefaultGroupsInfo {
            group_ids: groups.iter().map(|(id, _)| id.to_string()).collect(),
            group_names: groups.into_iter().map(|(_, name)| name).collect(),
        })
    }

    async fn set_default_groups(
        &self,
        req: pb::SetDefaultGroupsRequest,
    ) -> Result<pb::DefaultGroupsInfo, Status> {
        let ids = self.groups(&req.groups).await?;
        idp::set_default_groups(&self.admin.pool, &ids).await?;
        self.default_groups().await
    }

    async fn get_default_groups(
        &self,
        _: pb::GetDefaultGroupsRequest,
    ) -> Result<pb::DefaultGroupsInfo, Status> {
        self.default_groups().await
    }

    async fn list_users(&self, _: pb::ListUsersRequest) -> Result<pb::ListUsersResponse, Status> {
        Ok(pb::ListUsersResponse {
            users: idp::list_users(&self.admin.pool)
                .await?
                .into_iter()
                .map(user_info)
                .collect(),
        })
    }

    async fn set_user_disabled(
        &self,
        req: pb::SetUserDisabledRequest,
    ) -> Result<pb::UserInfo, Status> {
        let id = self.user(&req.user).await?;
        let found = self
            .identity
            .set_user_disabled(id, req.disabled)
            .await
            .map_err(|e| internal(&e))?;
        if !found {
            return Err(Status::invalid_argument("only users can be disabled here"));
        }
        idp::list_users(&self.admin.pool)
            .await?
            .into_iter()
            .find(|u| u.id == id)
            .map(user_info)
            .ok_or_else(|| Status::not_found("user not found"))
    }

    async fn list_sessions(
        &self,
        req: pb::ListSessionsRequest,
    ) -> Result<pb::ListSessionsResponse, Status> {
        let user = match optional(&req.user) {
            Some(user) => Some(self.user(user).await?),
            None => None,
        };
        Ok(pb::ListSessionsResponse {
            sessions: session::list(&self.admin.pool, user, req.include_revoked)
                .await?
                .into_iter()
                .map(session_info)
                .collect(),
        })
    }

    async fn revoke_session(
        &self,
        req: pb::RevokeSessionRequest,
    ) -> Result<pb::SessionInfo, Status> {
        let id = Uuid::parse_str(required("session_id", &req.session_id)?)
            .map_err(|_| Status::invalid_argument("session_id must be a UUID"))?;
        if !self
            .identity
            .revoke_session(id)
            .await
            .map_err(|e| internal(&e))?
        {
            return Err(Status::not_found(format!("session `{id}` not found")));
        }
        session::list(&self.admin.pool, None, true)
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .map(session_info)
            .ok_or_else(|| Status::not_found(format!("session `{id}` not found")))
    }

    async fn rotate_signing_key(
        &self,
        _: pb::RotateSigningKeyRequest,
    ) -> Result<pb::RotateSigningKeyResponse, Status> {
        let kid = self
            .identity
            .rotate_signing_key()
            .await
            .map_err(|e| internal(&e))?;
        Ok(pb::RotateSigningKeyResponse { kid })
    }
}

/// Authenticates, then runs the handler with the request message as the key's audit actor.
macro_rules! call {
    ($self:ident, $request:ident, $handler:ident) => {{
        let actor = $self.admin.authenticate($request.metadata()).await?;
        with_actor(actor, $self.$handler($request.into_inner()))
            .await
            .map(Response::new)
    }};
}

#[tonic::async_trait]
impl pb::identity_admin_server::IdentityAdmin for IdentityAdminService {
    async fn set_idp_config(
        &self,
        request: Request<pb::SetIdpConfigRequest>,
    ) -> Reply<pb::IdpConfigInfo> {
        call!(self, request, set_idp_config)
    }
    async fn get_idp_config(
        &self,
        request: Request<pb::GetIdpConfigRequest>,
    ) -> Reply<pb::IdpConfigInfo> {
        call!(self, request, get_idp_config)
    }
    async fn set_group_mapping(
        &self,
        request: Request<pb::SetGroupMappingRequest>,
    ) -> Reply<pb::GroupMappingInfo> {
        call!(self, request, set_group_mapping)
    }
    async fn list_group_mappings(
        &self,
        request: Request<pb::ListGroupMappingsRequest>,
    ) -> Reply<pb::ListGroupMappingsResponse> {
        call!(self, request, list_group_mappings)
    }
    async fn delete_group_mapping(
        &self,
        request: Request<pb::DeleteGroupMappingRequest>,
    ) -> Reply<pb::DeleteGroupMappingResponse> {
        call!(self, request, delete_group_mapping)
    }
    async fn set_default_groups(
        &self,
        request: Request<pb::SetDefaultGroupsRequest>,
    ) -> Reply<pb::DefaultGroupsInfo> {
        call!(self, request, set_default_groups)
    }
    async fn get_default_groups(
        &self,
        request: Request<pb::GetDefaultGroupsRequest>,
    ) -> Reply<pb::DefaultGroupsInfo> {
        call!(self, request, get_default_groups)
    }
    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        call!(self, request, list_users)
    }
    async fn set_user_disabled(
        &self,
        request: Request<pb::SetUserDisabledRequest>,
    ) -> Reply<pb::UserInfo> {
        call!(self, request, set_user_disabled)
    }
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        call!(self, request, list_sessions)
    }
    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Reply<pb::SessionInfo> {
        call!(self, request, revoke_session)
    }
    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Reply<pb::RotateSigningKeyResponse> {
        call!(self, request, rotate_signing_key)
    }
}
