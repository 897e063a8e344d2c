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
    Users(UserCmd),
    /// Service accounts (for CI and services).
    #[command(subcommand, name = "service-accounts")]
    ServiceAccounts(PrincipalCmd),
    /// API keys.
    #[command(subcommand)]
    Keys(KeyCmd),
    /// Token usage, grouped and filtered.
    Usage(UsageArgs),
    /// Users as the identity service sees them, with their last sign-in.
    #[command(name = "identity-users")]
    IdentityUsers,
    /// The company identity provider (OIDC) users sign in with.
    #[command(subcommand)]
    Idp(IdpCmd),
    /// Which Tollgate groups an IdP group value grants.
    #[command(subcommand, name = "group-mappings")]
    GroupMappings(GroupMappingCmd),
    /// Groups of signed-in users whose IdP groups map to none.
    #[command(subcommand, name = "default-groups")]
    DefaultGroups(DefaultGroupsCmd),
    /// Sign-in sessions.
    #[command(subcommand)]
    Sessions(SessionCmd),
    /// Keys that sign access tokens.
    #[command(subcommand, name = "signing-keys")]
    SigningKeys(SigningKeyCmd),
    /// Claude Code managed settings documents.
    #[command(subcommand)]
    Settings(SettingsCmd),
    /// Where Claude Code telemetry is relayed.
    #[command(subcommand)]
    Telemetry(TelemetryCmd),
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
pub enum UserCmd {
    #[command(flatten)]
    Principal(PrincipalCmd),
    /// Disable a user (id or email); their sessions are revoked and tokens refused.
    Disable { user: String },
    /// Enable a disabled user (id or email).
    Enable { user: String },
}

#[derive(Debug, Subcommand)]
pub enum IdpCmd {
    /// Replace the IdP configuration (stored as given; the issuer is first contacted at sign-in).
    Set(IdpSetArgs),
    /// Show the IdP configuration (the client secret only as set or not).
    Show,
}

#[derive(Debug, Args)]
pub struct IdpSetArgs {
    /// Issuer URL (its `/.well-known/openid-configuration` must be reachable).
    #[arg(long)]
    pub issuer: String,
    #[arg(long)]
    pub client_id: String,
    /// Name of an environment variable holding the client secret.
    #[arg(long, conflicts_with = "client_secret_file")]
    pub client_secret_env: Option<String>,
    /// File holding the client secret. Without either, the stored secret is kept.
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Default: openid,email,profile (`openid` is always added).
    #[arg(long, value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Claim holding the user's groups, a name or a dotted path. Default: groups.
    #[arg(long, default_value = "")]
    pub groups_claim: String,
    /// Default: email.
    #[arg(long, default_value = "")]
    pub email_claim: String,
    /// Email domains allowed to sign in; none allows every domain.
    #[arg(long, value_delimiter = ',')]
    pub allowed_domains: Vec<String>,
    /// Allowed clock skew when validating IdP tokens. Default: 60.
    #[arg(long, default_value_t = 0)]
    pub clock_skew_secs: u16,
}

#[derive(Debug, Subcommand)]
pub enum GroupMappingCmd {
    /// Replace the Tollgate groups (ids or names) an IdP group value grants.
    Set {
        idp_group: String,
        #[arg(long = "group", value_delimiter = ',', required = true)]
        groups: Vec<String>,
    },
    List,
    Delete {
        idp_group: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DefaultGroupsCmd {
    /// Replace the default groups (ids or names); `--groups ''` grants nothing.
    Set {
        #[arg(long, value_delimiter = ',', required = true, num_args = 0..)]
        groups: Vec<String>,
    },
    Show,
}

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    List {
        /// Only this user's sessions (id or email).
        #[arg(long)]
        user: Option<String>,
        /// Include revoked sessions.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a session by id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCmd {
    /// Sign new tokens with a new key; the old one stays published until its tokens expire.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum SettingsCmd {
    /// Add a settings document.
    Create(SettingsDocArgs),
    /// Replace every field of a settings document.
    Update {
        id: String,
        #[command(flatten)]
        doc: SettingsDocArgs,
    },
    /// Documents in merge order (priority, then name).
    List,
    Delete {
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct SettingsDocArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Groups (ids or names) the document applies to.
    #[arg(long = "group", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// File holding the settings JSON object (`-` for stdin).
    #[arg(long, conflicts_with = "json", required_unless_present = "json")]
    pub file: Option<PathBuf>,
    /// The settings JSON object inline.
    #[arg(long)]
    pub json: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TelemetryCmd {
    /// Relay to an OTLP/HTTP collector base URL (e.g. http://collector:4318); `''` turns it off.
    SetCollector {
        url: String,
    },
    Show,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::parse_args;

    fn parse(words: &[&str]) -> AdminCommand {
        match parse_args(words.iter().copied()) {
            Ok(args) => args.command,
            Err(e) => unreachable!("{words:?}: {e}"),
        }
    }

    #[test]
    fn idp_client_secret_comes_from_env_or_file_only() {
        let base = ["idp", "set", "--issuer", "https://i", "--client-id", "c"];
        let with = |extra: &[&str]| parse_args(base.iter().chain(extra).copied());
        assert!(with(&["--client-secret", "s"]).is_err());
        assert!(with(&["--client-secret-env", "V", "--client-secret-file", "f"]).is_err());
        assert!(with(&["--clock-skew-secs", "-1"]).is_err());
        let AdminCommand::Idp(IdpCmd::Set(a)) = parse(&[
            "idp",
            "set",
            "--issuer",
            "https://i",
            "--client-id",
            "c",
            "--client-secret-env",
            "V",
            "--allowed-domains",
            "a.com,b.com",
        ]) else {
            unreachable!()
        };
        assert_eq!(a.client_secret_env.as_deref(), Some("V"));
        assert_eq!(a.allowed_domains, ["a.com", "b.com"]);
        assert!(a.scopes.is_empty(), "the server applies its default scopes");
    }

    #[test]
    fn default_groups_may_be_set_to_none() {
        for words in [
            &["default-groups", "set", "--groups", ""][..],
            &["default-groups", "set", "--groups"][..],
        ] {
            let AdminCommand::DefaultGroups(DefaultGroupsCmd::Set { groups }) = parse(words) else {
                unreachable!()
            };
            assert!(groups.iter().all(String::is_empty), "{words:?}");
        }
        assert!(parse_args(["default-groups", "set"]).is_err());
    }

    #[test]
    fn users_keep_principal_commands_and_gain_disable() {
        assert!(matches!(
            parse(&["users", "list"]),
            AdminCommand::Users(UserCmd::Principal(PrincipalCmd::List))
        ));
        assert!(matches!(
            parse(&["users", "disable", "a@b.c"]),
            AdminCommand::Users(UserCmd::Disable { .. })
        ));
        assert!(parse_args(["service-accounts", "disable", "x"]).is_err());
    }

    #[test]
    fn settings_take_json_or_file_and_negative_priorities() {
        let AdminCommand::Settings(SettingsCmd::Update { id, doc }) = parse(&[
            "settings",
            "update",
            "d1",
            "--name",
            "n",
            "--priority",
            "-3",
            "--group",
            "a,b",
            "--json",
            "{}",
        ]) else {
            unreachable!()
        };
        assert_eq!((id.as_str(), doc.priority), ("d1", -3));
        assert_eq!(doc.groups, ["a", "b"]);
        assert!(parse_args(["settings", "create", "--name", "n"]).is_err());
        assert!(
            parse_args([
                "settings", "create", "--name", "n", "--json", "{}", "--file", "f"
            ])
            .is_err()
        );
    }
}
