//! Command-line shape of `tollgate admin`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::usd_arg::parse_usd;
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
    /// For an https endpoint: PEM certificates the control plane's certificate must chain to
    /// (default: the public web PKI roots).
    #[arg(long, env = "TOLLGATE_ADMIN_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// For an https endpoint whose control plane requires client certificates (mutual TLS):
    /// the PEM client certificate to present.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_CLIENT_CERT_FILE",
        requires = "client_key_file"
    )]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of --client-cert-file.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_CLIENT_KEY_FILE",
        requires = "client_cert_file"
    )]
    pub client_key_file: Option<PathBuf>,
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
    /// Other client-facing ids for catalogue models.
    #[command(subcommand)]
    Aliases(AliasCmd),
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
    /// Spend caps: set, list, delete, explain what applies to a user; org-wide spend settings.
    #[command(subcommand)]
    Budget(BudgetCmd),
    /// Rate limits: requests and tokens per minute, requests in flight; set, list, delete,
    /// explain what applies to a user; upstream ceilings per provider.
    #[command(subcommand)]
    Limits(LimitsCmd),
    /// Model prices in USD per million tokens, the rule for unpriced models, provider
    /// price multipliers.
    #[command(subcommand)]
    Prices(PriceCmd),
    /// What was spent: by user, group, key, model, provider or day; a user's daily series.
    #[command(subcommand)]
    Spend(SpendCmd),
    /// The tamper-evident audit log: list, export for a SIEM, signed checkpoints, retention.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Whether data planes log prompts and completions (off by default; every change is
    /// audited).
    #[command(name = "content-capture")]
    ContentCapture {
        #[arg(value_enum)]
        state: ContentCaptureArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCmd {
    /// Add a provider.
    ///
    /// Credentials: `--<credential>-file PATH` (read on this machine, `-` for stdin) or
    /// `--<credential>-env VAR` (this machine's environment) store the value encrypted in the
    /// control plane; `--<credential>-ref env:VAR` or `--<credential>-ref file:PATH` store a
    /// reference each data plane resolves from its own environment or files.
    ///
    /// Example: `tollgate admin providers create bedrock-us --kind bedrock --region us-east-1
    /// --aws-access-key-id-ref env:AWS_ACCESS_KEY_ID --aws-secret-access-key-ref
    /// env:AWS_SECRET_ACCESS_KEY`
    Create {
        /// The provider's name (routes refer to it).
        #[arg(required_unless_present = "name_flag", conflicts_with = "name_flag")]
        name: Option<String>,
        /// Same as the positional name (kept for older scripts).
        #[arg(long = "name", id = "name_flag", hide = true)]
        name_flag: Option<String>,
        /// `anthropic`, `bedrock`, `vertex`, `foundry`, or `demo` (built-in, offline).
        #[arg(long, value_enum)]
        kind: ProviderKindArg,
        #[command(flatten)]
        settings: ProviderSettingsArgs,
        #[command(flatten)]
        credentials: CredentialArgs,
    },
    /// Change a provider (name or id): the settings given replace theirs, the others are
    /// kept; credentials not given are kept; `--clear` removes credentials.
    Update {
        provider: String,
        #[command(flatten)]
        settings: ProviderSettingsArgs,
        #[command(flatten)]
        credentials: CredentialArgs,
        /// Credentials to remove, e.g. `--clear api-key` or `--clear
        /// aws-access-key-id,aws-secret-access-key`.
        #[arg(long, value_enum, value_delimiter = ',')]
        clear: Vec<CredentialName>,
    },
    /// Providers with their settings; credentials only as `stored` or as references.
    List,
    /// Delete a provider (by name or id); it must not be in a route.
    Delete { provider: String },
    /// Circuit-breaker state of every route target, as each data plane last reported it.
    Status {
        /// Leave out reports older than this many seconds.
        #[arg(long, default_value_t = 120)]
        max_age_s: u32,
        /// Print JSON (same as `--format json`).
        #[arg(long)]
        json: bool,
    },
}

/// A provider kind on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKindArg {
    Anthropic,
    Bedrock,
    Vertex,
    Foundry,
    Demo,
}

