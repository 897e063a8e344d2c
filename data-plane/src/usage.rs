//! Usage records: one per metered request, shipped to the control plane.
//!
//! The request path hands a finished record to a [`UsageSink`] (an unbounded channel, so it
//! never waits; with a [`Journal`], the record is appended to it first); the shipper
//! batches and retries them, and keeps the journal bounded. Records carry the request id
//! (UUIDv7) as the idempotency key: re-sending a record is always safe.

mod capture;
mod journal;
mod shipper;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tollgate_policy::{Caller, CounterKey, Snapshot, TargetPrice, Usage};
use tracing::Span;

use crate::budget::Reservation;
use crate::metrics::{FinishedRequest, UsageBacklog, UserLabels};
use crate::rate_limit::RateHold;

pub(crate) use capture::Capture;

pub(crate) use journal::Journal;
pub use journal::JournalError;
pub use shipper::ShipperError;
pub(crate) use shipper::{ShipperSettings, spawn_usage_shipper};

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
    /// What the request cost in micro-USD (0 when nothing was billed). Records journaled by
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
pub(crate) struct UsageSink {
    tx: mpsc::UnboundedSender<UsageRecord>,
    /// Where each record is written before it is queued, when configured.
    journal: Option<Arc<Journal>>,
    /// Records not yet acknowledged (the shipper counts them down).
    backlog: Arc<UsageBacklog>,
}

/// The receiving end, owned by the shipper.
pub(crate) type UsageQueue = mpsc::UnboundedReceiver<UsageRecord>;

#[cfg(test)]
pub(crate) fn usage_channel() -> (UsageSink, UsageQueue) {
    journaled_usage_channel(None)
}

/// Like [`usage_channel`], with every record appended to `journal` (if any) before it is
/// queued.
pub(crate) fn journaled_usage_channel(journal: Option<Arc<Journal>>) -> (UsageSink, UsageQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = UsageSink {
        tx,
        journal,
        backlog: Arc::default(),
    };
    (sink, rx)
}

impl UsageSink {
    fn send(&self, record: UsageRecord) {
        self.backlog.add(1);
        let queue = |record: UsageRecord| self.tx.send(record).map_err(|lost| lost.0.request_id);
        let queued = match &self.journal {
            Some(journal) => journal.append(record, queue),
            None => queue(record),
        };
        if let Err(request_id) = queued {
            self.backlog.acknowledged(1);
            // Only after the shipper has stopped, i.e. past shutdown's final flush.
            if self.journal.is_some() {
                tracing::warn!(%request_id, "usage record produced after shutdown left in the journal for the next start");
            } else {
                tracing::error!(%request_id, "usage record produced after shutdown was lost");
            }
        }
    }

    /// The count of records not yet acknowledged by the control plane.
    pub(crate) fn backlog(&self) -> &Arc<UsageBacklog> {
        &self.backlog
    }
}

/// What a metered request's telemetry needs beyond its record: who called (labels and the
/// log line), the request span, time to first byte and, when enabled, the captured bodies.
#[derive(Debug)]
pub(crate) struct Observed {
    pub caller: Option<Caller>,
    /// The snapshot the request was admitted under (group and provider names).
    pub snapshot: Option<Arc<Snapshot>>,
    /// The `request` span ([`Span::none`] when telemetry is off).
    pub span: Span,
    /// Set when content capture is on.
    pub capture: Option<Box<Capture>>,
    stream_span: Span,
    first_byte: Option<Duration>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            caller: None,
            snapshot: None,
            span: Span::none(),
            capture: None,
            stream_span: Span::none(),
            first_byte: None,
        }
    }
}

impl Observed {
    /// For a request by `caller` under `snapshot`; captures `body` if the snapshot says so.
    pub(crate) fn new(
        caller: &Caller,
        snapshot: &Arc<Snapshot>,
        span: Span,
        body: &bytes::Bytes,
    ) -> Self {
        Observed {
            caller: Some(caller.clone()),
            snapshot: Some(snapshot.clone()),
            span,
            capture: snapshot
                .content_capture
                .then(|| Box::new(Capture::new(body.clone()))),
            ..Observed::default()
        }
    }
}

