//! Who is calling: the credential presented in `x-api-key` or `Authorization: Bearer`.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use tollgate_policy::{AuthError, Caller, Snapshot};

use crate::error::{ApiError, ErrorCode};

/// The credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    Missing,
    /// A header is there but cannot hold a credential (not text, not `Bearer`).
    Malformed,
    Secret(&'a str),
}

/// `x-api-key` wins over `Authorization: Bearer` (an `apiKeyHelper` sends both, equal).
pub(crate) fn presented(headers: &HeaderMap) -> Presented<'_> {
    if let Some(value) = headers.get("x-api-key") {
        return value
            .to_str()
            .map_or(Presented::Malformed, |v| Presented::Secret(v.trim()));
    }
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Presented::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Presented::Malformed;
    };
    match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Presented::Secret(token.trim())
        }
        _ => Presented::Malformed,
    }
}

/// Authenticates the request against `snapshot` (an API key or a gateway access token);
/// errors are ready-made 401s, with `x-should-retry: false` when retrying cannot help.
pub(crate) fn authenticate(
    snapshot: &Snapshot,
    headers: &HeaderMap,
    now_unix_s: i64,
) -> Result<Caller, ApiError> {
    let outcome = match presented(headers) {
        Presented::Missing => Err(AuthError::Missing),
        Presented::Malformed => Err(AuthError::Unknown),
        Presented::Secret(secret) => snapshot.authenticate_bearer(secret, now_unix_s),
    };
    outcome.map_err(|e| {
        let error = ApiError::new(ErrorCode::Unauthenticated, e.to_string());
        if e.is_final() {
            error.no_retry()
        } else {
            error
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn reads_either_header() {
        assert_eq!(
            presented(&headers(&[("x-api-key", "tg_a")])),
            Presented::Secret("tg_a")
        );
        assert_eq!(
            presented(&headers(&[("authorization", "Bearer tg_b")])),
            Presented::Secret("tg_b")
        );
        assert_eq!(
            presented(&headers(&[("authorization", "bearer  tg_c ")])),
            Presented::Secret("tg_c")
        );
        assert_eq!(
            presented(&headers(&[
                ("x-api-key", "tg_a"),
                ("authorization", "Bearer tg_b")
            ])),
            Presented::Secret("tg_a")
        );
        assert_eq!(presented(&HeaderMap::new()), Presented::Missing);
        assert_eq!(
            presented(&headers(&[("authorization", "Basic abc")])),
            Presented::Malformed
        );
    }
}
