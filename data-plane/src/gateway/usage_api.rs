//! `GET /api/oauth/usage`: the caller's spend against their caps, in the shape Claude
//! Code's `/usage` reads (protocol summary §D). Amounts are in US cents, rounded down.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response};
use serde_json::{Value, json};
use tollgate_policy::{AppliedBudget, Period};

use super::{Gateway, RequestContext, ResponseBody, full_body};
use crate::budget::{CounterUse, SpendCallError, SpendSummary};
use crate::error::{ApiError, ErrorCode};

/// Percent at or above which a limit is shown as a warning.
const WARNING_PERCENT: u64 = 75;

pub(super) async fn get(
    gateway: &Gateway,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) -> Result<Response<ResponseBody>, ApiError> {
    let (snapshot, caller) = gateway.admit(ctx, headers)?;
    let now_unix_s = gateway.spend.clock().now_unix_s();
    let applied = snapshot.budgets().applicable(&caller, now_unix_s);
    let body = if applied.is_empty() {
        let summary = gateway
            .spend
            .summary(&caller.principal().id)
            .await
            .map_err(unavailable)?;
        uncapped(&summary)
    } else {
        let uses = gateway
            .spend
            .usage_of(&applied)
            .await
            .map_err(unavailable)?;
        capped(&applied, &uses)
    };
    let bytes = serde_json::to_vec(&body)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?;
    let mut response = Response::new(full_body(bytes.into()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn unavailable(error: SpendCallError) -> ApiError {
    tracing::warn!(%error, "spend information unavailable");
    ApiError::new(ErrorCode::Unavailable, "spend information is unavailable")
}

fn cents(micro_usd: u64) -> u64 {
    micro_usd / 10_000
}

/// One limit per counter; `extra_usage` describes the tightest monthly cap, or the most
/// used cap when none is monthly.
fn capped(applied: &[AppliedBudget], uses: &[CounterUse]) -> Value {
    let limits: Vec<Value> = applied
        .iter()
        .zip(uses)
        .map(|(a, u)| {
            let percent = u.hundredths();
            json!({
                "kind": "spend",
                "group": a.budget.period.as_str(),
                "percent": percent,
                "resets_at": super::models::rfc3339(a.window.end_unix_s),
                "severity": if percent >= WARNING_PERCENT { "warning" } else { "normal" },
                "is_active": true,
            })
        })
        .collect();
    let pairs = || applied.iter().zip(uses);
    let tightest = |monthly_only: bool| {
        pairs()
            .filter(|(a, _)| !monthly_only || a.budget.period == Period::Monthly)
            .fold(None::<CounterUse>, |best, (_, u)| match best {
                Some(b) if u.hundredths() <= b.hundredths() => Some(b),
                _ => Some(*u),
            })
    };
    let extra = tightest(true)
        .or_else(|| tightest(false))
        .map_or(Value::Null, |u| {
            json!({
                "is_enabled": true,
                "monthly_limit": cents(u.limit),
                "used_credits": cents(u.used),
                "utilization": u.hundredths(),
                "currency": "USD",
            })
        });
    json!({ "extra_usage": extra, "limits": limits })
}

/// No cap applies: month-to-date spend, and day and week to date.
fn uncapped(summary: &SpendSummary) -> Value {
    let period =
        |used: u64| json!({ "limit": null, "used_credits": cents(used), "utilization": null });
    json!({
        "extra_usage": {
            "is_enabled": true,
            "monthly_limit": null,
            "used_credits": cents(summary.month),
            "utilization": null,
            "currency": "USD",
            "daily": period(summary.day),
            "weekly": period(summary.week),
        },
        "limits": [],
    })
}
