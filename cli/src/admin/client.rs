//! A connected admin client that sends the admin key on every call.

use anyhow::Context as _;
use tollgate_proto::v1::admin_client;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

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

pub type AdminClient =
    admin_client::AdminClient<tonic::service::interceptor::InterceptedService<Channel, AdminAuth>>;

/// Connects to `endpoint` with `admin_key`.
pub async fn connect(endpoint: &str, admin_key: &str) -> anyhow::Result<AdminClient> {
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("invalid control-plane endpoint `{endpoint}`"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(60))
        .connect()
        .await
        .with_context(|| format!("cannot reach the control plane at {endpoint}"))?;
    let mut header: MetadataValue<_> = format!("Bearer {admin_key}")
        .parse()
        .context("the admin key contains characters that cannot be sent in a header")?;
    header.set_sensitive(true);
    Ok(admin_client::AdminClient::with_interceptor(
        channel,
        AdminAuth { header },
    ))
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
