//! Providers as the data plane uses them: kind, endpoint, credentials and timeouts.
//!
//! Conversion from the snapshot validates everything a request would otherwise trip over
//! (URLs, required settings per kind, credential combinations) so a bad provider is refused
//! when the control plane compiles it, not on the first request.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use tollgate_proto::v1 as pb;

/// The body `anthropic_version` Bedrock InvokeModel accepts for every model.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";
/// The body `anthropic_version` Vertex documents.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Where a credential comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// The value, as the control plane stored it.
    Inline(SecretString),
    /// An environment variable of the data-plane process.
    Env(String),
    /// A file on the data plane (contents trimmed).
    File(PathBuf),
}

/// A provider configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider `{provider}`: {reason}")]
pub struct InvalidProvider {
    pub provider: String,
    pub reason: String,
}

/// Per-target timeouts; `None` = the data plane's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub idle: Option<Duration>,
}

impl Timeouts {
    pub fn from_pb(t: Option<&pb::Timeouts>) -> Timeouts {
        let ms = |v: u32| (v != 0).then(|| Duration::from_millis(u64::from(v)));
        t.map_or_else(Timeouts::default, |t| Timeouts {
            connect: ms(t.connect_ms),
            first_byte: ms(t.first_byte_ms),
            idle: ms(t.idle_ms),
        })
    }

    /// Each field from `self`, else from `fallback`.
    pub fn or(self, fallback: Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.or(fallback.connect),
            first_byte: self.first_byte.or(fallback.first_byte),
            idle: self.idle.or(fallback.idle),
        }
    }
}

/// Which Bedrock API a provider calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BedrockApi {
    /// `bedrock-runtime` InvokeModel / InvokeModelWithResponseStream (AWS event stream).
    Invoke,
    /// `bedrock-mantle` Messages API (Anthropic body and SSE).
    Messages,
}

impl BedrockApi {
    /// The SigV4 service name.
    pub fn signing_service(self) -> &'static str {
        match self {
            BedrockApi::Invoke => "bedrock",
            BedrockApi::Messages => "bedrock-mantle",
        }
    }
}

/// How Bedrock requests are authenticated.
#[derive(Debug, Clone)]
pub enum BedrockAuth {
    /// SigV4 with static (optionally temporary) credentials.
    SigV4 {
        access_key_id: SecretSource,
        secret_access_key: SecretSource,
        session_token: Option<SecretSource>,
    },
    /// A Bedrock API key sent as `Authorization: Bearer`.
    ApiKey(SecretSource),
}

#[derive(Debug, Clone)]
pub struct BedrockProvider {
    /// Scheme and host (and any path prefix), no trailing slash: the override, else
    /// `https://bedrock-runtime.{region}.amazonaws.com` (invoke) or
    /// `https://bedrock-mantle.{region}.api.aws/anthropic` (messages).
    pub base_url: String,
    pub region: String,
    pub api: BedrockApi,
    pub auth: BedrockAuth,
    /// The body `anthropic_version` (invoke only).
    pub anthropic_version: String,
}

#[derive(Debug, Clone)]
pub enum VertexAuth {
    /// A service-account key (JSON); tokens come from the JWT-bearer exchange.
    ServiceAccount {
        key_json: SecretSource,
        /// Overrides the key file's `token_uri`.
        token_uri: Option<String>,
    },
    /// A static OAuth2 access token (e.g. written to a file by an external refresher).
    Token(SecretSource),
}

#[derive(Debug, Clone)]
pub struct VertexProvider {
    /// Scheme and host, no trailing slash: the override, else `https://aiplatform.googleapis.com`
    /// (`global`), `https://aiplatform.{us|eu}.rep.googleapis.com`, or
    /// `https://{region}-aiplatform.googleapis.com`. Paths start with `/v1/projects/…`.
    pub base_url: String,
    pub region: String,
    pub project_id: String,
    pub auth: VertexAuth,
    /// The body `anthropic_version`.
    pub anthropic_version: String,
}

#[derive(Debug, Clone)]
pub enum FoundryAuth {
    /// Sent as both `api-key` and `x-api-key`.
    ApiKey(SecretSource),
    /// An Entra ID access token, sent as `Authorization: Bearer`.
    Bearer(SecretSource),
}

#[derive(Debug, Clone)]
pub struct FoundryProvider {
    /// The override, else `https://{resource}.services.ai.azure.com/anthropic`; requests go
    /// to `{base_url}/v1/messages`.
    pub base_url: String,
    pub auth: FoundryAuth,
}

