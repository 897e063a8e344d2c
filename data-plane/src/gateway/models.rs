//! `GET /v1/models`: the models the caller may use, in Anthropic's list shape.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response};
use serde::Serialize;
use tollgate_policy::Model;

use super::{Gateway, RequestContext, ResponseBody, full_body};
use crate::error::{ApiError, ErrorCode};

#[derive(Serialize)]
struct ModelInfo<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_input_tokens: Option<u32>,
}

#[derive(Serialize)]
struct ModelList<'a> {
    data: Vec<ModelInfo<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

pub(super) fn list(
    gateway: &Gateway,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) -> Result<Response<ResponseBody>, ApiError> {
    let (snapshot, caller) = gateway.admit(ctx, headers)?;
    let body = render(snapshot.visible_models_for(&caller))?;
    let mut response = Response::new(full_body(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn render<'a>(models: impl Iterator<Item = &'a Model>) -> Result<Bytes, ApiError> {
    let data: Vec<ModelInfo<'a>> = models
        .map(|m| ModelInfo {
            kind: "model",
            id: &m.id,
            display_name: &m.display_name,
            created_at: rfc3339(m.created_at_unix_s),
            max_input_tokens: m.max_input_tokens,
        })
        .collect();
    let list = ModelList {
        first_id: data.first().map(|m| m.id),
        last_id: data.last().map(|m| m.id),
        has_more: false,
        data,
    };
    serde_json::to_vec(&list)
        .map(Bytes::from)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))
}

/// Unix seconds as RFC 3339 UTC, e.g. `2025-05-14T00:00:00Z`.
pub(crate) fn rfc3339(unix_s: i64) -> String {
    let (y, m, d) = tollgate_policy::civil_from_unix_s(unix_s);
    let secs = unix_s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_835_398_925), "2028-02-29T01:02:05Z");
    }

    #[test]
    fn renders_the_anthropic_list_shape() {
        let models = [
            Model {
                id: "a".into(),
                display_name: "A".into(),
                max_input_tokens: Some(200_000),
                created_at_unix_s: 0,
            },
            Model {
                id: "b".into(),
                display_name: "B".into(),
                max_input_tokens: None,
                created_at_unix_s: 0,
            },
        ];
        let json: serde_json::Value =
            serde_json::from_slice(&render(models.iter()).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "data": [
                    {"type": "model", "id": "a", "display_name": "A", "created_at": "1970-01-01T00:00:00Z", "max_input_tokens": 200000},
                    {"type": "model", "id": "b", "display_name": "B", "created_at": "1970-01-01T00:00:00Z"}
                ],
                "has_more": false,
                "first_id": "a",
                "last_id": "b"
            })
        );
        let empty: serde_json::Value = serde_json::from_slice(&render([].iter()).unwrap()).unwrap();
        assert_eq!(empty["first_id"], serde_json::Value::Null);
    }
}
