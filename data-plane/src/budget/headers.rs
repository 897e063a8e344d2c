//! Claude Code's spend headers (protocol summary §D): what a capped success carries and
//! what a refusal says.

use http::{HeaderName, HeaderValue};
use tollgate_policy::{BudgetScope, Period, civil_from_unix_s, format_usd};

use super::ledger::CounterUse;

pub(crate) const STATUS: HeaderName = HeaderName::from_static("anthropic-ratelimit-unified-status");
pub(crate) const RESET: HeaderName = HeaderName::from_static("anthropic-ratelimit-unified-reset");
pub(crate) const REPRESENTATIVE_CLAIM: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-unified-representative-claim");
pub(crate) const OVERAGE_STATUS: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-unified-overage-status");
pub(crate) const OVERAGE_UTILIZATION: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-unified-overage-utilization");
pub(crate) const OVERAGE_SURPASSED: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-unified-overage-surpassed-threshold");
pub(crate) const OVERAGE_RESET: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-unified-overage-reset");
pub(crate) const OVERAGE_PERIOD: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-unified-overage-period");
pub(crate) const OVERAGE_DISABLED_REASON: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-unified-overage-disabled-reason");
pub(crate) const OVERAGE_SCOPE: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-unified-overage-scope");

/// Utilisation at or above this many hundredths is a warning.
const WARNING_HUNDREDTHS: u64 = 75;
const SEVERE_HUNDREDTHS: u64 = 95;

/// Header list (at most a dozen entries).
pub(crate) type HeaderList = Vec<(HeaderName, HeaderValue)>;

/// A ratio in hundredths as `0.42` / `1.00`.
pub(crate) fn format_hundredths(hundredths: u64) -> String {
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// The headers of a successful `/v1/messages` under a cap, describing `usage` (the most
/// used counter) whose window ends at `reset_unix_s`.
pub(crate) fn success_headers(usage: CounterUse, reset_unix_s: i64) -> HeaderList {
    let hundredths = usage.hundredths();
    let status = if hundredths >= WARNING_HUNDREDTHS {
        "allowed_warning"
    } else {
        "allowed"
    };
    let reset = HeaderValue::from(reset_unix_s);
    let mut headers = vec![
        (STATUS, HeaderValue::from_static(status)),
        (REPRESENTATIVE_CLAIM, HeaderValue::from_static("overage")),
        (OVERAGE_STATUS, HeaderValue::from_static(status)),
        (
            OVERAGE_UTILIZATION,
            text(&format_hundredths(hundredths.min(99))),
        ),
        (RESET, reset.clone()),
        (OVERAGE_RESET, reset),
    ];
    let surpassed = if hundredths >= SEVERE_HUNDREDTHS {
        Some("0.95")
    } else if hundredths >= WARNING_HUNDREDTHS {
        Some("0.75")
    } else {
        None
    };
    if let Some(threshold) = surpassed {
        headers.push((OVERAGE_SURPASSED, HeaderValue::from_static(threshold)));
    }
    headers
}

/// A cap that refused a request: everything the 429 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CapReached {
    pub scope: BudgetScope,
    /// Shared group pool (not per member).
    pub group_pool: bool,
    /// How the cap is named in the message, e.g. `group eng`.
    pub label: String,
    pub period: Period,
    pub usage: CounterUse,
    pub reset_unix_s: i64,
    pub now_unix_s: i64,
}

impl CapReached {
    /// Seconds until the cap resets (at least 1).
    pub(crate) fn retry_after_s(&self) -> u64 {
        u64::try_from((self.reset_unix_s - self.now_unix_s).max(1)).unwrap_or(1)
    }

    /// One sentence: which cap, how much, when it resets, what to do.
    pub(crate) fn message(&self) -> String {
        format!(
            "You have reached your {} spend cap ({}, {}); it resets at {} UTC — ask your \
             Tollgate admin if you need more before then.",
            self.period.as_str(),
            self.label,
            format_usd(self.usage.limit),
            minute_utc(self.reset_unix_s),
        )
    }

    /// The §D headers of the refusal (not `retry-after`/`x-should-retry`, which the error
    /// sets itself). No representative claim and no overage status, so the client prints
    /// the message.
    pub(crate) fn headers(&self) -> HeaderList {
        let reason = match self.scope {
            BudgetScope::Org => "org_spend_cap_reached",
            BudgetScope::Group => "group_spend_cap_reached",
            BudgetScope::User => "user_spend_cap_reached",
            BudgetScope::Key => "key_spend_cap_reached",
        };
        let reset = HeaderValue::from(self.reset_unix_s);
        let mut headers = vec![
            (STATUS, HeaderValue::from_static("rejected")),
            (RESET, reset.clone()),
            (OVERAGE_RESET, reset),
            (
                OVERAGE_UTILIZATION,
                text(&format_hundredths(self.usage.hundredths().max(100))),
            ),
            (OVERAGE_SURPASSED, HeaderValue::from_static("1")),
            (
                OVERAGE_PERIOD,
                HeaderValue::from_static(self.period.as_str()),
            ),
            (OVERAGE_DISABLED_REASON, HeaderValue::from_static(reason)),
        ];
        if self.group_pool {
            headers.push((OVERAGE_SCOPE, HeaderValue::from_static("group_pool")));
        }
        headers
    }
}

