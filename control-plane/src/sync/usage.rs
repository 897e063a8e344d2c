//! Validation of reported usage records before they are stored.

use chrono::DateTime;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

use crate::store::spend::Counter;
use crate::store::usage::UsageRecordRow;

/// A record the batch is refused for; names the record so the data plane can log it.
#[derive(Debug, thiserror::Error)]
#[error("usage record {index} (request_id `{request_id}`): {reason}")]
pub struct InvalidRecord {
    pub index: usize,
    pub request_id: String,
    pub reason: String,
}

/// Converts every record, or names the first bad one.
pub fn validate(records: Vec<pb::UsageRecord>) -> Result<Vec<UsageRecordRow>, InvalidRecord> {
    records
        .into_iter()
        .enumerate()
        .map(|(index, record)| {
            let request_id = record.request_id.clone();
            convert(record).map_err(|reason| InvalidRecord {
                index,
                request_id,
                reason,
            })
        })
        .collect()
}

fn convert(r: pb::UsageRecord) -> Result<UsageRecordRow, String> {
    let request_id =
        Uuid::parse_str(&r.request_id).map_err(|_| "request_id is not a UUID".to_owned())?;
    if r.started_at_unix_ms <= 0 {
        return Err("started_at_unix_ms is missing".to_owned());
    }
    let started_at = DateTime::from_timestamp_millis(r.started_at_unix_ms)
        .ok_or_else(|| "started_at_unix_ms is out of range".to_owned())?;
    let mut charges: Vec<Counter> = Vec::with_capacity(r.charges.len());
    for key in &r.charges {
        let counter = Counter::from_pb(key)?;
        if !charges.contains(&counter) {
            charges.push(counter);
        }
    }
    let mut group_ids: Vec<Uuid> = Vec::with_capacity(r.group_ids.len());
    for g in &r.group_ids {
        let id = Uuid::parse_str(g).map_err(|_| format!("group id `{g}` is not a UUID"))?;
        if !group_ids.contains(&id) {
            group_ids.push(id);
        }
    }
    Ok(UsageRecordRow {
        request_id,
        data_plane_id: r.data_plane_id,
        started_at,
        duration_ms: to_i64("duration_ms", r.duration_ms)?,
        api_key_id: optional_uuid("api_key_id", &r.api_key_id)?,
        principal_id: optional_uuid("principal_id", &r.principal_id)?,
        model: r.model,
        provider_id: optional_uuid("provider_id", &r.provider_id)?,
        upstream_model: r.upstream_model,
        endpoint: r.endpoint,
        stream: r.stream,
        status: i32::try_from(r.status).map_err(|_| "status is out of range".to_owned())?,
        outcome: outcome(r.outcome)?,
        input_tokens: to_i64("input_tokens", r.input_tokens)?,
        output_tokens: to_i64("output_tokens", r.output_tokens)?,
        cache_creation_5m_tokens: to_i64("cache_creation_5m_tokens", r.cache_creation_5m_tokens)?,
        cache_creation_1h_tokens: to_i64("cache_creation_1h_tokens", r.cache_creation_1h_tokens)?,
        cache_read_tokens: to_i64("cache_read_tokens", r.cache_read_tokens)?,
        cost_micro_usd: to_i64("cost_micro_usd", r.cost_micro_usd)?,
        group_ids,
        price_source: r.price_source,
        charges,
    })
}

fn to_i64(field: &str, value: u64) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{field} is out of range"))
}

/// Empty means absent; anything else must be a UUID.
fn optional_uuid(field: &str, value: &str) -> Result<Option<Uuid>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(value)
        .map(Some)
        .map_err(|_| format!("{field} is not a UUID"))
}

/// The stored form of an outcome (`usage_records.outcome`).
fn outcome(value: i32) -> Result<&'static str, String> {
    match pb::UsageOutcome::try_from(value) {
        Ok(pb::UsageOutcome::Unspecified) => Ok("unspecified"),
        Ok(pb::UsageOutcome::Complete) => Ok("complete"),
        Ok(pb::UsageOutcome::ClientDisconnected) => Ok("client_disconnected"),
        Ok(pb::UsageOutcome::UpstreamError) => Ok("upstream_error"),
        Ok(pb::UsageOutcome::Truncated) => Ok("truncated"),
        Err(_) => Err(format!("unknown outcome {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> pb::UsageRecord {
        pb::UsageRecord {
            request_id: Uuid::now_v7().to_string(),
            started_at_unix_ms: 1_700_000_000_000,
            model: "m".to_owned(),
            outcome: pb::UsageOutcome::Complete as i32,
            input_tokens: 10,
            ..Default::default()
        }
    }

    #[test]
    fn valid_record_converts() {
        let rows = validate(vec![record()]).unwrap();
        assert_eq!(rows[0].input_tokens, 10);
        assert_eq!(rows[0].outcome, "complete");
        assert_eq!(rows[0].api_key_id, None);
    }

    #[test]
    fn bad_request_id_names_the_record() {
        let mut bad = record();
        bad.request_id = "nope".to_owned();
        let err = validate(vec![record(), bad]).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(
            err.to_string(),
            "usage record 1 (request_id `nope`): request_id is not a UUID"
        );
    }

    #[test]
    fn token_count_beyond_i64_is_refused() {
        let mut bad = record();
        bad.output_tokens = u64::MAX;
        let err = validate(vec![bad]).unwrap_err();
        assert!(err.reason.contains("output_tokens"));
    }

    #[test]
    fn cost_groups_and_charges_are_carried_and_charges_deduplicated() {
        let mut r = record();
        r.cost_micro_usd = 1234;
        r.price_source = "catalogue".to_owned();
        let group = Uuid::now_v7();
        r.group_ids = vec![group.to_string()];
        let key = pb::CounterKey {
            budget_id: Uuid::now_v7().to_string(),
            subject_id: String::new(),
            window_start_unix_s: 1_700_000_000,
        };
        r.charges = vec![key.clone(), key];
        let rows = validate(vec![r]).unwrap();
        assert_eq!(rows[0].cost_micro_usd, 1234);
        assert_eq!(rows[0].group_ids, vec![group]);
        assert_eq!(rows[0].price_source, "catalogue");
        assert_eq!(rows[0].charges.len(), 1);
    }

    #[test]
    fn malformed_charge_is_refused() {
        let mut bad = record();
        bad.charges = vec![pb::CounterKey {
            budget_id: "nope".to_owned(),
            ..Default::default()
        }];
        assert!(
            validate(vec![bad])
                .unwrap_err()
                .reason
                .contains("budget_id")
        );
    }

    #[test]
    fn malformed_optional_ids_are_refused() {
        let mut bad = record();
        bad.provider_id = "x".to_owned();
        assert!(
            validate(vec![bad])
                .unwrap_err()
                .reason
                .contains("provider_id")
        );
    }
}
