//! The request path: route, authenticate, authorize, hand to the provider.
//!
//! Phases of a request, in order: assign the request id (UUIDv7) → route on method and
//! path (query ignored) → load the snapshot once → authenticate → read and check the body →
//! authorize the model → rate limits, then spend caps (Messages calls) → provider. Every
//! response, errors included, carries `request-id`. Each request logs exactly one line on
//! the `tollgate::usage` target: here for unmetered responses (rejections included), or by
//! the usage record when the metered response ends.
//! With telemetry on ([`crate::metrics`]) each request also has a `request` span (parented
//! on the client's `traceparent`) and, for model calls, request metrics.
//!
//! Besides the Messages API: `GET /api/oauth/usage` (spend against caps, for Claude Code's
//! `/usage`), `GET /managed/settings` (Claude Code managed settings),
//! `POST /v1/metrics|logs|traces` (OTLP relay) and the OAuth/device-flow paths, which are
//! forwarded to the control plane's HTTP listener. Every bearer endpoint accepts an API key
//! or a gateway access token (see `tollgate_policy::Snapshot::authenticate_bearer`).

mod forward;
mod messages;
mod models;
mod settings;
mod telemetry;
mod usage_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use crate::budget::Spend;
use crate::error::{ApiError, ErrorCode};
use crate::meter::UpstreamBody;
use crate::providers::Endpoint;
use crate::rate_limit::RateLimiter;
use crate::snapshot::SnapshotStore;
use crate::upstream::UpstreamClient;
use crate::upstream::headers::REQUEST_ID;
use crate::usage::UsageSink;

/// The body of every response the data plane sends.
pub(crate) type ResponseBody = UpstreamBody;

pub(crate) fn full_body(bytes: Bytes) -> ResponseBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty_body() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Everything a request needs, shared by all connections.
pub(crate) struct Gateway {
    pub snapshots: Arc<SnapshotStore>,
    pub usage: UsageSink,
    pub data_plane_id: String,
    pub max_body_bytes: usize,
    /// Per-address bound on the forwarded sign-in paths.
    pub sign_in_limit: crate::sign_in_limit::SignInLimit,
    /// Spend caps: the leased ledger, lease calls and the clock windows are read from.
    pub spend: Arc<Spend>,
    /// Rate limits (requests/tokens per minute, concurrency): leased slices of the buckets.
    pub rate_limits: Arc<RateLimiter>,
    /// Relays telemetry and forwards OAuth/device paths (short timeouts, own pool).
    pub side: SideChannels,
    /// Routing to providers: failover, breakers, retry budget, credentials.
    pub exchange: crate::routing::Exchange,
}

impl Gateway {
    /// The first step of every bearer endpoint: load the snapshot once (503 until there is
    /// one), authenticate the caller from it, and note who called in the request context.
    pub(crate) fn admit(
        &self,
        ctx: &mut RequestContext,
        headers: &http::HeaderMap,
    ) -> Result<(Arc<tollgate_policy::Snapshot>, tollgate_policy::Caller), ApiError> {
        let span = crate::trace_context::auth_span(&ctx.span);
        let _entered = span.enter();
        let snapshot = self.snapshots.load().ok_or_else(ApiError::not_ready)?;
        let caller = crate::auth::authenticate(&snapshot, headers, unix_now_s())?;
        ctx.key_id = Some(caller.log_id());
        if !ctx.span.is_disabled() {
            ctx.span
                .record("user.email", caller.principal().email.as_str());
            ctx.span
                .record("api_key", crate::usage::api_key_name(&caller));
        }
        ctx.caller = Some(caller.clone());
        ctx.snapshot = Some(snapshot.clone());
        Ok((snapshot, caller))
    }
}

/// The data plane's non-provider outbound calls.
pub(crate) struct SideChannels {
    pub client: UpstreamClient,
    /// Base URL of the control plane's HTTP listener; `None` = OAuth paths answer 404.
    pub control_plane_http_url: Option<String>,
}

/// The peer address of the connection a request came on (set by the listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub SocketAddr);