#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    /// Absolute `http`/`https` base URL, without a trailing slash.
    pub base_url: String,
    pub api_key: SecretSource,
}

/// How a provider is reached.
#[derive(Debug, Clone)]
pub enum ProviderKind {
    /// Built-in offline provider.
    Demo,
    /// An Anthropic Messages API upstream; requests are passed through.
    Anthropic(AnthropicProvider),
    Bedrock(BedrockProvider),
    Vertex(VertexProvider),
    Foundry(FoundryProvider),
}

impl ProviderKind {
    /// The name used in configuration and usage records.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::Demo => "demo",
            ProviderKind::Anthropic(_) => "anthropic",
            ProviderKind::Bedrock(_) => "bedrock",
            ProviderKind::Vertex(_) => "vertex",
            ProviderKind::Foundry(_) => "foundry",
        }
    }
}

/// A configured upstream.
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
    /// The provider's own timeouts (route targets may override them).
    pub timeouts: Timeouts,
}

impl Provider {
    /// Validates a snapshot provider.
    pub fn from_pb(p: pb::Provider) -> Result<Provider, InvalidProvider> {
        let name = p.name.clone();
        let bad = |reason: String| InvalidProvider {
            provider: name.clone(),
            reason,
        };
        let config = p.config.unwrap_or_default();
        let timeouts = Timeouts::from_pb(config.timeouts.as_ref());
        let kind = match pb::ProviderKind::try_from(p.kind) {
            Ok(pb::ProviderKind::Demo) => ProviderKind::Demo,
            Ok(pb::ProviderKind::Anthropic) => {
                if config.base_url.is_empty() {
                    return Err(bad("an anthropic provider needs a base URL".into()));
                }
                ProviderKind::Anthropic(AnthropicProvider {
                    base_url: base_url(&config.base_url).map_err(bad)?,
                    api_key: required(config.api_key.as_ref(), "api_key").map_err(bad)?,
                })
            }
            Ok(pb::ProviderKind::Bedrock) => ProviderKind::Bedrock(bedrock(&config).map_err(bad)?),
            Ok(pb::ProviderKind::Vertex) => ProviderKind::Vertex(vertex(&config).map_err(bad)?),
            Ok(pb::ProviderKind::Foundry) => ProviderKind::Foundry(foundry(&config).map_err(bad)?),
            Ok(pb::ProviderKind::Unspecified) | Err(_) => {
                return Err(bad("the provider kind is not set or not known".into()));
            }
        };
        Ok(Provider {
            id: p.id,
            name: p.name,
            kind,
            timeouts,
        })
    }
}

fn bedrock(c: &pb::ProviderConfig) -> Result<BedrockProvider, String> {
    let region = region(&c.region)?;
    let api = match pb::BedrockApi::try_from(c.bedrock_api) {
        Ok(pb::BedrockApi::Invoke) => BedrockApi::Invoke,
        Ok(pb::BedrockApi::Messages) => BedrockApi::Messages,
        Err(_) => return Err("unknown bedrock_api".into()),
    };
    let base_url = if c.base_url.is_empty() {
        match api {
            BedrockApi::Invoke => format!("https://bedrock-runtime.{region}.amazonaws.com"),
            BedrockApi::Messages => format!("https://bedrock-mantle.{region}.api.aws/anthropic"),
        }
    } else {
        base_url(&c.base_url)?
    };
    let key_id = optional(c.aws_access_key_id.as_ref(), "aws_access_key_id")?;
    let secret = optional(c.aws_secret_access_key.as_ref(), "aws_secret_access_key")?;
    let token = optional(c.aws_session_token.as_ref(), "aws_session_token")?;
    let api_key = optional(c.api_key.as_ref(), "api_key")?;
    let auth = match (key_id, secret, api_key) {
        (Some(access_key_id), Some(secret_access_key), None) => BedrockAuth::SigV4 {
            access_key_id,
            secret_access_key,
            session_token: token,
        },
        (None, None, Some(key)) if token.is_none() => BedrockAuth::ApiKey(key),
        (None, None, None) => {
            return Err(
                "bedrock needs aws_access_key_id + aws_secret_access_key, or api_key".into(),
            );
        }
        _ => {
            return Err(
                "bedrock takes either SigV4 credentials (both aws_access_key_id and \
                 aws_secret_access_key, optional aws_session_token) or an api_key, not a mix"
                    .into(),
            );
        }
    };
    Ok(BedrockProvider {
        base_url,
        region,
        api,
        auth,
        anthropic_version: non_empty_or(&c.anthropic_version, BEDROCK_ANTHROPIC_VERSION),
    })
}

