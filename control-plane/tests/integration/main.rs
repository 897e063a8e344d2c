//! Control-plane behaviour against a real Postgres: one fresh database per test, the control
//! plane started in-process, and real tonic clients over 127.0.0.1.
//!
//! Postgres: `TOLLGATE_TEST_DATABASE_URL` (an admin URL allowed to create databases), else
//! `postgres://postgres@127.0.0.1:5432/postgres`.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on any error"
)]

mod admin;
mod admin_listener;
mod audit;
mod audit_admin;
mod audit_tamper;
mod bootstrap;
mod identity;
mod identity_oidc;
mod migrations;
mod pricing;
mod providers;
mod rate_limits;
mod settings;
mod snapshot;
mod spend;
mod support;
mod sync;
mod tls;
mod usage;
mod usage_export;
