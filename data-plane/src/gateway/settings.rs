//! `GET /managed/settings`: the caller's merged Claude Code managed settings.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH};
use http::{HeaderMap, Response, StatusCode};
use serde::Serialize;

use super::{Gateway, RequestContext, ResponseBody, empty_body, full_body};
use crate::error::{ApiError, ErrorCode};

#[derive(Serialize)]
struct Wrapper<'a> {
    uuid: &'a str,
    checksum: &'a str,
    settings: &'a serde_json::Value,
}

pub(super) fn get(
    gateway: &Gateway,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) -> Result<Response<ResponseBody>, ApiError> {
    let (snapshot, caller) = gateway.admit(ctx, headers)?;
    let managed = snapshot
        .managed_settings(caller.group_ids())
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no managed settings apply to you"))?;
    let etag = format!("\"{}\"", managed.checksum);
    let etag_value = HeaderValue::from_str(&etag)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?;
    if if_none_match_matches(headers, &etag) {
        let mut response = Response::new(empty_body());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().insert(ETAG, etag_value);
        return Ok(response);
    }
    let body = serde_json::to_vec(&Wrapper {
        uuid: &managed.uuid,
        checksum: &managed.checksum,
        settings: &managed.settings,
    })
    .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?;
    let mut response = Response::new(full_body(Bytes::from(body)));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(ETAG, etag_value);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(response)
}

/// RFC 9110 §13.1.2 with weak comparison: any listed tag (or `*`) equal to ours.
fn if_none_match_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, value.parse().unwrap());
        h
    }

    #[test]
    fn if_none_match_compares_quoted_tags() {
        let tag = "\"sha256:ab\"";
        assert!(if_none_match_matches(&headers("\"sha256:ab\""), tag));
        assert!(if_none_match_matches(
            &headers("\"x\", W/\"sha256:ab\""),
            tag
        ));
        assert!(if_none_match_matches(&headers("*"), tag));
        assert!(!if_none_match_matches(&headers("sha256:ab"), tag));
        assert!(!if_none_match_matches(&HeaderMap::new(), tag));
    }
}
