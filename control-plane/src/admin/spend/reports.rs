//! Spend reports: cost by user / group / key / model / provider / day over any range.

use chrono::DateTime;
use tollgate_proto::v1 as pb;
use tonic::Status;

use super::SpendAdminService;
use crate::admin::optional;
use crate::store::spend::from_micro;
use crate::store::spend::report::{self, Dimension, ReportFilter};

pub(super) async fn spend_report(
    svc: &SpendAdminService,
    req: pb::SpendReportRequest,
) -> Result<pb::SpendReportResponse, Status> {
    let mut group_by = Vec::with_capacity(req.group_by.len());
    for d in &req.group_by {
        let dimension = match pb::SpendDimension::try_from(*d) {
            Ok(pb::SpendDimension::User) => Dimension::User,
            Ok(pb::SpendDimension::Group) => Dimension::Group,
            Ok(pb::SpendDimension::Key) => Dimension::Key,
            Ok(pb::SpendDimension::Model) => Dimension::Model,
            Ok(pb::SpendDimension::Provider) => Dimension::Provider,
            Ok(pb::SpendDimension::Day) => Dimension::Day,
            _ => {
                return Err(Status::invalid_argument(
                    "group_by takes user, group, key, model, provider or day",
                ));
            }
        };
        if group_by.contains(&dimension) {
            return Err(Status::invalid_argument("a group_by dimension is repeated"));
        }
        group_by.push(dimension);
    }
    let instant = |what: &str, s: i64| match s {
        0 => Ok(None),
        s => DateTime::from_timestamp(s, 0)
            .map(Some)
            .ok_or_else(|| Status::invalid_argument(format!("{what} is out of range"))),
    };
    let filter = ReportFilter {
        from: instant("from_unix_s", req.from_unix_s)?,
        to: instant("to_unix_s", req.to_unix_s)?,
        user: optional(req.user.trim()),
        group: optional(req.group.trim()),
        api_key_id: optional(req.api_key_id.trim()),
        model: optional(req.model.trim()),
        provider: optional(req.provider.trim()),
    };
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from >= to
    {
        return Err(Status::invalid_argument(
            "from_unix_s must be before to_unix_s",
        ));
    }
    let r = report::report(&svc.admin.pool, svc.admin.org_id, &group_by, &filter).await?;
    Ok(pb::SpendReportResponse {
        group_by: req.group_by,
        total_cost_micro_usd: from_micro(r.total_cost_micro_usd),
        rows: r
            .rows
            .into_iter()
            .map(|row| pb::SpendRow {
                dimensions: row.dimensions,
                requests: from_micro(row.requests),
                cost_micro_usd: from_micro(row.cost_micro_usd),
                input_tokens: from_micro(row.input_tokens),
                output_tokens: from_micro(row.output_tokens),
                cache_creation_5m_tokens: from_micro(row.cache_creation_5m_tokens),
                cache_creation_1h_tokens: from_micro(row.cache_creation_1h_tokens),
                cache_read_tokens: from_micro(row.cache_read_tokens),
            })
            .collect(),
    })
}
