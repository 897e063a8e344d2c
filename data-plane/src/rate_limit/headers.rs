//! Anthropic's rate-limit headers (`anthropic-ratelimit-requests-*`, `-input-tokens-*`,
//! `-output-tokens-*`, `-tokens-*`) on successes and refusals, the refusal's retry
//! headers, and its message.

use http::{HeaderName, HeaderValue};
use tollgate_policy::{RateLimitKind, civil_from_unix_s};

use super::RateLimited;
use super::ledger::BucketView;
use crate::budget::HeaderList;

static REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("anthropic-ratelimit-requests-limit"),
    HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
    HeaderName::from_static("anthropic-ratelimit-requests-reset"),
];
static INPUT_TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("anthropic-ratelimit-input-tokens-limit"),
    HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining"),
    HeaderName::from_static("anthropic-ratelimit-input-tokens-reset"),
];
static OUTPUT_TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("anthropic-ratelimit-output-tokens-limit"),
    HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining"),
    HeaderName::from_static("anthropic-ratelimit-output-tokens-reset"),
];
static TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
    HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
    HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
];
pub(crate) const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
pub(crate) const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
pub(crate) const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// How long a client is told to wait when the control plane cannot be asked.
const UNAVAILABLE_RETRY_MS: u64 = 5_000;

/// The `rate_limit_error` message when the control plane cannot be asked (outage `closed`).
pub(crate) const UNAVAILABLE_MESSAGE: &str = "Tollgate cannot check your rate limits right now \
     (control plane unreachable); retrying shortly.";

/// The three headers of one limit: limit, units remaining, and when it is full again.
fn limit_headers(
    names: &[HeaderName; 3],
    view: &BucketView,
    now_unix_ms: i64,
    headers: &mut HeaderList,
) {
    let [limit, remaining, reset] = names.clone();
    headers.push((limit, HeaderValue::from(view.limit)));
    headers.push((remaining, HeaderValue::from(view.remaining)));
    let full_at = now_unix_ms.saturating_add(i64::try_from(view.full_in_ms()).unwrap_or(i64::MAX));
    if let Ok(value) = HeaderValue::try_from(rfc3339(full_at)) {
        headers.push((reset, value));
    }
}

fn names_of(kind: RateLimitKind) -> Option<&'static [HeaderName; 3]> {
    match kind {
        RateLimitKind::RequestsPerMinute => Some(&REQUESTS),
        RateLimitKind::InputTokensPerMinute => Some(&INPUT_TOKENS),
        RateLimitKind::OutputTokensPerMinute => Some(&OUTPUT_TOKENS),
        RateLimitKind::ConcurrentRequests => None,
    }
}

/// The headers of a success: for each per-minute kind the tightest bucket (fewest units
/// remaining; the first on ties), and `-tokens-*` for the tighter of the token kinds.
pub(crate) fn success_headers<'a>(
    views: impl IntoIterator<Item = &'a BucketView>,
    now_unix_ms: i64,
) -> HeaderList {
    let mut tightest: [Option<&BucketView>; 3] = [None; 3];
    for view in views {
        let slot = match view.kind {
            RateLimitKind::RequestsPerMinute => 0,
            RateLimitKind::InputTokensPerMinute => 1,
            RateLimitKind::OutputTokensPerMinute => 2,
            RateLimitKind::ConcurrentRequests => continue,
        };
        if tightest[slot].is_none_or(|t| view.remaining < t.remaining) {
            tightest[slot] = Some(view);
        }
    }
    let mut headers = HeaderList::new();
    for view in tightest.iter().flatten() {
        if let Some(names) = names_of(view.kind) {
            limit_headers(names, view, now_unix_ms, &mut headers);
        }
    }
    let tokens = match (tightest[1], tightest[2]) {
        (Some(i), Some(o)) => Some(if o.remaining < i.remaining { o } else { i }),
        (i, o) => i.or(o),
    };
    if let Some(view) = tokens {
        limit_headers(&TOKENS, view, now_unix_ms, &mut headers);
    }
    headers
}

/// Seconds to advertise in `retry-after`: rounded up, at least 1.
fn retry_after_s(ms: u64) -> u64 {
    ms.div_ceil(1_000).max(1)
}

