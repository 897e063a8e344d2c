//! `POST /v1/messages` and `POST /v1/messages/count_tokens`.

use bytes::Bytes;
use http::{Request, Response};
use tollgate_policy::{AccessError, ProviderKind};

use super::{Gateway, RequestContext, ResponseBody};
use crate::error::{ApiError, ErrorCode};
use crate::providers::{self, Endpoint, ProviderCall};
use crate::request::{BodyError, check_declared_length, extract_fields, read_body};
use crate::usage::{Outcome, PendingUsage, UsageRecord, unix_ms};

pub(super) async fn handle<B>(
    gateway: &Gateway,
    ctx: &mut RequestContext,
    request: Request<B>,
    endpoint: Endpoint,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (snapshot, caller) = gateway.admit(ctx, request.headers())?;

    let (parts, body) = request.into_parts();
    let max = gateway.max_body_bytes;
    check_declared_length(&parts.headers, max).map_err(body_error)?;
    let body = read_body(body, max).await.map_err(body_error)?;
    let fields = extract_fields(&body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))?;
    ctx.model = Some(fields.model.clone().into_owned());

    let route = snapshot
        .authorize_caller(&caller, &fields.model)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))?;
    let target = route.primary().ok_or_else(|| {
        let error = AccessError::NoRoute(fields.model.clone().into_owned());
        ApiError::new(ErrorCode::InvalidRequest, error.to_string())
    })?;

    let pending = (endpoint == Endpoint::Messages).then(|| {
        let record = UsageRecord {
            request_id: ctx.id.clone(),
            data_plane_id: gateway.data_plane_id.clone(),
            started_at_unix_ms: unix_ms(ctx.started_at),
            duration_ms: 0,
            api_key_id: caller.key_id().unwrap_or_default().to_owned(),
            principal_id: caller.principal().id.clone(),
            model: fields.model.clone().into_owned(),
            provider_id: target.provider.id.clone(),
            upstream_model: target.upstream_model.clone(),
            endpoint: endpoint.as_str().to_owned(),
            stream: fields.stream,
            status: 0,
            outcome: Outcome::Complete,
            input_tokens: 0,
            output_tokens: 0,
            cache_creation_5m_tokens: 0,
            cache_creation_1h_tokens: 0,
            cache_read_tokens: 0,
        };
        PendingUsage::new(record, ctx.started, gateway.usage.clone())
    });
    ctx.metered = pending.is_some();
    let call = ProviderCall {
        request_id: &ctx.id,
        endpoint,
        headers: &parts.headers,
        body: &body,
        fields: &fields,
        target,
        pending,
    };
    match &target.provider.kind {
        ProviderKind::Demo => Ok(providers::demo::respond(gateway, call)),
        ProviderKind::Anthropic { base_url, api_key } => {
            providers::anthropic::forward(gateway, call, base_url, api_key).await
        }
    }
}

fn body_error(error: BodyError) -> ApiError {
    match error {
        BodyError::TooLarge { .. } => ApiError::new(ErrorCode::RequestTooLarge, error.to_string()),
        BodyError::Read(_) => ApiError::new(ErrorCode::InvalidRequest, error.to_string()),
    }
}
