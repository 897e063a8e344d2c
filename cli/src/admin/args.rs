//! Command-line shape of `tollgate admin`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::report::Format;

/// Manage providers, models, routes, groups, users, API keys, and read usage.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Control-plane gRPC endpoint.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// Admin key (`tga_…`). Prefer --admin-key-file or the environment over the command line.
    #[arg(long, env = "TOLLGATE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// File holding the admin key (as written by the control plane at first start).
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_KEY_FILE",
        default_value = ".tollgate/admin-key"
    )]
    pub admin_key_file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Upstream providers.
    #[command(subcommand)]
    Providers(ProviderCmd),
    /// The client-facing model catalogue.
    #[command(subcommand)]
    Models(ModelCmd),
    /// Where each model is served.
    #[command(subcommand)]
    Routes(RouteCmd),
    /// Groups and the models their members may use.
    #[command(subcommand)]
    Groups(GroupCmd),
    /// Users.
    #[command(subcommand)]
    Users(PrincipalCmd),
    /// Service accounts (for CI and services).
    #[command(subcommand, name = "service-accounts")]
    ServiceAccounts(PrincipalCmd),
    /// API keys.
    #[command(subcommand)]
    Keys(KeyCmd),
    /// Token usage, grouped and filtered.
    Usage(UsageArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProviderCmd {
    /// Add a provider.
    Create {
        #[arg(long)]
        name: String,
        /// `demo` (built-in, offline) or `anthropic` (Anthropic Messages API upstream).
        #[arg(long)]
        kind: String,
        /// Base URL for `anthropic`, e.g. https://api.anthropic.com
        #[arg(long, default_value = "")]
        base_url: String,
        /// Name of an environment variable holding the provider's API key.
        #[arg(long)]
        api_key_env: Option<String>,
        /// File holding the provider's API key.
        #[arg(long)]
        api_key_file: Option<PathBuf>,
    },
    List,
    /// Delete a provider (by name or id); it must not be in a route.
    Delete {
        provider: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Add or update a model.
    Upsert {
        id: String,
        #[arg(long, default_value = "")]
        display_name: String,
        #[arg(long, default_value_t = 0)]
        max_input_tokens: u32,
    },
    List,
    Delete {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Set a model's targets, tried in order: `--target PROVIDER[=UPSTREAM_MODEL]`.
    Set {
        model: String,
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a group; `--models` takes ids, or `*` for every model.
    Create {
        name: String,
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
    },
    List,
    Delete {
        group: String,
    },
    /// Replace the models a group may use.
    SetModels {
        group: String,
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCmd {
    Create {
        #[arg(long)]
        name: String,
        /// Users only.
        #[arg(long)]
        email: Option<String>,
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
    },
    List,
    /// Replace the groups of a user or service account (id, email or name).
    SetGroups {
        principal: String,
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create an API key; the secret is printed once.
    Create {
        /// User or service account: id, email or name.
        #[arg(long)]
        principal: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Lifetime such as `30d`, `12h`, `90m`.
        #[arg(long, conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Absolute expiry (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
    },
    List {
        #[arg(long)]
        principal: Option<String>,
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a key by id; every data plane refuses it within a second.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Start (inclusive): `YYYY-MM-DD` (UTC) or RFC 3339.
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive): `YYYY-MM-DD` (UTC) or RFC 3339.
    #[arg(long)]
    pub to: Option<String>,
    /// Group by: any of key, user, model, day, provider (comma-separated, in order).
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    #[arg(long)]
    pub key: Option<String>,
    /// User or service account: id, email or name.
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
}
