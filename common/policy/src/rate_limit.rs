//! Rate limits: rules from the snapshot and the buckets a request is counted in.
//!
//! A [`RateLimit`] is a rule ("group eng, 60 requests per minute, per member"); a
//! [`BucketKey`] names the one bucket a request is counted in under that rule (limit ×
//! subject). Per-minute kinds are token buckets held by the control plane (capacity `limit`,
//! refilled at `limit` per 60 s); concurrency limits are slots. Provider-scope limits are
//! upstream ceilings: they count every request sent to a provider, whoever makes it.

use std::collections::HashMap;
use std::sync::Arc;

use tollgate_proto::v1 as pb;

use crate::caller::Caller;
use crate::scope_index::{CallerScope, ScopeIndex};

/// Whose requests a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateLimitScope {
    Org,
    Group,
    User,
    Key,
    /// An upstream ceiling on one provider (optionally one upstream model there).
    Provider,
}

impl RateLimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitScope::Org => "org",
            RateLimitScope::Group => "group",
            RateLimitScope::User => "user",
            RateLimitScope::Key => "key",
            RateLimitScope::Provider => "provider",
        }
    }

    /// The scope of a wire `RateLimitScope`; `None` when unspecified or unknown.
    pub fn from_pb(value: i32) -> Option<Self> {
        match pb::RateLimitScope::try_from(value) {
            Ok(pb::RateLimitScope::Org) => Some(RateLimitScope::Org),
            Ok(pb::RateLimitScope::Group) => Some(RateLimitScope::Group),
            Ok(pb::RateLimitScope::User) => Some(RateLimitScope::User),
            Ok(pb::RateLimitScope::Key) => Some(RateLimitScope::Key),
            Ok(pb::RateLimitScope::Provider) => Some(RateLimitScope::Provider),
            _ => None,
        }
    }

    pub fn to_pb(self) -> pb::RateLimitScope {
        match self {
            RateLimitScope::Org => pb::RateLimitScope::Org,
            RateLimitScope::Group => pb::RateLimitScope::Group,
            RateLimitScope::User => pb::RateLimitScope::User,
            RateLimitScope::Key => pb::RateLimitScope::Key,
            RateLimitScope::Provider => pb::RateLimitScope::Provider,
        }
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateLimitKind {
    RequestsPerMinute,
    InputTokensPerMinute,
    OutputTokensPerMinute,
    ConcurrentRequests,
}

impl RateLimitKind {
    pub const ALL: [RateLimitKind; 4] = [
        RateLimitKind::RequestsPerMinute,
        RateLimitKind::InputTokensPerMinute,
        RateLimitKind::OutputTokensPerMinute,
        RateLimitKind::ConcurrentRequests,
    ];

    /// The name used in the database, the CLI and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitKind::RequestsPerMinute => "requests_per_minute",
            RateLimitKind::InputTokensPerMinute => "input_tokens_per_minute",
            RateLimitKind::OutputTokensPerMinute => "output_tokens_per_minute",
            RateLimitKind::ConcurrentRequests => "concurrent_requests",
        }
    }

    /// The kind named by [`RateLimitKind::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        RateLimitKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Token-bucket kinds (refilled over a minute); `false` for concurrency slots.
    pub fn per_minute(self) -> bool {
        self != RateLimitKind::ConcurrentRequests
    }

    pub fn from_pb(value: i32) -> Option<Self> {
        match pb::RateLimitKind::try_from(value) {
            Ok(pb::RateLimitKind::RequestsPerMinute) => Some(RateLimitKind::RequestsPerMinute),
            Ok(pb::RateLimitKind::InputTokensPerMinute) => {
                Some(RateLimitKind::InputTokensPerMinute)
            }
            Ok(pb::RateLimitKind::OutputTokensPerMinute) => {
                Some(RateLimitKind::OutputTokensPerMinute)
            }
            Ok(pb::RateLimitKind::ConcurrentRequests) => Some(RateLimitKind::ConcurrentRequests),
            _ => None,
        }
    }

    pub fn to_pb(self) -> pb::RateLimitKind {
        match self {
            RateLimitKind::RequestsPerMinute => pb::RateLimitKind::RequestsPerMinute,
            RateLimitKind::InputTokensPerMinute => pb::RateLimitKind::InputTokensPerMinute,
            RateLimitKind::OutputTokensPerMinute => pb::RateLimitKind::OutputTokensPerMinute,
            RateLimitKind::ConcurrentRequests => pb::RateLimitKind::ConcurrentRequests,
        }
    }
}

