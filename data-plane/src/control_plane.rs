//! The gRPC connection to the control plane, shared by snapshot sync, usage shipping, spend
//! leases and rate-limit leases.
//!
//! One lazily connected channel (it reconnects by itself); every call carries the sync token
//! as `authorization: Bearer …`. An `https` URL is reached over TLS ([`tls`]), with a client
//! certificate when one is configured.

mod outage;
mod tls;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::sync_client::SyncClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub(crate) use outage::OutageLatch;
pub use tls::{ControlPlaneTls, ControlPlaneTlsError};

use crate::budget::{CounterState, LeaseAsk, LeaseReply, SpendCallError, SpendSummary};
use crate::rate_limit::{BucketState, RateAsk, RateReply};

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
    #[error(transparent)]
    Tls(#[from] ControlPlaneTlsError),
}

/// [`sync_api_over`] a cleartext channel.
#[cfg(test)]
pub(crate) fn sync_api(url: &str, token: &SecretString) -> Result<SyncApi, ConnectError> {
    sync_api_over(url, token, &ControlPlaneTls::default())
}

/// Builds the client without connecting; the channel connects on first use (over TLS
/// configured by `tls` for an `https` URL).
pub(crate) fn sync_api_over(
    url: &str,
    token: &SecretString,
    tls: &ControlPlaneTls,
) -> Result<SyncApi, ConnectError> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(ConnectError::Url)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if endpoint.uri().scheme_str() == Some("https") {
        endpoint = endpoint
            .tls_config(tls.client_config()?)
            .map_err(|e| ConnectError::Tls(ControlPlaneTlsError::Transport(e)))?;
    }
    let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.expose_secret())
        .parse()
        .map_err(|_| ConnectError::Token)?;
    value.set_sensitive(true);
    Ok(SyncClient::with_interceptor(
        endpoint.connect_lazy(),
        BearerToken(value),
    ))
}

/// A spend call (`Lease`, `SpendSummary`) may take this long before it counts as failed.
const SPEND_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// One `Lease` call: grants, renewals and releases for `asks`, atomically.
pub(crate) async fn lease(
    api: &SyncApi,
    data_plane_id: &str,
    asks: &[LeaseAsk],
) -> Result<LeaseReply, SpendCallError> {
    let request = pb::LeaseRequest {
        data_plane_id: data_plane_id.to_owned(),
        asks: asks
            .iter()
            .map(|a| pb::LeaseAsk {
                counter: Some(pb::CounterKey::from(&a.counter)),
                need_micro_usd: a.need,
                want_micro_usd: a.want,
                release_micro_usd: a.release,
            })
            .collect(),
    };
    let mut request = tonic::Request::new(request);
    request.set_timeout(SPEND_CALL_TIMEOUT);
    let mut api = api.clone();
    let reply = tokio::time::timeout(SPEND_CALL_TIMEOUT, api.lease(request))
        .await
        .map_err(|_| SpendCallError::unreachable("lease call timed out"))?
        .map_err(|status| SpendCallError::from_status(&status))?
        .into_inner();
    if reply.counters.len() != asks.len() {
        return Err(SpendCallError::refused(format!(
            "lease answer has {} counters for {} asks",
            reply.counters.len(),
            asks.len()
        )));
    }
    let server_time = reply.server_time_unix_ms;
    Ok(LeaseReply {
        granted: reply.granted,
        blocked_index: usize::try_from(reply.blocked_index).unwrap_or(usize::MAX),
        counters: reply
            .counters
            .into_iter()
            .map(|c| CounterState {
                granted: c.granted_micro_usd,
                limit: c.limit_micro_usd,
                spent: c.spent_micro_usd,
                lease_reset: c.lease_reset,
                expires_in: (server_time > 0 && c.lease_expires_at_unix_ms > 0).then(|| {
                    let ms = c.lease_expires_at_unix_ms.saturating_sub(server_time);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                }),
            })
            .collect(),
    })
}

/// One `RateLease` call: grants, renewals and releases of rate-limit buckets for `asks`,
/// atomically (all-or-nothing for the grants).
pub(crate) async fn rate_lease(
    api: &SyncApi,
    data_plane_id: &str,
    asks: &[RateAsk],
) -> Result<RateReply, SpendCallError> {
    let request = pb::RateLeaseRequest {
        data_plane_id: data_plane_id.to_owned(),
        asks: asks
            .iter()
            .map(|a| pb::RateLeaseAsk {
                bucket: Some(pb::BucketKey::from(&a.bucket)),
                need: a.need,
                want: a.want,
                release: a.release,
            })
            .collect(),
    };
    let mut request = tonic::Request::new(request);
    request.set_timeout(SPEND_CALL_TIMEOUT);
    let mut api = api.clone();
    let reply = tokio::time::timeout(SPEND_CALL_TIMEOUT, api.rate_lease(request))
        .await
        .map_err(|_| SpendCallError::unreachable("rate lease call timed out"))?
        .map_err(|status| SpendCallError::from_status(&status))?
        .into_inner();
    if reply.buckets.len() != asks.len() {
        return Err(SpendCallError::refused(format!(
            "rate lease answer has {} buckets for {} asks",
            reply.buckets.len(),
            asks.len()
        )));
    }
    let server_time = reply.server_time_unix_ms;
    Ok(RateReply {
        granted: reply.granted,
        blocked_index: usize::try_from(reply.blocked_index).unwrap_or(usize::MAX),
        buckets: reply
            .buckets
            .into_iter()
            .map(|b| BucketState {
                granted: b.granted,
                limit: b.limit,
                available: b.available,
                retry_after_ms: b.retry_after_ms,
                full_in_ms: b.full_in_ms,
                lease_reset: b.lease_reset,
                held: b.held,
                expires_in: (server_time > 0 && b.lease_expires_at_unix_ms > 0).then(|| {
                    let ms = b.lease_expires_at_unix_ms.saturating_sub(server_time);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                }),
            })
            .collect(),
    })
}

/// Day-, week- and month-to-date spend of one principal.
pub(crate) async fn spend_summary(
    api: &SyncApi,
    principal_id: &str,
) -> Result<SpendSummary, SpendCallError> {
    let mut request = tonic::Request::new(pb::SpendSummaryRequest {
        principal_id: principal_id.to_owned(),
    });
    request.set_timeout(SPEND_CALL_TIMEOUT);
    let mut api = api.clone();
    let reply = tokio::time::timeout(SPEND_CALL_TIMEOUT, api.spend_summary(request))
        .await
        .map_err(|_| SpendCallError::unreachable("spend summary timed out"))?
        .map_err(|status| SpendCallError::from_status(&status))?
        .into_inner();
    Ok(SpendSummary {
        day: reply.day_micro_usd,
        week: reply.week_micro_usd,
        month: reply.month_micro_usd,
    })
}

/// Reports breaker states (`ReportTargetHealth`); best effort.
pub(crate) async fn report_target_health(
    api: &SyncApi,
    data_plane_id: &str,
    targets: Vec<pb::TargetHealth>,
) -> Result<(), tonic::Status> {
    let request = pb::TargetHealthReport {
        data_plane_id: data_plane_id.to_owned(),
        targets,
    };
    let mut api = api.clone();
    let call = api.report_target_health(request);
    match tokio::time::timeout(SPEND_CALL_TIMEOUT, call).await {
        Ok(result) => result.map(|_| ()),
        Err(_) => Err(tonic::Status::deadline_exceeded("health report timed out")),
    }
}
