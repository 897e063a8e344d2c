//! Metering: reading the provider's own usage report out of a response as it streams by.
//!
//! Responses are never buffered for metering. [`SseUsageScanner`] watches an event stream
//! for the two events that carry usage (`message_start`, `message_delta`);
//! [`JsonUsageCollector`] keeps a bounded copy of a JSON answer and reads its `usage` at the
//! end. `MeteredBody` wraps the upstream body, feeds the meter and emits the usage record
//! when the response ends — or, if the client leaves early, after reading the upstream on.

mod body;
mod json;
mod sse;

use http::HeaderValue;
use serde::Deserialize;
use tollgate_policy::Usage;

pub(crate) use body::{BoxError, DrainPolicy, MeteredBody, UpstreamBody};
pub use json::JsonUsageCollector;
pub use sse::SseUsageScanner;

/// A `usage` object as Anthropic reports it. Every field is optional: `message_delta`
/// events carry only the fields that changed or are final.
#[derive(Debug, Default, Deserialize)]
struct UsageReport {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreation>,
}

#[derive(Debug, Default, Deserialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

impl UsageReport {
    /// Applies a report on top of what is known. Values are cumulative, so a present field
    /// replaces the earlier value. Cache writes: the 5m/1h split wins when present; a bare
    /// `cache_creation_input_tokens` that disagrees with the known split keeps the known 1h
    /// part and counts the rest as 5-minute writes (the default TTL).
    fn apply_to(&self, usage: &mut Usage) {
        if let Some(v) = self.input_tokens {
            usage.input_tokens = v;
        }
        if let Some(v) = self.output_tokens {
            usage.output_tokens = v;
        }
        if let Some(v) = self.cache_read_input_tokens {
            usage.cache_read_tokens = v;
        }
        let split = self.cache_creation.as_ref().filter(|c| {
            c.ephemeral_5m_input_tokens.is_some() || c.ephemeral_1h_input_tokens.is_some()
        });
        if let Some(split) = split {
            usage.cache_creation_5m_tokens = split.ephemeral_5m_input_tokens.unwrap_or(0);
            usage.cache_creation_1h_tokens = split.ephemeral_1h_input_tokens.unwrap_or(0);
        } else if let Some(total) = self.cache_creation_input_tokens {
            let known = usage
                .cache_creation_5m_tokens
                .saturating_add(usage.cache_creation_1h_tokens);
            if total != known {
                usage.cache_creation_1h_tokens = usage.cache_creation_1h_tokens.min(total);
                usage.cache_creation_5m_tokens = total - usage.cache_creation_1h_tokens;
            }
        }
    }
}

/// What a meter saw by the end of a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metered {
    pub usage: Usage,
    /// The stream carried an `error` event (the provider failed mid-answer).
    pub error_event: bool,
}

/// The meter for one response, chosen by its content type.
#[derive(Debug)]
pub(crate) enum Meter {
    Sse(SseUsageScanner),
    Json(JsonUsageCollector),
}

impl Meter {
    /// `text/event-stream` → SSE; anything else is read as JSON.
    pub(crate) fn for_content_type(content_type: Option<&HeaderValue>) -> Meter {
        let is_sse = content_type
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if is_sse {
            Meter::Sse(SseUsageScanner::new())
        } else {
            Meter::Json(JsonUsageCollector::new())
        }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        match self {
            Meter::Sse(s) => s.feed(chunk),
            Meter::Json(j) => j.feed(chunk),
        }
    }

    pub(crate) fn finish(&mut self) -> Metered {
        match self {
            Meter::Sse(s) => s.finish(),
            Meter::Json(j) => j.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> UsageReport {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn split_wins_and_bare_total_defaults_to_5m() {
        let mut u = Usage::default();
        report(r#"{"cache_creation_input_tokens":30}"#).apply_to(&mut u);
        assert_eq!(
            (u.cache_creation_5m_tokens, u.cache_creation_1h_tokens),
            (30, 0)
        );
        report(r#"{"cache_creation_input_tokens":30,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":20}}"#).apply_to(&mut u);
        assert_eq!(
            (u.cache_creation_5m_tokens, u.cache_creation_1h_tokens),
            (10, 20)
        );
        // A later bare total equal to the split keeps the split.
        report(r#"{"cache_creation_input_tokens":30}"#).apply_to(&mut u);
        assert_eq!(
            (u.cache_creation_5m_tokens, u.cache_creation_1h_tokens),
            (10, 20)
        );
        // A larger bare total keeps the known 1h part.
        report(r#"{"cache_creation_input_tokens":50}"#).apply_to(&mut u);
        assert_eq!(
            (u.cache_creation_5m_tokens, u.cache_creation_1h_tokens),
            (30, 20)
        );
    }

    #[test]
    fn null_fields_leave_values_alone() {
        let mut u = Usage {
            input_tokens: 5,
            ..Usage::default()
        };
        report(r#"{"input_tokens":null,"output_tokens":7,"cache_read_input_tokens":null}"#)
            .apply_to(&mut u);
        assert_eq!((u.input_tokens, u.output_tokens), (5, 7));
    }

    #[test]
    fn content_type_picks_the_meter() {
        let sse = HeaderValue::from_static("text/event-stream; charset=utf-8");
        assert!(matches!(Meter::for_content_type(Some(&sse)), Meter::Sse(_)));
        let json = HeaderValue::from_static("application/json");
        assert!(matches!(
            Meter::for_content_type(Some(&json)),
            Meter::Json(_)
        ));
        assert!(matches!(Meter::for_content_type(None), Meter::Json(_)));
    }
}
