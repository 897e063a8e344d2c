//! The data plane's OpenTelemetry metrics, and the switch that turns request telemetry on.
//!
//! Request telemetry (these metrics and the request spans, see [`crate::trace_context`]) is
//! off until [`set_enabled`] turns it on — the binary does so once the global meter and
//! tracer providers are installed. Off, the request path reads one atomic per request and
//! builds no attributes, spans or buffers. The usage log line (`tollgate::usage`) and content
//! capture (`tollgate::content`) do not depend on the switch.
//!
//! Instruments (names use dots; the Prometheus exporter renders underscores and units):
//!
//! | name | kind | attributes |
//! |---|---|---|
//! | `tollgate.requests` | counter | model, provider, outcome, status_class, user.email, user.groups, api_key |
//! | `tollgate.tokens` | counter | token.type, model, provider, user.email, user.groups, api_key |
//! | `tollgate.cost` | counter (micro-USD) | model, provider, user.email, user.groups, api_key |
//! | `tollgate.request.duration` | histogram (s) | model, provider, outcome |
//! | `tollgate.time_to_first_token` | histogram (s) | model, provider |
//! | `tollgate.upstream.attempts` | counter | provider, outcome |
//! | `tollgate.upstream.failovers` | counter | model, from_provider |
//! | `tollgate.budget.rejections` | counter | scope, user.email |
//! | `tollgate.rate_limit.rejections` | counter | scope, kind |
//! | `tollgate.rate_limit.utilization` | gauge (0..1) | limit_id, scope, kind |
//! | `tollgate.snapshot.version` | gauge | — |
//! | `tollgate.snapshot.staleness` | gauge (s) | — |
//! | `tollgate.usage.backlog` | gauge | — |
//!
//! Never a request id, prompt, credential or token value as an attribute.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
use tollgate_policy::Usage;

use crate::snapshot::SnapshotStore;

/// The instrumentation scope of every data-plane instrument.
pub const METER_NAME: &str = "tollgate-data-plane";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns request telemetry (metrics and spans) on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether request telemetry is on.
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The process's instruments (on the global meter provider), or `None` when telemetry is off.
pub(crate) fn instruments() -> Option<&'static Instruments> {
    if !is_enabled() {
        return None;
    }
    static GLOBAL: OnceLock<Instruments> = OnceLock::new();
    Some(GLOBAL.get_or_init(|| Instruments::new(&opentelemetry::global::meter(METER_NAME))))
}

/// Latency buckets in seconds (LLM calls run from milliseconds to minutes).
const SECONDS_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The synchronous instruments, created once.
pub(crate) struct Instruments {
    requests: Counter<u64>,
    tokens: Counter<u64>,
    cost: Counter<u64>,
    duration: Histogram<f64>,
    time_to_first_token: Histogram<f64>,
    upstream_attempts: Counter<u64>,
    upstream_failovers: Counter<u64>,
    budget_rejections: Counter<u64>,
    rate_limit_rejections: Counter<u64>,
}

/// Who a request acted for, as metric attributes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UserLabels<'a> {
    pub email: &'a str,
    /// Group names, sorted and comma-joined.
    pub groups: &'a str,
    /// The API key's name; empty for signed-in users.
    pub api_key: &'a str,
}

/// One finished request, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FinishedRequest<'a> {
    pub model: &'a str,
    pub provider: &'a str,
    pub outcome: &'a str,
    pub status: u16,
    pub user: UserLabels<'a>,
    /// `None` for requests that never reached metering (rejections).
    pub usage: Option<&'a Usage>,
    pub cost_micro_usd: u64,
    pub duration: Duration,
    pub time_to_first_token: Option<Duration>,
}

