//! Claude Code managed settings: per-group documents merged into one per caller.
//!
//! Merge rules (documented in docs/claude-code-rollout.md): the documents applying to the
//! caller (sharing at least one group) are applied in ascending priority, ties broken by
//! name, each over the result so far:
//! - objects merge key by key, recursively (this is how `env` and `permissions` merge);
//! - an array under a key ending in `deny`/`Deny` (e.g. `permissions.deny`) is the union
//!   of both, in first-seen order;
//! - every other value — scalars and all other arrays, including allow-lists such as
//!   `permissions.allow` and `availableModels` — is replaced by the higher priority one.
//!
//! When the result has `availableModels`, `enforceAvailableModels: true` is added.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// One settings document as the snapshot carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsDocument {
    pub id: String,
    pub name: String,
    pub priority: i32,
    pub group_ids: Vec<String>,
    pub settings: Map<String, Value>,
}

impl SettingsDocument {
    pub fn applies_to(&self, group_ids: &[String]) -> bool {
        self.group_ids.iter().any(|g| group_ids.contains(g))
    }
}

/// The merged settings served at `/managed/settings`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedSettings {
    /// Stable id of this exact content (derived from the checksum).
    pub uuid: String,
    /// `sha256:` + hex SHA-256 of [`canonical_json`] of `settings`.
    pub checksum: String,
    pub settings: Value,
}

/// Merges `documents` (already in ascending priority, then name) into the served settings;
/// `None` when there are none.
pub fn merge<'a>(
    documents: impl IntoIterator<Item = &'a SettingsDocument>,
) -> Option<ManagedSettings> {
    let mut merged: Option<Map<String, Value>> = None;
    for doc in documents {
        match merged.as_mut() {
            None => merged = Some(doc.settings.clone()),
            Some(base) => merge_objects(base, &doc.settings),
        }
    }
    let mut merged = merged?;
    if merged.contains_key("availableModels") {
        merged.insert("enforceAvailableModels".to_owned(), Value::Bool(true));
    }
    let settings = Value::Object(merged);
    let checksum = checksum(&settings);
    Some(ManagedSettings {
        uuid: uuid_for(&checksum),
        checksum,
        settings,
    })
}

fn merge_objects(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Object(b)), Value::Object(o)) => merge_objects(b, o),
            (Some(Value::Array(b)), Value::Array(o)) if is_deny_key(key) => {
                for item in o {
                    if !b.contains(item) {
                        b.push(item.clone());
                    }
                }
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn is_deny_key(key: &str) -> bool {
    key.ends_with("deny") || key.ends_with("Deny")
}

/// `sha256:` + hex SHA-256 of the canonical serialisation.
pub fn checksum(settings: &Value) -> String {
    let digest = Sha256::digest(canonical_json(settings).as_bytes());
    format!("sha256:{}", hex::encode(digest))
}

/// A UUID (version 8, RFC 9562 custom) made from the checksum's digest: equal content,
/// equal uuid.
fn uuid_for(checksum: &str) -> String {
    let digest = Sha256::digest(checksum.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// JSON with object keys sorted at every level and no whitespace. Integral floats are
/// written as integers (as JavaScript's `JSON.stringify` does).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                let i = f as i64;
                out.push_str(&i.to_string());
            }
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests;
