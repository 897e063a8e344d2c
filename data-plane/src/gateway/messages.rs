//! `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! Messages calls are admitted against the caller's rate limits first (a request they
//! refuse never takes a spend reservation), then priced (a target without a price is
//! refused) and, when spend caps apply, admitted against them before anything goes
//! upstream: the estimate is reserved on every counter and bucket, settled to the real cost
//! and token usage when the response ends. `count_tokens` costs nothing and is never capped
//! or rate limited.

use bytes::Bytes;
use http::{Request, Response};
use tollgate_policy::{
    AccessError, BudgetSettings, Caller, CounterKey, RateLimit, RateLimitScope, Route, Snapshot,
    TargetPrice,
};
use tracing::Instrument as _;

use super::{Gateway, RequestContext, ResponseBody};
use crate::budget::{self, Admission, HeaderList, Reservation, success_headers};
use crate::error::{ApiError, ErrorCode};
use crate::providers::Endpoint;
use crate::rate_limit::{Demand, RateAdmission, RateHold};
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

    let mut success_headers: HeaderList = Vec::new();
    let mut demand = Demand::default();
    let pending = if endpoint == Endpoint::Messages {
        check_priced(route, &fields)?;
        demand = rate_demand(&snapshot.budgets().settings, body.len(), fields.max_tokens);
        // Rate limits first: a request they refuse never takes a spend reservation.
        let rate_hold = admit_rate_limits(gateway, &snapshot, &caller, &route.model, demand)
            .instrument(admission.clone())
            .await;
        if rate_hold.is_err() && !admission.is_disabled() {
            admission.record("budget.outcome", "rate_limited");
        }
        let rate_hold = rate_hold?;
        if let Some(hold) = &rate_hold {
            success_headers.extend(hold.headers());
        }
        // A spend refusal gives the rate hold back: a refused request counts for nothing.
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
        let spend = match spend {
            Ok(spend) => spend,
            Err(refusal) => {
                if let Some(hold) = rate_hold {
                    hold.cancel();
                }
                return Err(refusal);
            }
        };
        success_headers.extend(spend.headers.unwrap_or_default());
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
                .with_rate_hold(rate_hold)
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
        demand,
        span: ctx.span.clone(),
    };
    let mut response = gateway.exchange.serve(routed).await?;
    if !success_headers.is_empty() && response.status().is_success() {
        let map = response.headers_mut();
        for (name, value) in success_headers {
            map.insert(name, value);
        }
    }
    Ok(response)
}

/// What a Messages call asks of token limits: body bytes / `input_bytes_per_token` input
/// tokens, and `max_tokens` (bounded by `output_estimate_max_tokens`) output tokens.
fn rate_demand(settings: &BudgetSettings, body_bytes: usize, max_tokens: Option<u64>) -> Demand {
    let (input_tokens, output_tokens) =
        settings.estimate_tokens(body_bytes, max_tokens.unwrap_or(0));
    Demand {
        input_tokens,
        output_tokens,
    }
}

/// Reserves `demand` on every rate limit that counts the caller's request for `model` (the
/// catalogue model). `None` when no limit applies.
async fn admit_rate_limits(
    gateway: &Gateway,
    snapshot: &Snapshot,
    caller: &Caller,
    model: &str,
    demand: Demand,
) -> Result<Option<RateHold>, ApiError> {
    let limits = snapshot.rate_limits();
    if limits.is_empty() {
        return Ok(None);
    }
    let applied = limits.applicable(caller, model);
    if applied.is_empty() {
        return Ok(None);
    }
    let outage = snapshot.budgets().settings.outage_mode;
    match gateway.rate_limits.admit(&applied, demand, outage).await {
        RateAdmission::Admitted(hold) => Ok(Some(hold)),
        RateAdmission::Limited { index, limited } => {
            let limit = applied.get(index).map_or(&limited.limit, |a| &a.limit);
            rate_limit_rejected(limit.scope.as_str(), limit.kind.as_str());
            let label = limit_label(limit, snapshot, caller);
            Err(ApiError::rate_limited(
                &limited,
                &label,
                unix_ms(std::time::SystemTime::now()),
            ))
        }
        RateAdmission::Unavailable => {
            rate_limit_rejected("unavailable", "unknown");
            Err(ApiError::rate_limits_unavailable())
        }
    }
}

/// How a refusal names a limit: "the organisation", "group eng (per member)", "user
/// ada@example.com", "this API key", with " for <model>" when it counts one model.
fn limit_label(limit: &RateLimit, snapshot: &Snapshot, caller: &Caller) -> String {
    let mut label = match limit.scope {
        RateLimitScope::Org => "the organisation".to_owned(),
        RateLimitScope::Group => {
            let name = snapshot.group_name(&limit.scope_id);
            if limit.per_member {
                format!("group {name} (per member)")
            } else {
                format!("group {name}")
            }
        }
        RateLimitScope::User => {
            let principal = caller.principal();
            if principal.id == limit.scope_id {
                format!("user {}", principal.email)
            } else {
                format!("user {}", limit.scope_id)
            }
        }
        RateLimitScope::Key => "this API key".to_owned(),
        RateLimitScope::Provider => "the provider".to_owned(),
    };
    if let Some(model) = &limit.model {
        label.push_str(" for ");
        label.push_str(model);
    }
    label
}

/// Counts a rate-limit refusal (`scope`: the limit's, or `unavailable` when the limits
/// could not be checked and the gateway failed closed).
fn rate_limit_rejected(scope: &str, kind: &str) {
    if let Some(instruments) = crate::metrics::instruments() {
        instruments.rate_limit_rejection(scope, kind);
    }
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
    check_priced(route, fields)?;
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
        .ok_or_else(|| unpriced(fields))?;
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

/// Every target of a Messages call must have a price (any may answer, after failover).
fn check_priced(route: &Route, fields: &RequestFields<'_>) -> Result<(), ApiError> {
    if route.targets.iter().any(|t| t.price.is_none()) {
        return Err(unpriced(fields));
    }
    Ok(())
}

fn unpriced(fields: &RequestFields<'_>) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("model {} has no price configured", fields.model),
    )
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
