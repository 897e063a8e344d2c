//! tollgate-e2e: the harness for end-to-end tests across real servers — PostgreSQL (the
//! machine's, or a private cluster started on demand), an in-process control plane and data
//! planes, a fake Anthropic upstream speaking the exact wire format, and real clients (the
//! official `anthropic` Python SDK).

pub mod binaries;
pub mod browser;
pub mod claude_cli;
pub mod counting_proxy;
pub mod fake_anthropic;
pub mod fake_bedrock;
pub mod fake_cloud;
pub mod fake_foundry;
pub mod fake_otlp;
pub mod fake_vertex;
pub mod http_server;
pub mod idp;
pub mod killable;
pub mod ledger;
pub mod postgres;
pub mod python;
pub mod servers;
pub mod sigv4_verify;
pub mod stack;

pub use counting_proxy::CountingProxy;
pub use fake_anthropic::{FakeAnthropic, Recorded, Reply};
pub use killable::KillableDataPlane;
pub use stack::{Stack, StackDataPlane};
