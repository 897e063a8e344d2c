//! The `AuditAdmin` gRPC service: the audit chain (filtered, paged), its signed checkpoints,
//! the observability settings (content capture, audit retention) and the usage ledger as
//! evidence (per-request export, reconciliation with the spend counters). Same admin-key check
//! and error mapping as `Admin`; bad bounds, limits and cursors are `invalid_argument`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::audit_admin_server::AuditAdminServer;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{AdminService, optional};
use crate::store::audit::query::{self as audit_query, AuditFilter};
use crate::store::observability::{self, ObservabilitySettingsRow, ObservabilityUpdate};
use crate::store::usage::export::{self as usage_export, ExportPosition, UsageExportRow};

/// Audit entries per page when the caller names no limit, and the most it may ask for.
const AUDIT_PAGE: (u32, u32) = (100, 1000);
/// Usage records per page when the caller names no limit, and the most it may ask for.
const USAGE_PAGE: (u32, u32) = (500, 5000);
/// Longest audit retention accepted (a hundred years; longer is "forever").
const MAX_RETENTION_DAYS: u32 = 36_500;

/// The `AuditAdmin` service, sharing `Admin`'s pool and key check.
#[derive(Clone)]
pub struct AuditAdminService {
    admin: AdminService,
}

/// The tonic server for `AuditAdmin`.
pub fn server(admin: AdminService) -> AuditAdminServer<AuditAdminService> {
    AuditAdminServer::new(AuditAdminService { admin })
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::audit_admin_server::AuditAdmin for AuditAdminService {
    async fn list_audit_entries(
        &self,
        request: Request<pb::ListAuditEntriesRequest>,
    ) -> Reply<pb::ListAuditEntriesResponse> {
        let admin = &self.admin;
        handle!(admin, request, list_audit_entries)
    }

    async fn list_audit_checkpoints(
        &self,
        request: Request<pb::ListAuditCheckpointsRequest>,
    ) -> Reply<pb::ListAuditCheckpointsResponse> {
        let admin = &self.admin;
        handle!(admin, request, list_audit_checkpoints)
    }

    async fn get_observability_settings(
        &self,
        request: Request<pb::GetObservabilitySettingsRequest>,
    ) -> Reply<pb::ObservabilitySettings> {
        let admin = &self.admin;
        handle!(admin, request, get_observability_settings)
    }

    async fn update_observability_settings(
        &self,
        request: Request<pb::UpdateObservabilitySettingsRequest>,
    ) -> Reply<pb::ObservabilitySettings> {
        let admin = &self.admin;
        handle!(admin, request, update_observability_settings)
    }

    async fn export_usage(
        &self,
        request: Request<pb::ExportUsageRequest>,
    ) -> Reply<pb::ExportUsageResponse> {
        let admin = &self.admin;
        handle!(admin, request, export_usage)
    }

    async fn reconcile_usage(
        &self,
        request: Request<pb::ReconcileUsageRequest>,
    ) -> Reply<pb::ReconcileUsageResponse> {
        let admin = &self.admin;
        handle!(admin, request, reconcile_usage)
    }
}

async fn list_audit_entries(
    svc: &AdminService,
    req: pb::ListAuditEntriesRequest,
) -> Result<pb::ListAuditEntriesResponse, Status> {
    let (since, until) = range(
        "since_unix_s",
        req.since_unix_s,
        "until_unix_s",
        req.until_unix_s,
    )?;
    let filter = AuditFilter {
        actor: optional(&req.actor),
        action: optional(&req.action_prefix),
        target_prefix: optional(&req.target_prefix),
        since,
        until,
        after_seq: i64::try_from(req.after_seq)
            .map_err(|_| Status::invalid_argument("after_seq is out of range"))?,
    };
    let limit = page_size(req.limit, AUDIT_PAGE);
    let mut rows = audit_query::list(&svc.pool, &filter, i64::from(limit) + 1).await?;
    let next_after_seq =
        next_page(&mut rows, limit).map_or(0, |last| u64::try_from(last.seq).unwrap_or(0));
    Ok(pb::ListAuditEntriesResponse {
        entries: rows
            .into_iter()
            .map(audit_query::AuditEntryRow::to_pb)
            .collect(),
        next_after_seq,
    })
}

async fn list_audit_checkpoints(
    svc: &AdminService,
    req: pb::ListAuditCheckpointsRequest,
) -> Result<pb::ListAuditCheckpointsResponse, Status> {
    let after_id = i64::try_from(req.after_id)
        .map_err(|_| Status::invalid_argument("after_id is out of range"))?;
    let limit = page_size(req.limit, AUDIT_PAGE);
    let mut rows = audit_query::checkpoints(&svc.pool, after_id, i64::from(limit) + 1).await?;
    let next_after_id =
        next_page(&mut rows, limit).map_or(0, |last| u64::try_from(last.id).unwrap_or(0));
    Ok(pb::ListAuditCheckpointsResponse {
        checkpoints: rows
            .into_iter()
            .map(audit_query::CheckpointRow::to_pb)
            .collect(),
        next_after_id,
    })
}

async fn get_observability_settings(
    svc: &AdminService,
    _req: pb::GetObservabilitySettingsRequest,
) -> Result<pb::ObservabilitySettings, Status> {
    Ok(settings_info(observability::get(&svc.pool).await?))
}

async fn update_observability_settings(
    svc: &AdminService,
    req: pb::UpdateObservabilitySettingsRequest,
) -> Result<pb::ObservabilitySettings, Status> {
    let audit_retention_days = req.audit_retention_days.map(retention_days).transpose()?;
    let update = ObservabilityUpdate {
        content_capture: req.content_capture,
        audit_retention_days,
    };
    Ok(settings_info(
        observability::update(&svc.pool, update).await?,
    ))
}

/// `0` = forever; otherwise whole days up to [`MAX_RETENTION_DAYS`].
fn retention_days(days: u32) -> Result<Option<i32>, Status> {
    if days == 0 {
        return Ok(None);
    }
    if days > MAX_RETENTION_DAYS {
        return Err(Status::invalid_argument(format!(
            "audit_retention_days must be at most {MAX_RETENTION_DAYS} (or 0 for forever)"
        )));
    }
    i32::try_from(days)
        .map(Some)
        .map_err(|_| Status::invalid_argument("audit_retention_days is out of range"))
}

fn settings_info(row: ObservabilitySettingsRow) -> pb::ObservabilitySettings {
    pb::ObservabilitySettings {
        content_capture: row.content_capture,
        audit_retention_days: row
            .audit_retention_days
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0),
    }
}

