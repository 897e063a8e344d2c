//! The snapshot's rate limits and upstream ceilings.

use sqlx::PgConnection;
use tollgate_policy::{RateLimitKind, RateLimitScope};
use tollgate_proto::v1 as pb;
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::rate_limit::scope_from_str;

/// One rate limit as the snapshot needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RateLimitPolicyRow {
    id: Uuid,
    scope: String,
    scope_id: Option<Uuid>,
    per_member: bool,
    model: String,
    kind: String,
    limit_value: i64,
}

/// Reads every rate limit (in the compiler's transaction).
pub(crate) async fn load(conn: &mut PgConnection) -> Result<Vec<RateLimitPolicyRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, scope, COALESCE(group_id, principal_id, api_key_id, provider_id) AS scope_id, \
         per_member, model, kind, limit_value FROM rate_limits ORDER BY id",
    )
    .fetch_all(conn)
    .await?)
}

/// Fills `rate_limits` (model '' = every model; the scope id is the target's id, '' for the
/// org).
pub(crate) fn apply(snapshot: &mut pb::Snapshot, rows: Vec<RateLimitPolicyRow>) {
    snapshot.rate_limits = rows
        .into_iter()
        .map(|r| pb::RateLimit {
            id: r.id.to_string(),
            scope: scope_from_str(&r.scope)
                .map_or(pb::RateLimitScope::Unspecified, RateLimitScope::to_pb)
                as i32,
            scope_id: r.scope_id.map(|id| id.to_string()).unwrap_or_default(),
            per_member: r.per_member,
            model: r.model,
            kind: RateLimitKind::parse(&r.kind)
                .map_or(pb::RateLimitKind::Unspecified, RateLimitKind::to_pb)
                as i32,
            limit: u64::try_from(r.limit_value).unwrap_or(0),
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_rows_become_snapshot_limits() {
        let id = Uuid::now_v7();
        let group = Uuid::now_v7();
        let mut snapshot = pb::Snapshot::default();
        apply(
            &mut snapshot,
            vec![
                RateLimitPolicyRow {
                    id,
                    scope: "group".to_owned(),
                    scope_id: Some(group),
                    per_member: true,
                    model: "claude-x".to_owned(),
                    kind: "input_tokens_per_minute".to_owned(),
                    limit_value: 10_000,
                },
                RateLimitPolicyRow {
                    id: Uuid::now_v7(),
                    scope: "org".to_owned(),
                    scope_id: None,
                    per_member: false,
                    model: String::new(),
                    kind: "concurrent_requests".to_owned(),
                    limit_value: 4,
                },
            ],
        );
        let l = &snapshot.rate_limits[0];
        assert_eq!(l.id, id.to_string());
        assert_eq!(l.scope, pb::RateLimitScope::Group as i32);
        assert_eq!(l.scope_id, group.to_string());
        assert!(l.per_member);
        assert_eq!(l.model, "claude-x");
        assert_eq!(l.kind, pb::RateLimitKind::InputTokensPerMinute as i32);
        assert_eq!(l.limit, 10_000);
        let org = &snapshot.rate_limits[1];
        assert_eq!(org.scope, pb::RateLimitScope::Org as i32);
        assert!(org.scope_id.is_empty());
        assert_eq!(org.kind, pb::RateLimitKind::ConcurrentRequests as i32);
        assert!(tollgate_policy::RateLimits::from_pb(snapshot.rate_limits).is_ok());
    }
}
