//! The stored shape of a provider's settings and credentials, and their conversion to and from
//! the API's `ProviderConfig`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tollgate_proto::v1 as pb;

/// Per-target or per-provider timeouts in milliseconds (0 = inherit), as stored in JSON
/// (`providers.config.timeouts`, `route_targets.timeouts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimeoutsJson {
    #[serde(skip_serializing_if = "is_zero")]
    pub connect_ms: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub first_byte_ms: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub idle_ms: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl TimeoutsJson {
    pub fn is_unset(&self) -> bool {
        *self == TimeoutsJson::default()
    }

    pub fn from_pb(t: Option<&pb::Timeouts>) -> TimeoutsJson {
        t.map_or_else(TimeoutsJson::default, |t| TimeoutsJson {
            connect_ms: t.connect_ms,
            first_byte_ms: t.first_byte_ms,
            idle_ms: t.idle_ms,
        })
    }

    /// `None` when every field inherits.
    pub fn to_pb(self) -> Option<pb::Timeouts> {
        (!self.is_unset()).then_some(pb::Timeouts {
            connect_ms: self.connect_ms,
            first_byte_ms: self.first_byte_ms,
            idle_ms: self.idle_ms,
        })
    }

    pub fn to_json(self) -> String {
        serde_json::to_string(&self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Unreadable JSON reads as "inherit everything".
    pub fn from_json(json: &str) -> TimeoutsJson {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// A provider's non-secret settings (`providers.config`); which apply depends on the kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// `invoke` (or empty) or `messages`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bedrock_api: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub anthropic_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token_uri: String,
    #[serde(skip_serializing_if = "TimeoutsJson::is_unset")]
    pub timeouts: TimeoutsJson,
}

impl Settings {
    pub fn from_json(json: &str) -> Result<Settings, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The settings of an API config (credentials and `base_url` are not settings).
    pub fn from_pb(c: &pb::ProviderConfig) -> Settings {
        Settings {
            region: c.region.clone(),
            project_id: c.project_id.clone(),
            resource: c.resource.clone(),
            bedrock_api: match pb::BedrockApi::try_from(c.bedrock_api) {
                Ok(pb::BedrockApi::Messages) => "messages".to_owned(),
                _ => String::new(),
            },
            anthropic_version: c.anthropic_version.clone(),
            token_uri: c.token_uri.clone(),
            timeouts: TimeoutsJson::from_pb(c.timeouts.as_ref()),
        }
    }

    /// An API config with these settings and no credentials.
    pub fn to_pb(&self, base_url: &str) -> pb::ProviderConfig {
        pb::ProviderConfig {
            base_url: base_url.to_owned(),
            region: self.region.clone(),
            project_id: self.project_id.clone(),
            resource: self.resource.clone(),
            bedrock_api: if self.bedrock_api == "messages" {
                pb::BedrockApi::Messages as i32
            } else {
                pb::BedrockApi::Invoke as i32
            },
            anthropic_version: self.anthropic_version.clone(),
            token_uri: self.token_uri.clone(),
            timeouts: self.timeouts.to_pb(),
            ..Default::default()
        }
    }
}

/// The credentials a provider config can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    BearerToken,
    AwsAccessKeyId,
    AwsSecretAccessKey,
    AwsSessionToken,
    ServiceAccountJson,
}

impl Credential {
    pub const ALL: [Credential; 6] = [
        Credential::ApiKey,
        Credential::BearerToken,
        Credential::AwsAccessKeyId,
        Credential::AwsSecretAccessKey,
        Credential::AwsSessionToken,
        Credential::ServiceAccountJson,
    ];

    /// The name in stored JSON (the `ProviderConfig` field name).
    pub fn name(self) -> &'static str {
        match self {
            Credential::ApiKey => "api_key",
            Credential::BearerToken => "bearer_token",
            Credential::AwsAccessKeyId => "aws_access_key_id",
            Credential::AwsSecretAccessKey => "aws_secret_access_key",
            Credential::AwsSessionToken => "aws_session_token",
            Credential::ServiceAccountJson => "service_account_json",
        }
    }

    pub fn field(self, c: &pb::ProviderConfig) -> Option<&pb::SecretRef> {
        match self {
            Credential::ApiKey => c.api_key.as_ref(),
            Credential::BearerToken => c.bearer_token.as_ref(),
            Credential::AwsAccessKeyId => c.aws_access_key_id.as_ref(),
            Credential::AwsSecretAccessKey => c.aws_secret_access_key.as_ref(),
            Credential::AwsSessionToken => c.aws_session_token.as_ref(),
            Credential::ServiceAccountJson => c.service_account_json.as_ref(),
        }
    }

    pub fn field_mut(self, c: &mut pb::ProviderConfig) -> &mut Option<pb::SecretRef> {
        match self {
            Credential::ApiKey => &mut c.api_key,
            Credential::BearerToken => &mut c.bearer_token,
            Credential::AwsAccessKeyId => &mut c.aws_access_key_id,
            Credential::AwsSecretAccessKey => &mut c.aws_secret_access_key,
            Credential::AwsSessionToken => &mut c.aws_session_token,
            Credential::ServiceAccountJson => &mut c.service_account_json,
        }
    }
}

/// One stored credential: the value itself, or a reference the data plane resolves.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredSecret {
    Value(String),
    Env(String),
    File(String),
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredSecret::Value(_) => f.write_str("Value([REDACTED])"),
            StoredSecret::Env(name) => f.debug_tuple("Env").field(name).finish(),
            StoredSecret::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl StoredSecret {
    /// As the snapshot carries it (`reveal`) or as the admin API shows it (values as `stored`).
    fn to_pb(&self, reveal: bool) -> pb::SecretRef {
        use pb::secret_ref::Source;
        let source = match self {
            StoredSecret::Value(v) if reveal => Source::Value(v.clone()),
            StoredSecret::Value(_) => Source::Stored(true),
            StoredSecret::Env(name) => Source::Env(name.clone()),
            StoredSecret::File(path) => Source::File(path.clone()),
        };
        pb::SecretRef {
            source: Some(source),
        }
    }
}

/// What an API `SecretRef` asks for.
enum Change {
    Keep,
    Remove,
    Set(StoredSecret),
}

fn change(s: Option<&pb::SecretRef>) -> Change {
    use pb::secret_ref::Source;
    match s.and_then(|s| s.source.as_ref()) {
        None | Some(Source::Stored(_)) => Change::Keep,
        Some(Source::Value(v)) if v.is_empty() => Change::Remove,
        Some(Source::Value(v)) => Change::Set(StoredSecret::Value(v.clone())),
        Some(Source::Env(name)) => Change::Set(StoredSecret::Env(name.clone())),
        Some(Source::File(path)) => Change::Set(StoredSecret::File(path.clone())),
    }
}

/// A provider's credentials by name (sealed as JSON: `{"api_key": {"value": "…"}, …}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credentials(BTreeMap<String, StoredSecret>);

impl Credentials {
    pub fn from_json(json: &[u8]) -> Result<Credentials, serde_json::Error> {
        serde_json::from_slice(json)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, c: Credential) -> Option<&StoredSecret> {
        self.0.get(c.name())
    }

    pub fn set(&mut self, c: Credential, secret: StoredSecret) {
        self.0.insert(c.name().to_owned(), secret);
    }

    /// The credentials given in an API config (empty values and `stored` markers are skipped).
    pub fn from_pb(config: &pb::ProviderConfig) -> Credentials {
        let mut out = Credentials::default();
        out.merge(config);
        out
    }

    /// Applies an update: a credential not given (or given as `stored`) is kept, an empty
    /// `value` removes it, anything else replaces it.
    pub fn merge(&mut self, config: &pb::ProviderConfig) {
        for c in Credential::ALL {
            match change(c.field(config)) {
                Change::Keep => {}
                Change::Remove => {
                    self.0.remove(c.name());
                }
                Change::Set(secret) => self.set(c, secret),
            }
        }
    }

    /// The inline values an update would keep without being given them again (references
    /// are not secrets and may stay).
    pub fn kept_inline(&self, update: &pb::ProviderConfig) -> Vec<&'static str> {
        Credential::ALL
            .into_iter()
            .filter(|c| matches!(self.get(*c), Some(StoredSecret::Value(_))))
            .filter(|c| matches!(change(c.field(update)), Change::Keep))
            .map(Credential::name)
            .collect()
    }

    /// Sets the credential fields of `config`: values themselves (`reveal`, for snapshots) or
    /// `stored` markers (admin API); references as references.
    pub fn fill(&self, config: &mut pb::ProviderConfig, reveal: bool) {
        for c in Credential::ALL {
            *c.field_mut(config) = self.get(c).map(|s| s.to_pb(reveal));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> Option<pb::SecretRef> {
        Some(pb::SecretRef {
            source: Some(pb::secret_ref::Source::Value(v.into())),
        })
    }

    #[test]
    fn credentials_round_trip_as_named_json_objects() {
        let config = pb::ProviderConfig {
            api_key: value("sk-1"),
            aws_session_token: Some(pb::SecretRef {
                source: Some(pb::secret_ref::Source::Env("AWS_SESSION_TOKEN".into())),
            }),
            ..Default::default()
        };
        let creds = Credentials::from_pb(&config);
        let json = String::from_utf8(creds.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"api_key":{"value":"sk-1"},"aws_session_token":{"env":"AWS_SESSION_TOKEN"}}"#
        );
        assert_eq!(Credentials::from_json(json.as_bytes()).unwrap(), creds);
    }

    #[test]
    fn listing_shows_values_as_stored_and_references_as_themselves() {
        let config = pb::ProviderConfig {
            api_key: value("sk-secret"),
            service_account_json: Some(pb::SecretRef {
                source: Some(pb::secret_ref::Source::File("/run/sa.json".into())),
            }),
            ..Default::default()
        };
        let mut shown = pb::ProviderConfig::default();
        Credentials::from_pb(&config).fill(&mut shown, false);
        assert_eq!(
            shown.api_key.unwrap().source,
            Some(pb::secret_ref::Source::Stored(true))
        );
        assert_eq!(
            shown.service_account_json.unwrap().source,
            Some(pb::secret_ref::Source::File("/run/sa.json".into()))
        );
        assert!(!format!("{:?}", Credentials::from_pb(&config)).contains("sk-secret"));
    }

    #[test]
    fn an_update_keeps_unset_credentials_and_removes_empty_values() {
        let mut creds = Credentials::from_pb(&pb::ProviderConfig {
            api_key: value("k"),
            bearer_token: value("t"),
            ..Default::default()
        });
        creds.merge(&pb::ProviderConfig {
            api_key: value(""),
            aws_access_key_id: value("AKID"),
            ..Default::default()
        });
        assert_eq!(creds.get(Credential::ApiKey), None);
        assert_eq!(
            creds.get(Credential::BearerToken),
            Some(&StoredSecret::Value("t".into()))
        );
        assert_eq!(
            creds.get(Credential::AwsAccessKeyId),
            Some(&StoredSecret::Value("AKID".into()))
        );
    }

    #[test]
    fn settings_round_trip_through_the_api_shape() {
        let config = pb::ProviderConfig {
            base_url: "https://x".into(),
            region: "us-east-1".into(),
            bedrock_api: pb::BedrockApi::Messages as i32,
            timeouts: Some(pb::Timeouts {
                first_byte_ms: 5000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let settings = Settings::from_pb(&config);
        assert_eq!(
            settings.to_json(),
            r#"{"region":"us-east-1","bedrock_api":"messages","timeouts":{"first_byte_ms":5000}}"#
        );
        let back = Settings::from_json(&settings.to_json()).unwrap();
        assert_eq!(back.to_pb("https://x"), config);
    }
}