async fn export_usage(
    svc: &AdminService,
    req: pb::ExportUsageRequest,
) -> Result<pb::ExportUsageResponse, Status> {
    let (from, to) = range("from_unix_s", req.from_unix_s, "to_unix_s", req.to_unix_s)?;
    let after = optional(&req.cursor).map(decode_cursor).transpose()?;
    let limit = page_size(req.limit, USAGE_PAGE);
    let mut rows = usage_export::export(&svc.pool, from, to, after, i64::from(limit) + 1).await?;
    let next_cursor = next_page(&mut rows, limit).map_or_else(String::new, |last| {
        encode_cursor(ExportPosition {
            started_at: last.started_at,
            request_id: last.request_id,
        })
    });
    Ok(pb::ExportUsageResponse {
        records: rows.into_iter().map(usage_record).collect(),
        next_cursor,
    })
}

async fn reconcile_usage(
    svc: &AdminService,
    req: pb::ReconcileUsageRequest,
) -> Result<pb::ReconcileUsageResponse, Status> {
    let (from, to) = range("from_unix_s", req.from_unix_s, "to_unix_s", req.to_unix_s)?;
    let r = usage_export::reconcile(&svc.pool, from, to).await?;
    Ok(pb::ReconcileUsageResponse {
        counters: r
            .counters
            .into_iter()
            .map(|c| pb::CounterReconciliation {
                budget_id: c.budget_id.to_string(),
                subject_id: c.subject_id,
                window_start_unix_s: c.window_start.timestamp(),
                counter_spent_micro_usd: unsigned(c.counter_spent_micro_usd),
                charged_micro_usd: unsigned(c.charged_micro_usd),
                charged_requests: unsigned(c.charged_requests),
            })
            .collect(),
        usage_cost_micro_usd: unsigned(r.usage_cost_micro_usd),
        usage_requests: unsigned(r.usage_requests),
    })
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn usage_record(r: UsageExportRow) -> pb::UsageRecordExport {
    let id = |id: Option<Uuid>| id.map(|i| i.to_string()).unwrap_or_default();
    pb::UsageRecordExport {
        request_id: r.request_id.to_string(),
        started_at_unix_ms: r.started_at.timestamp_millis(),
        duration_ms: unsigned(r.duration_ms),
        data_plane_id: r.data_plane_id,
        principal_id: id(r.principal_id),
        principal: r.principal,
        email: r.email,
        api_key_id: id(r.api_key_id),
        group_ids: r.group_ids.iter().map(ToString::to_string).collect(),
        model: r.model,
        provider: r.provider,
        upstream_model: r.upstream_model,
        endpoint: r.endpoint,
        stream: r.stream,
        status: u32::try_from(r.status).unwrap_or(0),
        outcome: r.outcome,
        input_tokens: unsigned(r.input_tokens),
        output_tokens: unsigned(r.output_tokens),
        cache_creation_5m_tokens: unsigned(r.cache_creation_5m_tokens),
        cache_creation_1h_tokens: unsigned(r.cache_creation_1h_tokens),
        cache_read_tokens: unsigned(r.cache_read_tokens),
        cost_micro_usd: unsigned(r.cost_micro_usd),
        price_source: r.price_source,
    }
}

/// `requested` within `(default, max)`: 0 is the default, more than the maximum is the maximum.
fn page_size(requested: u32, (default, max): (u32, u32)) -> u32 {
    match requested {
        0 => default,
        n => n.min(max),
    }
}

/// Cuts `rows` (fetched with one extra) to `limit`; returns the last kept row when another
/// page follows.
fn next_page<T>(rows: &mut Vec<T>, limit: u32) -> Option<&T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last()
}