/// Which Bedrock API a provider calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BedrockApiArg {
    /// InvokeModel / InvokeModelWithResponseStream on bedrock-runtime.
    Invoke,
    /// The Messages API on bedrock-mantle.
    Messages,
}

/// A provider's non-secret settings; which apply depends on the kind.
#[derive(Debug, Default, Args)]
pub struct ProviderSettingsArgs {
    /// Endpoint override (required for `anthropic`, e.g. https://api.anthropic.com); `''`
    /// returns a cloud provider to its default endpoint.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// bedrock, vertex: e.g. `us-east-1`; vertex also `global`, `us`, `eu`.
    #[arg(long)]
    pub region: Option<String>,
    /// vertex: the Google Cloud project id.
    #[arg(long)]
    pub project_id: Option<String>,
    /// foundry: the resource in https://{resource}.services.ai.azure.com/anthropic.
    #[arg(long)]
    pub resource: Option<String>,
    /// bedrock: which API to call (default invoke).
    #[arg(long, value_enum)]
    pub bedrock_api: Option<BedrockApiArg>,
    /// bedrock (invoke), vertex: the body `anthropic_version` (default: the provider's).
    #[arg(long)]
    pub anthropic_version: Option<String>,
    /// vertex: OAuth2 token endpoint override (default: the key file's `token_uri`).
    #[arg(long, value_name = "URL")]
    pub token_uri: Option<String>,
    /// TCP + TLS connect timeout for this provider (0 = the data plane default).
    #[arg(long, value_name = "MS")]
    pub connect_timeout_ms: Option<u32>,
    /// Time to the response headers (0 = the data plane default).
    #[arg(long, value_name = "MS")]
    pub first_byte_timeout_ms: Option<u32>,
    /// Longest silence between two chunks of a response (0 = the data plane default).
    #[arg(long, value_name = "MS")]
    pub idle_timeout_ms: Option<u32>,
}

