//! The snapshot's identity and managed-settings sections: signed-in callers, settings,
//! telemetry — and their conversion from protobuf.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use tollgate_proto::v1 as pb;

use super::{Group, InvalidSnapshot, Model, Route, Snapshot};
use crate::access::{AccessError, ModelAccess};
use crate::caller::{Caller, Session};
use crate::credential::{AuthError, Principal, PrincipalKind};
use crate::settings::{self, ManagedSettings, SettingsDocument};
use crate::token::{self, TokenVerifier};

impl Snapshot {
    /// Authenticates a bearer credential: a `tg_` API key or a gateway access token (JWT).
    pub fn authenticate_bearer(&self, secret: &str, now_unix_s: i64) -> Result<Caller, AuthError> {
        if secret.is_empty() {
            return Err(AuthError::Missing);
        }
        if !token::looks_like_jwt(secret) {
            return self
                .authenticate(secret, now_unix_s)
                .map(|key| Caller::Key(key.clone()));
        }
        let claims = self.tokens.verify(secret, now_unix_s)?;
        let mut group_ids: Vec<String> = Vec::new();
        for name in &claims.groups {
            if let Some(id) = self.group_ids_by_name.get(name)
                && !group_ids.contains(id)
            {
                group_ids.push(id.clone());
            }
        }
        if group_ids.is_empty() {
            group_ids.clone_from(&self.default_group_ids);
        }
        let access = group_ids
            .iter()
            .filter_map(|id| self.groups.get(id))
            .fold(ModelAccess::none(), |acc, g| acc.union(&g.access));
        Ok(Caller::Session(Arc::new(Session {
            id: claims.sid,
            principal: Arc::new(Principal {
                id: claims.sub,
                kind: PrincipalKind::User,
                name: claims.name,
                email: claims.email,
            }),
            group_ids,
            expires_at_unix_s: claims.exp,
            access,
        })))
    }

    /// Checks that `caller` may call `model` (its groups' access and, when its managed
    /// settings set `availableModels`, that list) and returns where to send it.
    pub fn authorize_caller(&self, caller: &Caller, model: &str) -> Result<&Route, AccessError> {
        let route = self.authorize_access(caller.access(), model)?;
        let canonical = self.canonical_model(model);
        if let Some(available) = self.available_models(caller.group_ids())
            && !available
                .iter()
                .any(|m| m.as_str() == Some(model) || m.as_str() == Some(canonical))
        {
            return Err(AccessError::NotInAvailableModels(model.to_owned()));
        }
        Ok(route)
    }

    /// The models `caller` may call (access and `availableModels`), sorted by id.
    pub fn visible_models_for<'a>(
        &'a self,
        caller: &'a Caller,
    ) -> impl Iterator<Item = &'a Model> + 'a {
        let available = self.available_models(caller.group_ids());
        self.models.values().filter(move |m| {
            caller.access().allows(&m.id)
                && available.is_none_or(|list| list.iter().any(|a| a.as_str() == Some(&m.id)))
        })
    }

    /// The `availableModels` the caller's merged settings carry: the highest-priority
    /// applying document that sets it wins (allow-lists replace).
    pub fn available_models(&self, group_ids: &[String]) -> Option<&Vec<serde_json::Value>> {
        self.settings_documents
            .iter()
            .rev()
            .filter(|d| d.applies_to(group_ids))
            .find_map(|d| d.settings.get("availableModels"))
            .and_then(serde_json::Value::as_array)
    }

    /// The merged managed settings for a caller in `group_ids`; `None` when no document
    /// applies.
    pub fn managed_settings(&self, group_ids: &[String]) -> Option<ManagedSettings> {
        settings::merge(
            self.settings_documents
                .iter()
                .filter(|d| d.applies_to(group_ids)),
        )
    }

    /// Where `/v1/metrics|logs|traces` are relayed (no trailing slash); `None` = drop.
    pub fn telemetry_collector_url(&self) -> Option<&str> {
        self.telemetry_collector_url.as_deref()
    }
}

pub(super) fn convert_tokens(
    issuer: String,
    audience: String,
    keys: Vec<pb::TokenKey>,
    revoked_session_ids: Vec<String>,
    disabled_principal_ids: Vec<String>,
) -> Result<TokenVerifier, InvalidSnapshot> {
    if !keys.is_empty() && (issuer.is_empty() || audience.is_empty()) {
        return Err(InvalidSnapshot::MissingTokenIssuer);
    }
    let mut out = HashMap::with_capacity(keys.len());
    for k in keys {
        let bad = |reason: &str| InvalidSnapshot::BadTokenKey {
            kid: k.kid.clone(),
            reason: reason.to_owned(),
        };
        if k.kid.is_empty() {
            return Err(bad("empty kid"));
        }
        if k.alg != "EdDSA" {
            return Err(bad("alg must be EdDSA"));
        }
        if k.public_key.len() != 32 {
            return Err(bad("an Ed25519 public key is 32 bytes"));
        }
        let key = DecodingKey::from_ed_der(&k.public_key);
        if out.insert(k.kid.clone(), key).is_some() {
            return Err(InvalidSnapshot::DuplicateTokenKey(k.kid));
        }
    }
    Ok(TokenVerifier {
        issuer,
        audience,
        keys: out,
        revoked_sessions: revoked_session_ids.into_iter().collect(),
        disabled_principals: disabled_principal_ids.into_iter().collect(),
    })
}

/// Validates the documents and sorts them into merge order (priority, then name).
pub(super) fn convert_settings(
    documents: Vec<pb::SettingsDocument>,
    groups: &HashMap<String, Group>,
) -> Result<Vec<SettingsDocument>, InvalidSnapshot> {
    let mut seen = HashSet::with_capacity(documents.len());
    let mut out = Vec::with_capacity(documents.len());
    for d in documents {
        if !seen.insert(d.id.clone()) {
            return Err(InvalidSnapshot::DuplicateSettingsDocument(d.id));
        }
        if let Some(group) = d.group_ids.iter().find(|g| !groups.contains_key(*g)) {
            return Err(InvalidSnapshot::SettingsForUnknownGroup {
                document: d.name,
                group: group.clone(),
            });
        }
        let settings = match serde_json::from_str::<serde_json::Value>(&d.settings_json) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => {
                return Err(InvalidSnapshot::BadSettingsDocument {
                    name: d.name,
                    reason: "settings must be a JSON object".to_owned(),
                });
            }
            Err(e) => {
                return Err(InvalidSnapshot::BadSettingsDocument {
                    name: d.name,
                    reason: e.to_string(),
                });
            }
        };
        out.push(SettingsDocument {
            id: d.id,
            name: d.name,
            priority: d.priority,
            group_ids: d.group_ids,
            settings,
        });
    }
    out.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}
