//! The snapshot: everything the request path needs, validated and indexed.

mod identity;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tollgate_proto::v1 as pb;

use crate::access::{AccessError, ModelAccess};
use crate::budget::Budgets;
use crate::credential::{ApiKey, AuthError, Principal, PrincipalKind, secret_sha256};
use crate::pricing::TargetPrice;
use crate::provider::{InvalidProvider, Provider, Timeouts};
use crate::rate_limit::RateLimits;
use crate::settings::SettingsDocument;
use crate::token::TokenVerifier;

/// A group and the models its members may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub access: ModelAccess,
}

/// A client-facing model in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub id: String,
    pub display_name: String,
    pub max_input_tokens: Option<u32>,
    pub created_at_unix_s: i64,
}

/// One place a model can be served.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub provider: Arc<Provider>,
    /// The model id sent upstream.
    pub upstream_model: String,
    /// Share among targets of equal priority (at least 1).
    pub weight: u32,
    /// Lower is tried first.
    pub priority: u32,
    /// The target's timeouts, else its provider's; `None` fields take the data plane default.
    pub timeouts: Timeouts,
    /// `None` when the model has no price and the fallback rule refuses it.
    pub price: Option<Arc<TargetPrice>>,
}

/// Where requests for a client-facing model go, in order of preference.
#[derive(Debug, Clone)]
pub struct Route {
    pub model: String,
    /// Sorted by priority (stable: equal priorities keep their configured order).
    pub targets: Vec<RouteTarget>,
}

impl Route {
    /// The target to try first (routes are never empty once validated).
    pub fn primary(&self) -> Option<&RouteTarget> {
        self.targets.first()
    }
}

/// A snapshot the control plane published that cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSnapshot {
    #[error("snapshot version must be positive")]
    ZeroVersion,
    #[error("group `{0}` appears twice")]
    DuplicateGroup(String),
    #[error("group `{group}` allows an empty model id")]
    EmptyAllowedModel { group: String },
    #[error("API key `{key}` has a {len}-byte hash, expected 32")]
    BadKeyHash { key: String, len: usize },
    #[error("API key `{0}` appears twice")]
    DuplicateKey(String),
    #[error("API key `{key}` has no principal kind")]
    UnspecifiedPrincipalKind { key: String },
    #[error("API key `{key}` refers to unknown group `{group}`")]
    UnknownGroup { key: String, group: String },
    #[error("provider `{0}` appears twice")]
    DuplicateProvider(String),
    #[error(transparent)]
    Provider(#[from] InvalidProvider),
    #[error("alias `{0}` appears twice or shadows a model id")]
    DuplicateAlias(String),
    #[error("alias `{alias}` names `{model}`, which is not in the catalogue")]
    AliasForUnknownModel { alias: String, model: String },
    #[error("model `{0}` appears twice")]
    DuplicateModel(String),
    #[error("model id must not be empty")]
    EmptyModelId,
    #[error("route for `{0}` appears twice")]
    DuplicateRoute(String),
    #[error("route for `{0}` names a model that is not in the catalogue")]
    RouteForUnknownModel(String),
    #[error("route for `{0}` has no targets")]
    EmptyRoute(String),
    #[error("route for `{model}` refers to unknown provider `{provider}`")]
    UnknownProvider { model: String, provider: String },
    #[error("token key `{kid}` is invalid: {reason}")]
    BadTokenKey { kid: String, reason: String },
    #[error("token key `{0}` appears twice")]
    DuplicateTokenKey(String),
    #[error("token keys are published without a token issuer and audience")]
    MissingTokenIssuer,
    #[error("default group `{0}` is not a group")]
    UnknownDefaultGroup(String),
    #[error("settings document `{name}` is invalid: {reason}")]
    BadSettingsDocument { name: String, reason: String },
    #[error("settings document `{0}` appears twice")]
    DuplicateSettingsDocument(String),
    #[error("settings document `{document}` refers to unknown group `{group}`")]
    SettingsForUnknownGroup { document: String, group: String },
    #[error("telemetry collector URL is invalid: {0}")]
    BadTelemetryUrl(String),
    #[error("route for `{model}` has an invalid price: {reason}")]
    BadPrice { model: String, reason: String },
    #[error("budgets are invalid: {0}")]
    BadBudget(String),
    #[error("rate limits are invalid: {0}")]
    BadRateLimit(String),
}

