//! The gRPC connection to the control plane, shared by snapshot sync and usage shipping.
//!
//! One lazily connected channel (it reconnects by itself); every call carries the sync token
//! as `authorization: Bearer …`.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tollgate_proto::v1::sync_client::SyncClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The `Sync` service client with the sync token attached.
pub(crate) type SyncApi = SyncClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <sync token>` to every call.
#[derive(Clone)]
pub(crate) struct BearerToken(MetadataValue<Ascii>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("invalid control-plane URL: {0}")]
    Url(#[source] tonic::transport::Error),
    #[error("the sync token contains characters not allowed in a header")]
    Token,
}

/// Builds the client without connecting; the channel connects on first use.
pub(crate) fn sync_api(url: &str, token: &SecretString) -> Result<SyncApi, ConnectError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(ConnectError::Url)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.expose_secret())
        .parse()
        .map_err(|_| ConnectError::Token)?;
    value.set_sensitive(true);
    Ok(SyncClient::with_interceptor(
        endpoint.connect_lazy(),
        BearerToken(value),
    ))
}
