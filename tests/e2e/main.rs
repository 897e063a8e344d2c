//! End-to-end tests: real PostgreSQL, an in-process control plane and data planes, a fake
//! Anthropic upstream on loopback, and real clients. One binary for all of them.

// An integration-test crate: every item in it is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod admin_cli;
mod admin_identity_cli;
mod auth;
mod chaos;
mod claude_code;
mod config_check;
mod deploy;
mod errors;
mod identity;
mod identity_claude;
mod identity_idp;
mod identity_setup;
mod observability;
mod postgres_outage;
mod providers;
mod providers_common;
mod providers_errors;
mod providers_failover;
mod providers_sdk;
mod providers_stream;
mod proxy;
mod rate_limits;
mod resilience;
mod sdk;
mod spend;
mod spend_clients;
mod spend_outage;
mod support;
mod usage;
