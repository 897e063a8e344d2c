//! Spend: leases (concurrency, all-or-nothing, slices, expiry, releases, windows), usage
//! settlement and the ledger, alerts and their webhook, budget admin, explain and reports.

mod admin;
mod leases;
mod ledger;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;
use tollgate_control_plane::store::spend::Counter;
use tollgate_control_plane::store::spend::lease::{self, Ask, LeaseOutcome};
use tollgate_policy::Period;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::spend_admin_client::SpendAdminClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::support::TestControlPlane;

pub type SpendApi = SpendAdminClient<InterceptedService<Channel, AdminBearer>>;

/// Adds the admin key to every call.
#[derive(Clone)]
pub struct AdminBearer(MetadataValue<Ascii>);

impl Interceptor for AdminBearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub async fn spend_admin(cp: &TestControlPlane) -> SpendApi {
    let bearer = AdminBearer(format!("Bearer {}", cp.admin_key).parse().unwrap());
    SpendAdminClient::with_interceptor(cp.channel().await, bearer)
}

/// Sets a cap and returns its id.
pub async fn set_budget(
    spend: &mut SpendApi,
    scope: pb::BudgetScope,
    scope_ref: &str,
    period: pb::BudgetPeriod,
    limit_micro_usd: u64,
) -> pb::BudgetInfo {
    spend
        .set_budget(pb::SetBudgetRequest {
            scope: scope as i32,
            scope_ref: scope_ref.to_owned(),
            period: period as i32,
            limit_micro_usd,
            per_member: false,
            alert_thresholds_percent: vec![],
        })
        .await
        .unwrap()
        .into_inner()
}

/// Sets the org's daily cap.
pub async fn org_daily_cap(spend: &mut SpendApi, limit_micro_usd: u64) -> pb::BudgetInfo {
    set_budget(
        spend,
        pb::BudgetScope::Org,
        "",
        pb::BudgetPeriod::Daily,
        limit_micro_usd,
    )
    .await
}

/// A fixed instant in the middle of a UTC day (Monday 2026-11-23 12:00).
pub fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

/// The shared daily counter of `budget` at `now`.
pub fn daily_counter(budget: &pb::BudgetInfo, now: DateTime<Utc>) -> Counter {
    let start = Period::Daily.window(now.timestamp()).start_unix_s;
    Counter {
        budget_id: Uuid::parse_str(&budget.id).unwrap(),
        subject_id: String::new(),
        window_start: DateTime::from_timestamp(start, 0).unwrap(),
    }
}

pub fn ask(counter: &Counter, need: i64, want: i64, release: i64) -> Ask {
    Ask {
        counter: counter.clone(),
        need,
        want,
        release,
    }
}

/// One `Lease` call through the store at an injected instant.
pub async fn lease_at(
    pool: &PgPool,
    data_plane: &str,
    asks: &[Ask],
    now: DateTime<Utc>,
) -> LeaseOutcome {
    lease::lease(pool, data_plane, asks, now).await.unwrap()
}

/// A usage record of `cost` charged to `charges`.
pub fn usage(data_plane: &str, cost: u64, charges: &[pb::CounterKey]) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: Uuid::now_v7().to_string(),
        data_plane_id: data_plane.to_owned(),
        started_at_unix_ms: Utc::now().timestamp_millis(),
        duration_ms: 10,
        model: "claude-test".to_owned(),
        upstream_model: "claude-test".to_owned(),
        endpoint: "/v1/messages".to_owned(),
        status: 200,
        outcome: pb::UsageOutcome::Complete as i32,
        input_tokens: 10,
        output_tokens: 20,
        cost_micro_usd: cost,
        charges: charges.to_vec(),
        price_source: "catalogue".to_owned(),
        ..Default::default()
    }
}

/// `(spent, Σ usage_charges, Σ cost of the charged records)` of a counter.
pub async fn ledger(pool: &PgPool, counter: &Counter) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT COALESCE((SELECT spent_micro_usd FROM spend_counters WHERE budget_id = $1 \
           AND subject_id = $2 AND window_start = $3), 0)::int8, \
         COALESCE((SELECT sum(cost_micro_usd) FROM usage_charges WHERE budget_id = $1 \
           AND subject_id = $2 AND window_start = $3), 0)::int8, \
         COALESCE((SELECT sum(u.cost_micro_usd) FROM usage_records u WHERE u.request_id IN \
           (SELECT request_id FROM usage_charges WHERE budget_id = $1 AND subject_id = $2 \
            AND window_start = $3)), 0)::int8",
    )
    .bind(counter.budget_id)
    .bind(&counter.subject_id)
    .bind(counter.window_start)
    .fetch_one(pool)
    .await
    .unwrap()
}
