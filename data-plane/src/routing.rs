//! Routing one request across its route's targets: order, failover, breakers, budget.
//!
//! Targets are tried by ascending priority; targets of equal priority in a weighted random
//! order. An attempt fails over to the next target only before anything reached the client:
//! on a connect error, no response headers within the first-byte timeout, a credential that
//! cannot be resolved, or a retryable answer (429, 500, 502, 503, 504, 529 — unless the
//! provider said `x-should-retry: false`). Once a 2xx answer starts, it is the answer: a
//! later failure ends the stream with an SSE `error` event ([`crate::relay`]).
//!
//! A connection lost after the request was sent is not retried (the provider may be running
//! it). Attempts are bounded by `max_attempts` and by the retry budget; targets whose breaker
//! is open are skipped without counting. When every target is open the client gets `529` with
//! `retry-after` at once (`429` when they all rest at the provider's `retry-after`). Only the attempt that produced the answer is metered, attributed
//! to the provider and upstream model that served it (failed attempts have no usage to bill).
//!
//! Upstream ceilings (provider-scope rate limits) are checked before each attempt of a
//! Messages call: a target at its ceiling is skipped (not a failure for its breaker), and
//! when every target was skipped for its ceilings the client gets `529` with `retry-after`.
//! The ceiling's hold lives until the response ends, like the request's own.

pub(crate) mod breaker;
pub(crate) mod retry_budget;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rand::Rng;
use tokio::time::Instant;
use tollgate_policy::{ProviderKind, Route, RouteTarget, Snapshot, Timeouts};
use tollgate_proto::v1 as pb;
use tracing::{Instrument as _, Span};

pub(crate) use breaker::{BreakerSettings, Breakers};
pub(crate) use retry_budget::{RetryBudget, RetryBudgetSettings};

use crate::error::{ApiError, ErrorCode};
use crate::gateway::{ResponseBody, full_body};
use crate::meter::DrainPolicy;
use crate::providers::{
    self, Decode, Endpoint, ErrorReply, Outbound, ProviderRuntime, UpstreamFailure,
};
use crate::rate_limit::{Demand, RateAdmission, RateHold, RateLimiter};
use crate::relay::{Framing, ModelRewrite, StreamGuard};
use crate::request::{RequestFields, read_body};
use crate::upstream::headers::client_response_headers;
use crate::upstream::{UpstreamClient, UpstreamError};
use crate::usage::{Outcome, PendingUsage};

/// How long a target whose ceilings could not be checked is advertised to rest.
const CEILING_UNAVAILABLE_RETRY_MS: u64 = 5_000;

/// Error bodies are read up to this size (what is relayed or mapped).
const ERROR_BODY_MAX: usize = 1 << 20;
/// How long to wait for an error body after its headers.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Routing defaults (a target's own timeouts win).
#[derive(Debug, Clone)]
pub(crate) struct RoutingSettings {
    pub connect_timeout: Duration,
    /// Request sent → response headers.
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of an answer.
    pub idle_timeout: Duration,
    /// Silence after which a `ping` event is sent on translated streams (Bedrock).
    pub ping_interval: Duration,
    /// Most attempts (targets tried) per request.
    pub max_attempts: u32,
    pub breaker: BreakerSettings,
    pub retry_budget: RetryBudgetSettings,
    /// Where provider credential references may point.
    pub credential_references: providers::CredentialReferences,
}

/// The request path's provider state: breakers, retry budget, credentials and tokens.
pub(crate) struct Router {
    pub settings: RoutingSettings,
    pub runtime: ProviderRuntime,
    pub breakers: Breakers,
    pub retry_budget: RetryBudget,
}

impl Router {
    pub(crate) fn new(settings: RoutingSettings) -> Self {
        Router {
            runtime: ProviderRuntime::new(settings.credential_references.clone()),
            breakers: Breakers::new(settings.breaker),
            retry_budget: RetryBudget::new(settings.retry_budget),
            settings,
        }
    }

    /// The health report for the control plane.
    pub(crate) fn health(&self) -> Vec<pb::TargetHealth> {
        self.breakers.report()
    }
}

