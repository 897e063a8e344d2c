//! Executes `tollgate admin` commands and renders their results.

use anyhow::{Context as _, bail};
use tollgate_proto::v1 as pb;

use super::args::{
    AdminArgs, AdminCommand, GroupCmd, KeyCmd, ModelCmd, PrincipalCmd, UsageArgs, UsageCmd, UserCmd,
};
use super::client::{AdminClient, admin_key, connect_with_tls};
use super::time_arg::{format_instant, parse_duration, parse_instant};
use crate::report::{Format, Report};

mod audit;
mod explain;
mod identity;
mod limits;
mod providers;
mod settings;
mod spend;
mod usage_export;

use identity::{
    default_groups, group_mappings, identity_users, idp, sessions, set_user_disabled, signing_keys,
};
use settings::{settings, telemetry};

/// Runs one admin command, printing its result to stdout.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let key = admin_key(&args)?;
    let mut client = connect_with_tls(&args.endpoint, &key, Some(&args)).await?;
    let out = execute(&mut client, args.command, args.format).await?;
    print!("{out}");
    Ok(())
}

/// Runs one admin command and returns what it prints (tests call this directly).
pub async fn execute(
    client: &mut AdminClient,
    command: AdminCommand,
    format: Format,
) -> anyhow::Result<String> {
    let report = match command {
        AdminCommand::Providers(cmd) => return providers::providers(client, cmd, format).await,
        AdminCommand::Models(cmd) => models(client, cmd).await?,
        AdminCommand::Routes(cmd) => providers::routes(client, cmd).await?,
        AdminCommand::Aliases(cmd) => providers::aliases(client, cmd).await?,
        AdminCommand::Groups(cmd) => groups(client, cmd).await?,
        AdminCommand::Users(UserCmd::Principal(cmd)) => {
            principals(client, pb::PrincipalKind::User, cmd).await?
        }
        AdminCommand::Users(UserCmd::Disable { user }) => {
            set_user_disabled(client, user, true).await?
        }
        AdminCommand::Users(UserCmd::Enable { user }) => {
            set_user_disabled(client, user, false).await?
        }
        AdminCommand::ServiceAccounts(cmd) => {
            principals(client, pb::PrincipalKind::ServiceAccount, cmd).await?
        }
        AdminCommand::Keys(cmd) => return keys(client, cmd, format).await,
        AdminCommand::Usage(UsageArgs {
            command: Some(UsageCmd::Export(args)),
            ..
        }) => return usage_export::usage_export(client, args, format).await,
        AdminCommand::Usage(args) => usage(client, args).await?,
        AdminCommand::IdentityUsers => identity_users(client).await?,
        AdminCommand::Idp(cmd) => idp(client, cmd).await?,
        AdminCommand::GroupMappings(cmd) => group_mappings(client, cmd).await?,
        AdminCommand::DefaultGroups(cmd) => default_groups(client, cmd).await?,
        AdminCommand::Sessions(cmd) => sessions(client, cmd).await?,
        AdminCommand::SigningKeys(cmd) => signing_keys(client, cmd).await?,
        AdminCommand::Settings(cmd) => settings(client, cmd).await?,
        AdminCommand::Telemetry(cmd) => telemetry(client, cmd).await?,
        AdminCommand::Budget(cmd) => return spend::budget(client, cmd, format).await,
        AdminCommand::Limits(cmd) => return limits::limits(client, cmd, format).await,
        AdminCommand::Prices(cmd) => return spend::prices(client, cmd, format).await,
        AdminCommand::Spend(cmd) => return spend::spend(client, cmd, format).await,
        AdminCommand::Audit(cmd) => return audit::audit(client, cmd, format).await,
        AdminCommand::ContentCapture { state } => audit::content_capture(client, state).await?,
    };
    Ok(report.render(format))
}

pub(super) fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", e.message(), e.code())
}