fn vertex(c: &pb::ProviderConfig) -> Result<VertexProvider, String> {
    let region = region(&c.region)?;
    if !is_plain_segment(&c.project_id) {
        return Err("vertex needs a project_id (letters, digits, `-`)".into());
    }
    let base_url = if c.base_url.is_empty() {
        match region.as_str() {
            "global" => "https://aiplatform.googleapis.com".to_owned(),
            "us" | "eu" => format!("https://aiplatform.{region}.rep.googleapis.com"),
            r => format!("https://{r}-aiplatform.googleapis.com"),
        }
    } else {
        base_url(&c.base_url)?
    };
    let sa = optional(c.service_account_json.as_ref(), "service_account_json")?;
    let token = optional(c.bearer_token.as_ref(), "bearer_token")?;
    let token_uri = if c.token_uri.is_empty() {
        None
    } else {
        Some(self::base_url(&c.token_uri)?)
    };
    let auth = match (sa, token) {
        (Some(key_json), None) => VertexAuth::ServiceAccount {
            key_json,
            token_uri,
        },
        (None, Some(token)) if token_uri.is_none() => VertexAuth::Token(token),
        (None, None) => return Err("vertex needs service_account_json or bearer_token".into()),
        _ => {
            return Err(
                "vertex takes either service_account_json (optional token_uri) or bearer_token"
                    .into(),
            );
        }
    };
    Ok(VertexProvider {
        base_url,
        region,
        project_id: c.project_id.clone(),
        auth,
        anthropic_version: non_empty_or(&c.anthropic_version, VERTEX_ANTHROPIC_VERSION),
    })
}

fn foundry(c: &pb::ProviderConfig) -> Result<FoundryProvider, String> {
    let base_url = if !c.base_url.is_empty() {
        base_url(&c.base_url)?
    } else if is_plain_segment(&c.resource) {
        format!("https://{}.services.ai.azure.com/anthropic", c.resource)
    } else {
        return Err("foundry needs a resource name (or a base_url)".into());
    };
    let key = optional(c.api_key.as_ref(), "api_key")?;
    let bearer = optional(c.bearer_token.as_ref(), "bearer_token")?;
    let auth = match (key, bearer) {
        (Some(key), None) => FoundryAuth::ApiKey(key),
        (None, Some(token)) => FoundryAuth::Bearer(token),
        (None, None) => return Err("foundry needs api_key or bearer_token".into()),
        (Some(_), Some(_)) => return Err("foundry takes api_key or bearer_token, not both".into()),
    };
    Ok(FoundryProvider { base_url, auth })
}

fn non_empty_or(value: &str, default: &str) -> String {
    if value.is_empty() {
        default.to_owned()
    } else {
        value.to_owned()
    }
}

/// Letters, digits and `-` (region names, project ids, resource names): they go into hosts
/// and paths unescaped.
fn is_plain_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn region(r: &str) -> Result<String, String> {
    if is_plain_segment(r) {
        Ok(r.to_owned())
    } else {
        Err("needs a region (letters, digits, `-`)".into())
    }
}

fn required(s: Option<&pb::SecretRef>, name: &str) -> Result<SecretSource, String> {
    optional(s, name)?.ok_or_else(|| format!("{name} is required"))
}

/// `None` for an absent reference or an empty inline value.
pub fn optional(s: Option<&pb::SecretRef>, name: &str) -> Result<Option<SecretSource>, String> {
    use pb::secret_ref::Source;
    let Some(source) = s.and_then(|s| s.source.as_ref()) else {
        return Ok(None);
    };
    match source {
        Source::Value(v) if v.is_empty() => Ok(None),
        Source::Value(v) => Ok(Some(SecretSource::Inline(SecretString::from(v.clone())))),
        Source::Env(name) if !name.is_empty() => Ok(Some(SecretSource::Env(name.clone()))),
        Source::File(path) if !path.is_empty() => Ok(Some(SecretSource::File(path.into()))),
        Source::Env(_) | Source::File(_) => Err(format!("{name}: empty reference")),
        Source::Stored(_) => Err(format!("{name}: a stored marker is not a credential")),
    }
}

