//! Connected admin clients (`Admin`, `IdentityAdmin`, `SettingsAdmin`, `SpendAdmin`,
//! `AuditAdmin`, `RateLimitAdmin`) sharing one channel and sending the admin key on every call.

use std::ops::{Deref, DerefMut};

use anyhow::Context as _;
use tollgate_proto::v1::{
    admin_client, audit_admin_client, identity_admin_client, rate_limit_admin_client,
    settings_admin_client, spend_admin_client,
};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::args::AdminArgs;

/// Adds `authorization: Bearer <admin key>`.
#[derive(Clone)]
pub struct AdminAuth {
    header: MetadataValue<tonic::metadata::Ascii>,
}

impl Interceptor for AdminAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, AdminAuth>;

/// The `Admin` service client.
pub type AdminServiceClient = admin_client::AdminClient<Authed>;
/// The `IdentityAdmin` service client.
pub type IdentityAdminClient = identity_admin_client::IdentityAdminClient<Authed>;
/// The `SettingsAdmin` service client.
pub type SettingsAdminClient = settings_admin_client::SettingsAdminClient<Authed>;
/// The `SpendAdmin` service client.
pub type SpendAdminClient = spend_admin_client::SpendAdminClient<Authed>;
/// The `AuditAdmin` service client.
pub type AuditAdminClient = audit_admin_client::AuditAdminClient<Authed>;
/// The `RateLimitAdmin` service client.
pub type RateLimitAdminClient = rate_limit_admin_client::RateLimitAdminClient<Authed>;

/// Clients of every admin service on one channel. Dereferences to the `Admin` client.
#[derive(Clone)]
pub struct AdminClient {
    admin: AdminServiceClient,
    identity: IdentityAdminClient,
    settings: SettingsAdminClient,
    spend: SpendAdminClient,
    audit: AuditAdminClient,
    limits: RateLimitAdminClient,
}

impl AdminClient {
    /// Builds the clients on `channel`, each authenticating with `admin_key`.
    pub fn new(channel: Channel, admin_key: &str) -> anyhow::Result<AdminClient> {
        let mut header: MetadataValue<_> = format!("Bearer {admin_key}")
            .parse()
            .context("the admin key contains characters that cannot be sent in a header")?;
        header.set_sensitive(true);
        let auth = AdminAuth { header };
        Ok(AdminClient {
            admin: admin_client::AdminClient::with_interceptor(channel.clone(), auth.clone()),
            identity: identity_admin_client::IdentityAdminClient::with_interceptor(
                channel.clone(),
                auth.clone(),
            ),
            settings: settings_admin_client::SettingsAdminClient::with_interceptor(
                channel.clone(),
                auth.clone(),
            ),
            spend: spend_admin_client::SpendAdminClient::with_interceptor(
                channel.clone(),
                auth.clone(),
            ),
            audit: audit_admin_client::AuditAdminClient::with_interceptor(
                channel.clone(),
                auth.clone(),
            ),
            limits: rate_limit_admin_client::RateLimitAdminClient::with_interceptor(channel, auth),
        })
    }

    /// The `Admin` service (providers, models, routes, groups, principals, keys, usage).
    pub fn admin(&mut self) -> &mut AdminServiceClient {
        &mut self.admin
    }

    /// The `IdentityAdmin` service (IdP, group mappings, users, sessions, signing keys).
    pub fn identity(&mut self) -> &mut IdentityAdminClient {
        &mut self.identity
    }

    /// The `SettingsAdmin` service (managed settings documents, telemetry relay).
    pub fn settings(&mut self) -> &mut SettingsAdminClient {
        &mut self.settings
    }

    /// The `SpendAdmin` service (prices, spend caps and their settings, spend reports).
    pub fn spend(&mut self) -> &mut SpendAdminClient {
        &mut self.spend
    }

    /// The `AuditAdmin` service (audit log, observability settings, usage export).
    pub fn audit(&mut self) -> &mut AuditAdminClient {
        &mut self.audit
    }

    /// The `RateLimitAdmin` service (rate limits and upstream ceilings).
    pub fn limits(&mut self) -> &mut RateLimitAdminClient {
        &mut self.limits
    }
}

impl Deref for AdminClient {
    type Target = AdminServiceClient;
    fn deref(&self) -> &AdminServiceClient {
        &self.admin
    }
}

impl DerefMut for AdminClient {
    fn deref_mut(&mut self) -> &mut AdminServiceClient {
        &mut self.admin
    }
}

/// Connects to `endpoint` with `admin_key`.
pub async fn connect(endpoint: &str, admin_key: &str) -> anyhow::Result<AdminClient> {
    connect_with_tls(endpoint, admin_key, None).await
}

/// Like [`connect`]; an `https` endpoint is reached over TLS trusting `--ca-file` (else the
/// public web PKI roots) and presenting `--client-cert-file` when given.
pub async fn connect_with_tls(
    endpoint: &str,
    admin_key: &str,
    tls: Option<&AdminArgs>,
) -> anyhow::Result<AdminClient> {
    let mut channel = Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("invalid control-plane endpoint `{endpoint}`"))?;
    if channel.uri().scheme_str() == Some("https") {
        channel = channel
            .tls_config(client_tls(tls)?)
            .context("cannot configure TLS to the control plane")?;
    }
    let channel = channel
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(60))
        .connect()
        .await
        .with_context(|| format!("cannot reach the control plane at {endpoint}"))?;
    AdminClient::new(channel, admin_key)
}

/// TLS settings for an `https` endpoint from `--ca-file` and `--client-cert-file`/`--client-key-file`.
fn client_tls(args: Option<&AdminArgs>) -> anyhow::Result<ClientTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let mut tls = ClientTlsConfig::new();
    tls = match args.and_then(|a| a.ca_file.as_deref()) {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read(path)?)),
        None => tls.with_webpki_roots(),
    };
    if let Some((cert, key)) = args.and_then(|a| {
        a.client_cert_file
            .as_deref()
            .zip(a.client_key_file.as_deref())
    }) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

/// The admin key from `--admin-key`/`TOLLGATE_ADMIN_KEY`, else from the key file.
pub fn admin_key(args: &AdminArgs) -> anyhow::Result<String> {
    if let Some(k) = &args.admin_key {
        return Ok(k.trim().to_owned());
    }
    let k = std::fs::read_to_string(&args.admin_key_file).with_context(|| {
        format!(
            "no admin key: pass --admin-key, set TOLLGATE_ADMIN_KEY, or point --admin-key-file at \
             the file the control plane wrote (tried {})",
            args.admin_key_file.display()
        )
    })?;
    Ok(k.trim().to_owned())
}
