//! The request path: route, authenticate, authorize, hand to the provider.
//!
//! Phases of a request, in order: assign the request id (UUIDv7) → route on method and
//! path (query ignored) → load the snapshot once → authenticate → read and check the body →
//! authorize the model → provider. Every response, errors included, carries `request-id`.
//! Each request logs exactly one line: here for unmetered responses, or by the usage
//! record when the metered response ends.

mod messages;
mod models;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode};
use crate::meter::{DrainPolicy, UpstreamBody};
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

fn empty_body() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Everything a request needs, shared by all connections.
pub(crate) struct Gateway {
    pub snapshots: Arc<SnapshotStore>,
    pub upstream: UpstreamClient,
    pub usage: UsageSink,
    pub drain: DrainPolicy,
    pub data_plane_id: String,
    pub max_body_bytes: usize,
}

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
}

/// A request that matches no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misroute {
    NotFound,
    WrongMethod { allow: &'static str },
}

fn route(method: &Method, path: &str) -> Result<Route, Misroute> {
    let (route, allow) = match path {
        "/v1/messages" => (Route::Provider(Endpoint::Messages), "POST"),
        "/v1/messages/count_tokens" => (Route::Provider(Endpoint::CountTokens), "POST"),
        "/v1/models" => (Route::Models, "GET"),
        "/api/hello" => (Route::Hello, "GET, HEAD"),
        _ => return Err(Misroute::NotFound),
    };
    let allowed = match route {
        Route::Provider(_) => method == Method::POST,
        Route::Models => method == Method::GET,
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