/// One end of a range; `None` = open.
type Bound = Option<DateTime<Utc>>;

/// Inclusive start and exclusive end in Unix seconds; 0 = open, negative refused, and the
/// start may not be after the end.
fn range(from_field: &str, from: i64, to_field: &str, to: i64) -> Result<(Bound, Bound), Status> {
    let from_t = bound(from_field, from)?;
    let to_t = bound(to_field, to)?;
    if let (Some(f), Some(t)) = (from_t, to_t)
        && f > t
    {
        return Err(Status::invalid_argument(format!(
            "{from_field} is after {to_field}"
        )));
    }
    Ok((from_t, to_t))
}

fn bound(field: &str, unix_s: i64) -> Result<Bound, Status> {
    if unix_s == 0 {
        return Ok(None);
    }
    DateTime::from_timestamp(unix_s, 0)
        .filter(|_| unix_s > 0)
        .map(Some)
        .ok_or_else(|| Status::invalid_argument(format!("{field} is out of range")))
}

/// Cursor version tag, so the format can change without misreading old cursors.
const CURSOR_VERSION: &str = "u1";

/// `u1.<started_at in µs>.<request id>`, base64url.
fn encode_cursor(p: ExportPosition) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{CURSOR_VERSION}.{}.{}",
        p.started_at.timestamp_micros(),
        p.request_id
    ))
}

fn decode_cursor(cursor: &str) -> Result<ExportPosition, Status> {
    let bad = || Status::invalid_argument("cursor is not one this service returned");
    let text = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let mut parts = text.splitn(3, '.');
    let (Some(CURSOR_VERSION), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let started_at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let request_id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(ExportPosition {
        started_at,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let p = ExportPosition {
            started_at: DateTime::from_timestamp_micros(1_767_312_000_123_456).unwrap(),
            request_id: Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(p)).unwrap(), p);
        let other_version = URL_SAFE_NO_PAD.encode("u2.1.x");
        let bad_time = URL_SAFE_NO_PAD.encode("u1.x.y");
        for bad in ["", "nope", &other_version, &bad_time] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0, AUDIT_PAGE), 100);
        assert_eq!(page_size(7, AUDIT_PAGE), 7);
        assert_eq!(page_size(5000, AUDIT_PAGE), 1000);
        assert_eq!(page_size(0, USAGE_PAGE), 500);
        assert_eq!(page_size(9999, USAGE_PAGE), 5000);
    }

    #[test]
    fn ranges_refuse_negative_and_reversed_bounds() {
        assert_eq!(range("a", 0, "b", 0).unwrap(), (None, None));
        assert!(range("a", -1, "b", 0).is_err());
        assert!(range("a", 20, "b", 10).is_err());
        assert!(range("a", 10, "b", 10).is_ok());
    }

    #[test]
    fn retention_zero_is_forever_and_huge_is_refused() {
        assert_eq!(retention_days(0).unwrap(), None);
        assert_eq!(retention_days(30).unwrap(), Some(30));
        assert!(retention_days(MAX_RETENTION_DAYS + 1).is_err());
    }
}