/// The headers of a `429 rate_limit_error` for `limited`: `retry-after` (whole seconds, at
/// least 1), `retry-after-ms`, `x-should-retry` (false when the request can never fit) and
/// the refusing limit's `anthropic-ratelimit-*` headers (plus `-tokens-*` for a token
/// limit); a concurrency limit has no such headers.
pub(crate) fn limited_headers(limited: &RateLimited, now_unix_ms: i64) -> HeaderList {
    let retry_ms = limited.retry_after_ms.max(1);
    let mut headers = vec![
        (RETRY_AFTER, HeaderValue::from(retry_after_s(retry_ms))),
        (RETRY_AFTER_MS, HeaderValue::from(retry_ms)),
        (
            SHOULD_RETRY,
            HeaderValue::from_static(if limited.never_fits { "false" } else { "true" }),
        ),
    ];
    let kind = limited.limit.kind;
    if let Some(names) = names_of(kind) {
        let view = BucketView {
            kind,
            limit: limited.limit.limit,
            remaining: limited.remaining.min(limited.limit.limit),
        };
        limit_headers(names, &view, now_unix_ms, &mut headers);
        if kind != RateLimitKind::RequestsPerMinute {
            limit_headers(&TOKENS, &view, now_unix_ms, &mut headers);
        }
    }
    headers
}

/// The retry headers of the refusal when the control plane cannot be asked.
pub(crate) fn unavailable_headers() -> HeaderList {
    vec![
        (
            RETRY_AFTER,
            HeaderValue::from(retry_after_s(UNAVAILABLE_RETRY_MS)),
        ),
        (RETRY_AFTER_MS, HeaderValue::from(UNAVAILABLE_RETRY_MS)),
        (SHOULD_RETRY, HeaderValue::from_static("true")),
    ]
}

/// `n unit` with the unit in the plural unless `n` is 1.
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// One sentence naming the limit that refused: `label` says whose it is, e.g. `group eng
/// (per member)` or `user alice@example.com`.
pub(crate) fn limited_message(limited: &RateLimited, label: &str) -> String {
    let limit = limited.limit.limit;
    let per_minute = |one: &str, many: &str| format!("{} per minute", count(limit, one, many));
    let what = match limited.limit.kind {
        RateLimitKind::ConcurrentRequests => {
            return format!(
                "Too many requests in flight: at most {limit} at once for {label}; retry when \
                 one finishes."
            );
        }
        RateLimitKind::RequestsPerMinute => per_minute("request", "requests"),
        RateLimitKind::InputTokensPerMinute => per_minute("input token", "input tokens"),
        RateLimitKind::OutputTokensPerMinute => per_minute("output token", "output tokens"),
    };
    if limited.never_fits {
        let advice = match limited.limit.kind {
            RateLimitKind::OutputTokensPerMinute => "lower max_tokens",
            _ => "shorten the request",
        };
        return format!(
            "Request too large for the rate limit: {what} for {label}, and this request \
             alone needs more; {advice}."
        );
    }
    format!(
        "Rate limit reached: {what} for {label}; retry in {} s.",
        retry_after_s(limited.retry_after_ms)
    )
}

