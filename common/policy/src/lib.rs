//! tollgate-policy: the enforceable snapshot model and its pure evaluation.
//!
//! The control plane compiles policy into a `tollgate_proto::v1::Snapshot`; both planes
//! convert it with [`Snapshot::try_from`], so a snapshot the control plane publishes is one
//! every data plane accepts. Evaluation (authenticate a key, authorize a model, pick a route)
//! is pure: no I/O, no async runtime, no clock — callers pass `now`.

mod access;
mod budget;
mod caller;
mod credential;
mod pricing;
mod provider;
mod rate_limit;
mod scope_index;
mod settings;
mod snapshot;
mod token;
mod usage;

pub use access::{AccessError, ModelAccess};
pub use budget::{
    AppliedBudget, Budget, BudgetScope, BudgetSettings, Budgets, CounterKey, OutageMode, Period,
    Window, civil_from_unix_s, unix_s_from_civil,
};
pub use caller::{Caller, Session};
pub use credential::{ApiKey, AuthError, Principal, PrincipalKind, secret_sha256};
pub use pricing::{MICRO_USD_PER_USD, PriceRates, TargetPrice, UNIT_MULTIPLIER_BPS, format_usd};
pub use provider::{
    AnthropicProvider, BEDROCK_ANTHROPIC_VERSION, BedrockApi, BedrockAuth, BedrockProvider,
    FoundryAuth, FoundryProvider, InvalidProvider, Provider, ProviderKind, SecretSource, Timeouts,
    VERTEX_ANTHROPIC_VERSION, VertexAuth, VertexProvider,
};
pub use rate_limit::{
    AppliedLimit, BucketKey, RateLimit, RateLimitKind, RateLimitScope, RateLimits,
};
pub use settings::{ManagedSettings, SettingsDocument, canonical_json, checksum};
pub use snapshot::{Group, InvalidSnapshot, Model, Route, RouteTarget, Snapshot};
pub use token::{TOKEN_LEEWAY_S, TokenClaims};
pub use usage::Usage;