pub use super::credential_arg::{CredentialArgs, CredentialName};

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
    /// Replace a model's targets.
    ///
    /// `--target PROVIDER[:UPSTREAM_MODEL][,weight=N][,priority=N][,connect-timeout-ms=N]
    /// [,first-byte-timeout-ms=N][,idle-timeout-ms=N]`, repeatable. Targets are tried by
    /// ascending priority (default: their position), equal priorities in weighted random
    /// order. `PROVIDER=UPSTREAM_MODEL` is accepted too.
    ///
    /// Example: `tollgate admin routes set claude-sonnet-4-5 --target
    /// bedrock-us:us.anthropic.claude-sonnet-4-5-20250929-v1:0,priority=0 --target
    /// vertex:claude-sonnet-4-5@20250929,priority=1,first-byte-timeout-ms=20000`
    Set {
        model: String,
        #[arg(long = "target", required = true, value_name = "TARGET")]
        targets: Vec<String>,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Make `alias` another client-facing id of catalogue model `model` (replacing what it
    /// pointed at).
    Set {
        alias: String,
        model: String,
    },
    List,
    Delete {
        alias: String,
    },
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
#[command(args_conflicts_with_subcommands = true)]
pub struct UsageArgs {
    #[command(subcommand)]
    pub command: Option<UsageCmd>,
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

#[derive(Debug, Subcommand)]
pub enum UsageCmd {
    /// Every request with its cost, in start order: the usage ledger as evidence.
    ///
    /// `--format csv` writes CSV; any other format JSON lines. Totals go to stderr.
    ///
    /// Example: `tollgate admin usage export --from 2026-11-01 --to 2026-12-01 --format csv
    /// --output november.csv --reconcile`
    Export(UsageExportArgs),
}

#[derive(Debug, Args)]
pub struct UsageExportArgs {
    /// Start (inclusive): `YYYY-MM-DD` (UTC) or RFC 3339. Default: unbounded.
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive): `YYYY-MM-DD` (UTC) or RFC 3339. Default: unbounded.
    #[arg(long)]
    pub to: Option<String>,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also check every spend counter whose window starts in the range against the costs
    /// charged to it (to stderr); exits non-zero when any differs.
    #[arg(long)]
    pub reconcile: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Entries in sequence order (seq, time, actor, action, target).
    ///
    /// Example: `tollgate admin audit list --action provider. --since 2026-11-01`
    List {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Every matching entry as JSON lines, for a SIEM.
    ///
    /// Each line has `seq`, `at`, `actor`, `action`, `target`, `entry` (the payload parsed),
    /// `payload` (the exact text hashed), `prev_hash` and `hash` (hex), so the copy can be
    /// re-verified: hash = SHA-256(prev_hash || payload).
    Export {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Signed checkpoints of the chain head.
    Checkpoints,
    /// Show how long audit entries are kept, or change it (`--days N`, `--forever`).
    ///
    /// Entries are deleted only by a control plane started with `--audit-archive-dir`, after
    /// being archived there, and only up to a signed checkpoint.
    Retention(AuditRetentionArgs),
}

#[derive(Debug, Default, Args)]
pub struct AuditFilterArgs {
    /// Exactly this actor, e.g. `admin:ops` or `user:ana@example.com`.
    #[arg(long)]
    pub actor: Option<String>,
    /// Exactly this action, or every action starting with it when it ends in `.`
    /// (e.g. `provider.`).
    #[arg(long)]
    pub action: Option<String>,
    /// Targets starting with this, e.g. `provider/`.
    #[arg(long)]
    pub target: Option<String>,
    /// Start (inclusive): `YYYY-MM-DD` (UTC) or RFC 3339.
    #[arg(long)]
    pub since: Option<String>,
    /// End (exclusive): `YYYY-MM-DD` (UTC) or RFC 3339.
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct AuditRetentionArgs {
    /// Archive, then delete, entries older than this many days.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500), value_name = "N")]
    pub days: Option<u32>,
    /// Keep entries forever (the default).
    #[arg(long)]
    pub forever: bool,
}

/// `content-capture on|off|status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContentCaptureArg {
    On,
    Off,
    Status,
}

/// The cap's reset period (UTC; weeks start Monday 00:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeriodArg {
    Daily,
    Weekly,
    Monthly,
}

/// What the data planes do when the control plane is unreachable and their leases are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutageModeArg {
    /// Refuse with 429 (`fetch_error`) until the control plane is back (the default).
    Closed,
    /// Keep serving and metering; the ledger catches up when the control plane is back.
    Open,
}

#[derive(Debug, Subcommand)]
pub enum BudgetCmd {
    /// Create or replace the cap of one scope and period.
    ///
    /// Example: `tollgate admin budget set --group eng --period daily --limit-usd 20.00
    /// --per-member --alert 50,80,100`
    ///
    /// Replacing keeps the window's spend; switching an existing group cap between a shared
    /// pool and `--per-member` is refused (delete the cap and set it again).
    Set(BudgetSetArgs),
    /// Every cap, with its scope and limit.
    List,
    /// Delete a cap by id (its counters go with it).
    Delete {
        /// The cap's id, as `budget list` shows it.
        id: String,
    },
    /// Every cap that applies to a user or API key: spend this window, what data planes hold
    /// leased, what is left, when it resets, and which cap blocks.
    Explain(BudgetExplainArgs),
    /// Org-wide spend settings: outage mode, lease TTL, reservation estimates, alert webhook.
    #[command(subcommand)]
    Settings(BudgetSettingsCmd),
}

/// Whom a cap counts: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BudgetScopeArgs {
    /// The whole organisation.
    #[arg(long)]
    pub org: bool,
    /// A group (name or id): a shared pool, or per member with `--per-member`.
    #[arg(long)]
    pub group: Option<String>,
    /// A user (email or id) or service account (name or id).
    #[arg(long)]
    pub user: Option<String>,
    /// One API key (its id).
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct BudgetSetArgs {
    #[command(flatten)]
    pub scope: BudgetScopeArgs,
    /// When the cap resets: UTC midnight, Monday 00:00 UTC, or the 1st of the month UTC.
    #[arg(long, value_enum)]
    pub period: PeriodArg,
    /// The cap in US dollars, e.g. 20.00 (exact to the micro-dollar).
    #[arg(long, value_parser = parse_usd, value_name = "USD")]
    pub limit_usd: u64,
    /// Group caps only: every member gets a counter of this size instead of sharing one pool.
    #[arg(long)]
    pub per_member: bool,
    /// Alert thresholds in whole percent of the cap; each fires once per period.
    /// Default: 50,80,100.
    #[arg(long, value_delimiter = ',', value_name = "PERCENTS")]
    pub alert: Vec<u32>,
}

/// A user or an API key.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BudgetExplainArgs {
    /// A user (email or id) or service account (name or id).
    #[arg(long)]
    pub user: Option<String>,
    /// An API key id: the key's caps plus its owner's.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BudgetSettingsCmd {
    /// The settings in force (the webhook secret only as set or not).
    Show,
    /// Change some settings; the others keep their value.
    Set(BudgetSettingsSetArgs),
}

#[derive(Debug, Args)]
pub struct BudgetSettingsSetArgs {
    /// When the control plane is unreachable and leases are used up: refuse or serve.
    #[arg(long, value_enum)]
    pub outage_mode: Option<OutageModeArg>,
    /// Seconds a data plane's lease lives without renewal (1–3600; default 30). After a data
    /// plane dies, its unused leased spend is usable again after this long.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3600), value_name = "SECONDS")]
    pub lease_ttl_s: Option<u32>,
    /// Input estimate for reservations: request body bytes per token (1–64; default 3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64), value_name = "N")]
    pub input_bytes_per_token: Option<u32>,
    /// Output estimate for reservations: min(max_tokens, N); 0 = max_tokens as sent (default).
    #[arg(long, value_name = "N")]
    pub output_estimate_max_tokens: Option<u32>,
    /// Where alerts are POSTed as JSON.
    #[arg(long, value_name = "URL", conflicts_with = "clear_webhook")]
    pub webhook_url: Option<String>,
    /// File holding the secret that signs webhook bodies (`x-tollgate-signature: sha256=…`).
    #[arg(long, value_name = "PATH", conflicts_with = "clear_webhook")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Remove the webhook URL and secret.
    #[arg(long)]
    pub clear_webhook: bool,
}

#[derive(Debug, Subcommand)]
pub enum LimitsCmd {
    /// Create or replace rate limits of one scope (and model): one limit per kind given.
    ///
    /// A limit is identified by scope, model and kind: setting it again replaces its value.
    /// Several limits may apply to a request (org, its user's groups, the user, the key);
    /// it must fit all of them. Requests over a limit get 429 `rate_limit_error` with
    /// `retry-after`.
    ///
    /// Example: `tollgate admin limits set --group eng --per-member --rpm 60 --input-tpm
    /// 200000 --output-tpm 40000 --concurrency 4`
    ///
    /// Example (an upstream ceiling): `tollgate admin limits set --provider bedrock-us
    /// --model us.anthropic.claude-sonnet-4-5-20250929-v1:0 --rpm 500 --concurrency 50`
    Set(LimitSetArgs),
    /// Every rate limit: scope, model (`*` = every model), kind and value.
    List,
    /// Delete a rate limit by id (its buckets go with it).
    Delete {
        /// The limit's id, as `limits list` shows it.
        id: String,
    },
    /// Every rate limit that applies to a user or API key, and how close each is: units
    /// left in each bucket (or free slots), when it is full again, and which limit blocks.
    Explain(LimitExplainArgs),
}

/// Whose requests a limit counts: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct LimitScopeArgs {
    /// Every request of the organisation (one bucket for everyone).
    #[arg(long)]
    pub org: bool,
    /// A group (name or id): one bucket its members share, or one each with `--per-member`.
    #[arg(long)]
    pub group: Option<String>,
    /// A user (email or id) or service account (name or id).
    #[arg(long)]
    pub user: Option<String>,
    /// One API key (its id).
    #[arg(long)]
    pub key: Option<String>,
    /// An upstream ceiling on a provider (name or id): every request Tollgate sends there,
    /// whoever makes it. Over it, routing tries the model's next target; when every target
    /// is at its ceiling the client gets 529 `overloaded_error`. With `--model`, the model
    /// is the provider's upstream model id.
    #[arg(long)]
    pub provider: Option<String>,
}