/// The request fields, owned (the exchange outlives the handler when metered).
#[derive(Debug, Clone)]
pub(crate) struct OwnedFields {
    pub model: String,
    pub model_span: std::ops::Range<usize>,
    pub stream: bool,
    pub max_tokens: Option<u64>,
}

impl OwnedFields {
    pub(crate) fn from_fields(f: &RequestFields<'_>) -> Self {
        OwnedFields {
            model: f.model.clone().into_owned(),
            model_span: f.model_span.clone(),
            stream: f.stream,
            max_tokens: f.max_tokens,
        }
    }

    fn borrowed(&self) -> RequestFields<'_> {
        RequestFields {
            model: std::borrow::Cow::Borrowed(&self.model),
            model_span: self.model_span.clone(),
            stream: self.stream,
            max_tokens: self.max_tokens,
        }
    }
}

/// One authorized request to route.
pub(crate) struct Routed {
    pub request_id: String,
    pub endpoint: Endpoint,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub fields: OwnedFields,
    pub snapshot: Arc<Snapshot>,
    /// The catalogue model whose route is used (the client may have sent an alias).
    pub model: String,
    pub pending: Option<PendingUsage>,
    /// What the request asks of rate limits (upstream ceilings of metered calls).
    pub demand: Demand,
    /// The `request` span ([`Span::none`] when telemetry is off).
    pub span: Span,
}

/// What an exchange needs beyond the request: shared, cheap to clone.
#[derive(Clone)]
pub(crate) struct Exchange {
    pub router: Arc<Router>,
    pub client: UpstreamClient,
    pub drain: DrainPolicy,
    /// Upstream ceilings are admitted through the data plane's rate limiter.
    pub rate_limits: Arc<RateLimiter>,
}

/// Targets skipped because they were at their upstream ceilings.
#[derive(Debug, Default)]
struct CapacitySkips {
    count: u32,
    /// The soonest any of them has room again.
    retry_after_ms: Option<u64>,
}

impl CapacitySkips {
    fn skipped(&mut self, retry_after_ms: u64) {
        self.count += 1;
        // 0 = unknown (a concurrency slot frees when a request ends): a second.
        let ms = if retry_after_ms == 0 {
            1_000
        } else {
            retry_after_ms
        };
        self.retry_after_ms = Some(self.retry_after_ms.map_or(ms, |r| r.min(ms)));
    }

    /// Whole seconds, at least 1.
    fn retry_after_s(&self) -> Option<u64> {
        self.retry_after_ms.map(|ms| ms.div_ceil(1_000).max(1))
    }
}

/// Adds an admitted ceiling hold to the request's pending usage (settled when it ends).
fn attach_ceiling(pending: &mut Option<PendingUsage>, hold: Option<RateHold>) {
    if let (Some(p), Some(hold)) = (pending.as_mut(), hold) {
        p.add_ceiling_hold(hold);
    }
}

/// Why the attempts ended without an answer.
enum LastFailure {
    Upstream(Box<UpstreamFailure>),
    Unreachable,
    Timeout,
    Prepare,
}

impl Exchange {
    /// Routes `req`. A metered exchange runs on its own (tracked) task: if the client leaves
    /// before the answer starts, the upstream call is not cancelled with it, and the answer —
    /// which the provider bills — is still read and metered.
    pub(crate) async fn serve(&self, req: Routed) -> Result<Response<ResponseBody>, ApiError> {
        if req.pending.is_none() {
            return self.clone().run(req).await;
        }
        let span = req.span.clone();
        let task = self
            .drain
            .tracker
            .spawn(self.clone().run(req).instrument(span));
        task.await
            .unwrap_or_else(|_| Err(ApiError::new(ErrorCode::Internal, "internal error")))
    }

