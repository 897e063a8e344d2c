//! Usage records: one per metered request, shipped to the control plane.
//!
//! The request path hands a finished record to a [`UsageSink`] (an unbounded channel, so it
//! never waits); the shipper batches, retries and spools them. Records carry the request id
//! (UUIDv7) as the idempotency key: re-sending a record is always safe.

mod shipper;
mod spool;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tollgate_policy::{CounterKey, TargetPrice, Usage};

use crate::budget::Reservation;

pub use shipper::ShipperError;
pub(crate) use shipper::{ShipperSettings, spawn_usage_shipper};
pub use spool::SpoolError;
pub(crate) use spool::read_spool;

/// How a metered request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Complete,
    ClientDisconnected,
    UpstreamError,
    Truncated,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::ClientDisconnected => "client_disconnected",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Truncated => "truncated",
        }
    }
}

/// Everything the control plane needs to bill and attribute one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UsageRecord {
    pub request_id: String,
    pub data_plane_id: String,
    pub started_at_unix_ms: i64,
    pub duration_ms: u64,
    pub api_key_id: String,
    pub principal_id: String,
    /// The client-facing model id.
    pub model: String,
    pub provider_id: String,
    pub upstream_model: String,
    pub endpoint: String,
    pub stream: bool,
    /// The HTTP status the client was sent.
    pub status: u16,
    pub outcome: Outcome,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_5m_tokens: u64,
    pub cache_creation_1h_tokens: u64,
    pub cache_read_tokens: u64,
    /// What the request cost in micro-USD (0 when nothing was billed). Records spooled by
    /// earlier versions load with the spend fields empty.
    #[serde(default)]
    pub cost_micro_usd: u64,
    /// Every spend counter the cost is charged to.
    #[serde(default)]
    pub charges: Vec<CounterKey>,
    /// The caller's group ids at admission.
    #[serde(default)]
    pub group_ids: Vec<String>,
    /// Where the price came from (`catalogue:…`, `override:…`, `fallback:…`).
    #[serde(default)]
    pub price_source: String,
}

impl UsageRecord {
    fn set_usage(&mut self, usage: &Usage) {
        self.input_tokens = usage.input_tokens;
        self.output_tokens = usage.output_tokens;
        self.cache_creation_5m_tokens = usage.cache_creation_5m_tokens;
        self.cache_creation_1h_tokens = usage.cache_creation_1h_tokens;
        self.cache_read_tokens = usage.cache_read_tokens;
    }
}

/// Where finished records go; cloning is cheap.
#[derive(Debug, Clone)]
pub(crate) struct UsageSink(mpsc::UnboundedSender<UsageRecord>);

/// The receiving end, owned by the shipper.
pub(crate) type UsageQueue = mpsc::UnboundedReceiver<UsageRecord>;

pub(crate) fn usage_channel() -> (UsageSink, UsageQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    (UsageSink(tx), rx)
}

impl UsageSink {
    fn send(&self, record: UsageRecord) {
        if let Err(lost) = self.0.send(record) {
            // Only after the shipper has stopped, i.e. past shutdown's final flush.
            tracing::error!(request_id = %lost.0.request_id, "usage record produced after shutdown was lost");
        }
    }
}

/// A metered request in flight: becomes a [`UsageRecord`] when the response ends, and
/// settles its spend reservation then. Dropped without finishing, the reservation is
/// released.
#[derive(Debug)]
pub(crate) struct PendingUsage {
    record: UsageRecord,
    started: Instant,
    sink: UsageSink,
    price: Option<Arc<TargetPrice>>,
    reservation: Option<Reservation>,
}

impl PendingUsage {
    /// `record` carries the request's identity; tokens, duration and outcome are filled in
    /// by [`PendingUsage::finish`].
    pub(crate) fn new(record: UsageRecord, started: Instant, sink: UsageSink) -> Self {
        PendingUsage {
            record,
            started,
            sink,
            price: None,
            reservation: None,
        }
    }

    /// Prices the usage at `price` and settles `reservation` (if the request is capped)
    /// when the response ends.
    pub(crate) fn with_spend(
        mut self,
        price: Option<Arc<TargetPrice>>,
        reservation: Option<Reservation>,
    ) -> Self {
        self.price = price;
        self.reservation = reservation;
        self
    }

    pub(crate) fn status(&self) -> u16 {
        self.record.status
    }

    /// Attributes the request to the target that answers it (after failover, not the one
    /// tried first): its provider, upstream model and price.
    pub(crate) fn serve_from(&mut self, target: &tollgate_policy::RouteTarget) {
        if self.record.provider_id != target.provider.id {
            self.record.provider_id.clone_from(&target.provider.id);
        }
        if self.record.upstream_model != target.upstream_model {
            self.record
                .upstream_model
                .clone_from(&target.upstream_model);
        }
        if let Some(price) = &target.price
            && self.record.price_source != price.source
        {
            self.record.price_source.clone_from(&price.source);
        }
        self.price.clone_from(&target.price);
    }

    pub(crate) fn set_status(&mut self, status: u16) {
        self.record.status = status;
    }

    /// Records the request's usage and cost, settles its reservation and writes its log
    /// line.
    pub(crate) fn finish(mut self, usage: &Usage, outcome: Outcome) {
        self.record.set_usage(usage);
        let cost = self.price.as_ref().map_or(0, |p| p.cost(usage));
        self.record.cost_micro_usd = cost;
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(cost);
        }
        self.record.outcome = outcome;
        self.record.duration_ms =
            u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let r = &self.record;
        tracing::info!(
            request_id = %r.request_id,
            key_id = %r.api_key_id,
            model = %r.model,
            status = r.status,
            duration_ms = r.duration_ms,
            stream = r.stream,
            outcome = outcome.as_str(),
            input_tokens = r.input_tokens,
            output_tokens = r.output_tokens,
            cost_micro_usd = r.cost_micro_usd,
            "request"
        );
        self.sink.send(self.record);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
pub(crate) fn test_record(id: &str) -> UsageRecord {
    UsageRecord {
        request_id: id.to_owned(),
        data_plane_id: "dp".into(),
        started_at_unix_ms: 1,
        duration_ms: 2,
        api_key_id: "k".into(),
        principal_id: "p".into(),
        model: "m".into(),
        provider_id: "pr".into(),
        upstream_model: "um".into(),
        endpoint: "messages".into(),
        stream: true,
        status: 200,
        outcome: Outcome::Complete,
        input_tokens: 3,
        output_tokens: 4,
        cache_creation_5m_tokens: 5,
        cache_creation_1h_tokens: 6,
        cache_read_tokens: 7,
        cost_micro_usd: 8,
        charges: vec![CounterKey {
            budget_id: "b".into(),
            subject_id: String::new(),
            window_start_unix_s: 86_400,
        }],
        group_ids: vec!["g".into()],
        price_source: "catalogue:m".into(),
    }
}