async fn models(client: &mut AdminClient, cmd: ModelCmd) -> anyhow::Result<Report> {
    let mut r = Report::new(["id", "display_name", "max_input_tokens", "created_at"]);
    let row = |m: pb::ModelInfo| {
        vec![
            m.id,
            m.display_name,
            m.max_input_tokens.to_string(),
            format_instant(m.created_at_unix_s),
        ]
    };
    match cmd {
        ModelCmd::Upsert {
            id,
            display_name,
            max_input_tokens,
        } => {
            let req = pb::UpsertModelRequest {
                id,
                display_name,
                max_input_tokens,
            };
            r.push(row(client
                .upsert_model(req)
                .await
                .map_err(status)?
                .into_inner()));
        }
        ModelCmd::List => {
            let resp = client
                .list_models(pb::ListModelsRequest {})
                .await
                .map_err(status)?;
            resp.into_inner()
                .models
                .into_iter()
                .for_each(|m| r.push(row(m)));
        }
        ModelCmd::Delete { id } => {
            client
                .delete_model(pb::DeleteModelRequest { id })
                .await
                .map_err(status)?;
        }
    }
    Ok(r)
}

async fn groups(client: &mut AdminClient, cmd: GroupCmd) -> anyhow::Result<Report> {
    let mut r = Report::new(["id", "name", "allowed_models", "members", "created_at"]);
    let row = |g: pb::GroupInfo| {
        vec![
            g.id,
            g.name,
            g.allowed_models.join(","),
            g.member_count.to_string(),
            format_instant(g.created_at_unix_s),
        ]
    };
    match cmd {
        GroupCmd::Create { name, models } => {
            let req = pb::CreateGroupRequest {
                name,
                allowed_models: models,
            };
            r.push(row(client
                .create_group(req)
                .await
                .map_err(status)?
                .into_inner()));
        }
        GroupCmd::List => {
            let resp = client
                .list_groups(pb::ListGroupsRequest {})
                .await
                .map_err(status)?;
            resp.into_inner()
                .groups
                .into_iter()
                .for_each(|g| r.push(row(g)));
        }
        GroupCmd::Delete { group } => {
            client
                .delete_group(pb::DeleteGroupRequest { group })
                .await
                .map_err(status)?;
        }
        GroupCmd::SetModels { group, models } => {
            let req = pb::SetGroupModelsRequest {
                group,
                allowed_models: models,
            };
            r.push(row(client
                .set_group_models(req)
                .await
                .map_err(status)?
                .into_inner()));
        }
    }
    Ok(r)
}

async fn principals(
    client: &mut AdminClient,
    kind: pb::PrincipalKind,
    cmd: PrincipalCmd,
) -> anyhow::Result<Report> {
    let mut r = Report::new(["id", "name", "email", "groups", "disabled", "created_at"]);
    let row = |p: pb::PrincipalInfo| {
        vec![
            p.id,
            p.name,
            p.email,
            p.groups.join(","),
            p.disabled.to_string(),
            format_instant(p.created_at_unix_s),
        ]
    };
    match cmd {
        PrincipalCmd::Create {
            name,
            email,
            groups,
        } => {
            if kind == pb::PrincipalKind::ServiceAccount && email.is_some() {
                bail!("service accounts have no email");
            }
            let req = pb::CreatePrincipalRequest {
                kind: kind as i32,
                name,
                email: email.unwrap_or_default(),
                groups,
            };
            r.push(row(client
                .create_principal(req)
                .await
                .map_err(status)?
                .into_inner()));
        }
        PrincipalCmd::List => {
            let req = pb::ListPrincipalsRequest { kind: kind as i32 };
            let resp = client.list_principals(req).await.map_err(status)?;
            resp.into_inner()
                .principals
                .into_iter()
                .for_each(|p| r.push(row(p)));
        }
        PrincipalCmd::SetGroups { principal, groups } => {
            let req = pb::SetPrincipalGroupsRequest { principal, groups };
            r.push(row(client
                .set_principal_groups(req)
                .await
                .map_err(status)?
                .into_inner()));
        }
    }
    Ok(r)
}

fn key_report() -> Report {
    Report::new([
        "id",
        "name",
        "principal",
        "prefix",
        "created_at",
        "expires_at",
        "revoked_at",
    ])
}

fn key_row(k: pb::ApiKeyInfo) -> Vec<String> {
    vec![
        k.id,
        k.name,
        k.principal_name,
        k.prefix,
        format_instant(k.created_at_unix_s),
        format_instant(k.expires_at_unix_s),
        format_instant(k.revoked_at_unix_s),
    ]
}