/// `2026-12-07T04:31:05Z`: the instant, rounded up to the second, in UTC.
pub(crate) fn rfc3339(unix_ms: i64) -> String {
    let unix_s = unix_ms.div_euclid(1_000) + i64::from(unix_ms.rem_euclid(1_000) > 0);
    let (y, m, d) = civil_from_unix_s(unix_s);
    let secs = unix_s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tollgate_policy::{RateLimit, RateLimitScope, unix_s_from_civil};

    use super::*;

    fn get<'a>(headers: &'a HeaderList, name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    fn limited(kind: RateLimitKind, limit: u64, retry_after_ms: u64) -> RateLimited {
        RateLimited {
            limit: Arc::new(RateLimit {
                id: "l".into(),
                scope: RateLimitScope::Group,
                scope_id: "g".into(),
                per_member: true,
                model: None,
                kind,
                limit,
            }),
            retry_after_ms,
            never_fits: false,
            remaining: 0,
        }
    }

    #[test]
    fn instants_format_as_rfc3339_utc_rounded_up_to_the_second() {
        let t = unix_s_from_civil(2026, 12, 7) * 1_000 + (4 * 3_600 + 31 * 60 + 5) * 1_000;
        assert_eq!(rfc3339(t), "2026-12-07T04:31:05Z");
        assert_eq!(rfc3339(t - 999), "2026-12-07T04:31:05Z");
        assert_eq!(rfc3339(t + 1), "2026-12-07T04:31:06Z");
    }

    #[test]
    fn a_requests_refusal_says_when_to_retry_and_when_the_bucket_is_full() {
        let now = unix_s_from_civil(2026, 12, 7) * 1_000;
        let l = limited(RateLimitKind::RequestsPerMinute, 10, 5_200);
        let h = limited_headers(&l, now);
        assert_eq!(get(&h, "retry-after"), Some("6"));
        assert_eq!(get(&h, "retry-after-ms"), Some("5200"));
        assert_eq!(get(&h, "x-should-retry"), Some("true"));
        assert_eq!(get(&h, "anthropic-ratelimit-requests-limit"), Some("10"));
        assert_eq!(get(&h, "anthropic-ratelimit-requests-remaining"), Some("0"));
        assert_eq!(
            get(&h, "anthropic-ratelimit-requests-reset"),
            Some("2026-12-07T00:01:00Z")
        );
        assert_eq!(get(&h, "anthropic-ratelimit-tokens-limit"), None);
        assert_eq!(
            limited_message(&l, "group eng (per member)"),
            "Rate limit reached: 10 requests per minute for group eng (per member); retry in 6 s."
        );
    }

    #[test]
    fn a_token_refusal_also_carries_the_tokens_headers_and_never_fits_says_do_not_retry() {
        let now = 0;
        let mut l = limited(RateLimitKind::InputTokensPerMinute, 1_000, 0);
        l.never_fits = true;
        l.remaining = 1_000;
        let h = limited_headers(&l, now);
        assert_eq!(get(&h, "retry-after"), Some("1"));
        assert_eq!(get(&h, "x-should-retry"), Some("false"));
        assert_eq!(
            get(&h, "anthropic-ratelimit-input-tokens-limit"),
            Some("1000")
        );
        assert_eq!(
            get(&h, "anthropic-ratelimit-tokens-remaining"),
            Some("1000")
        );
        assert_eq!(
            get(&h, "anthropic-ratelimit-tokens-reset"),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            limited_message(&l, "user alice@example.com"),
            "Request too large for the rate limit: 1000 input tokens per minute for user \
             alice@example.com, and this request alone needs more; shorten the request."
        );
    }

    #[test]
    fn a_concurrency_refusal_has_no_bucket_headers() {
        let l = limited(RateLimitKind::ConcurrentRequests, 4, 1_000);
        let h = limited_headers(&l, 0);
        assert_eq!(h.len(), 3);
        assert_eq!(get(&h, "retry-after"), Some("1"));
        assert_eq!(
            limited_message(&l, "user alice@example.com"),
            "Too many requests in flight: at most 4 at once for user alice@example.com; retry \
             when one finishes."
        );
        let u = unavailable_headers();
        assert_eq!(get(&u, "retry-after"), Some("5"));
    }

    #[test]
    fn success_headers_describe_the_tightest_limit_of_each_kind() {
        let view = |kind, limit, remaining| BucketView {
            kind,
            limit,
            remaining,
        };
        let views = [
            view(RateLimitKind::RequestsPerMinute, 100, 90),
            view(RateLimitKind::RequestsPerMinute, 10, 4),
            view(RateLimitKind::InputTokensPerMinute, 10_000, 6_000),
            view(RateLimitKind::OutputTokensPerMinute, 4_000, 3_000),
            view(RateLimitKind::ConcurrentRequests, 2, 0),
        ];
        let h = success_headers(&views, 0);
        assert_eq!(get(&h, "anthropic-ratelimit-requests-limit"), Some("10"));
        assert_eq!(get(&h, "anthropic-ratelimit-requests-remaining"), Some("4"));
        assert_eq!(
            get(&h, "anthropic-ratelimit-requests-reset"),
            Some("1970-01-01T00:00:36Z")
        );
        assert_eq!(
            get(&h, "anthropic-ratelimit-input-tokens-remaining"),
            Some("6000")
        );
        assert_eq!(
            get(&h, "anthropic-ratelimit-output-tokens-limit"),
            Some("4000")
        );
        assert_eq!(get(&h, "anthropic-ratelimit-tokens-limit"), Some("4000"));
        assert_eq!(
            get(&h, "anthropic-ratelimit-tokens-remaining"),
            Some("3000")
        );
        assert_eq!(h.len(), 12);
        assert!(success_headers(&views[4..], 0).is_empty());
    }
}