/// The validated, indexed policy a data plane enforces. Immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    pub generated_at_unix_ms: i64,
    pub org_id: String,
    pub org_name: String,
    groups: HashMap<String, Group>,
    keys: HashMap<[u8; 32], Arc<ApiKey>>,
    providers: HashMap<String, Arc<Provider>>,
    /// Sorted by id, for stable listings.
    models: BTreeMap<String, Model>,
    routes: HashMap<String, Route>,
    /// Alias → catalogue model id.
    aliases: HashMap<String, String>,
    /// Group ids by group name (gateway tokens carry names).
    group_ids_by_name: HashMap<String, String>,
    tokens: TokenVerifier,
    default_group_ids: Vec<String>,
    /// In merge order: ascending priority, then name.
    settings_documents: Vec<SettingsDocument>,
    telemetry_collector_url: Option<String>,
    budgets: Budgets,
    rate_limits: RateLimits,
    /// Prompts and completions are written to the data plane's logs (an audited admin
    /// setting; off by default).
    pub content_capture: bool,
}

impl Snapshot {
    /// The spend caps and their settings.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// The rate limits and upstream ceilings.
    pub fn rate_limits(&self) -> &RateLimits {
        &self.rate_limits
    }

    /// Finds the active key for a presented secret.
    pub fn authenticate(&self, secret: &str, now_unix_s: i64) -> Result<&Arc<ApiKey>, AuthError> {
        if secret.is_empty() {
            return Err(AuthError::Missing);
        }
        let key = self
            .keys
            .get(&secret_sha256(secret))
            .ok_or(AuthError::Unknown)?;
        if key.is_expired(now_unix_s) {
            return Err(AuthError::Expired);
        }
        Ok(key)
    }

    /// Checks that `key` may call `model` and returns where to send it.
    pub fn authorize(&self, key: &ApiKey, model: &str) -> Result<&Route, AccessError> {
        self.authorize_access(&key.access, model)
    }

    pub(super) fn authorize_access(
        &self,
        access: &ModelAccess,
        model: &str,
    ) -> Result<&Route, AccessError> {
        let canonical = self.canonical_model(model);
        if !self.models.contains_key(canonical) {
            return Err(AccessError::UnknownModel(model.to_owned()));
        }
        // Groups grant catalogue models; granting an alias by name works too.
        if !access.allows(canonical) && !access.allows(model) {
            return Err(AccessError::Denied(model.to_owned()));
        }
        self.routes
            .get(canonical)
            .ok_or_else(|| AccessError::NoRoute(model.to_owned()))
    }

    /// The catalogue model an id names: itself, or the model an alias stands for.
    pub fn canonical_model<'a>(&'a self, model: &'a str) -> &'a str {
        self.aliases.get(model).map_or(model, String::as_str)
    }

    /// Aliases and the models they stand for.
    pub fn aliases(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.aliases.iter().map(|(a, m)| (a.as_str(), m.as_str()))
    }

