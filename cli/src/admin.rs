//! `tollgate admin`: a client of the control plane's admin gRPC API.

mod args;
mod client;
mod commands;
mod time_arg;

pub use args::{AdminArgs, AdminCommand};
pub use client::{AdminClient, connect};
pub use commands::run;
