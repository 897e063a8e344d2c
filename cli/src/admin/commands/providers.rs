//! `providers`, `routes` and `aliases`.

use anyhow::{Context as _, bail};
use tollgate_proto::v1 as pb;

use super::status;
use crate::admin::args::{
    AliasCmd, BedrockApiArg, CredentialArgs, CredentialName, ProviderCmd, ProviderKindArg,
    ProviderSettingsArgs, RouteCmd,
};
use crate::admin::client::AdminClient;
use crate::admin::time_arg::format_instant;
use crate::report::{Format, Report};

fn kind_pb(kind: ProviderKindArg) -> pb::ProviderKind {
    match kind {
        ProviderKindArg::Anthropic => pb::ProviderKind::Anthropic,
        ProviderKindArg::Bedrock => pb::ProviderKind::Bedrock,
        ProviderKindArg::Vertex => pb::ProviderKind::Vertex,
        ProviderKindArg::Foundry => pb::ProviderKind::Foundry,
        ProviderKindArg::Demo => pb::ProviderKind::Demo,
    }
}

fn kind_name(kind: i32) -> &'static str {
    match pb::ProviderKind::try_from(kind) {
        Ok(pb::ProviderKind::Demo) => "demo",
        Ok(pb::ProviderKind::Anthropic) => "anthropic",
        Ok(pb::ProviderKind::Bedrock) => "bedrock",
        Ok(pb::ProviderKind::Vertex) => "vertex",
        Ok(pb::ProviderKind::Foundry) => "foundry",
        _ => "unknown",
    }
}

/// Sets the settings given on the command line; the others keep their value in `config`.
fn apply_settings(s: ProviderSettingsArgs, config: &mut pb::ProviderConfig) {
    let set = |field: &mut String, value: Option<String>| {
        if let Some(v) = value {
            *field = v;
        }
    };
    set(&mut config.base_url, s.base_url);
    set(&mut config.region, s.region);
    set(&mut config.project_id, s.project_id);
    set(&mut config.resource, s.resource);
    set(&mut config.anthropic_version, s.anthropic_version);
    set(&mut config.token_uri, s.token_uri);
    if let Some(api) = s.bedrock_api {
        config.bedrock_api = match api {
            BedrockApiArg::Invoke => pb::BedrockApi::Invoke,
            BedrockApiArg::Messages => pb::BedrockApi::Messages,
        } as i32;
    }
    let mut t = config.timeouts.unwrap_or_default();
    t.connect_ms = s.connect_timeout_ms.unwrap_or(t.connect_ms);
    t.first_byte_ms = s.first_byte_timeout_ms.unwrap_or(t.first_byte_ms);
    t.idle_ms = s.idle_timeout_ms.unwrap_or(t.idle_ms);
    config.timeouts = (t != pb::Timeouts::default()).then_some(t);
}

