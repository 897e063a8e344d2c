//! Spend caps: rules from the snapshot, UTC windows, counters and reservation estimates.
//!
//! A [`Budget`] is a rule ("group eng, daily, $20, per member"); a [`CounterKey`] names the
//! one counter a request is charged to under that rule (budget × subject × window). The
//! window arithmetic is pure integer calendar math on Unix seconds (UTC; weeks start
//! Monday), so tests can inject any instant.

mod window;

use std::sync::Arc;

use tollgate_proto::v1 as pb;

use crate::caller::Caller;
use crate::pricing::TargetPrice;
use crate::scope_index::{CallerScope, ScopeIndex};

pub use window::{Window, civil_from_unix_s, unix_s_from_civil};

/// Which spend a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    Org,
    Group,
    User,
    Key,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Org => "org",
            BudgetScope::Group => "group",
            BudgetScope::User => "user",
            BudgetScope::Key => "key",
        }
    }
}

/// A budget's reset period (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    /// The period named by [`Period::as_str`].
    pub fn parse(name: &str) -> Option<Period> {
        [Period::Daily, Period::Weekly, Period::Monthly]
            .into_iter()
            .find(|p| p.as_str() == name)
    }

    /// The period of a wire `BudgetPeriod` value; `None` when unspecified or unknown.
    pub fn from_pb(value: i32) -> Option<Period> {
        match pb::BudgetPeriod::try_from(value) {
            Ok(pb::BudgetPeriod::Daily) => Some(Period::Daily),
            Ok(pb::BudgetPeriod::Weekly) => Some(Period::Weekly),
            Ok(pb::BudgetPeriod::Monthly) => Some(Period::Monthly),
            _ => None,
        }
    }

    /// The wire `BudgetPeriod`.
    pub fn to_pb(self) -> pb::BudgetPeriod {
        match self {
            Period::Daily => pb::BudgetPeriod::Daily,
            Period::Weekly => pb::BudgetPeriod::Weekly,
            Period::Monthly => pb::BudgetPeriod::Monthly,
        }
    }

    /// The window containing `now_unix_s`.
    pub fn window(self, now_unix_s: i64) -> Window {
        window::window(self, now_unix_s)
    }
}

/// One spend cap, as a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub id: String,
    pub scope: BudgetScope,
    /// Group, principal or API key id; empty for the org.
    pub scope_id: String,
    pub period: Period,
    pub limit_micro_usd: u64,
    /// Group budgets: every member has a counter of their own.
    pub per_member: bool,
    pub alert_thresholds_percent: Vec<u32>,
}

/// What the data plane does when the control plane cannot be reached and its leases are
/// used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutageMode {
    /// Refuse with 429 (`fetch_error`).
    #[default]
    Closed,
    /// Serve and meter; the ledger catches up when the control plane is back.
    Open,
}

/// Org-wide spend settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSettings {
    pub outage_mode: OutageMode,
    pub lease_ttl_s: u32,
    pub input_bytes_per_token: u32,
    /// `None` = reserve `max_tokens` as sent.
    pub output_estimate_max_tokens: Option<u32>,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            outage_mode: OutageMode::Closed,
            lease_ttl_s: 30,
            input_bytes_per_token: 3,
            output_estimate_max_tokens: None,
        }
    }
}

impl BudgetSettings {
    /// The reservation for a request: body bytes / `input_bytes_per_token` input tokens and
    /// `max_tokens` (bounded by `output_estimate_max_tokens`) output tokens, at `price`.
    pub fn estimate(&self, price: &TargetPrice, body_bytes: usize, max_tokens: u64) -> u64 {
        let (input, output) = self.estimate_tokens(body_bytes, max_tokens);
        price.estimate(input, output)
    }

    /// The tokens a request is estimated at, as `(input, output)`: body bytes /
    /// `input_bytes_per_token` input tokens and `max_tokens` (bounded by
    /// `output_estimate_max_tokens`) output tokens.
    pub fn estimate_tokens(&self, body_bytes: usize, max_tokens: u64) -> (u64, u64) {
        let per_token = u64::from(self.input_bytes_per_token.max(1));
        let input = u64::try_from(body_bytes)
            .unwrap_or(u64::MAX)
            .div_ceil(per_token);
        let output = match self.output_estimate_max_tokens {
            Some(bound) => max_tokens.min(u64::from(bound)),
            None => max_tokens,
        };
        (input, output)
    }
}

/// One counter: a budget, the subject it counts for, and the window.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct CounterKey {
    pub budget_id: String,
    /// Empty for a shared counter; the principal id for a per-member group budget.
    pub subject_id: String,
    pub window_start_unix_s: i64,
}