/// The fail-closed refusal's headers (control plane unreachable, leases used up).
pub(crate) fn fetch_error_headers() -> HeaderList {
    vec![
        (STATUS, HeaderValue::from_static("rejected")),
        (
            OVERAGE_DISABLED_REASON,
            HeaderValue::from_static("fetch_error"),
        ),
    ]
}

fn text(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("0.00"))
}

/// `2026-11-23 00:00`
fn minute_utc(unix_s: i64) -> String {
    let (y, m, d) = civil_from_unix_s(unix_s);
    let secs = unix_s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use tollgate_policy::unix_s_from_civil;

    use super::*;

    fn get<'a>(headers: &'a HeaderList, name: &HeaderName) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn utilisation_has_two_decimals_and_stays_below_one_while_allowed() {
        assert_eq!(format_hundredths(7), "0.07");
        assert_eq!(format_hundredths(100), "1.00");
        assert_eq!(format_hundredths(123), "1.23");
        let h = success_headers(
            CounterUse {
                used: 1_234,
                limit: 10_000,
            },
            42,
        );
        assert_eq!(get(&h, &STATUS), Some("allowed"));
        assert_eq!(get(&h, &OVERAGE_STATUS), Some("allowed"));
        assert_eq!(get(&h, &REPRESENTATIVE_CLAIM), Some("overage"));
        assert_eq!(get(&h, &OVERAGE_UTILIZATION), Some("0.12"));
        assert_eq!(get(&h, &RESET), Some("42"));
        assert_eq!(get(&h, &OVERAGE_RESET), Some("42"));
        assert_eq!(get(&h, &OVERAGE_SURPASSED), None);
        let h = success_headers(
            CounterUse {
                used: 10_000,
                limit: 10_000,
            },
            42,
        );
        assert_eq!(get(&h, &OVERAGE_UTILIZATION), Some("0.99"));
    }

    #[test]
    fn thresholds_appear_only_once_passed() {
        let at = |used| success_headers(CounterUse { used, limit: 100 }, 0);
        assert_eq!(get(&at(74), &OVERAGE_SURPASSED), None);
        assert_eq!(get(&at(74), &STATUS), Some("allowed"));
        assert_eq!(get(&at(75), &OVERAGE_SURPASSED), Some("0.75"));
        assert_eq!(get(&at(75), &STATUS), Some("allowed_warning"));
        assert_eq!(get(&at(94), &OVERAGE_SURPASSED), Some("0.75"));
        assert_eq!(get(&at(95), &OVERAGE_SURPASSED), Some("0.95"));
        assert_eq!(get(&at(95), &OVERAGE_STATUS), Some("allowed_warning"));
    }

    #[test]
    fn a_refusal_names_the_cap_amount_and_reset() {
        let reset = unix_s_from_civil(2026, 11, 23);
        let cap = CapReached {
            scope: BudgetScope::Group,
            group_pool: true,
            label: "group eng".into(),
            period: Period::Daily,
            usage: CounterUse {
                used: 20_100_000,
                limit: 20_000_000,
            },
            reset_unix_s: reset,
            now_unix_s: reset - 3_600,
        };
        assert_eq!(
            cap.message(),
            "You have reached your daily spend cap (group eng, $20.00); it resets at \
             2026-11-23 00:00 UTC — ask your Tollgate admin if you need more before then."
        );
        assert_eq!(cap.retry_after_s(), 3_600);
        let h = cap.headers();
        assert_eq!(get(&h, &STATUS), Some("rejected"));
        assert_eq!(get(&h, &OVERAGE_UTILIZATION), Some("1.00"));
        assert_eq!(get(&h, &OVERAGE_SURPASSED), Some("1"));
        assert_eq!(get(&h, &OVERAGE_PERIOD), Some("daily"));
        assert_eq!(
            get(&h, &OVERAGE_DISABLED_REASON),
            Some("group_spend_cap_reached")
        );
        assert_eq!(get(&h, &OVERAGE_SCOPE), Some("group_pool"));
        assert_eq!(get(&h, &REPRESENTATIVE_CLAIM), None);
        assert_eq!(get(&h, &OVERAGE_STATUS), None);
        let user = CapReached {
            scope: BudgetScope::User,
            group_pool: false,
            usage: CounterUse {
                used: 30_000_000,
                limit: 20_000_000,
            },
            ..cap
        };
        let h = user.headers();
        assert_eq!(
            get(&h, &OVERAGE_DISABLED_REASON),
            Some("user_spend_cap_reached")
        );
        assert_eq!(get(&h, &OVERAGE_UTILIZATION), Some("1.50"));
        assert_eq!(get(&h, &OVERAGE_SCOPE), None);
    }

    #[test]
    fn instants_format_as_utc() {
        let t = unix_s_from_civil(2028, 2, 29) + 3_600 + 120 + 5;
        assert_eq!(minute_utc(t), "2028-02-29 01:02");
    }
}