/// The limits to set: at least one, each from 1 to 10^12; each becomes its own limit.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct LimitValueArgs {
    /// Requests per minute: a token bucket holding up to N requests, refilled continuously
    /// at N per 60 s (a burst of N is allowed, then one request every 60/N s).
    #[arg(long, value_parser = limit_value(), value_name = "N")]
    pub rpm: Option<u64>,
    /// Input tokens per minute: a token bucket of N tokens refilled at N per 60 s, counting
    /// uncached input and cache writes (not cache reads). An estimate (body bytes / input_bytes_per_token) is
    /// reserved at admission and settled with the usage the provider reports.
    #[arg(long, value_parser = limit_value(), value_name = "N")]
    pub input_tpm: Option<u64>,
    /// Output tokens per minute: a token bucket of N tokens refilled at N per 60 s. The
    /// request's max_tokens (capped by the output_estimate_max_tokens setting) is reserved at
    /// admission and settled with the output the provider reports.
    #[arg(long, value_parser = limit_value(), value_name = "N")]
    pub output_tpm: Option<u64>,
    /// Concurrent requests: at most N in flight at once (a slot is freed when the response
    /// ends, fails, or the client disconnects).
    #[arg(long, value_parser = limit_value(), value_name = "N")]
    pub concurrency: Option<u64>,
}