    async fn run(self, mut req: Routed) -> Result<Response<ResponseBody>, ApiError> {
        let snapshot = req.snapshot.clone();
        let Some(route) = snapshot.route(&req.model) else {
            let error = ApiError::new(ErrorCode::Internal, "route disappeared");
            return Err(fail(req.pending.take(), error, Outcome::UpstreamError));
        };
        let router = &self.router;
        router.retry_budget.deposit();
        let order = attempt_order(route, &mut rand::rng());
        let fields = req.fields.borrowed();
        let mut attempts = 0u32;
        let mut last: Option<(usize, LastFailure)> = None;
        let mut reopen_at: Option<Instant> = None;
        // Every target skipped so far rests at the provider's request (429 + retry-after).
        let mut all_rate_limited = true;
        let instruments = crate::metrics::instruments();
        // The provider of the last failed attempt (for the failover count).
        let mut failed_at: Option<&str> = None;
        let mut at_capacity = CapacitySkips::default();
        let stopping = self.drain.stopping();
        tokio::pin!(stopping);

        for index in order {
            let Some(target) = route.targets.get(index) else {
                continue;
            };
            let out = Outbound {
                endpoint: req.endpoint,
                headers: &req.headers,
                body: &req.body,
                fields: &fields,
                upstream_model: &target.upstream_model,
                identity_encoding: req.pending.is_some(),
            };
            if matches!(target.provider.kind, ProviderKind::Demo) {
                let ceiling = match self
                    .admit_ceilings(req.pending.is_some(), &snapshot, req.demand, target)
                    .await
                {
                    Ok(hold) => hold,
                    Err(retry_after_ms) => {
                        at_capacity.skipped(retry_after_ms);
                        all_rate_limited = false;
                        continue;
                    }
                };
                let mut pending = req.pending.take();
                attach_ceiling(&mut pending, ceiling);
                if let Some(p) = pending.as_mut() {
                    p.serve_from(target);
                    p.start_stream();
                }
                return Ok(providers::demo::respond(
                    &self.drain,
                    &req.request_id,
                    &out,
                    pending,
                ));
            }
            if attempts >= router.settings.max_attempts.max(1) {
                break;
            }
            let breaker = router
                .breakers
                .get(&target.provider.id, &target.upstream_model);
            let now = Instant::now();
            let settings = &router.breakers.settings;
            let admitted = breaker.admit(settings, now);
            if let breaker::Admit::No {
                until,
                rate_limited,
            } = admitted
            {
                reopen_at = Some(reopen_at.map_or(until, |r| r.min(until)));
                all_rate_limited &= rate_limited;
                continue;
            }
            // At its ceiling the target is skipped as it is, breaker untouched.
            let ceiling = match self
                .admit_ceilings(req.pending.is_some(), &snapshot, req.demand, target)
                .await
            {
                Ok(hold) => hold,
                Err(retry_after_ms) => {
                    if admitted == breaker::Admit::Probe {
                        breaker.release_probe(now);
                    }
                    at_capacity.skipped(retry_after_ms);
                    all_rate_limited = false;
                    continue;
                }
            };
            if attempts > 0 && !router.retry_budget.try_withdraw(now) {
                if admitted == breaker::Admit::Probe {
                    breaker.release_probe(now);
                }
                tracing::warn!(request_id = %req.request_id, "retry budget exhausted; no failover");
                // Never sent: the ceiling counts nothing for it.
                if let Some(hold) = ceiling {
                    hold.cancel();
                }
                break;
            }
            attempts += 1;
            breaker.attempted();
            let provider_name = target.provider.name.as_str();
            if let (Some(i), Some(from)) = (instruments, failed_at) {
                i.failover(&req.model, from);
            }
            let attempt = Attempt {
                span: crate::trace_context::upstream_span(
                    &req.span,
                    provider_name,
                    &target.upstream_model,
                    attempts,
                ),
                provider: provider_name,
                instruments,
            };
            // Until proven otherwise, this attempt is the one that failed.
            failed_at = Some(provider_name);
            let timeouts = self.timeouts(target);
            let prepared =
                match providers::prepare(&target.provider, &out, &router.runtime, &self.client)
                    .instrument(attempt.span.clone())
                    .await
                {
                    Ok(prepared) => prepared,
                    Err(error) => {
                        tracing::warn!(
                            parent: &attempt.span,
                            request_id = %req.request_id,
                            provider = %target.provider.name,
                            %error,
                            "provider request could not be prepared"
                        );
                        attempt.ended("prepare_failed", None);
                        breaker.failure(settings, now, "prepare failed", None, false);
                        last = Some((index, LastFailure::Prepare));
                        continue;
                    }
                };
            let mut request = prepared.request;
            crate::trace_context::inject(&attempt.span, request.headers_mut());
            let sent = tokio::select! {
                sent = self.client.send_with(
                    request,
                    timeouts.connect,
                    timeouts.first_byte.unwrap_or(router.settings.first_byte_timeout),
                ).instrument(attempt.span.clone()) => sent,
                () = &mut stopping => {
                    attempt.ended("cancelled", None);
                    let error = ApiError::new(ErrorCode::Unavailable, "gateway is shutting down");
                    return Err(fail(req.pending.take(), error, Outcome::Truncated));
                }
            };
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!(
                        parent: &attempt.span,
                        request_id = %req.request_id,
                        provider = %target.provider.name,
                        %error,
                        "upstream attempt failed"
                    );
                    let (reason, failure, sent) = match &error {
                        UpstreamError::Timeout(_) => {
                            ("first-byte timeout", LastFailure::Timeout, true)
                        }
                        UpstreamError::Request(e) if e.is_connect() => {
                            ("connect error", LastFailure::Unreachable, false)
                        }
                        UpstreamError::Request(_) => {
                            ("connection lost", LastFailure::Unreachable, true)
                        }
                    };
                    attempt.ended(
                        match failure {
                            LastFailure::Timeout => "timeout",
                            _ if sent => "connection_lost",
                            _ => "connect_error",
                        },
                        None,
                    );
                    breaker.failure(settings, Instant::now(), reason, None, false);
                    last = Some((index, failure));
                    if sent && !matches!(error, UpstreamError::Timeout(_)) {
                        // The request reached the provider, which may be generating (and
                        // billing) it: sending it again elsewhere could run it twice.
                        break;
                    }
                    continue;
                }
            };
            if response.status().is_success() {
                attempt.ended("ok", Some(response.status().as_u16()));
                breaker.success();
                let mut pending = req.pending.take();
                attach_ceiling(&mut pending, ceiling);
                if let Some(p) = pending.as_mut() {
                    p.serve_from(target);
                    p.start_stream();
                }
                return Ok(self
                    .answer(
                        response,
                        prepared.decode,
                        &timeouts,
                        &req.fields.model,
                        req.endpoint,
                        pending,
                    )
                    .await);
            }
            let (parts, body) = response.into_parts();
            let bytes = read_error_body(body).instrument(attempt.span.clone()).await;
            let failure =
                providers::map_error(&target.provider, parts.status, &parts.headers, &bytes);
            attempt.ended(
                if failure.retryable {
                    "retryable_error"
                } else {
                    "error"
                },
                Some(parts.status.as_u16()),
            );
            tracing::warn!(
                parent: &attempt.span,
                request_id = %req.request_id,
                provider = %target.provider.name,
                status = parts.status.as_u16(),
                reason = %failure.reason,
                retryable = failure.retryable,
                "upstream answered with an error"
            );
            if !failure.retryable {
                if matches!(parts.status.as_u16(), 401 | 403) {
                    // The gateway's credential for this target is refused: the target is
                    // broken for every request, so its breaker counts it (and opens, sending
                    // later requests elsewhere); this request gets the mapped error.
                    breaker.failure(settings, Instant::now(), &failure.reason, None, false);
                } else {
                    // The target is up; the request is what failed.
                    breaker.success();
                }
                let mut pending = req.pending.take();
                attach_ceiling(&mut pending, ceiling);
                return Ok(self.reply_failure(failure, target, pending));
            }
            breaker.failure(
                settings,
                Instant::now(),
                &failure.reason,
                failure.retry_after.map(Duration::from_secs),
                parts.status == http::StatusCode::TOO_MANY_REQUESTS,
            );
            last = Some((index, LastFailure::Upstream(Box::new(failure))));
        }

        let pending = req.pending.take();
        match last {
            Some((index, LastFailure::Upstream(failure))) => {
                let target = route.targets.get(index);
                match target {
                    Some(target) => Ok(self.reply_failure(*failure, target, pending)),
                    None => Err(fail(
                        pending,
                        ApiError::upstream_unreachable(),
                        Outcome::UpstreamError,
                    )),
                }
            }
            Some((_, LastFailure::Timeout)) => {
                let error = ApiError::new(
                    ErrorCode::GatewayTimeout,
                    "upstream provider did not respond in time",
                );
                Err(fail(pending, error, Outcome::UpstreamError))
            }
            Some((_, LastFailure::Unreachable)) => Err(fail(
                pending,
                ApiError::upstream_unreachable(),
                Outcome::UpstreamError,
            )),
            Some((_, LastFailure::Prepare)) => {
                let error =
                    ApiError::new(ErrorCode::BadGateway, "upstream provider is misconfigured");
                Err(fail(pending, error, Outcome::UpstreamError))
            }
            None => {
                let mut error = if at_capacity.count > 0 && reopen_at.is_none() {
                    ApiError::new(
                        ErrorCode::Overloaded,
                        "every provider for this model is at its configured capacity; retry \
                         shortly",
                    )
                } else if all_rate_limited && reopen_at.is_some() {
                    ApiError::new(
                        ErrorCode::RateLimited,
                        "upstream provider rate limit reached; retry later",
                    )
                } else {
                    ApiError::new(
                        ErrorCode::Overloaded,
                        "every provider for this model is failing; retry shortly",
                    )
                };
                let reopen_s = reopen_at.map(|at| {
                    at.saturating_duration_since(Instant::now())
                        .as_secs()
                        .max(1)
                });
                error.retry_after = match (reopen_s, at_capacity.retry_after_s()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                Err(fail(pending, error, Outcome::UpstreamError))
            }
        }
    }

    /// Admits one attempt at `target` through its upstream ceilings (metered calls only):
    /// the hold to keep until the response ends (`None` when no ceiling applies), or the
    /// milliseconds until the target has room (0 = unknown) when it is at a ceiling or the
    /// ceiling cannot be checked.
    async fn admit_ceilings(
        &self,
        metered: bool,
        snapshot: &Snapshot,
        demand: Demand,
        target: &RouteTarget,
    ) -> Result<Option<RateHold>, u64> {
        let limits = snapshot.rate_limits();
        if !metered || limits.no_ceilings() {
            return Ok(None);
        }
        let ceilings = limits.ceilings(&target.provider.id, &target.upstream_model);
        if ceilings.is_empty() {
            return Ok(None);
        }
        let outage = snapshot.budgets().settings.outage_mode;
        let instruments = crate::metrics::instruments();
        match self.rate_limits.admit(&ceilings, demand, outage).await {
            RateAdmission::Admitted(hold) => Ok(Some(hold)),
            RateAdmission::Limited { index, limited } => {
                if let Some(i) = instruments {
                    let kind = ceilings
                        .get(index)
                        .map_or("unknown", |a| a.limit.kind.as_str());
                    i.rate_limit_rejection("provider", kind);
                }
                Err(limited.retry_after_ms)
            }
            RateAdmission::Unavailable => {
                if let Some(i) = instruments {
                    i.rate_limit_rejection("unavailable", "unknown");
                }
                Err(CEILING_UNAVAILABLE_RETRY_MS)
            }
        }
    }

    fn timeouts(&self, target: &RouteTarget) -> Timeouts {
        let s = &self.router.settings;
        target.timeouts.or(Timeouts {
            connect: Some(s.connect_timeout),
            first_byte: Some(s.first_byte_timeout),
            idle: Some(s.idle_timeout),
        })
    }

    /// A 2xx answer on its way to the client: decoded, guarded, model rewritten, metered.
    async fn answer(
        &self,
        response: Response<Incoming>,
        decode: Decode,
        timeouts: &Timeouts,
        client_model: &str,
        endpoint: Endpoint,
        pending: Option<PendingUsage>,
    ) -> Response<ResponseBody> {
        let (parts, body) = response.into_parts();
        let mut headers = client_response_headers(&parts.headers);
        if decode == Decode::BedrockCountTokens {
            let bytes = read_error_body(body).await;
            let converted = providers::bedrock::decode_count_tokens(&bytes).unwrap_or(bytes);
            headers.remove(CONTENT_LENGTH);
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return providers::respond(
                &self.drain,
                parts.status,
                headers,
                full_body(converted),
                pending,
            );
        }
        let body = body.map_err(Into::into).boxed_unsync();
        let body = providers::decode(decode, body);
        if decode == Decode::BedrockEventStream {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.remove(CONTENT_LENGTH);
        }
        let framing = if is_event_stream(&headers) {
            Framing::Sse
        } else {
            Framing::Opaque
        };
        let s = &self.router.settings;
        let ping = (decode == Decode::BedrockEventStream).then_some(s.ping_interval);
        let idle = timeouts.idle.unwrap_or(s.idle_timeout);
        let mut body = StreamGuard::new(body, framing, idle, ping)
            .ending_at(self.drain.drain_over.clone())
            .boxed_unsync();
        if endpoint == Endpoint::Messages {
            headers.remove(CONTENT_LENGTH);
            body = ModelRewrite::new(body, framing, client_model).boxed_unsync();
        }
        providers::respond(&self.drain, parts.status, headers, body, pending)
    }

    /// The last failure as the client gets it, metered (zero usage unless the error said).
    fn reply_failure(
        &self,
        failure: UpstreamFailure,
        target: &RouteTarget,
        pending: Option<PendingUsage>,
    ) -> Response<ResponseBody> {
        let response = match failure.reply {
            ErrorReply::Verbatim {
                status,
                headers,
                body,
            } => {
                let mut response = Response::new(full_body(body));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                response
            }
            ErrorReply::Api(error) => error.into_response(),
        };
        if let Some(mut pending) = pending {
            pending.serve_from(target);
            pending.set_status(response.status().as_u16());
            pending.finish(&failure.usage, Outcome::UpstreamError);
        }
        response
    }
}