/// `api_key=stored aws_secret_access_key=env:NAME …` (never a value).
pub(crate) fn credentials_cell(c: &pb::ProviderConfig) -> String {
    use pb::secret_ref::Source;
    let fields = [
        ("api_key", &c.api_key),
        ("bearer_token", &c.bearer_token),
        ("aws_access_key_id", &c.aws_access_key_id),
        ("aws_secret_access_key", &c.aws_secret_access_key),
        ("aws_session_token", &c.aws_session_token),
        ("service_account_json", &c.service_account_json),
    ];
    fields
        .iter()
        .filter_map(|(name, s)| {
            let shown = match s.as_ref()?.source.as_ref()? {
                Source::Env(var) => format!("env:{var}"),
                Source::File(path) => format!("file:{path}"),
                // The API never returns values; should one appear, it is not printed.
                Source::Stored(_) | Source::Value(_) => "stored".to_owned(),
            };
            Some(format!("{name}={shown}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn settings_cell(c: &pb::ProviderConfig) -> String {
    let mut out = Vec::new();
    for (name, value) in [
        ("region", &c.region),
        ("project_id", &c.project_id),
        ("resource", &c.resource),
        ("anthropic_version", &c.anthropic_version),
        ("token_uri", &c.token_uri),
    ] {
        if !value.is_empty() {
            out.push(format!("{name}={value}"));
        }
    }
    if c.bedrock_api == pb::BedrockApi::Messages as i32 {
        out.push("bedrock_api=messages".to_owned());
    }
    if let Some(t) = &c.timeouts {
        out.push(timeouts_cell(t));
    }
    out.retain(|s| !s.is_empty());
    out.join(" ")
}

fn timeouts_cell(t: &pb::Timeouts) -> String {
    [
        ("connect_timeout_ms", t.connect_ms),
        ("first_byte_timeout_ms", t.first_byte_ms),
        ("idle_timeout_ms", t.idle_ms),
    ]
    .iter()
    .filter(|(_, v)| *v != 0)
    .map(|(k, v)| format!("{k}={v}"))
    .collect::<Vec<_>>()
    .join(" ")
}

fn provider_report() -> Report {
    Report::new([
        "id",
        "name",
        "kind",
        "base_url",
        "settings",
        "credentials",
        "created_at",
    ])
}

fn provider_row(p: pb::ProviderInfo) -> Vec<String> {
    let config = p.config.unwrap_or_default();
    vec![
        p.id,
        p.name,
        kind_name(p.kind).to_owned(),
        config.base_url.clone(),
        settings_cell(&config),
        credentials_cell(&config),
        format_instant(p.created_at_unix_s),
    ]
}

pub(super) async fn providers(
    client: &mut AdminClient,
    cmd: ProviderCmd,
    format: Format,
) -> anyhow::Result<String> {
    let mut r = provider_report();
    match cmd {
        ProviderCmd::Create {
            name,
            name_flag,
            kind,
            settings,
            credentials,
        } => {
            let name = name.or(name_flag).context("a provider name is required")?;
            let mut config = pb::ProviderConfig::default();
            apply_settings(settings, &mut config);
            credentials.apply(&mut config)?;
            let req = pb::CreateProviderRequest {
                name,
                kind: kind_pb(kind) as i32,
                config: Some(config),
            };
            r.push(provider_row(
                client
                    .create_provider(req)
                    .await
                    .map_err(status)?
                    .into_inner(),
            ));
        }
        ProviderCmd::Update {
            provider,
            settings,
            credentials,
            clear,
        } => {
            let req = update_request(client, provider, settings, &credentials, &clear).await?;
            r.push(provider_row(
                client
                    .update_provider(req)
                    .await
                    .map_err(status)?
                    .into_inner(),
            ));
        }
        ProviderCmd::List => {
            let resp = client
                .list_providers(pb::ListProvidersRequest {})
                .await
                .map_err(status)?;
            for p in resp.into_inner().providers {
                r.push(provider_row(p));
            }
        }
        ProviderCmd::Delete { provider } => {
            client
                .delete_provider(pb::DeleteProviderRequest { provider })
                .await
                .map_err(status)?;
        }
        ProviderCmd::Status { max_age_s, json } => {
            let format = if json { Format::Json } else { format };
            return provider_status(client, max_age_s, format).await;
        }
    }
    Ok(r.render(format))
}

/// The provider's current settings with the command line's changes; credentials not named
/// are left out (kept by the control plane).
async fn update_request(
    client: &mut AdminClient,
    provider: String,
    settings: ProviderSettingsArgs,
    credentials: &CredentialArgs,
    clear: &[CredentialName],
) -> anyhow::Result<pb::UpdateProviderRequest> {
    let current = client
        .list_providers(pb::ListProvidersRequest {})
        .await
        .map_err(status)?
        .into_inner()
        .providers
        .into_iter()
        .find(|p| p.id == provider || p.name == provider)
        .with_context(|| format!("provider `{provider}` not found"))?;
    let mut config = current.config.unwrap_or_default();
    for name in [
        CredentialName::ApiKey,
        CredentialName::BearerToken,
        CredentialName::AwsAccessKeyId,
        CredentialName::AwsSecretAccessKey,
        CredentialName::AwsSessionToken,
        CredentialName::ServiceAccountJson,
    ] {
        *name.field(&mut config) = None;
    }
    apply_settings(settings, &mut config);
    for name in clear {
        if credentials.given.iter().any(|(n, _)| n == name) {
            bail!("a credential cannot be both given and cleared");
        }
        *name.field(&mut config) = Some(pb::SecretRef {
            source: Some(pb::secret_ref::Source::Value(String::new())),
        });
    }
    credentials.apply(&mut config)?;
    Ok(pb::UpdateProviderRequest {
        provider: current.id,
        config: Some(config),
    })
}

fn state_name(state: i32) -> &'static str {
    match pb::BreakerState::try_from(state) {
        Ok(pb::BreakerState::Closed) => "closed",
        Ok(pb::BreakerState::Open) => "open",
        Ok(pb::BreakerState::HalfOpen) => "half_open",
        Err(_) => "unknown",
    }
}

fn instant_ms(ms: i64) -> String {
    format_instant(ms.div_euclid(1000))
}

async fn provider_status(
    client: &mut AdminClient,
    max_age_s: u32,
    format: Format,
) -> anyhow::Result<String> {
    let targets = client
        .provider_status(pb::ProviderStatusRequest { max_age_s })
        .await
        .map_err(status)?
        .into_inner()
        .targets;
    let mut r = Report::new([
        "data_plane",
        "provider",
        "upstream_model",
        "state",
        "consecutive_failures",
        "retry_at",
        "attempts",
        "failures",
        "last_error",
        "last_failure_at",
        "reported_at",
    ]);
    for t in targets {
        let h = t.health.unwrap_or_default();
        let open = h.state != pb::BreakerState::Closed as i32;
        r.push(vec![
            t.data_plane_id,
            t.provider_name,
            t.upstream_model,
            state_name(h.state).to_owned(),
            h.consecutive_failures.to_string(),
            if open {
                instant_ms(h.retry_at_unix_ms)
            } else {
                "-".to_owned()
            },
            h.attempts.to_string(),
            h.failures.to_string(),
            h.last_error,
            instant_ms(h.last_failure_unix_ms),
            instant_ms(t.reported_at_unix_ms),
        ]);
    }
    Ok(r.render(format))
}

/// Parses `PROVIDER[:UPSTREAM_MODEL][,key=value…]` (or the older `PROVIDER=UPSTREAM_MODEL`).
pub fn parse_target(spec: &str) -> anyhow::Result<pb::RouteTargetSpec> {
    let mut parts = spec.split(',');
    let head = parts.next().unwrap_or_default();
    // The first `:` or `=` separates the provider from the upstream model, which may itself
    // contain either (Bedrock ids end in `-v1:0`).
    let (provider, upstream) = match head.find([':', '=']) {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (head, ""),
    };
    if provider.trim().is_empty() {
        bail!("route target `{spec}`: the provider is missing");
    }
    let mut target = pb::RouteTargetSpec {
        provider: provider.to_owned(),
        upstream_model: upstream.to_owned(),
        weight: 1,
        ..Default::default()
    };
    let mut timeouts = pb::Timeouts::default();
    for option in parts {
        let (key, value) = option
            .split_once('=')
            .with_context(|| format!("route target `{spec}`: `{option}` is not key=value"))?;
        let n: u32 = value.trim().parse().with_context(|| {
            format!("route target `{spec}`: {key} must be a non-negative integer")
        })?;
        match key.trim() {
            "weight" if n >= 1 => target.weight = n,
            "weight" => bail!("route target `{spec}`: weight must be at least 1"),
            "priority" => target.priority = Some(n),
            "connect-timeout-ms" => timeouts.connect_ms = n,
            "first-byte-timeout-ms" => timeouts.first_byte_ms = n,
            "idle-timeout-ms" => timeouts.idle_ms = n,
            other => bail!(
                "route target `{spec}`: unknown option `{other}` (use weight, priority, \
                 connect-timeout-ms, first-byte-timeout-ms, idle-timeout-ms)"
            ),
        }
    }
    target.timeouts = (timeouts != pb::Timeouts::default()).then_some(timeouts);
    Ok(target)
}

fn route_rows(r: &mut Report, route: pb::RouteInfo) {
    for (i, t) in route.targets.into_iter().enumerate() {
        r.push(vec![
            route.model.clone(),
            i.to_string(),
            t.priority.to_string(),
            t.provider_name,
            t.upstream_model,
            t.weight.to_string(),
            t.timeouts.as_ref().map(timeouts_cell).unwrap_or_default(),
        ]);
    }
}

pub(super) async fn routes(client: &mut AdminClient, cmd: RouteCmd) -> anyhow::Result<Report> {
    let mut r = Report::new([
        "model",
        "position",
        "priority",
        "provider",
        "upstream_model",
        "weight",
        "timeouts",
    ]);
    match cmd {
        RouteCmd::Set { model, targets } => {
            let targets = targets
                .iter()
                .map(|t| parse_target(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let req = pb::SetRouteRequest { model, targets };
            route_rows(
                &mut r,
                client.set_route(req).await.map_err(status)?.into_inner(),
            );
        }
        RouteCmd::List => {
            let resp = client
                .list_routes(pb::ListRoutesRequest {})
                .await
                .map_err(status)?;
            for route in resp.into_inner().routes {
                route_rows(&mut r, route);
            }
        }
    }
    Ok(r)
}

pub(super) async fn aliases(client: &mut AdminClient, cmd: AliasCmd) -> anyhow::Result<Report> {
    let mut r = Report::new(["alias", "model"]);
    match cmd {
        AliasCmd::Set { alias, model } => {
            let a = client
                .set_alias(pb::SetAliasRequest { alias, model })
                .await
                .map_err(status)?
                .into_inner();
            r.push(vec![a.alias, a.model]);
        }
        AliasCmd::List => {
            let resp = client
                .list_aliases(pb::ListAliasesRequest {})
                .await
                .map_err(status)?;
            for a in resp.into_inner().aliases {
                r.push(vec![a.alias, a.model]);
            }
        }
        AliasCmd::Delete { alias } => {
            client
                .delete_alias(pb::DeleteAliasRequest { alias })
                .await
                .map_err(status)?;
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_targets_take_upstream_models_with_colons_and_options() {
        let t = parse_target(
            "bedrock:us.anthropic.claude-sonnet-4-5-20250929-v1:0,weight=3,priority=1,\
             first-byte-timeout-ms=20000",
        )
        .unwrap();
        assert_eq!(t.provider, "bedrock");
        assert_eq!(
            t.upstream_model,
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert_eq!((t.weight, t.priority), (3, Some(1)));
        assert_eq!(t.timeouts.unwrap().first_byte_ms, 20_000);
    }

    #[test]
    fn the_older_target_syntax_still_works() {
        let t = parse_target("upstream=claude-x").unwrap();
        assert_eq!(
            (t.provider.as_str(), t.upstream_model.as_str()),
            ("upstream", "claude-x")
        );
        assert_eq!((t.weight, t.priority, t.timeouts), (1, None, None));
        let t = parse_target("demo").unwrap();
        assert_eq!(
            (t.provider.as_str(), t.upstream_model.as_str()),
            ("demo", "")
        );
    }

    #[test]
    fn bad_route_target_options_are_refused() {
        for bad in [
            ":m",
            "p:m,weight=0",
            "p:m,priority=-1",
            "p:m,colour=3",
            "p:m,weight",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_shown_as_stored_or_references_never_values() {
        let config = pb::ProviderConfig {
            api_key: Some(pb::SecretRef {
                source: Some(pb::secret_ref::Source::Value("sk-leak".into())),
            }),
            aws_session_token: Some(pb::SecretRef {
                source: Some(pb::secret_ref::Source::Env("TOKEN".into())),
            }),
            ..Default::default()
        };
        assert_eq!(
            credentials_cell(&config),
            "api_key=stored aws_session_token=env:TOKEN"
        );
    }
}