/// One rate limit, as a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub id: String,
    pub scope: RateLimitScope,
    /// Group, principal, API key or provider id; empty for the org.
    pub scope_id: String,
    /// Group limits: every member has a bucket of their own.
    pub per_member: bool,
    /// Only requests for this model count (catalogue id; provider scope: upstream model id).
    pub model: Option<String>,
    pub kind: RateLimitKind,
    /// Requests or tokens per minute, or requests in flight (>= 1).
    pub limit: u64,
}

impl RateLimit {
    fn counts_model(&self, model: &str) -> bool {
        self.model.as_deref().is_none_or(|m| m == model)
    }
}

/// One bucket: a limit and the subject it counts for.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct BucketKey {
    pub limit_id: String,
    /// Empty for a shared bucket; the principal id for a per-member group limit.
    pub subject_id: String,
}

impl From<&BucketKey> for pb::BucketKey {
    fn from(k: &BucketKey) -> Self {
        pb::BucketKey {
            limit_id: k.limit_id.clone(),
            subject_id: k.subject_id.clone(),
        }
    }
}

impl From<pb::BucketKey> for BucketKey {
    fn from(k: pb::BucketKey) -> Self {
        BucketKey {
            limit_id: k.limit_id,
            subject_id: k.subject_id,
        }
    }
}

/// A limit that applies to a request, with the bucket it is counted in.
#[derive(Debug, Clone)]
pub struct AppliedLimit {
    pub limit: Arc<RateLimit>,
    pub bucket: BucketKey,
}

/// The snapshot's rate limits, indexed by what they apply to.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    callers: ScopeIndex<RateLimit>,
    by_provider: HashMap<String, Vec<Arc<RateLimit>>>,
}

