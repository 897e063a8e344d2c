//! The `RateLimitAdmin` gRPC service: set, list, delete and explain rate limits (requests and
//! tokens per minute, concurrency) and upstream ceilings. Same admin-key check and error
//! mapping as `Admin`: unknown scope targets are `invalid_argument` (as for budgets), an
//! unknown limit id `not_found`, an unknown user or key to explain `not_found`.

use tollgate_policy::{RateLimitKind, RateLimitScope};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::rate_limit_admin_server::RateLimitAdminServer;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{AdminService, optional};
use crate::clock::Clock;
use crate::store::rate_limit::{self, MAX_LIMIT, RateLimitRow, RateLimitSpec, explain};

/// The `RateLimitAdmin` service, sharing `Admin`'s pool, organisation and key check; the
/// clock is the one rate-limit buckets are refilled by.
#[derive(Clone)]
pub struct RateLimitAdminService {
    admin: AdminService,
    clock: Clock,
}

/// The tonic server for `RateLimitAdmin`.
pub fn server(admin: AdminService, clock: Clock) -> RateLimitAdminServer<RateLimitAdminService> {
    RateLimitAdminServer::new(RateLimitAdminService { admin, clock })
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::rate_limit_admin_server::RateLimitAdmin for RateLimitAdminService {
    async fn set_rate_limit(
        &self,
        request: Request<pb::SetRateLimitRequest>,
    ) -> Reply<pb::RateLimitInfo> {
        handle!(self.admin => self, request, set_rate_limit)
    }

    async fn list_rate_limits(
        &self,
        request: Request<pb::ListRateLimitsRequest>,
    ) -> Reply<pb::ListRateLimitsResponse> {
        handle!(self.admin => self, request, list_rate_limits)
    }

    async fn delete_rate_limit(
        &self,
        request: Request<pb::DeleteRateLimitRequest>,
    ) -> Reply<pb::DeleteRateLimitResponse> {
        handle!(self.admin => self, request, delete_rate_limit)
    }

    async fn explain_rate_limits(
        &self,
        request: Request<pb::ExplainRateLimitsRequest>,
    ) -> Reply<pb::ExplainRateLimitsResponse> {
        handle!(self.admin => self, request, explain_rate_limits)
    }
}

async fn set_rate_limit(
    svc: &RateLimitAdminService,
    req: pb::SetRateLimitRequest,
) -> Result<pb::RateLimitInfo, Status> {
    let scope = RateLimitScope::from_pb(req.scope).ok_or_else(|| {
        Status::invalid_argument("scope must be org, group, user, key or provider")
    })?;
    let kind = RateLimitKind::from_pb(req.kind).ok_or_else(|| {
        Status::invalid_argument(
            "kind must be requests_per_minute, input_tokens_per_minute, \
             output_tokens_per_minute or concurrent_requests",
        )
    })?;
    let limit = i64::try_from(req.limit)
        .ok()
        .filter(|l| (1..=MAX_LIMIT).contains(l))
        .ok_or_else(|| {
            Status::invalid_argument(format!("the limit must be from 1 to {MAX_LIMIT}"))
        })?;
    let spec = RateLimitSpec {
        scope,
        scope_ref: &req.scope_ref,
        per_member: req.per_member,
        model: &req.model,
        kind,
        limit,
    };
    let row = rate_limit::set(&svc.admin.pool, svc.admin.org_id, &spec).await?;
    Ok(limit_info(&row))
}

async fn list_rate_limits(
    svc: &RateLimitAdminService,
    _req: pb::ListRateLimitsRequest,
) -> Result<pb::ListRateLimitsResponse, Status> {
    let rows = rate_limit::list(&svc.admin.pool).await?;
    Ok(pb::ListRateLimitsResponse {
        limits: rows.iter().map(limit_info).collect(),
    })
}

async fn delete_rate_limit(
    svc: &RateLimitAdminService,
    req: pb::DeleteRateLimitRequest,
) -> Result<pb::DeleteRateLimitResponse, Status> {
    let id = Uuid::parse_str(req.id.trim())
        .map_err(|_| Status::invalid_argument("rate limit id must be a UUID"))?;
    rate_limit::delete(&svc.admin.pool, id).await?;
    Ok(pb::DeleteRateLimitResponse {})
}

async fn explain_rate_limits(
    svc: &RateLimitAdminService,
    req: pb::ExplainRateLimitsRequest,
) -> Result<pb::ExplainRateLimitsResponse, Status> {
    let e = explain::explain(
        &svc.admin.pool,
        svc.admin.org_id,
        optional(req.user.trim()),
        optional(req.api_key_id.trim()),
        optional(req.model.trim()),
        svc.clock.now(),
    )
    .await?;
    let wire = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(pb::ExplainRateLimitsResponse {
        principal_id: e.principal_id.to_string(),
        principal_name: e.principal_name,
        group_names: e.group_names,
        blocked: e.blocked,
        standings: e
            .standings
            .into_iter()
            .map(|s| pb::RateLimitStanding {
                limit: Some(limit_info(&s.limit)),
                bucket: Some(s.bucket.to_pb()),
                available: wire(s.available),
                held: wire(s.held),
                full_in_ms: wire(s.full_in_ms),
                blocks: s.blocks,
                explanation: s.explanation,
            })
            .collect(),
    })
}

/// The wire form of a stored limit.
fn limit_info(r: &RateLimitRow) -> pb::RateLimitInfo {
    pb::RateLimitInfo {
        id: r.id.to_string(),
        scope: r
            .scope()
            .map_or(pb::RateLimitScope::Unspecified, RateLimitScope::to_pb) as i32,
        scope_id: r.scope_id().map(|id| id.to_string()).unwrap_or_default(),
        scope_name: r.scope_name.clone(),
        per_member: r.per_member,
        model: r.model.clone(),
        kind: r
            .kind()
            .map_or(pb::RateLimitKind::Unspecified, RateLimitKind::to_pb) as i32,
        limit: u64::try_from(r.limit_value).unwrap_or(0),
        created_at_unix_ms: r.created_at.timestamp_millis(),
        updated_at_unix_ms: r.updated_at.timestamp_millis(),
    }
}