/// What the request log line needs, filled in as the request progresses.
pub(crate) struct RequestContext {
    pub id: String,
    pub started: Instant,
    pub started_at: SystemTime,
    pub key_id: Option<String>,
    pub model: Option<String>,
    /// The usage record writes the log line (when the response body ends).
    pub metered: bool,
    /// The `request` span ([`Span::none`] when telemetry is off).
    pub span: Span,
    /// Who called, once authenticated, and the snapshot that said so.
    pub caller: Option<tollgate_policy::Caller>,
    pub snapshot: Option<Arc<tollgate_policy::Snapshot>>,
}

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Provider(Endpoint),
    Models,
    Hello,
    ManagedSettings,
    /// `GET /api/oauth/usage`
    Usage,
    Telemetry(telemetry::Signal),
    /// OAuth / device-flow paths served by the control plane's HTTP listener.
    ControlPlane,
}

/// A request that matches no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misroute {
    NotFound,
    WrongMethod { allow: &'static str },
}

fn route(method: &Method, path: &str) -> Result<Route, Misroute> {
    if forward::is_control_plane_path(path) {
        return Ok(Route::ControlPlane);
    }
    let (route, allow) = match path {
        "/v1/messages" => (Route::Provider(Endpoint::Messages), "POST"),
        "/v1/messages/count_tokens" => (Route::Provider(Endpoint::CountTokens), "POST"),
        "/v1/models" => (Route::Models, "GET"),
        "/api/hello" => (Route::Hello, "GET, HEAD"),
        "/managed/settings" => (Route::ManagedSettings, "GET"),
        "/api/oauth/usage" => (Route::Usage, "GET"),
        "/v1/metrics" => (Route::Telemetry(telemetry::Signal::Metrics), "POST"),
        "/v1/logs" => (Route::Telemetry(telemetry::Signal::Logs), "POST"),
        "/v1/traces" => (Route::Telemetry(telemetry::Signal::Traces), "POST"),
        _ => return Err(Misroute::NotFound),
    };
    let allowed = match route {
        Route::Provider(_) | Route::Telemetry(_) => method == Method::POST,
        Route::Models | Route::ManagedSettings | Route::Usage => method == Method::GET,
        Route::ControlPlane => true,
        Route::Hello => method == Method::GET || method == Method::HEAD,
    };
    if allowed {
        Ok(route)
    } else {
        Err(Misroute::WrongMethod { allow })
    }
}

impl Misroute {
    fn into_response(self, method: &Method, path: &str) -> Response<ResponseBody> {
        match self {
            Misroute::NotFound => ApiError::new(ErrorCode::NotFound, "not found").into_response(),
            Misroute::WrongMethod { allow } => {
                let message = format!("method {method} is not allowed on {path}");
                let mut response =
                    ApiError::new(ErrorCode::MethodNotAllowed, message).into_response();
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                response
            }
        }
    }
}

