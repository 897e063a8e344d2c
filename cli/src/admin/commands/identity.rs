//! `tollgate admin` commands of the IdentityAdmin service.

use anyhow::{Context as _, bail};
use tollgate_proto::v1 as pb;

use super::super::args::*;
use super::super::client::AdminClient;
use super::super::time_arg::format_instant;
use super::status;
use crate::report::Report;

/// Unix milliseconds → RFC 3339 (UTC), or `-` for 0.
pub(super) fn format_instant_ms(unix_ms: i64) -> String {
    format_instant(unix_ms.div_euclid(1000))
}

/// A secret from the named environment variable or file; never from the command line.
pub(super) fn read_secret(
    env: Option<String>,
    file: Option<std::path::PathBuf>,
) -> anyhow::Result<String> {
    Ok(match (env, file) {
        (Some(var), _) => std::env::var(&var)
            .with_context(|| format!("environment variable {var} is not set"))?
            .trim()
            .to_owned(),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => String::new(),
    })
}

/// Drops the empty entries `--groups ''` yields.
pub(super) fn non_empty(values: Vec<String>) -> Vec<String> {
    values
        .into_iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

pub(super) fn identity_user_report() -> Report {
    Report::new([
        "id",
        "name",
        "email",
        "disabled",
        "last_sign_in",
        "created_at",
    ])
}

pub(super) fn identity_user_row(u: pb::UserInfo) -> Vec<String> {
    vec![
        u.id,
        u.name,
        u.email,
        u.disabled.to_string(),
        format_instant_ms(u.last_sign_in_unix_ms),
        format_instant_ms(u.created_at_unix_ms),
    ]
}

pub(super) async fn identity_users(client: &mut AdminClient) -> anyhow::Result<Report> {
    let mut r = identity_user_report();
    let resp = client
        .identity()
        .list_users(pb::ListUsersRequest {})
        .await
        .map_err(status)?;
    resp.into_inner()
        .users
        .into_iter()
        .for_each(|u| r.push(identity_user_row(u)));
    Ok(r)
}

pub(super) async fn set_user_disabled(
    client: &mut AdminClient,
    user: String,
    disabled: bool,
) -> anyhow::Result<Report> {
    let mut r = identity_user_report();
    let u = client
        .identity()
        .set_user_disabled(pb::SetUserDisabledRequest { user, disabled })
        .await
        .map_err(status)?;
    r.push(identity_user_row(u.into_inner()));
    Ok(r)
}

pub(super) async fn idp(client: &mut AdminClient, cmd: IdpCmd) -> anyhow::Result<Report> {
    let mut r = Report::new([
        "configured",
        "issuer_url",
        "client_id",
        "client_secret_set",
        "scopes",
        "groups_claim",
        "email_claim",
        "allowed_email_domains",
        "clock_skew_secs",
        "updated_at",
    ]);
    let info = match cmd {
        IdpCmd::Set(IdpSetArgs {
            issuer,
            client_id,
            client_secret_env,
            client_secret_file,
            scopes,
            groups_claim,
            email_claim,
            allowed_domains,
            clock_skew_secs,
        }) => {
            let req = pb::SetIdpConfigRequest {
                issuer_url: issuer,
                client_id,
                client_secret: read_secret(client_secret_env, client_secret_file)?,
                scopes: non_empty(scopes),
                groups_claim,
                email_claim,
                allowed_email_domains: non_empty(allowed_domains),
                clock_skew_secs: i32::from(clock_skew_secs),
            };
            client.identity().set_idp_config(req).await
        }
        IdpCmd::Show => {
            client
                .identity()
                .get_idp_config(pb::GetIdpConfigRequest {})
                .await
        }
    }
    .map_err(status)?
    .into_inner();
    r.push(vec![
        info.configured.to_string(),
        info.issuer_url,
        info.client_id,
        info.client_secret_set.to_string(),
        info.scopes.join(","),
        info.groups_claim,
        info.email_claim,
        info.allowed_email_domains.join(","),
        info.clock_skew_secs.to_string(),
        format_instant_ms(info.updated_at_unix_ms),
    ]);
    Ok(r)
}

pub(super) async fn group_mappings(
    client: &mut AdminClient,
    cmd: GroupMappingCmd,
) -> anyhow::Result<Report> {
    let mut r = Report::new(["idp_group", "groups", "group_ids"]);
    let row =
        |m: pb::GroupMappingInfo| vec![m.idp_group, m.group_names.join(","), m.group_ids.join(",")];
    match cmd {
        GroupMappingCmd::Set { idp_group, groups } => {
            let groups = non_empty(groups);
            if groups.is_empty() {
                bail!("--group needs at least one group; use `group-mappings delete` to remove");
            }
            let req = pb::SetGroupMappingRequest { idp_group, groups };
            r.push(row(client
                .identity()
                .set_group_mapping(req)
                .await
                .map_err(status)?
                .into_inner()));
        }
        GroupMappingCmd::List => {
            let resp = client
                .identity()
                .list_group_mappings(pb::ListGroupMappingsRequest {})
                .await
                .map_err(status)?;
            resp.into_inner()
                .mappings
                .into_iter()
                .for_each(|m| r.push(row(m)));
        }
        GroupMappingCmd::Delete { idp_group } => {
            client
                .identity()
                .delete_group_mapping(pb::DeleteGroupMappingRequest { idp_group })
                .await
                .map_err(status)?;
        }
    }
    Ok(r)
}

pub(super) async fn default_groups(
    client: &mut AdminClient,
    cmd: DefaultGroupsCmd,
) -> anyhow::Result<Report> {
    let info = match cmd {
        DefaultGroupsCmd::Set { groups } => {
            let req = pb::SetDefaultGroupsRequest {
                groups: non_empty(groups),
            };
            client.identity().set_default_groups(req).await
        }
        DefaultGroupsCmd::Show => {
            client
                .identity()
                .get_default_groups(pb::GetDefaultGroupsRequest {})
                .await
        }
    }
    .map_err(status)?
    .into_inner();
    let mut r = Report::new(["group", "group_id"]);
    info.group_names
        .into_iter()
        .zip(info.group_ids)
        .for_each(|(name, id)| r.push(vec![name, id]));
    Ok(r)
}

pub(super) async fn sessions(client: &mut AdminClient, cmd: SessionCmd) -> anyhow::Result<Report> {
    let mut r = Report::new([
        "id",
        "user_id",
        "email",
        "groups",
        "created_at",
        "last_refreshed_at",
        "revoked_at",
        "revoked_reason",
    ]);
    let row = |s: pb::SessionInfo| {
        vec![
            s.id,
            s.user_id,
            s.email,
            s.groups.join(","),
            format_instant_ms(s.created_at_unix_ms),
            format_instant_ms(s.last_refreshed_at_unix_ms),
            format_instant_ms(s.revoked_at_unix_ms),
            s.revoked_reason,
        ]
    };
    match cmd {
        SessionCmd::List { user, all } => {
            let req = pb::ListSessionsRequest {
                user: user.unwrap_or_default(),
                include_revoked: all,
            };
            let resp = client.identity().list_sessions(req).await.map_err(status)?;
            resp.into_inner()
                .sessions
                .into_iter()
                .for_each(|s| r.push(row(s)));
        }
        SessionCmd::Revoke { id } => {
            let s = client
                .identity()
                .revoke_session(pb::RevokeSessionRequest { session_id: id })
                .await
                .map_err(status)?;
            r.push(row(s.into_inner()));
        }
    }
    Ok(r)
}

pub(super) async fn signing_keys(
    client: &mut AdminClient,
    cmd: SigningKeyCmd,
) -> anyhow::Result<Report> {
    let mut r = Report::new(["kid"]);
    match cmd {
        SigningKeyCmd::Rotate => {
            let resp = client
                .identity()
                .rotate_signing_key(pb::RotateSigningKeyRequest {})
                .await
                .map_err(status)?;
            r.push(vec![resp.into_inner().kid]);
        }
    }
    Ok(r)
}
