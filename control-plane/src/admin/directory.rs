//! Admin calls for groups and principals (users and service accounts).

use tollgate_proto::v1 as pb;
use tonic::Status;

use super::{AdminService, optional, required};
use crate::compiler::principal_kind;
use crate::store::group::{self, GroupRow};
use crate::store::principal::{self, NewPrincipal, PrincipalRow};

pub(super) async fn create_group(
    svc: &AdminService,
    req: pb::CreateGroupRequest,
) -> Result<pb::GroupInfo, Status> {
    let name = required("group name", &req.name)?;
    let allowed = allowed_models(req.allowed_models)?;
    Ok(group_info(
        group::create(&svc.pool, svc.org_id, name, &allowed).await?,
    ))
}

pub(super) async fn list_groups(
    svc: &AdminService,
    _req: pb::ListGroupsRequest,
) -> Result<pb::ListGroupsResponse, Status> {
    let groups = group::list(&svc.pool, svc.org_id).await?;
    Ok(pb::ListGroupsResponse {
        groups: groups.into_iter().map(group_info).collect(),
    })
}

pub(super) async fn delete_group(
    svc: &AdminService,
    req: pb::DeleteGroupRequest,
) -> Result<pb::DeleteResponse, Status> {
    let name = required("group", &req.group)?;
    group::delete(&svc.pool, svc.org_id, name).await?;
    Ok(pb::DeleteResponse {})
}

pub(super) async fn set_group_models(
    svc: &AdminService,
    req: pb::SetGroupModelsRequest,
) -> Result<pb::GroupInfo, Status> {
    let name = required("group", &req.group)?;
    let allowed = allowed_models(req.allowed_models)?;
    let row = group::set_models(&svc.pool, svc.org_id, name, &allowed).await?;
    Ok(group_info(row))
}

/// Model ids a group may use: non-blank, deduplicated. `*` grants the whole catalogue; other
/// ids need not be in the catalogue yet.
fn allowed_models(mut models: Vec<String>) -> Result<Vec<String>, Status> {
    if models.iter().any(|m| m.trim().is_empty()) {
        return Err(Status::invalid_argument(
            "allowed model ids must not be empty",
        ));
    }
    models.sort();
    models.dedup();
    Ok(models)
}

fn group_info(row: GroupRow) -> pb::GroupInfo {
    pb::GroupInfo {
        id: row.id.to_string(),
        name: row.name,
        allowed_models: row.allowed_models,
        member_count: u32::try_from(row.member_count).unwrap_or(u32::MAX),
        created_at_unix_s: row.created_at.timestamp(),
    }
}

pub(super) async fn create_principal(
    svc: &AdminService,
    req: pb::CreatePrincipalRequest,
) -> Result<pb::PrincipalInfo, Status> {
    let kind = match pb::PrincipalKind::try_from(req.kind) {
        Ok(pb::PrincipalKind::User) => "user",
        Ok(pb::PrincipalKind::ServiceAccount) => "service_account",
        _ => {
            return Err(Status::invalid_argument(
                "principal kind must be user or service_account",
            ));
        }
    };
    let name = required("principal name", &req.name)?;
    let email = optional(&req.email);
    match (kind, email) {
        ("service_account", Some(_)) => {
            return Err(Status::invalid_argument("service accounts have no email"));
        }
        (_, Some(email)) if !email.contains('@') || email.trim() != email => {
            return Err(Status::invalid_argument(format!(
                "`{email}` is not an email address"
            )));
        }
        _ => {}
    }
    let new = NewPrincipal {
        kind,
        name,
        email,
        groups: &req.groups,
    };
    Ok(principal_info(
        principal::create(&svc.pool, svc.org_id, &new).await?,
    ))
}

pub(super) async fn list_principals(
    svc: &AdminService,
    req: pb::ListPrincipalsRequest,
) -> Result<pb::ListPrincipalsResponse, Status> {
    let kind = match pb::PrincipalKind::try_from(req.kind) {
        Ok(pb::PrincipalKind::Unspecified) => None,
        Ok(pb::PrincipalKind::User) => Some("user"),
        Ok(pb::PrincipalKind::ServiceAccount) => Some("service_account"),
        Err(_) => return Err(Status::invalid_argument("unknown principal kind")),
    };
    let principals = principal::list(&svc.pool, svc.org_id, kind).await?;
    Ok(pb::ListPrincipalsResponse {
        principals: principals.into_iter().map(principal_info).collect(),
    })
}

pub(super) async fn set_principal_groups(
    svc: &AdminService,
    req: pb::SetPrincipalGroupsRequest,
) -> Result<pb::PrincipalInfo, Status> {
    let who = required("principal", &req.principal)?;
    let row = principal::set_groups(&svc.pool, svc.org_id, who, &req.groups).await?;
    Ok(principal_info(row))
}

fn principal_info(row: PrincipalRow) -> pb::PrincipalInfo {
    pb::PrincipalInfo {
        id: row.id.to_string(),
        kind: principal_kind(&row.kind) as i32,
        name: row.name,
        email: row.email.unwrap_or_default(),
        groups: row.groups,
        disabled: row.disabled,
        created_at_unix_s: row.created_at.timestamp(),
    }
}
