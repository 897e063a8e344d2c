//! Providers: where an authorized request is answered.
//!
//! Each provider kind turns a [`ProviderCall`] into a response. Messages calls carry a
//! [`PendingUsage`], which the provider always consumes: it either wraps the response body
//! in a [`MeteredBody`] or records the usage of a failed call itself.

pub(crate) mod anthropic;
pub(crate) mod demo;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use tollgate_policy::RouteTarget;

use crate::gateway::ResponseBody;
use crate::meter::{DrainPolicy, Meter, MeteredBody, UpstreamBody};
use crate::request::RequestFields;
use crate::usage::PendingUsage;

/// The Messages API endpoints a provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Messages,
    CountTokens,
}

impl Endpoint {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
        }
    }

    /// The name in usage records.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
        }
    }
}

/// One authorized request on its way to a provider.
pub(crate) struct ProviderCall<'a> {
    pub request_id: &'a str,
    pub endpoint: Endpoint,
    /// The client's request headers.
    pub headers: &'a HeaderMap,
    /// The client's body, byte for byte.
    pub body: &'a Bytes,
    pub fields: &'a RequestFields<'a>,
    pub target: &'a RouteTarget,
    /// Present for metered calls (`/v1/messages`).
    pub pending: Option<PendingUsage>,
}

/// A successful provider response: metered if the call is.
pub(crate) fn respond(
    drain: &DrainPolicy,
    status: StatusCode,
    headers: HeaderMap,
    body: UpstreamBody,
    pending: Option<PendingUsage>,
) -> Response<ResponseBody> {
    let body = match pending {
        Some(mut pending) => {
            pending.set_status(status.as_u16());
            let meter = Meter::for_content_type(headers.get(CONTENT_TYPE));
            MeteredBody::new(body, meter, pending, drain.clone()).boxed_unsync()
        }
        None => body,
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
