//! `tollgate admin`: a client of the control plane's admin gRPC API.

mod args;
mod client;
mod commands;
mod credential_arg;
mod time_arg;
mod usd_arg;

pub use args::{AdminArgs, AdminCommand};
pub use client::{
    AdminClient, AdminServiceClient, AuditAdminClient, IdentityAdminClient, RateLimitAdminClient,
    SettingsAdminClient, SpendAdminClient, connect,
};
pub use commands::{execute, run};

/// Parses `tollgate admin` arguments (the words after `admin`), for embedding and tests.
pub fn parse_args<I, T>(args: I) -> Result<AdminArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser as _;
    #[derive(clap::Parser)]
    #[command(name = "tollgate admin")]
    struct Wrapper {
        #[command(flatten)]
        admin: AdminArgs,
    }
    let argv = std::iter::once(std::ffi::OsString::from("tollgate-admin"))
        .chain(args.into_iter().map(Into::into));
    Wrapper::try_parse_from(argv).map(|w| w.admin)
}