impl RateLimits {
    /// No caller limit (provider ceilings aside).
    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }

    /// No provider ceiling.
    pub fn no_ceilings(&self) -> bool {
        self.by_provider.is_empty()
    }

    /// Every caller limit (org, groups, user, key) that counts a request of `caller` for
    /// `model` (the catalogue model id), each once; in a stable order (org, groups in the
    /// caller's order, user, key; then as listed in the snapshot).
    pub fn applicable(&self, caller: &Caller, model: &str) -> Vec<AppliedLimit> {
        if self.is_empty() {
            return Vec::new();
        }
        let principal_id = caller.principal().id.as_str();
        let mut out: Vec<AppliedLimit> = Vec::new();
        for limit in self.callers.for_caller(caller) {
            if !limit.counts_model(model) || out.iter().any(|a| a.limit.id == limit.id) {
                continue;
            }
            let subject_id = if limit.per_member {
                principal_id.to_owned()
            } else {
                String::new()
            };
            out.push(AppliedLimit {
                bucket: BucketKey {
                    limit_id: limit.id.clone(),
                    subject_id,
                },
                limit: limit.clone(),
            });
        }
        out
    }

    /// The upstream ceilings of one route target: the provider's limits that count
    /// `upstream_model` (shared buckets).
    pub fn ceilings(&self, provider_id: &str, upstream_model: &str) -> Vec<AppliedLimit> {
        self.by_provider
            .get(provider_id)
            .into_iter()
            .flatten()
            .filter(|l| l.counts_model(upstream_model))
            .map(|limit| AppliedLimit {
                bucket: BucketKey {
                    limit_id: limit.id.clone(),
                    subject_id: String::new(),
                },
                limit: limit.clone(),
            })
            .collect()
    }

    /// Every limit, for listings and metrics.
    pub fn all(&self) -> impl Iterator<Item = &Arc<RateLimit>> {
        self.callers
            .all()
            .chain(self.by_provider.values().flatten())
    }

    /// Converts and indexes the snapshot's rate limits.
    pub fn from_pb(limits: Vec<pb::RateLimit>) -> Result<Self, String> {
        let mut out = RateLimits::default();
        for l in limits {
            if l.id.is_empty() {
                return Err("rate limit without an id".into());
            }
            let scope = RateLimitScope::from_pb(l.scope)
                .ok_or_else(|| format!("rate limit {} has no scope", l.id))?;
            let kind = RateLimitKind::from_pb(l.kind)
                .ok_or_else(|| format!("rate limit {} has no kind", l.id))?;
            if (scope == RateLimitScope::Org) != l.scope_id.is_empty() {
                return Err(format!(
                    "rate limit {}: scope id does not match its scope",
                    l.id
                ));
            }
            if l.per_member && scope != RateLimitScope::Group {
                return Err(format!(
                    "rate limit {}: per_member is for group limits",
                    l.id
                ));
            }
            if l.limit == 0 {
                return Err(format!("rate limit {}: the limit must be at least 1", l.id));
            }
            let limit = Arc::new(RateLimit {
                id: l.id,
                scope,
                scope_id: l.scope_id.clone(),
                per_member: l.per_member,
                model: (!l.model.is_empty()).then_some(l.model),
                kind,
                limit: l.limit,
            });
            let caller_scope = match scope {
                RateLimitScope::Org => CallerScope::Org,
                RateLimitScope::Group => CallerScope::Group,
                RateLimitScope::User => CallerScope::User,
                RateLimitScope::Key => CallerScope::Key,
                RateLimitScope::Provider => {
                    out.by_provider.entry(l.scope_id).or_default().push(limit);
                    continue;
                }
            };
            out.callers.insert(caller_scope, l.scope_id, limit);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(id: &str, scope: pb::RateLimitScope, scope_id: &str, model: &str) -> pb::RateLimit {
        pb::RateLimit {
            id: id.into(),
            scope: scope.into(),
            scope_id: scope_id.into(),
            per_member: false,
            model: model.into(),
            kind: pb::RateLimitKind::RequestsPerMinute.into(),
            limit: 10,
        }
    }

    #[test]
    fn invalid_rules_are_refused() {
        let mut zero = limit("a", pb::RateLimitScope::Org, "", "");
        zero.limit = 0;
        assert!(RateLimits::from_pb(vec![zero]).is_err());
        let mut member = limit("b", pb::RateLimitScope::User, "u", "");
        member.per_member = true;
        assert!(RateLimits::from_pb(vec![member]).is_err());
        assert!(RateLimits::from_pb(vec![limit("c", pb::RateLimitScope::Org, "x", "")]).is_err());
        let mut kindless = limit("d", pb::RateLimitScope::Org, "", "");
        kindless.kind = 0;
        assert!(RateLimits::from_pb(vec![kindless]).is_err());
    }

    #[test]
    fn provider_ceilings_apply_per_upstream_model_and_not_to_callers() {
        let limits = RateLimits::from_pb(vec![
            limit("any", pb::RateLimitScope::Provider, "p1", ""),
            limit("one", pb::RateLimitScope::Provider, "p1", "m1"),
        ])
        .unwrap();
        assert!(limits.is_empty());
        let ids = |v: Vec<AppliedLimit>| {
            v.into_iter()
                .map(|a| a.limit.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(limits.ceilings("p1", "m1")), ["any", "one"]);
        assert_eq!(ids(limits.ceilings("p1", "m2")), ["any"]);
        assert!(limits.ceilings("p2", "m1").is_empty());
        assert_eq!(limits.all().count(), 2);
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in RateLimitKind::ALL {
            assert_eq!(RateLimitKind::parse(kind.as_str()), Some(kind));
            assert_eq!(RateLimitKind::from_pb(kind.to_pb().into()), Some(kind));
        }
        assert!(!RateLimitKind::ConcurrentRequests.per_minute());
    }
}