    /// The models `key` may call, sorted by id.
    pub fn visible_models<'a>(&'a self, key: &'a ApiKey) -> impl Iterator<Item = &'a Model> + 'a {
        self.models
            .values()
            .filter(move |m| key.access.allows(&m.id))
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// The name of group `id`, or the id itself for a group not in the snapshot.
    pub fn group_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.group(id).map_or(id, |g| g.name.as_str())
    }

    pub fn provider(&self, id: &str) -> Option<&Arc<Provider>> {
        self.providers.get(id)
    }

    pub fn route(&self, model: &str) -> Option<&Route> {
        self.routes.get(model)
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

impl TryFrom<pb::Snapshot> for Snapshot {
    type Error = InvalidSnapshot;

    fn try_from(pb: pb::Snapshot) -> Result<Self, Self::Error> {
        if pb.version == 0 {
            return Err(InvalidSnapshot::ZeroVersion);
        }
        let groups = convert_groups(pb.groups)?;
        let keys = convert_keys(pb.api_keys, &groups)?;
        let providers = convert_providers(pb.providers)?;
        let models = convert_models(pb.models)?;
        let routes = convert_routes(pb.routes, &models, &providers)?;
        let aliases = convert_aliases(pb.aliases, &models)?;
        let tokens = identity::convert_tokens(
            pb.token_issuer,
            pb.token_audience,
            pb.token_keys,
            pb.revoked_session_ids,
            pb.disabled_principal_ids,
        )?;
        for id in &pb.default_group_ids {
            if !groups.contains_key(id) {
                return Err(InvalidSnapshot::UnknownDefaultGroup(id.clone()));
            }
        }
        let settings_documents = identity::convert_settings(pb.settings_documents, &groups)?;
        let telemetry_collector_url = if pb.telemetry_collector_url.is_empty() {
            None
        } else {
            Some(
                crate::provider::base_url(&pb.telemetry_collector_url)
                    .map_err(InvalidSnapshot::BadTelemetryUrl)?,
            )
        };
        let budgets =
            Budgets::from_pb(pb.budgets, pb.budget_settings).map_err(InvalidSnapshot::BadBudget)?;
        let rate_limits =
            RateLimits::from_pb(pb.rate_limits).map_err(InvalidSnapshot::BadRateLimit)?;
        let group_ids_by_name = groups
            .values()
            .map(|g| (g.name.clone(), g.id.clone()))
            .collect();
        Ok(Snapshot {
            version: pb.version,
            generated_at_unix_ms: pb.generated_at_unix_ms,
            org_id: pb.org_id,
            org_name: pb.org_name,
            groups,
            keys,
            providers,
            models,
            routes,
            aliases,
            group_ids_by_name,
            tokens,
            default_group_ids: pb.default_group_ids,
            settings_documents,
            telemetry_collector_url,
            budgets,
            rate_limits,
            content_capture: pb.content_capture,
        })
    }
}

fn convert_groups(groups: Vec<pb::Group>) -> Result<HashMap<String, Group>, InvalidSnapshot> {
    let mut out = HashMap::with_capacity(groups.len());
    for g in groups {
        if g.allowed_models.iter().any(String::is_empty) {
            return Err(InvalidSnapshot::EmptyAllowedModel { group: g.name });
        }
        let access = if g.allowed_models.iter().any(|m| m == "*") {
            ModelAccess::All
        } else {
            ModelAccess::Only(g.allowed_models.into_iter().collect())
        };
        let group = Group {
            id: g.id.clone(),
            name: g.name,
            access,
        };
        if out.insert(g.id.clone(), group).is_some() {
            return Err(InvalidSnapshot::DuplicateGroup(g.id));
        }
    }
    Ok(out)
}

fn convert_keys(
    keys: Vec<pb::ApiKey>,
    groups: &HashMap<String, Group>,
) -> Result<HashMap<[u8; 32], Arc<ApiKey>>, InvalidSnapshot> {
    let mut principals: HashMap<String, Arc<Principal>> = HashMap::new();
    let mut out = HashMap::with_capacity(keys.len());
    for k in keys {
        let hash: [u8; 32] =
            k.secret_sha256
                .as_slice()
                .try_into()
                .map_err(|_| InvalidSnapshot::BadKeyHash {
                    key: k.id.clone(),
                    len: k.secret_sha256.len(),
                })?;
        let kind = match pb::PrincipalKind::try_from(k.principal_kind) {
            Ok(pb::PrincipalKind::User) => PrincipalKind::User,
            Ok(pb::PrincipalKind::ServiceAccount) => PrincipalKind::ServiceAccount,
            _ => return Err(InvalidSnapshot::UnspecifiedPrincipalKind { key: k.id }),
        };
        let mut access = ModelAccess::none();
        for gid in &k.group_ids {
            let group = groups
                .get(gid)
                .ok_or_else(|| InvalidSnapshot::UnknownGroup {
                    key: k.id.clone(),
                    group: gid.clone(),
                })?;
            access = access.union(&group.access);
        }
        let principal = principals
            .entry(k.principal_id.clone())
            .or_insert_with(|| {
                Arc::new(Principal {
                    id: k.principal_id.clone(),
                    kind,
                    name: k.principal_name.clone(),
                    email: k.principal_email.clone(),
                })
            })
            .clone();
        let key = ApiKey {
            id: k.id.clone(),
            name: k.name,
            principal,
            group_ids: k.group_ids,
            expires_at_unix_s: (k.expires_at_unix_s != 0).then_some(k.expires_at_unix_s),
            access,
        };
        if out.insert(hash, Arc::new(key)).is_some() {
            return Err(InvalidSnapshot::DuplicateKey(k.id));
        }
    }
    Ok(out)
}

fn convert_providers(
    providers: Vec<pb::Provider>,
) -> Result<HashMap<String, Arc<Provider>>, InvalidSnapshot> {
    let mut out = HashMap::with_capacity(providers.len());
    for p in providers {
        let provider = Provider::from_pb(p)?;
        let id = provider.id.clone();
        if out.insert(id.clone(), Arc::new(provider)).is_some() {
            return Err(InvalidSnapshot::DuplicateProvider(id));
        }
    }
    Ok(out)
}

fn convert_aliases(
    aliases: Vec<pb::ModelAlias>,
    models: &BTreeMap<String, Model>,
) -> Result<HashMap<String, String>, InvalidSnapshot> {
    let mut out = HashMap::with_capacity(aliases.len());
    for a in aliases {
        if a.alias.is_empty() || models.contains_key(&a.alias) {
            return Err(InvalidSnapshot::DuplicateAlias(a.alias));
        }
        if !models.contains_key(&a.model) {
            return Err(InvalidSnapshot::AliasForUnknownModel {
                alias: a.alias,
                model: a.model,
            });
        }
        if out.insert(a.alias.clone(), a.model).is_some() {
            return Err(InvalidSnapshot::DuplicateAlias(a.alias));
        }
    }
    Ok(out)
}

fn convert_models(models: Vec<pb::Model>) -> Result<BTreeMap<String, Model>, InvalidSnapshot> {
    let mut out = BTreeMap::new();
    for m in models {
        if m.id.is_empty() {
            return Err(InvalidSnapshot::EmptyModelId);
        }
        let model = Model {
            id: m.id.clone(),
            display_name: if m.display_name.is_empty() {
                m.id.clone()
            } else {
                m.display_name
            },
            max_input_tokens: (m.max_input_tokens != 0).then_some(m.max_input_tokens),
            created_at_unix_s: m.created_at_unix_s,
        };
        if out.insert(m.id.clone(), model).is_some() {
            return Err(InvalidSnapshot::DuplicateModel(m.id));
        }
    }
    Ok(out)
}

fn convert_routes(
    routes: Vec<pb::Route>,
    models: &BTreeMap<String, Model>,
    providers: &HashMap<String, Arc<Provider>>,
) -> Result<HashMap<String, Route>, InvalidSnapshot> {
    let mut out = HashMap::with_capacity(routes.len());
    for r in routes {
        if !models.contains_key(&r.model) {
            return Err(InvalidSnapshot::RouteForUnknownModel(r.model));
        }
        if r.targets.is_empty() {
            return Err(InvalidSnapshot::EmptyRoute(r.model));
        }
        let mut targets = Vec::with_capacity(r.targets.len());
        for t in r.targets {
            let provider =
                providers
                    .get(&t.provider_id)
                    .ok_or_else(|| InvalidSnapshot::UnknownProvider {
                        model: r.model.clone(),
                        provider: t.provider_id.clone(),
                    })?;
            let price = t
                .price
                .map(TargetPrice::try_from)
                .transpose()
                .map_err(|reason| InvalidSnapshot::BadPrice {
                    model: r.model.clone(),
                    reason,
                })?
                .map(Arc::new);
            targets.push(RouteTarget {
                price,
                provider: provider.clone(),
                upstream_model: if t.upstream_model.is_empty() {
                    r.model.clone()
                } else {
                    t.upstream_model
                },
                weight: t.weight.max(1),
                priority: t.priority,
                timeouts: Timeouts::from_pb(t.timeouts.as_ref()).or(provider.timeouts),
            });
        }
        targets.sort_by_key(|t| t.priority);
        let route = Route {
            model: r.model.clone(),
            targets,
        };
        if out.insert(r.model.clone(), route).is_some() {
            return Err(InvalidSnapshot::DuplicateRoute(r.model));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