/// One attempt at a target: its span and how it is counted.
struct Attempt<'a> {
    span: Span,
    provider: &'a str,
    instruments: Option<&'static crate::metrics::Instruments>,
}

impl Attempt<'_> {
    /// Records how the attempt ended (`status`: the provider's, if it answered).
    fn ended(&self, outcome: &'static str, status: Option<u16>) {
        if let Some(i) = self.instruments {
            i.upstream_attempt(self.provider, outcome);
        }
        if !self.span.is_disabled() {
            self.span.record("outcome", outcome);
            if let Some(status) = status {
                self.span.record("http.response.status_code", status);
            }
            if outcome != "ok" && outcome != "error" {
                self.span.record("otel.status_code", "ERROR");
            }
        }
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

async fn read_error_body(body: Incoming) -> Bytes {
    tokio::time::timeout(ERROR_BODY_TIMEOUT, read_body(body, ERROR_BODY_MAX))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// Records a failed metered call (no tokens) and passes the error on.
fn fail(pending: Option<PendingUsage>, error: ApiError, outcome: Outcome) -> ApiError {
    if let Some(mut pending) = pending {
        pending.set_status(error.code.status().as_u16());
        pending.finish(&tollgate_policy::Usage::default(), outcome);
    }
    error
}

/// Target indexes in attempt order: by priority (targets are sorted by it), and within
/// equal priority in weighted random order (Efraimidis–Spirakis: sort by `u^(1/w)`).
fn attempt_order(route: &Route, rng: &mut impl Rng) -> Vec<usize> {
    let targets = &route.targets;
    let mut order: Vec<usize> = (0..targets.len()).collect();
    if targets.len() < 2 {
        return order;
    }
    let mut start = 0;
    while start < targets.len() {
        let priority = targets[start].priority;
        let end = targets[start..]
            .iter()
            .position(|t| t.priority != priority)
            .map_or(targets.len(), |n| start + n);
        if end - start > 1 {
            let mut keyed: Vec<(f64, usize)> = (start..end)
                .map(|i| {
                    let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                    let w = f64::from(targets[i].weight.max(1));
                    (u.powf(1.0 / w), i)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (slot, (_, i)) in order[start..end].iter_mut().zip(keyed) {
                *slot = i;
            }
        }
        start = end;
    }
    order
}

/// Reports every target's breaker state to the control plane every `interval` (only what
/// changed is not tracked: reports are small), and once more when stopped.
pub(crate) fn spawn_health_reporter(
    api: crate::control_plane::SyncApi,
    router: Arc<Router>,
    data_plane_id: String,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                () = stop.cancelled() => true,
            };
            let targets = router.health();
            if !targets.is_empty()
                && let Err(status) =
                    crate::control_plane::report_target_health(&api, &data_plane_id, targets).await
            {
                tracing::debug!(code = ?status.code(), "target health report failed");
            }
            if stopping {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests;
