use http_body_util::BodyExt;

use super::*;

const ALL: [ErrorCode; 14] = [
    ErrorCode::InvalidRequest,
    ErrorCode::Unauthenticated,
    ErrorCode::PermissionDenied,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::RequestTooLarge,
    ErrorCode::RateLimited,
    ErrorCode::BudgetExceeded,
    ErrorCode::NotSupported,
    ErrorCode::Overloaded,
    ErrorCode::Unavailable,
    ErrorCode::BadGateway,
    ErrorCode::GatewayTimeout,
    ErrorCode::Internal,
];

#[test]
fn code_table_matches_the_protocol() {
    let expected = [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (429, "billing_error"),
        (501, "not_supported"),
        (529, "overloaded_error"),
        (503, "api_error"),
        (502, "api_error"),
        (504, "timeout_error"),
        (500, "api_error"),
    ];
    for (code, (status, kind)) in ALL.iter().zip(expected) {
        assert_eq!(code.status().as_u16(), status, "{code:?}");
        assert_eq!(code.error_type(), kind, "{code:?}");
    }
}

#[tokio::test]
async fn envelope_has_anthropic_shape_and_escapes_message() {
    let err = ApiError::new(ErrorCode::InvalidRequest, "model `a\"b` is not allowed");
    let response = err.into_response();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert!(response.headers().get("x-should-retry").is_none());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "model `a\"b` is not allowed"}
        })
    );
}

#[test]
fn not_supported_and_billing_are_never_retried() {
    for code in ALL {
        let response = ApiError::new(code, "x").into_response();
        let header = response.headers().get("x-should-retry");
        if matches!(code, ErrorCode::NotSupported | ErrorCode::BudgetExceeded) {
            assert_eq!(header.unwrap(), "false");
        } else {
            assert!(header.is_none(), "{code:?}");
        }
    }
}

#[test]
fn no_retry_and_retry_after_become_headers() {
    let mut err = ApiError::new(ErrorCode::Unauthenticated, "API key has expired").no_retry();
    err.retry_after = Some(30);
    let response = err.into_response();
    assert_eq!(response.headers()["x-should-retry"], "false");
    assert_eq!(response.headers()["retry-after"], "30");
}

#[test]
fn upstream_statuses_map_to_codes() {
    let cases = [
        (400, ErrorCode::InvalidRequest),
        (401, ErrorCode::BadGateway),
        (403, ErrorCode::BadGateway),
        (413, ErrorCode::RequestTooLarge),
        (429, ErrorCode::RateLimited),
        (500, ErrorCode::BadGateway),
        (529, ErrorCode::Overloaded),
    ];
    for (status, code) in cases {
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(ErrorCode::for_upstream_status(status), code, "{status}");
    }
}

async fn body_json(response: Response<ResponseBody>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_reached_cap_is_a_billing_error_with_spend_headers_and_no_retry() {
    use tollgate_policy::{BudgetScope, Period, unix_s_from_civil};

    use crate::budget::CounterUse;

    let reset = unix_s_from_civil(2026, 11, 23);
    let cap = CapReached {
        scope: BudgetScope::Key,
        group_pool: false,
        label: "this API key".into(),
        period: Period::Daily,
        usage: CounterUse {
            used: 5_000_000,
            limit: 5_000_000,
        },
        reset_unix_s: reset,
        now_unix_s: reset - 90,
    };
    let response = ApiError::spend_cap_reached(&cap).into_response();
    assert_eq!(response.status(), 429);
    let h = response.headers().clone();
    assert_eq!(h["x-should-retry"], "false");
    assert_eq!(h["retry-after"], "90");
    assert_eq!(h["anthropic-ratelimit-unified-status"], "rejected");
    assert_eq!(
        h["anthropic-ratelimit-unified-overage-disabled-reason"],
        "key_spend_cap_reached"
    );
    let json = body_json(response).await;
    assert_eq!(json["error"]["type"], "billing_error");
    assert_eq!(
        json["error"]["message"],
        "You have reached your daily spend cap (this API key, $5.00); it resets at 2026-11-23 \
         00:00 UTC — ask your Tollgate admin if you need more before then."
    );
}

#[tokio::test]
async fn an_unreachable_control_plane_fails_closed_with_fetch_error() {
    let response = ApiError::spend_unavailable().into_response();
    assert_eq!(response.status(), 429);
    let h = response.headers().clone();
    assert_eq!(h["x-should-retry"], "false");
    assert_eq!(h["retry-after"], "60");
    assert_eq!(h["anthropic-ratelimit-unified-status"], "rejected");
    assert_eq!(
        h["anthropic-ratelimit-unified-overage-disabled-reason"],
        "fetch_error"
    );
    assert!(
        h.get("anthropic-ratelimit-unified-representative-claim")
            .is_none()
    );
    let json = body_json(response).await;
    assert_eq!(
        json["error"]["message"],
        "Tollgate cannot check your spend cap right now (control plane unreachable); try \
         again in a minute."
    );
}
