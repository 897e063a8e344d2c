//! Editing a request body's top-level fields for providers with their own dialect.
//!
//! Bedrock and Vertex take the model in the URL and the API version in the body, so a few
//! top-level fields are removed or added. Every value that stays keeps its exact bytes (the
//! `system` array must reach the provider byte-identical), and keys keep their order.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserializer;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level members of a JSON object, in order, values as raw JSON text.
pub struct TopLevel<'a> {
    members: Vec<(Cow<'a, str>, Cow<'a, RawValue>)>,
}

/// The body is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request body is not a JSON object: {0}")]
pub struct EditError(String);

impl<'a> TopLevel<'a> {
    pub fn parse(body: &'a [u8]) -> Result<TopLevel<'a>, EditError> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    out.push((key, value));
                }
                Ok(out)
            }
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let members = de
            .deserialize_map(MembersVisitor)
            .map_err(|e| EditError(e.to_string()))?;
        de.end().map_err(|e| EditError(e.to_string()))?;
        Ok(TopLevel {
            members: members
                .into_iter()
                .map(|(k, v)| (k, Cow::Borrowed(v)))
                .collect(),
        })
    }

    /// The raw JSON of a member.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Replaces a member's value where it stands (or appends the member).
    pub fn set(&mut self, key: &str, value: Box<RawValue>) -> &mut Self {
        match self.members.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = Cow::Owned(value),
            None => self
                .members
                .push((Cow::Owned(key.to_owned()), Cow::Owned(value))),
        }
        self
    }

    /// Removes every member named `key`.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.members.retain(|(k, _)| k != key);
        self
    }

    /// Serialises the kept members in order, then `added` (`key`, raw JSON value) — an added
    /// key replaces a kept one of the same name.
    pub fn to_bytes(&self, added: &[(&str, &RawValue)]) -> Bytes {
        let size: usize = self
            .members
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
            + added
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>()
            + 2;
        let mut out = Vec::with_capacity(size);
        out.push(b'{');
        let mut first = true;
        let mut put = |out: &mut Vec<u8>, key: &str, value: &RawValue| {
            if !first {
                out.push(b',');
            }
            first = false;
            // A key is a plain string: serde_json writes it with the escapes JSON needs.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        };
        for (key, value) in &self.members {
            if added.iter().any(|(k, _)| k == key) {
                continue;
            }
            put(&mut out, key, value.as_ref());
        }
        for (key, value) in added {
            put(&mut out, key, value);
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// A JSON string value as raw JSON (for [`TopLevel::to_bytes`]).
pub fn raw_string(s: &str) -> Box<RawValue> {
    let text = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    RawValue::from_string(text).unwrap_or_else(|_| raw_null())
}

/// A JSON array of strings as raw JSON.
pub fn raw_string_array<'s>(items: impl IntoIterator<Item = &'s str>) -> Box<RawValue> {
    let items: Vec<&str> = items.into_iter().collect();
    let text = serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned());
    RawValue::from_string(text).unwrap_or_else(|_| raw_null())
}

fn raw_null() -> Box<RawValue> {
    // `null` is valid JSON; this cannot fail.
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| Box::<RawValue>::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_and_adds_members_keeping_other_bytes() {
        let body = br#"{"model":"m","system":[{"type":"text","text":"x-anthropic-billing-header: a\u00e9"}],  "stream" : true,"tags":["t"],"max_tokens":10}"#;
        let mut top = TopLevel::parse(body).unwrap();
        top.remove("model").remove("stream").remove("tags");
        let version = raw_string("bedrock-2023-05-31");
        let betas = raw_string_array(["a", "b"]);
        let out = top.to_bytes(&[("anthropic_version", &version), ("anthropic_beta", &betas)]);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"system":[{"type":"text","text":"x-anthropic-billing-header: a\u00e9"}],"max_tokens":10,"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["a","b"]}"#
        );
    }

    #[test]
    fn an_added_key_replaces_the_clients() {
        let body = br#"{"anthropic_version":"2026-10-21","max_tokens":1}"#;
        let top = TopLevel::parse(body).unwrap();
        let v = raw_string("vertex-2023-10-16");
        let out = top.to_bytes(&[("anthropic_version", &v)]);
        assert_eq!(
            &out[..],
            br#"{"max_tokens":1,"anthropic_version":"vertex-2023-10-16"}"#
        );
    }

    #[test]
    fn refuses_non_objects() {
        assert!(TopLevel::parse(b"[1]").is_err());
        assert!(TopLevel::parse(b"{\"a\":1} x").is_err());
    }
}

#[cfg(test)]
mod set_tests {
    use super::*;

    #[test]
    fn set_replaces_in_place_and_appends_new_members() {
        let body = br#"{"id":"m1","model":"up","usage":{"input_tokens":1}}"#;
        let mut top = TopLevel::parse(body).unwrap();
        top.set("model", raw_string("client"))
            .set("extra", raw_string("x"));
        assert_eq!(
            &top.to_bytes(&[])[..],
            br#"{"id":"m1","model":"client","usage":{"input_tokens":1},"extra":"x"}"#
        );
    }
}
