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
        (504, "api_error"),
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
