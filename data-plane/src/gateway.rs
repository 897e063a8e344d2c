//! The request path: route, authenticate, authorize, hand to the provider.
//!
//! Phases of a request, in order: assign the request id (UUIDv7) → route on method and
//! path (query ignored) → load the snapshot once → authenticate → read and check the body →
//! authorize the model → provider. Every response, errors included, carries `request-id`.
//! Each request logs exactly one line: here for unmetered responses, or by the usage
//! record when the metered response ends.
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
use uuid::Uuid;

use crate::budget::Spend;
use crate::error::{ApiError, ErrorCode};
use crate::meter::UpstreamBody;
use crate::providers::Endpoint;
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
    /// Spend caps: the leased ledger, lease calls and the clock windows are read from.
    pub spend: Arc<Spend>,
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
        let snapshot = self.snapshots.load().ok_or_else(ApiError::not_ready)?;
        let caller = crate::auth::authenticate(&snapshot, headers, unix_now_s())?;
        ctx.key_id = Some(caller.log_id());
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
        let mut ctx = RequestContext {
            id: Uuid::now_v7().to_string(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            key_id: None,
            model: None,
            metered: false,
        };
        let result = match route(request.method(), request.uri().path()) {
            Ok(Route::Hello) => Ok(Response::new(empty_body())),
            Ok(Route::Models) => models::list(self, &mut ctx, request.headers()),
            Ok(Route::ManagedSettings) => settings::get(self, &mut ctx, request.headers()),
            Ok(Route::Usage) => usage_api::get(self, &mut ctx, request.headers()).await,
            Ok(Route::Telemetry(signal)) => telemetry::relay(self, &mut ctx, request, signal).await,
            Ok(Route::ControlPlane) => forward::forward(self, request).await,
            Ok(Route::Provider(endpoint)) => {
                messages::handle(self, &mut ctx, request, endpoint).await
            }
            Err(misroute) => Ok(misroute.into_response(request.method(), request.uri().path())),
        };
        let (mut response, error) = match result {
            Ok(response) => (response, None),
            Err(error) => (error.clone().into_response(), Some(error.message)),
        };
        if let Ok(id) = HeaderValue::from_str(&ctx.id) {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        if !ctx.metered {
            tracing::info!(
                request_id = %ctx.id,
                key_id = ctx.key_id.as_deref().unwrap_or("-"),
                model = ctx.model.as_deref().unwrap_or("-"),
                status = response.status().as_u16(),
                duration_ms = u64::try_from(ctx.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                error = error.as_deref().unwrap_or(""),
                "request"
            );
        }
        response
    }
}

pub(crate) fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
