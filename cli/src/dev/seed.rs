//! Seeds a fresh dev installation through the admin API: a provider, the current Claude
//! models routed to it, a `developers` group allowed every model, a user, and an API key.
//! Idempotent: re-running against the same state keeps what exists.

use std::path::PathBuf;

use anyhow::Context as _;
use tollgate_proto::v1 as pb;
use tonic::Code;

use crate::admin::{AdminClient, connect};

/// Client-facing model ids the dev setup routes (what Claude Code and the SDKs ask for).
pub const DEV_MODELS: &[(&str, &str)] = &[
    ("claude-opus-5-5", "Claude Opus 5.5"),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5"),
    ("claude-haiku-5-5", "Claude Haiku 5.5"),
    ("claude-fable-5-2", "Claude Fable 5.2"),
    ("claude-sonnet-5", "Claude Sonnet 5"),
    ("claude-opus-4-8", "Claude Opus 4.8"),
    ("claude-opus-4-7", "Claude Opus 4.7"),
    ("claude-opus-4-6", "Claude Opus 4.6"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
    (
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5 (2025-09-29)",
    ),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5 (2025-10-01)"),
];

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Where the demo API key is remembered between runs (`dev-api-key`, mode 0600).
    pub state_dir: PathBuf,
    pub upstream_url: Option<String>,
    pub upstream_key: Option<String>,
}

/// What the seed produced.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub api_key: String,
    pub provider: String,
}

fn exists_ok<T>(r: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        Err(s) => Err(anyhow::anyhow!("seeding failed: {}", s.message())),
    }
}

/// Seeds the installation at `endpoint` and returns the demo API key.
pub async fn seed(endpoint: &str, admin_key: &str, opts: &SeedOptions) -> anyhow::Result<Seeded> {
    let mut client = connect(endpoint, admin_key).await?;
    let provider = seed_provider(&mut client, opts).await?;
    for (id, name) in DEV_MODELS {
        client
            .upsert_model(pb::UpsertModelRequest {
                id: (*id).to_owned(),
                display_name: (*name).to_owned(),
                max_input_tokens: 200_000,
            })
            .await
            .map_err(|s| anyhow::anyhow!("seeding model {id} failed: {}", s.message()))?;
        client
            .set_route(pb::SetRouteRequest {
                model: (*id).to_owned(),
                targets: vec![pb::RouteTargetSpec {
                    provider: provider.clone(),
                    upstream_model: String::new(),
                    weight: 1,
                    ..Default::default()
                }],
            })
            .await
            .map_err(|s| anyhow::anyhow!("seeding route {id} failed: {}", s.message()))?;
    }
    exists_ok(
        client
            .create_group(pb::CreateGroupRequest {
                name: "developers".into(),
                allowed_models: vec!["*".into()],
            })
            .await,
    )?;
    exists_ok(
        client
            .create_principal(pb::CreatePrincipalRequest {
                kind: pb::PrincipalKind::User as i32,
                name: "Dev User".into(),
                email: "dev@localhost".into(),
                groups: vec!["developers".into()],
            })
            .await,
    )?;
    let api_key = demo_key(&mut client, opts).await?;
    Ok(Seeded { api_key, provider })
}

async fn seed_provider(client: &mut AdminClient, opts: &SeedOptions) -> anyhow::Result<String> {
    let (name, req) = match &opts.upstream_url {
        Some(url) => (
            "upstream",
            pb::CreateProviderRequest {
                name: "upstream".into(),
                kind: pb::ProviderKind::Anthropic as i32,
                config: Some(pb::ProviderConfig {
                    base_url: url.clone(),
                    api_key: Some(upstream_key(opts.upstream_key.as_deref())),
                    ..Default::default()
                }),
            },
        ),
        None => (
            "demo",
            pb::CreateProviderRequest {
                name: "demo".into(),
                kind: pb::ProviderKind::Demo as i32,
                ..Default::default()
            },
        ),
    };
    exists_ok(client.create_provider(req).await)?;
    Ok(name.to_owned())
}

/// The upstream key: the one given (stored encrypted), else a reference to
/// `ANTHROPIC_API_KEY` in the environment (the data plane runs in this process).
fn upstream_key(given: Option<&str>) -> pb::SecretRef {
    let source = match given.filter(|k| !k.is_empty()) {
        Some(key) => pb::secret_ref::Source::Value(key.to_owned()),
        None => pb::secret_ref::Source::Env("ANTHROPIC_API_KEY".to_owned()),
    };
    pb::SecretRef {
        source: Some(source),
    }
}

/// Reuses the key remembered in the state directory while it is still active, else creates one.
async fn demo_key(client: &mut AdminClient, opts: &SeedOptions) -> anyhow::Result<String> {
    let path = opts.state_dir.join("dev-api-key");
    let keys = client
        .list_api_keys(pb::ListApiKeysRequest {
            principal: "dev@localhost".into(),
            include_revoked: false,
        })
        .await
        .map_err(|s| anyhow::anyhow!("listing keys failed: {}", s.message()))?
        .into_inner()
        .keys;
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim();
        if keys.iter().any(|k| saved.starts_with(&k.prefix)) {
            return Ok(saved.to_owned());
        }
    }
    let resp = client
        .create_api_key(pb::CreateApiKeyRequest {
            principal: "dev@localhost".into(),
            name: "tollgate dev".into(),
            expires_at_unix_s: 0,
        })
        .await
        .map_err(|s| anyhow::anyhow!("creating the demo key failed: {}", s.message()))?
        .into_inner();
    crate::secret::write_private_file(&path, &resp.secret)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(resp.secret)
}