/// A limit's value: 1 to 10^12.
fn limit_value() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=1_000_000_000_000)
}

#[derive(Debug, Args)]
pub struct LimitSetArgs {
    #[command(flatten)]
    pub scope: LimitScopeArgs,
    /// Group limits only: every member gets their own bucket of this size instead of the
    /// members sharing one.
    #[arg(long)]
    pub per_member: bool,
    /// Count only requests for this model: the catalogue model id clients use (aliases
    /// resolved), or for `--provider` the upstream model id. Default: every model.
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub values: LimitValueArgs,
}

/// A user or an API key, optionally one model.
#[derive(Debug, Args)]
pub struct LimitExplainArgs {
    #[command(flatten)]
    pub who: LimitSubjectArgs,
    /// Only limits that count this model (catalogue id). Default: every limit, each with the
    /// model it counts.
    #[arg(long)]
    pub model: Option<String>,
}

/// A user or an API key: exactly one.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct LimitSubjectArgs {
    /// A user (email or id) or service account (name or id).
    #[arg(long)]
    pub user: Option<String>,
    /// An API key id: the key's limits plus its owner's.
    #[arg(long)]
    pub key: Option<String>,
}

/// Rates in US dollars per million tokens (e.g. `--input 3.00 --output 15.00`).
#[derive(Debug, Args)]
pub struct RateArgs {
    /// Input tokens, USD per million tokens.
    #[arg(long, value_parser = parse_usd, value_name = "USD_PER_MTOK")]
    pub input: u64,
    /// Output tokens, USD per million tokens.
    #[arg(long, value_parser = parse_usd, value_name = "USD_PER_MTOK")]
    pub output: u64,
    /// Cache writes with the 5-minute TTL, USD per million tokens.
    #[arg(long = "cache-write-5m", value_parser = parse_usd, value_name = "USD_PER_MTOK")]
    pub cache_write_5m: u64,
    /// Cache writes with the 1-hour TTL, USD per million tokens.
    #[arg(long = "cache-write-1h", value_parser = parse_usd, value_name = "USD_PER_MTOK")]
    pub cache_write_1h: u64,
    /// Cache reads, USD per million tokens.
    #[arg(long, value_parser = parse_usd, value_name = "USD_PER_MTOK")]
    pub cache_read: u64,
}

