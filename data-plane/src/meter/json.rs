//! Usage from a non-streaming JSON answer.

use memchr::memmem;
use serde::Deserialize;

use super::{Metered, UsageReport};

/// A whole answer up to this size is kept and parsed properly at the end.
const HEAD_CAP: usize = 4 << 20;
/// Past `HEAD_CAP`, only this much of the end is kept: Anthropic puts `usage` last.
const TAIL_KEEP: usize = 64 << 10;

/// Keeps a bounded copy of a JSON response and reads its top-level `usage` at the end.
#[derive(Debug, Default)]
pub struct JsonUsageCollector {
    buf: Vec<u8>,
    overflowed: bool,
}

impl JsonUsageCollector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.overflowed && self.buf.len() + chunk.len() <= HEAD_CAP {
            self.buf.extend_from_slice(chunk);
            return;
        }
        self.overflowed = true;
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > 2 * TAIL_KEEP {
            let cut = self.buf.len() - TAIL_KEEP;
            self.buf.drain(..cut);
        }
    }

    pub fn finish(&mut self) -> Metered {
        let report = if self.overflowed {
            usage_in_tail(&self.buf)
        } else {
            #[derive(Deserialize)]
            struct Message {
                #[serde(default)]
                usage: Option<UsageReport>,
            }
            serde_json::from_slice::<Message>(&self.buf)
                .ok()
                .and_then(|m| m.usage)
        };
        let mut metered = Metered::default();
        if let Some(report) = report {
            report.apply_to(&mut metered.usage);
        }
        metered
    }
}

/// Finds the last `"usage": {…}` in the tail of a large answer.
fn usage_in_tail(tail: &[u8]) -> Option<UsageReport> {
    let at = memmem::rfind(tail, b"\"usage\"")?;
    let rest = tail.get(at + b"\"usage\"".len()..)?;
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    let mut de = serde_json::Deserializer::from_slice(rest);
    // Reads one value; what follows is the rest of the document.
    UsageReport::deserialize(&mut de).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi \"usage\":{\"output_tokens\":99}"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":7,"cache_read_input_tokens":3,"output_tokens":5}}"#;

    #[test]
    fn reads_top_level_usage_whatever_the_chunking() {
        for size in [1, 2, 7, 64, MESSAGE.len()] {
            let mut c = JsonUsageCollector::new();
            for chunk in MESSAGE.as_bytes().chunks(size) {
                c.feed(chunk);
            }
            let u = c.finish().usage;
            assert_eq!(
                (
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_creation_5m_tokens,
                    u.cache_read_tokens
                ),
                (12, 5, 7, 3)
            );
        }
    }

    #[test]
    fn error_bodies_and_garbage_meter_nothing() {
        let mut c = JsonUsageCollector::new();
        c.feed(br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#);
        assert_eq!(c.finish(), Metered::default());
        let mut c = JsonUsageCollector::new();
        c.feed(b"<html>bad gateway</html>");
        assert_eq!(c.finish(), Metered::default());
    }

    #[test]
    fn reads_usage_from_the_tail_of_huge_answers() {
        let big_text = "a".repeat(HEAD_CAP + 10);
        let message = MESSAGE.replace("hi ", &big_text);
        let mut c = JsonUsageCollector::new();
        for chunk in message.as_bytes().chunks(100_000) {
            c.feed(chunk);
        }
        assert!(c.buf.len() <= 2 * TAIL_KEEP);
        let u = c.finish().usage;
        assert_eq!((u.input_tokens, u.output_tokens), (12, 5));
    }
}