impl From<&CounterKey> for pb::CounterKey {
    fn from(k: &CounterKey) -> Self {
        pb::CounterKey {
            budget_id: k.budget_id.clone(),
            subject_id: k.subject_id.clone(),
            window_start_unix_s: k.window_start_unix_s,
        }
    }
}

impl From<pb::CounterKey> for CounterKey {
    fn from(k: pb::CounterKey) -> Self {
        CounterKey {
            budget_id: k.budget_id,
            subject_id: k.subject_id,
            window_start_unix_s: k.window_start_unix_s,
        }
    }
}

/// A budget that applies to a request, with the counter and window it is charged to.
#[derive(Debug, Clone)]
pub struct AppliedBudget {
    pub budget: Arc<Budget>,
    pub counter: CounterKey,
    pub window: Window,
}

/// The snapshot's budgets, indexed by what they apply to.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    index: ScopeIndex<Budget>,
    pub settings: BudgetSettings,
}

impl Budgets {
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Every budget that applies to `caller` at `now_unix_s`, each once with its counter; in
    /// a stable order (org, groups in the caller's order, user, key; then period).
    pub fn applicable(&self, caller: &Caller, now_unix_s: i64) -> Vec<AppliedBudget> {
        if self.is_empty() {
            return Vec::new();
        }
        let principal_id = caller.principal().id.as_str();
        let mut out: Vec<AppliedBudget> = Vec::new();
        for budget in self.index.for_caller(caller) {
            // A group listed twice among the caller's groups must not charge its cap twice.
            if out.iter().any(|a| a.budget.id == budget.id) {
                continue;
            }
            let window = budget.period.window(now_unix_s);
            let subject_id = if budget.per_member {
                principal_id.to_owned()
            } else {
                String::new()
            };
            out.push(AppliedBudget {
                counter: CounterKey {
                    budget_id: budget.id.clone(),
                    subject_id,
                    window_start_unix_s: window.start_unix_s,
                },
                budget: budget.clone(),
                window,
            });
        }
        out
    }

    /// Converts and indexes the snapshot's budgets.
    pub fn from_pb(
        budgets: Vec<pb::Budget>,
        settings: Option<pb::BudgetSettings>,
    ) -> Result<Self, String> {
        let mut out = Budgets {
            settings: convert_settings(settings)?,
            ..Budgets::default()
        };
        for b in budgets {
            let (scope, caller_scope) = match pb::BudgetScope::try_from(b.scope) {
                Ok(pb::BudgetScope::Org) => (BudgetScope::Org, CallerScope::Org),
                Ok(pb::BudgetScope::Group) => (BudgetScope::Group, CallerScope::Group),
                Ok(pb::BudgetScope::User) => (BudgetScope::User, CallerScope::User),
                Ok(pb::BudgetScope::Key) => (BudgetScope::Key, CallerScope::Key),
                _ => return Err(format!("budget {} has no scope", b.id)),
            };
            let period = Period::from_pb(b.period)
                .ok_or_else(|| format!("budget {} has no period", b.id))?;
            if b.id.is_empty() {
                return Err("budget without an id".into());
            }
            if (scope == BudgetScope::Org) != b.scope_id.is_empty() {
                return Err(format!(
                    "budget {}: scope id does not match its scope",
                    b.id
                ));
            }
            if b.per_member && scope != BudgetScope::Group {
                return Err(format!("budget {}: per_member is for group budgets", b.id));
            }
            let budget = Arc::new(Budget {
                id: b.id,
                scope,
                scope_id: b.scope_id.clone(),
                period,
                limit_micro_usd: b.limit_micro_usd,
                per_member: b.per_member,
                alert_thresholds_percent: b.alert_thresholds_percent,
            });
            out.index.insert(caller_scope, b.scope_id, budget);
        }
        Ok(out)
    }
}

fn convert_settings(settings: Option<pb::BudgetSettings>) -> Result<BudgetSettings, String> {
    let defaults = BudgetSettings::default();
    let Some(s) = settings else {
        return Ok(defaults);
    };
    let outage_mode = match pb::OutageMode::try_from(s.outage_mode) {
        Ok(pb::OutageMode::Open) => OutageMode::Open,
        Ok(pb::OutageMode::Closed | pb::OutageMode::Unspecified) => OutageMode::Closed,
        Err(_) => return Err(format!("unknown outage mode {}", s.outage_mode)),
    };
    Ok(BudgetSettings {
        outage_mode,
        lease_ttl_s: if s.lease_ttl_s == 0 {
            defaults.lease_ttl_s
        } else {
            s.lease_ttl_s
        },
        input_bytes_per_token: if s.input_bytes_per_token == 0 {
            defaults.input_bytes_per_token
        } else {
            s.input_bytes_per_token
        },
        output_estimate_max_tokens: (s.output_estimate_max_tokens != 0)
            .then_some(s.output_estimate_max_tokens),
    })
}

#[cfg(test)]
mod tests;
