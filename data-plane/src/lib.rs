//! tollgate-data-plane: the request path of Tollgate.
//!
//! A data plane authenticates callers against the policy snapshot streamed from the control
//! plane, authorizes the requested model, forwards the request to the routed provider,
//! relays the answer without buffering, meters token usage from the provider's own report,
//! and ships usage records back to the control plane. It never blocks on the control plane
//! while serving: it keeps the last good snapshot, and usage waits in memory (and, when
//! configured, in a local write-ahead journal) until the control plane takes it.
//!
//! It enforces spend caps by spending from slices of them leased from the control plane
//! (see [`budget`]); only when a slice runs short does a request wait for a lease call.
//!
//! Must not depend on a database (no sqlx). The request path works with `tollgate-policy`
//! types only; protobuf types appear only in snapshot sync, usage shipping and the
//! control-plane client.
//!
//! Start one with [`spawn`]; stop it by cancelling the token passed in, then
//! [`DataPlaneHandle::wait`].

mod admin_listener;
mod auth;
mod backoff;
pub mod budget;
mod config;
mod control_plane;
mod error;
mod flight_locks;
mod gateway;
mod listener;
pub mod meter;
pub mod metrics;
mod providers;
pub mod rate_limit;
mod relay;
pub mod request;
mod routing;
mod server;
mod sign_in_limit;
mod snapshot;
pub mod trace_context;
mod upstream;
mod usage;

pub use budget::Clock;
pub use config::{ConfigError, DataPlaneConfig};
pub use control_plane::{ControlPlaneTls, ControlPlaneTlsError};
pub use error::ErrorCode;
pub use listener::{ListenerLimits, TlsError, TlsSettings};
pub use providers::CredentialReferences;
pub use server::{DataPlaneHandle, ShutdownError, StartError, spawn};
pub use sign_in_limit::SignInLimitSettings;
pub use usage::{JournalError, ShipperError};