/// The long-context tier: every token of a request whose prompt exceeds the threshold.
#[derive(Debug, Args)]
pub struct LongContextArgs {
    /// Prompt tokens (input + cache writes + cache reads) above which the whole request is
    /// priced at the `--lc-*` rates.
    #[arg(
        long,
        value_name = "TOKENS",
        requires_all = ["lc_input", "lc_output", "lc_cache_write_5m", "lc_cache_write_1h", "lc_cache_read"]
    )]
    pub long_context_threshold: Option<u64>,
    /// Long-context rate for input tokens, USD per million tokens.
    #[arg(long, value_parser = parse_usd, value_name = "USD_PER_MTOK", requires = "long_context_threshold")]
    pub lc_input: Option<u64>,
    /// Long-context rate for output tokens, USD per million tokens.
    #[arg(long, value_parser = parse_usd, value_name = "USD_PER_MTOK", requires = "long_context_threshold")]
    pub lc_output: Option<u64>,
    /// Long-context rate for 5-minute cache writes, USD per million tokens.
    #[arg(long = "lc-cache-write-5m", value_parser = parse_usd, value_name = "USD_PER_MTOK", requires = "long_context_threshold")]
    pub lc_cache_write_5m: Option<u64>,
    /// Long-context rate for 1-hour cache writes, USD per million tokens.
    #[arg(long = "lc-cache-write-1h", value_parser = parse_usd, value_name = "USD_PER_MTOK", requires = "long_context_threshold")]
    pub lc_cache_write_1h: Option<u64>,
    /// Long-context rate for cache reads, USD per million tokens.
    #[arg(long, value_parser = parse_usd, value_name = "USD_PER_MTOK", requires = "long_context_threshold")]
    pub lc_cache_read: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum PriceCmd {
    /// The effective price list: the shipped catalogue with admin overrides applied.
    List,
    /// Override one model's price (or price a model the catalogue lacks).
    ///
    /// Example: `tollgate admin prices set claude-sonnet-5 --input 3 --output 15
    /// --cache-write-5m 3.75 --cache-write-1h 6 --cache-read 0.30 --source "contract 2026-09"`
    Set {
        /// Model id as clients send it (or a catalogue id / prefix such as claude-opus-4-8).
        model: String,
        #[command(flatten)]
        rates: RateArgs,
        #[command(flatten)]
        long_context: LongContextArgs,
        /// Free text recorded with the override.
        #[arg(long, default_value = "")]
        source: String,
    },
    /// Remove a model's override; the catalogue price applies again.
    Delete {
        /// Model id of the override.
        model: String,
    },
    /// How models with no price are priced.
    #[command(subcommand)]
    Fallback(FallbackCmd),
    /// Set a provider's price multiplier in basis points (10000 = 1.0x, 11000 = +10%);
    /// 0 returns to the catalogue's rule for the provider.
    Multiplier {
        /// Provider name or id.
        provider: String,
        #[arg(value_name = "BPS")]
        multiplier_bps: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum FallbackCmd {
    /// The rule in force.
    Show,
    /// Price unknown models as the most expensive catalogue model (the default).
    MostExpensive,
    /// Refuse requests for models with no price (400 invalid_request_error).
    Refuse,
    /// Price unknown models at these rates.
    Fixed(RateArgs),
}

#[derive(Debug, Subcommand)]
pub enum SpendCmd {
    /// Spend over a range, grouped and filtered.
    ///
    /// Example: `tollgate admin spend report --from 2026-11-01 --by user,model --format csv`
    Report(SpendReportArgs),
    /// One user's spend per UTC day (days without spend shown as zero).
    Daily(SpendDailyArgs),
}

#[derive(Debug, Args)]
pub struct SpendReportArgs {
    /// Start (inclusive): `YYYY-MM-DD` (UTC) or RFC 3339. Default: unbounded.
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive): `YYYY-MM-DD` (UTC) or RFC 3339. Default: unbounded.
    #[arg(long)]
    pub to: Option<String>,
    /// Group by any of user, group, key, model, provider, day (comma-separated, in order).
    /// A request counts once in each group its caller was in. Default: user.
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// Only this user (email or id) or service account.
    #[arg(long)]
    pub user: Option<String>,
    /// Only requests of members of this group (name or id).
    #[arg(long)]
    pub group: Option<String>,
    /// Only this API key (id).
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// Provider name or id.
    #[arg(long)]
    pub provider: Option<String>,
}

#[derive(Debug, Args)]
pub struct SpendDailyArgs {
    /// User (email or id) or service account.
    #[arg(long)]
    pub user: String,
    /// First day, `YYYY-MM-DD` (UTC). Default: 30 days before today.
    #[arg(long)]
    pub from: Option<String>,
    /// Day after the last, `YYYY-MM-DD` (UTC, exclusive). Default: tomorrow.
    #[arg(long)]
    pub to: Option<String>,
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

    #[test]
    fn audit_and_usage_export_arguments() {
        let AdminCommand::Usage(UsageArgs {
            command: Some(UsageCmd::Export(e)),
            ..
        }) = parse(&["usage", "export", "--from", "2026-11-01", "--reconcile"])
        else {
            unreachable!()
        };
        assert_eq!((e.from.as_deref(), e.reconcile), (Some("2026-11-01"), true));
        assert!(matches!(
            parse(&["usage", "--by", "model"]),
            AdminCommand::Usage(UsageArgs { command: None, .. })
        ));
        let args = parse_args(["usage", "export", "--format", "jsonl"]).unwrap();
        assert_eq!(args.format, Format::Jsonl);
        assert!(parse_args(["audit", "retention", "--days", "3", "--forever"]).is_err());
        assert!(parse_args(["audit", "retention", "--days", "0"]).is_err());
        assert!(matches!(
            parse(&["audit", "retention"]),
            AdminCommand::Audit(AuditCmd::Retention(AuditRetentionArgs {
                days: None,
                forever: false
            }))
        ));
        assert!(parse_args(["content-capture", "maybe"]).is_err());
        assert!(matches!(
            parse(&["content-capture", "on"]),
            AdminCommand::ContentCapture {
                state: ContentCaptureArg::On
            }
        ));
        let AdminCommand::Audit(AuditCmd::List { filter, limit }) =
            parse(&["audit", "list", "--action", "provider.", "--limit", "5"])
        else {
            unreachable!()
        };
        assert_eq!((filter.action.as_deref(), limit), (Some("provider."), 5));
    }

    #[test]
    fn provider_credentials_take_one_source_each_and_never_a_value() {
        let AdminCommand::Providers(ProviderCmd::Create {
            name,
            kind,
            settings,
            credentials,
            ..
        }) = parse(&[
            "providers",
            "create",
            "vx",
            "--kind",
            "vertex",
            "--region",
            "global",
            "--project-id",
            "p",
            "--service-account-json-file",
            "sa.json",
            "--first-byte-timeout-ms",
            "20000",
        ])
        else {
            unreachable!()
        };
        assert_eq!(
            (name.as_deref(), kind),
            (Some("vx"), ProviderKindArg::Vertex)
        );
        assert_eq!(settings.first_byte_timeout_ms, Some(20_000));
        assert_eq!(credentials.given.len(), 1);
        let create = ["providers", "create", "p", "--kind", "anthropic"];
        let with = |extra: &[&str]| parse_args(create.iter().chain(extra).copied());
        assert!(with(&["--api-key", "sk"]).is_err());
        assert!(with(&["--api-key-env", "A", "--api-key-ref", "env:A"]).is_err());
        assert!(with(&["--api-key-ref", "A"]).is_err());
        assert!(with(&["--kind", "openai"]).is_err());
        assert!(parse_args(["providers", "create", "p", "--name", "q", "--kind", "demo"]).is_err());
        assert!(parse_args(["providers", "create", "--kind", "demo"]).is_err());
        assert!(matches!(
            parse(&["providers", "update", "p", "--clear", "api-key,aws-session-token"]),
            AdminCommand::Providers(ProviderCmd::Update { clear, .. }) if clear.len() == 2
        ));
    }
}
