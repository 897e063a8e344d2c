//! `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! Messages calls are priced (a target without a price is refused) and, when spend caps
//! apply, admitted against them before anything goes upstream: the estimate is reserved on
//! every counter, settled to the real cost when the response ends. `count_tokens` costs
//! nothing and is never capped.

use bytes::Bytes;
use http::{Request, Response};
use tollgate_policy::{AccessError, Caller, CounterKey, Route, Snapshot, TargetPrice};
use tracing::Instrument as _;

use super::{Gateway, RequestContext, ResponseBody};
use crate::budget::{self, Admission, HeaderList, Reservation, success_headers};
use crate::error::{ApiError, ErrorCode};
use crate::providers::Endpoint;
use crate::request::{BodyError, RequestFields, check_declared_length, extract_fields, read_body};
use crate::routing::{OwnedFields, Routed};
use crate::usage::{Observed, Outcome, PendingUsage, UsageRecord, unix_ms};

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

    let admission = crate::trace_context::admission_span(&ctx.span);
    let route = admission.in_scope(|| {
        snapshot
            .authorize_caller(&caller, &fields.model)
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))
    })?;
    let target = route.primary().ok_or_else(|| {
        let error = AccessError::NoRoute(fields.model.clone().into_owned());
        ApiError::new(ErrorCode::InvalidRequest, error.to_string())
    })?;

    let mut spend_headers = None;
    let pending = if endpoint == Endpoint::Messages {
        let spend = admit_spend(gateway, &snapshot, &caller, route, &fields, body.len())
            .instrument(admission.clone())
            .await;
        if !admission.is_disabled() {
            let outcome = match &spend {
                Ok(_) => "admitted",
                Err(_) => "refused",
            };
            admission.record("budget.outcome", outcome);
        }
        drop(admission);
        let spend = spend?;
        spend_headers = spend.headers;
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
            cost_micro_usd: 0,
            charges: spend.charges,
            group_ids: caller.group_ids().to_vec(),
            price_source: target
                .price
                .as_ref()
                .map(|p| p.source.clone())
                .unwrap_or_default(),
        };
        Some(
            PendingUsage::new(record, ctx.started, gateway.usage.clone())
                .with_spend(target.price.clone(), spend.reservation)
                .with_observed(Observed::new(&caller, &snapshot, ctx.span.clone(), &body)),
        )
    } else {
        drop(admission);
        None
    };
    ctx.metered = pending.is_some();
    let routed = Routed {
        request_id: ctx.id.clone(),
        endpoint,
        fields: OwnedFields::from_fields(&fields),
        model: route.model.clone(),
        headers: parts.headers,
        body,
        snapshot: snapshot.clone(),
        pending,
        span: ctx.span.clone(),
    };
    let mut response = gateway.exchange.serve(routed).await?;
    if let Some(headers) = spend_headers
        && response.status().is_success()
    {
        let map = response.headers_mut();
        for (name, value) in headers {
            map.insert(name, value);
        }
    }
    Ok(response)
}

/// What spend admission hands to the rest of a Messages call.
#[derive(Default)]
struct SpendAdmission {
    /// Claude Code's headers for a success (only under a cap).
    headers: Option<HeaderList>,
    reservation: Option<Reservation>,
    charges: Vec<CounterKey>,
}

/// Prices the request and, under caps, reserves its estimate on every counter.
///
/// Any target may answer (failover), so the estimate uses the most expensive one; every
/// target must have a price.
async fn admit_spend(
    gateway: &Gateway,
    snapshot: &Snapshot,
    caller: &Caller,
    route: &Route,
    fields: &RequestFields<'_>,
    body_bytes: usize,
) -> Result<SpendAdmission, ApiError> {
    let unpriced = || {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("model {} has no price configured", fields.model),
        )
    };
    if route.targets.iter().any(|t| t.price.is_none()) {
        return Err(unpriced());
    }
    let budgets = snapshot.budgets();
    let now_unix_s = gateway.spend.clock().now_unix_s();
    let applied = budgets.applicable(caller, now_unix_s);
    if applied.is_empty() {
        return Ok(SpendAdmission::default());
    }
    let estimate_at = |price: &TargetPrice| {
        budgets
            .settings
            .estimate(price, body_bytes, fields.max_tokens.unwrap_or(0))
    };
    let estimate = route
        .targets
        .iter()
        .filter_map(|t| t.price.as_deref())
        .map(estimate_at)
        .max()
        .ok_or_else(unpriced)?;
    match gateway
        .spend
        .admit(&applied, estimate, &budgets.settings)
        .await
    {
        Admission::Admitted {
            reservation,
            representative,
        } => Ok(SpendAdmission {
            headers: representative.and_then(|r| {
                applied
                    .get(r.index)
                    .map(|a| success_headers(r.usage, a.window.end_unix_s))
            }),
            charges: reservation.counters().to_vec(),
            reservation: Some(reservation),
        }),
        Admission::Refused { index, usage } => {
            let Some(applied) = applied.get(index).or_else(|| applied.first()) else {
                budget_rejected("unavailable", caller);
                return Err(ApiError::spend_unavailable());
            };
            budget_rejected(applied.budget.scope.as_str(), caller);
            let cap = budget::cap_reached(applied, usage, snapshot, now_unix_s);
            Err(ApiError::spend_cap_reached(&cap))
        }
        Admission::Unavailable => {
            budget_rejected("unavailable", caller);
            Err(ApiError::spend_unavailable())
        }
    }
}

/// Counts a spend-cap refusal (`scope`: the cap's, or `unavailable` when it could not be
/// checked and the gateway failed closed).
fn budget_rejected(scope: &'static str, caller: &Caller) {
    if let Some(instruments) = crate::metrics::instruments() {
        instruments.budget_rejection(scope, &caller.principal().email);
    }
}

fn body_error(error: BodyError) -> ApiError {
    match error {
        BodyError::TooLarge { .. } => ApiError::new(ErrorCode::RequestTooLarge, error.to_string()),
        BodyError::Read(_) => ApiError::new(ErrorCode::InvalidRequest, error.to_string()),
    }
}