/// A metered request in flight: becomes a [`UsageRecord`] when the response ends, and
/// settles its spend reservation and rate-limit holds then. Dropped without finishing, the
/// reservation is released and the holds settle at zero tokens.
#[derive(Debug)]
pub(crate) struct PendingUsage {
    record: UsageRecord,
    started: Instant,
    sink: UsageSink,
    price: Option<Arc<TargetPrice>>,
    reservation: Option<Reservation>,
    /// The request's hold on the caller's rate limits.
    rate_hold: Option<RateHold>,
    /// Holds on the upstream ceilings of the target that answers.
    ceiling_holds: Vec<RateHold>,
    observed: Observed,
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
            rate_hold: None,
            ceiling_holds: Vec::new(),
            observed: Observed::default(),
        }
    }

    /// Settles `hold` (the caller's rate limits) with the real token usage when the
    /// response ends.
    pub(crate) fn with_rate_hold(mut self, hold: Option<RateHold>) -> Self {
        self.rate_hold = hold;
        self
    }

    /// Adds a hold on an upstream ceiling of the target serving the request, settled like
    /// the request's own hold.
    pub(crate) fn add_ceiling_hold(&mut self, hold: RateHold) {
        self.ceiling_holds.push(hold);
    }

    /// Adds what the request's telemetry needs (see [`Observed`]).
    pub(crate) fn with_observed(mut self, observed: Observed) -> Self {
        self.observed = observed;
        self
    }

    /// The answer starts relaying to the client: opens the `stream` span.
    pub(crate) fn start_stream(&mut self) {
        self.observed.stream_span = crate::trace_context::stream_span(&self.observed.span);
    }

    /// Notes bytes relayed to the client (time to first byte, content capture).
    pub(crate) fn relayed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.observed.first_byte.is_none() {
            self.observed.first_byte = Some(self.started.elapsed());
        }
        if let Some(capture) = self.observed.capture.as_mut() {
            capture.relayed(data);
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
        let (input, output) = rate_limited_tokens(usage);
        for hold in self
            .rate_hold
            .take()
            .into_iter()
            .chain(self.ceiling_holds.drain(..))
        {
            hold.settle(input, output);
        }
        self.record.outcome = outcome;
        let duration = self.started.elapsed();
        self.record.duration_ms = millis(duration);
        // Recorded inside the request span, so that it ends now (a span ends when last
        // exited) and the log line carries its trace; the stream span ends just before.
        let request_span = std::mem::replace(&mut self.observed.span, Span::none());
        let stream_span = std::mem::replace(&mut self.observed.stream_span, Span::none());
        request_span.in_scope(|| {
            self.observe(usage, duration, &request_span, &stream_span);
            drop(stream_span);
        });
        drop(request_span);
        self.sink.send(self.record);
    }

    /// The usage log line, content capture, metrics and the end of the spans.
    fn observe(&self, usage: &Usage, duration: Duration, span: &Span, stream_span: &Span) {
        let r = &self.record;
        let o = &self.observed;
        let caller = o.caller.as_ref();
        let email = caller.map_or("", |c| c.principal().email.as_str());
        let api_key = caller.map_or("", api_key_name);
        let instruments = crate::metrics::instruments();
        let groups = match (caller, o.snapshot.as_deref()) {
            (Some(caller), Some(snapshot)) if instruments.is_some() || usage_log_enabled() => {
                crate::metrics::group_names(caller, snapshot)
            }
            _ => String::new(),
        };
        let provider = o
            .snapshot
            .as_deref()
            .and_then(|s| s.provider(&r.provider_id))
            .map_or(r.provider_id.as_str(), |p| p.name.as_str());
        let outcome = r.outcome.as_str();
        tracing::info!(
            target: "tollgate::usage",
            request_id = %r.request_id,
            user.email = %email,
            principal_id = %r.principal_id,
            api_key = %api_key,
            key_id = %r.api_key_id,
            groups = %groups,
            model = %r.model,
            provider = %provider,
            upstream_model = %r.upstream_model,
            endpoint = %r.endpoint,
            status = r.status,
            outcome,
            stream = r.stream,
            input_tokens = r.input_tokens,
            output_tokens = r.output_tokens,
            cache_creation_5m_tokens = r.cache_creation_5m_tokens,
            cache_creation_1h_tokens = r.cache_creation_1h_tokens,
            cache_read_tokens = r.cache_read_tokens,
            cost_micro_usd = r.cost_micro_usd,
            duration_ms = r.duration_ms,
            ttft_ms = o.first_byte.map(millis),
            "request"
        );
        if let Some(capture) = &o.capture {
            capture.emit(&r.request_id, email, &r.model);
        }
        if let Some(instruments) = instruments {
            instruments.record_request(&FinishedRequest {
                model: &r.model,
                provider,
                outcome,
                status: r.status,
                user: UserLabels {
                    email,
                    groups: &groups,
                    api_key,
                },
                usage: Some(usage),
                cost_micro_usd: r.cost_micro_usd,
                duration,
                time_to_first_token: o.first_byte,
            });
        }
        if !stream_span.is_disabled() {
            stream_span.record("outcome", outcome);
        }
        if !span.is_disabled() {
            span.record("http.response.status_code", r.status);
            span.record("outcome", outcome);
            if r.status >= 500 || r.outcome == Outcome::UpstreamError {
                span.record("otel.status_code", "ERROR");
            }
        }
    }
}

/// What a finished request counts against input and output token limits: uncached input
/// plus cache writes, and output.
pub(crate) fn rate_limited_tokens(usage: &Usage) -> (u64, u64) {
    let input = usage
        .input_tokens
        .saturating_add(usage.cache_creation_5m_tokens)
        .saturating_add(usage.cache_creation_1h_tokens);
    (input, usage.output_tokens)
}

/// Whether the `tollgate::usage` log line is wanted (its fields are worth building).
pub(crate) fn usage_log_enabled() -> bool {
    tracing::enabled!(target: "tollgate::usage", tracing::Level::INFO)
}

/// The API key's name for an API-key caller; empty for signed-in users.
pub(crate) fn api_key_name(caller: &Caller) -> &str {
    match caller {
        Caller::Key(key) => &key.name,
        Caller::Session(_) => "",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