impl Gateway {
    pub(crate) async fn handle<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let id = Uuid::now_v7().to_string();
        let span = crate::trace_context::request_span(
            crate::metrics::is_enabled(),
            request.headers(),
            &id,
            request.method(),
            request.uri().path(),
        );
        let mut ctx = RequestContext {
            id,
            started: Instant::now(),
            started_at: SystemTime::now(),
            key_id: None,
            model: None,
            metered: false,
            span,
            caller: None,
            snapshot: None,
        };
        let span = ctx.span.clone();
        self.handle_in(request, &mut ctx).instrument(span).await
    }

    async fn handle_in<B>(
        &self,
        request: Request<B>,
        ctx: &mut RequestContext,
    ) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let routed = route(request.method(), request.uri().path());
        let is_model_call = matches!(routed, Ok(Route::Provider(_)));
        let result = match routed {
            Ok(Route::Hello) => Ok(Response::new(empty_body())),
            Ok(Route::Models) => models::list(self, ctx, request.headers()),
            Ok(Route::ManagedSettings) => settings::get(self, ctx, request.headers()),
            Ok(Route::Usage) => usage_api::get(self, ctx, request.headers()).await,
            Ok(Route::Telemetry(signal)) => telemetry::relay(self, ctx, request, signal).await,
            Ok(Route::ControlPlane) => forward::forward(self, request).await,
            Ok(Route::Provider(endpoint)) => messages::handle(self, ctx, request, endpoint).await,
            Err(misroute) => Ok(misroute.into_response(request.method(), request.uri().path())),
        };
        let (mut response, error, error_code) = match result {
            Ok(response) => (response, None, None),
            Err(error) => {
                let code = error.code;
                (
                    error.clone().into_response(),
                    Some(error.message),
                    Some(code),
                )
            }
        };
        if let Ok(id) = HeaderValue::from_str(&ctx.id) {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        let status = response.status().as_u16();
        if !ctx.span.is_disabled() {
            ctx.span.record("http.response.status_code", status);
            if let Some(model) = &ctx.model {
                ctx.span.record("model", model.as_str());
            }
            if status >= 500 {
                ctx.span.record("otel.status_code", "ERROR");
            }
        }
        if !ctx.metered {
            log_unmetered(ctx, status, error_code, error.as_deref(), is_model_call);
        }
        response
    }
}

/// How an unmetered request ended, for the log line and metrics.
fn unmetered_outcome(error: Option<ErrorCode>) -> &'static str {
    match error {
        None => "complete",
        Some(ErrorCode::Unauthenticated) => "unauthenticated",
        Some(ErrorCode::PermissionDenied) => "permission_denied",
        Some(ErrorCode::BudgetExceeded) => "budget_exceeded",
        Some(ErrorCode::RateLimited) => "rate_limited",
        Some(
            ErrorCode::InvalidRequest
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::RequestTooLarge
            | ErrorCode::NotSupported,
        ) => "invalid_request",
        Some(ErrorCode::Unavailable | ErrorCode::Overloaded) => "unavailable",
        Some(ErrorCode::BadGateway | ErrorCode::GatewayTimeout) => "upstream_error",
        Some(ErrorCode::Internal) => "internal_error",
    }
}

/// The one log line of a request without a usage record (and, for model calls, its
/// metrics): rejections, `count_tokens`, listings and the other endpoints.
fn log_unmetered(
    ctx: &RequestContext,
    status: u16,
    error_code: Option<ErrorCode>,
    error: Option<&str>,
    is_model_call: bool,
) {
    let outcome = unmetered_outcome(error_code);
    let caller = ctx.caller.as_ref();
    let email = caller.map_or("", |c| c.principal().email.as_str());
    let api_key = caller.map_or("", crate::usage::api_key_name);
    let instruments = if is_model_call {
        crate::metrics::instruments()
    } else {
        None
    };
    let groups = match (caller, ctx.snapshot.as_deref()) {
        (Some(caller), Some(snapshot))
            if instruments.is_some() || crate::usage::usage_log_enabled() =>
        {
            crate::metrics::group_names(caller, snapshot)
        }
        _ => String::new(),
    };
    let duration = ctx.started.elapsed();
    tracing::info!(
        target: "tollgate::usage",
        request_id = %ctx.id,
        user.email = %email,
        principal_id = caller.map_or("", |c| c.principal().id.as_str()),
        api_key = %api_key,
        key_id = ctx.key_id.as_deref().unwrap_or(""),
        groups = %groups,
        model = ctx.model.as_deref().unwrap_or(""),
        status,
        outcome,
        duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        error = error.unwrap_or(""),
        "request"
    );
    if !ctx.span.is_disabled() {
        ctx.span.record("outcome", outcome);
    }
    if let Some(instruments) = instruments {
        instruments.record_request(&crate::metrics::FinishedRequest {
            model: ctx.model.as_deref().unwrap_or(""),
            provider: "",
            outcome,
            status,
            user: crate::metrics::UserLabels {
                email,
                groups: &groups,
                api_key,
            },
            usage: None,
            cost_micro_usd: 0,
            duration,
            time_to_first_token: None,
        });
    }
}

pub(crate) fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
