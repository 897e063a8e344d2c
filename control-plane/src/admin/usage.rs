//! The admin usage query.

use chrono::DateTime;
use tollgate_proto::v1 as pb;
use tonic::Status;
use uuid::Uuid;

use super::{AdminService, optional};
use crate::store::usage::{self, UsageDimension, UsageFilter, UsageTotalsRow};

pub(super) async fn query_usage(
    svc: &AdminService,
    req: pb::QueryUsageRequest,
) -> Result<pb::QueryUsageResponse, Status> {
    let dimensions = dimensions(&req.group_by)?;
    let filter = UsageFilter {
        from: bound("from_unix_s", req.from_unix_s)?,
        to: bound("to_unix_s", req.to_unix_s)?,
        api_key_id: optional(&req.api_key_id)
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|_| Status::invalid_argument("api_key_id must be a UUID"))?,
        principal: optional(&req.principal),
        model: optional(&req.model),
    };
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(Status::invalid_argument("from_unix_s is after to_unix_s"));
    }
    let rows = usage::query(&svc.pool, svc.org_id, &dimensions, &filter).await?;
    Ok(pb::QueryUsageResponse {
        group_by: req.group_by,
        rows: rows.into_iter().map(usage_row).collect(),
    })
}

/// The requested dimensions: each known, specified and at most once.
fn dimensions(group_by: &[i32]) -> Result<Vec<UsageDimension>, Status> {
    let mut out = Vec::with_capacity(group_by.len());
    for &value in group_by {
        let dimension = match pb::UsageDimension::try_from(value) {
            Ok(pb::UsageDimension::Key) => UsageDimension::Key,
            Ok(pb::UsageDimension::Principal) => UsageDimension::Principal,
            Ok(pb::UsageDimension::Model) => UsageDimension::Model,
            Ok(pb::UsageDimension::Day) => UsageDimension::Day,
            Ok(pb::UsageDimension::Provider) => UsageDimension::Provider,
            Ok(pb::UsageDimension::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown usage dimension {value}"
                )));
            }
        };
        if out.contains(&dimension) {
            return Err(Status::invalid_argument(format!(
                "usage dimension {value} appears twice"
            )));
        }
        out.push(dimension);
    }
    Ok(out)
}

/// `0` = unbounded.
fn bound(field: &str, unix_s: i64) -> Result<Option<DateTime<chrono::Utc>>, Status> {
    if unix_s == 0 {
        return Ok(None);
    }
    DateTime::from_timestamp(unix_s, 0)
        .filter(|_| unix_s > 0)
        .map(Some)
        .ok_or_else(|| Status::invalid_argument(format!("{field} is out of range")))
}

fn usage_row(row: UsageTotalsRow) -> pb::UsageRow {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    pb::UsageRow {
        dimensions: row.dimensions,
        requests: n(row.requests),
        input_tokens: n(row.input_tokens),
        output_tokens: n(row.output_tokens),
        cache_creation_5m_tokens: n(row.cache_creation_5m_tokens),
        cache_creation_1h_tokens: n(row.cache_creation_1h_tokens),
        cache_read_tokens: n(row.cache_read_tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_or_unspecified_dimensions_are_refused() {
        let day = pb::UsageDimension::Day as i32;
        assert!(dimensions(&[day, day]).is_err());
        assert!(dimensions(&[0]).is_err());
        assert!(dimensions(&[99]).is_err());
        assert_eq!(dimensions(&[day]).unwrap(), vec![UsageDimension::Day]);
    }
}