/// The caller's group names (ids where a group is unknown), sorted and comma-joined.
pub(crate) fn group_names(
    caller: &tollgate_policy::Caller,
    snapshot: &tollgate_policy::Snapshot,
) -> String {
    let mut names: Vec<&str> = caller
        .group_ids()
        .iter()
        .map(|id| snapshot.group(id).map_or(id.as_str(), |g| g.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn kv(key: &'static str, value: &str) -> KeyValue {
    KeyValue::new(key, value.to_owned())
}

impl Instruments {
    /// Creates every synchronous instrument on `meter`.
    pub(crate) fn new(meter: &Meter) -> Self {
        Instruments {
            requests: meter
                .u64_counter("tollgate.requests")
                .with_description("Model requests handled, by outcome")
                .with_unit("{request}")
                .build(),
            tokens: meter
                .u64_counter("tollgate.tokens")
                .with_description("Tokens used, as the provider reported them, by type")
                .with_unit("{token}")
                .build(),
            cost: meter
                .u64_counter("tollgate.cost")
                .with_description("What requests cost, in micro-USD")
                .with_unit("micro-USD")
                .build(),
            duration: meter
                .f64_histogram("tollgate.request.duration")
                .with_description("Request start to the end of the response")
                .with_unit("s")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            time_to_first_token: meter
                .f64_histogram("tollgate.time_to_first_token")
                .with_description("Request start to the first byte relayed to the client")
                .with_unit("s")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            upstream_attempts: meter
                .u64_counter("tollgate.upstream.attempts")
                .with_description("Attempts at a provider, by outcome")
                .with_unit("{attempt}")
                .build(),
            upstream_failovers: meter
                .u64_counter("tollgate.upstream.failovers")
                .with_description("Requests sent on to another target after a failed attempt")
                .with_unit("{failover}")
                .build(),
            budget_rejections: meter
                .u64_counter("tollgate.budget.rejections")
                .with_description("Requests refused by a spend cap")
                .with_unit("{request}")
                .build(),
            rate_limit_rejections: meter
                .u64_counter("tollgate.rate_limit.rejections")
                .with_description(
                    "Requests (scope provider: attempts at a target) refused by a rate limit",
                )
                .with_unit("{request}")
                .build(),
        }
    }

    /// Records a finished request: count, tokens, cost, duration and time to first token.
    pub(crate) fn record_request(&self, r: &FinishedRequest<'_>) {
        let model = kv("model", r.model);
        let provider = kv("provider", r.provider);
        let user = [
            model.clone(),
            provider.clone(),
            kv("user.email", r.user.email),
            kv("user.groups", r.user.groups),
            kv("api_key", r.user.api_key),
        ];
        let outcome = kv("outcome", r.outcome);
        let mut attrs = Vec::with_capacity(user.len() + 2);
        attrs.extend_from_slice(&user);
        attrs.push(outcome.clone());
        attrs.push(KeyValue::new("status_class", status_class(r.status)));
        self.requests.add(1, &attrs);
        if let Some(usage) = r.usage {
            attrs.truncate(user.len());
            attrs.push(KeyValue::new("token.type", "input"));
            for (kind, count) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cache_creation_5m", usage.cache_creation_5m_tokens),
                ("cache_creation_1h", usage.cache_creation_1h_tokens),
                ("cache_read", usage.cache_read_tokens),
            ] {
                if count > 0
                    && let Some(last) = attrs.last_mut()
                {
                    *last = KeyValue::new("token.type", kind);
                    self.tokens.add(count, &attrs);
                }
            }
        }
        if r.cost_micro_usd > 0 {
            self.cost.add(r.cost_micro_usd, &user);
        }
        let short = [model, provider, outcome];
        self.duration.record(r.duration.as_secs_f64(), &short);
        if let Some(ttft) = r.time_to_first_token {
            self.time_to_first_token
                .record(ttft.as_secs_f64(), &short[..2]);
        }
    }

    /// One attempt at a provider ended (`outcome`: `ok`, `error`, `retryable_error`,
    /// `connect_error`, `connection_lost`, `timeout`, `prepare_failed`, `cancelled`).
    pub(crate) fn upstream_attempt(&self, provider: &str, outcome: &'static str) {
        self.upstream_attempts.add(
            1,
            &[kv("provider", provider), KeyValue::new("outcome", outcome)],
        );
    }

    /// A request moves on from a failed attempt at `from_provider`.
    pub(crate) fn failover(&self, model: &str, from_provider: &str) {
        self.upstream_failovers
            .add(1, &[kv("model", model), kv("from_provider", from_provider)]);
    }

    /// A spend cap (or its unavailability, scope `unavailable`) refused a request.
    pub(crate) fn budget_rejection(&self, scope: &'static str, email: &str) {
        self.budget_rejections
            .add(1, &[KeyValue::new("scope", scope), kv("user.email", email)]);
    }
}

impl Instruments {
    /// A rate limit refused a request: `scope` is the limit's (`org`, `group`, `user`,
    /// `key`; `provider` for an upstream ceiling; `unavailable` when the control plane could
    /// not be asked), `kind` its kind (`requests_per_minute`, …; `unknown` when unavailable).
    pub(crate) fn rate_limit_rejection(&self, scope: &str, kind: &str) {
        self.rate_limit_rejections
            .add(1, &[kv("scope", scope), kv("kind", kind)]);
    }
}

/// One bucket's utilisation as this data plane last saw it, for the rate-limit gauge.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateUtilization {
    pub limit_id: String,
    pub scope: &'static str,
    pub kind: &'static str,
    /// Fraction used, 0..1.
    pub fraction: f64,
}

/// Reads the rate-limit utilisation of every bucket this data plane holds a slice of.
pub(crate) type RateUtilizationSource = Box<dyn Fn() -> Vec<RateUtilization> + Send + Sync>;

/// Unacknowledged usage records: queued for the shipper, in its batches, or read back from
/// the usage journal. Shared by the usage sink (adds) and the shipper (removes once acknowledged).
#[derive(Debug, Default)]
pub(crate) struct UsageBacklog(AtomicU64);

impl UsageBacklog {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn acknowledged(&self, n: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The observable gauges of one data plane; they observe nothing once it is gone.
pub(crate) struct Gauges {
    _version: ObservableGauge<u64>,
    _staleness: ObservableGauge<f64>,
    _backlog: ObservableGauge<u64>,
    _rate_utilization: ObservableGauge<f64>,
}

/// Registers the snapshot, usage and rate-limit gauges on `meter`.
pub(crate) fn register_gauges(
    meter: &Meter,
    snapshots: &Arc<SnapshotStore>,
    backlog: &Arc<UsageBacklog>,
    rate_utilization: RateUtilizationSource,
) -> Gauges {
    let store: Weak<SnapshotStore> = Arc::downgrade(snapshots);
    let version = meter
        .u64_observable_gauge("tollgate.snapshot.version")
        .with_description("Version of the installed policy snapshot (0: none yet)")
        .with_callback(move |observer| {
            if let Some(store) = store.upgrade() {
                observer.observe(store.version().unwrap_or(0), &[]);
            }
        })
        .build();
    let store: Weak<SnapshotStore> = Arc::downgrade(snapshots);
    let staleness = meter
        .f64_observable_gauge("tollgate.snapshot.staleness")
        .with_description(
            "Seconds since the control plane was last heard from on the snapshot stream \
             (0 while the stream is open)",
        )
        .with_unit("s")
        .with_callback(move |observer| {
            if let Some(store) = store.upgrade() {
                observer.observe(store.staleness().as_secs_f64(), &[]);
            }
        })
        .build();
    let weak_backlog = Arc::downgrade(backlog);
    let backlog = meter
        .u64_observable_gauge("tollgate.usage.backlog")
        .with_description("Usage records not yet acknowledged by the control plane")
        .with_unit("{record}")
        .with_callback(move |observer| {
            if let Some(backlog) = weak_backlog.upgrade() {
                observer.observe(backlog.get(), &[]);
            }
        })
        .build();
    let rate_utilization = meter
        .f64_observable_gauge("tollgate.rate_limit.utilization")
        .with_description(
            "Fraction of each rate limit used (0..1), as this data plane last saw its bucket",
        )
        // No unit: Prometheus would add a `_ratio` suffix.
        .with_callback(move |observer| {
            for u in rate_utilization() {
                observer.observe(
                    u.fraction.clamp(0.0, 1.0),
                    &[
                        kv("limit_id", &u.limit_id),
                        KeyValue::new("scope", u.scope),
                        KeyValue::new("kind", u.kind),
                    ],
                );
            }
        })
        .build();
    Gauges {
        _version: version,
        _staleness: staleness,
        _backlog: backlog,
        _rate_utilization: rate_utilization,
    }
}

#[cfg(test)]
mod tests;