/// Accepts an absolute http(s) URL with no query or fragment; strips trailing slashes.
pub fn base_url(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("`{url}`: scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}`: missing host"));
    }
    if uri.query().is_some() {
        return Err(format!("`{url}`: must not have a query"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(v: &str) -> Option<pb::SecretRef> {
        Some(pb::SecretRef {
            source: Some(pb::secret_ref::Source::Value(v.into())),
        })
    }

    fn provider(kind: pb::ProviderKind, config: pb::ProviderConfig) -> pb::Provider {
        pb::Provider {
            id: "p1".into(),
            name: "p".into(),
            kind: kind as i32,
            config: Some(config),
        }
    }

    #[test]
    fn bedrock_hosts_follow_region_and_api() {
        let config = pb::ProviderConfig {
            region: "eu-west-1".into(),
            aws_access_key_id: inline("AKID"),
            aws_secret_access_key: inline("secret"),
            ..Default::default()
        };
        let p = Provider::from_pb(provider(pb::ProviderKind::Bedrock, config.clone())).unwrap();
        let ProviderKind::Bedrock(b) = p.kind else {
            panic!("not bedrock")
        };
        assert_eq!(
            b.base_url,
            "https://bedrock-runtime.eu-west-1.amazonaws.com"
        );
        assert_eq!(b.anthropic_version, BEDROCK_ANTHROPIC_VERSION);
        let mantle = pb::ProviderConfig {
            bedrock_api: pb::BedrockApi::Messages as i32,
            ..config
        };
        let p = Provider::from_pb(provider(pb::ProviderKind::Bedrock, mantle)).unwrap();
        let ProviderKind::Bedrock(b) = p.kind else {
            panic!("not bedrock")
        };
        assert_eq!(
            b.base_url,
            "https://bedrock-mantle.eu-west-1.api.aws/anthropic"
        );
        assert_eq!(b.api.signing_service(), "bedrock-mantle");
    }

    #[test]
    fn bedrock_refuses_mixed_or_missing_credentials() {
        let half = pb::ProviderConfig {
            region: "us-east-1".into(),
            aws_access_key_id: inline("AKID"),
            ..Default::default()
        };
        assert!(Provider::from_pb(provider(pb::ProviderKind::Bedrock, half)).is_err());
        let mixed = pb::ProviderConfig {
            region: "us-east-1".into(),
            aws_access_key_id: inline("AKID"),
            aws_secret_access_key: inline("s"),
            api_key: inline("k"),
            ..Default::default()
        };
        assert!(Provider::from_pb(provider(pb::ProviderKind::Bedrock, mixed)).is_err());
        let no_region = pb::ProviderConfig {
            api_key: inline("k"),
            ..Default::default()
        };
        assert!(Provider::from_pb(provider(pb::ProviderKind::Bedrock, no_region)).is_err());
    }

    #[test]
    fn vertex_hosts_follow_the_region() {
        for (region, host) in [
            ("global", "https://aiplatform.googleapis.com"),
            ("us", "https://aiplatform.us.rep.googleapis.com"),
            ("us-east5", "https://us-east5-aiplatform.googleapis.com"),
        ] {
            let config = pb::ProviderConfig {
                region: region.into(),
                project_id: "my-project".into(),
                bearer_token: inline("ya29.x"),
                ..Default::default()
            };
            let p = Provider::from_pb(provider(pb::ProviderKind::Vertex, config)).unwrap();
            let ProviderKind::Vertex(v) = p.kind else {
                panic!("not vertex")
            };
            assert_eq!(v.base_url, host);
            assert_eq!(v.anthropic_version, VERTEX_ANTHROPIC_VERSION);
        }
    }

    #[test]
    fn foundry_needs_a_resource_or_url_and_one_credential() {
        let config = pb::ProviderConfig {
            resource: "acme".into(),
            api_key: inline("k"),
            ..Default::default()
        };
        let p = Provider::from_pb(provider(pb::ProviderKind::Foundry, config)).unwrap();
        let ProviderKind::Foundry(f) = p.kind else {
            panic!("not foundry")
        };
        assert_eq!(f.base_url, "https://acme.services.ai.azure.com/anthropic");
        let bad = pb::ProviderConfig {
            resource: "acme/../x".into(),
            api_key: inline("k"),
            ..Default::default()
        };
        assert!(Provider::from_pb(provider(pb::ProviderKind::Foundry, bad)).is_err());
    }

    #[test]
    fn timeouts_inherit_field_by_field() {
        let target = Timeouts {
            first_byte: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let provider = Timeouts {
            connect: Some(Duration::from_secs(2)),
            first_byte: Some(Duration::from_secs(60)),
            idle: None,
        };
        let t = target.or(provider);
        assert_eq!(t.connect, Some(Duration::from_secs(2)));
        assert_eq!(t.first_byte, Some(Duration::from_secs(5)));
        assert_eq!(t.idle, None);
    }
}
