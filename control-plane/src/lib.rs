//! tollgate-control-plane: the system of record and the source of every policy snapshot.
//!
//! It owns Postgres (the [`store`]), compiles the whole policy into one versioned
//! `tollgate_proto::v1::Snapshot` ([`compiler`]), republishes it whenever Postgres says policy
//! changed ([`publisher`]), streams it to data planes and ingests their usage ([`sync`]), and
//! serves the admin API ([`admin`]). [`identity`] signs developers in (device flow through the
//! company IdP, gateway access tokens, sessions) over an optional HTTP listener. Every replica
//! is stateless: Postgres is the only shared state, `LISTEN/NOTIFY` plus a periodic resync keep
//! replicas in step.
//!
//! It must not depend on the data plane; the only policy logic it shares with it is
//! `tollgate-policy`, whose `Snapshot::try_from` validates every snapshot before it is published.
//!
//! Entry points: [`migrate`] and [`spawn`], which returns a [`ControlPlaneHandle`].

pub mod admin;
pub mod audit;
pub mod audit_retention;
mod bootstrap;
mod clock;
pub mod compiler;
mod config;
mod credential;
mod error_report;
mod http;
pub mod identity;
mod metrics;
pub mod pricing;
pub mod publisher;
mod server;
mod status;
pub mod store;
pub mod sync;
mod tls;
mod webhook;

pub use clock::Clock;
pub use config::ControlPlaneConfig;
pub use server::{ControlPlaneHandle, RunError, StartError, spawn};
pub use store::{StoreError, migrate};
pub use tls::{GrpcTls, GrpcTlsError};