async fn create_key(
    client: &mut AdminClient,
    principal: String,
    name: String,
    expires_in: Option<String>,
    expires_at: Option<String>,
    format: Format,
) -> anyhow::Result<String> {
    let expires_at_unix_s = match (expires_in, expires_at) {
        (Some(d), _) => {
            let d = parse_duration(&d).map_err(anyhow::Error::msg)?;
            chrono::Utc::now().timestamp() + d.num_seconds()
        }
        (None, Some(t)) => parse_instant(&t).map_err(anyhow::Error::msg)?,
        (None, None) => 0,
    };
    let req = pb::CreateApiKeyRequest {
        principal,
        name,
        expires_at_unix_s,
    };
    let resp = client
        .create_api_key(req)
        .await
        .map_err(status)?
        .into_inner();
    let info = resp.key.context("the control plane returned no key")?;
    let mut r = key_report();
    r.push(key_row(info));
    if format == Format::Table {
        return Ok(format!(
            "{}\nSecret (shown once, store it now):\n{}\n",
            r.render(Format::Table),
            resp.secret
        ));
    }
    r.columns.push("secret".to_owned());
    if let Some(row) = r.rows.first_mut() {
        row.push(resp.secret);
    }
    Ok(r.render(format))
}

async fn keys(client: &mut AdminClient, cmd: KeyCmd, format: Format) -> anyhow::Result<String> {
    let mut r = key_report();
    match cmd {
        KeyCmd::Create {
            principal,
            name,
            expires_in,
            expires_at,
        } => return create_key(client, principal, name, expires_in, expires_at, format).await,
        KeyCmd::List { principal, all } => {
            let req = pb::ListApiKeysRequest {
                principal: principal.unwrap_or_default(),
                include_revoked: all,
            };
            let resp = client.list_api_keys(req).await.map_err(status)?;
            resp.into_inner()
                .keys
                .into_iter()
                .for_each(|k| r.push(key_row(k)));
        }
        KeyCmd::Revoke { id } => {
            let k = client
                .revoke_api_key(pb::RevokeApiKeyRequest { id })
                .await
                .map_err(status)?;
            r.push(key_row(k.into_inner()));
        }
    }
    Ok(r.render(format))
}

fn dimension(name: &str) -> anyhow::Result<pb::UsageDimension> {
    Ok(match name {
        "key" => pb::UsageDimension::Key,
        "user" | "principal" => pb::UsageDimension::Principal,
        "model" => pb::UsageDimension::Model,
        "day" => pb::UsageDimension::Day,
        "provider" => pb::UsageDimension::Provider,
        other => bail!("cannot group usage by `{other}`: use key, user, model, day or provider"),
    })
}

async fn usage(client: &mut AdminClient, args: UsageArgs) -> anyhow::Result<Report> {
    let instant = |s: Option<String>| -> anyhow::Result<i64> {
        s.map(|s| parse_instant(&s).map_err(anyhow::Error::msg))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let group_by = args
        .by
        .iter()
        .map(|d| dimension(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let req = pb::QueryUsageRequest {
        from_unix_s: instant(args.from)?,
        to_unix_s: instant(args.to)?,
        group_by: group_by.iter().map(|d| *d as i32).collect(),
        api_key_id: args.key.unwrap_or_default(),
        principal: args.user.unwrap_or_default(),
        model: args.model.unwrap_or_default(),
    };
    let resp = client.query_usage(req).await.map_err(status)?.into_inner();
    let mut columns: Vec<String> = args.by.clone();
    columns.extend(
        [
            "requests",
            "input_tokens",
            "output_tokens",
            "cache_write_5m_tokens",
            "cache_write_1h_tokens",
            "cache_read_tokens",
        ]
        .map(String::from),
    );
    let mut r = Report::new(columns);
    for row in resp.rows {
        let mut cells = row.dimensions;
        cells.extend(
            [
                row.requests,
                row.input_tokens,
                row.output_tokens,
                row.cache_creation_5m_tokens,
                row.cache_creation_1h_tokens,
                row.cache_read_tokens,
            ]
            .map(|n| n.to_string()),
        );
        r.push(cells);
    }
    Ok(r)
}
