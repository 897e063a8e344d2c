//! Incremental usage scanner for Anthropic's server-sent events.

use std::borrow::Cow;

use memchr::memchr;
use serde::Deserialize;

use super::{Metered, UsageReport};

/// Data of one event beyond this is not kept (usage events are a few hundred bytes).
const MAX_EVENT_DATA: usize = 1 << 20;

/// Which event the scanner is inside, from its `event:` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    /// No `event:` line yet: keep the data in case the event turns out to matter.
    Unnamed,
    MessageStart,
    MessageDelta,
    Error,
    /// Any other event: its data is skipped without being copied or parsed.
    Other,
}

impl EventKind {
    fn from_name(name: &[u8]) -> Self {
        match name {
            b"message_start" => EventKind::MessageStart,
            b"message_delta" => EventKind::MessageDelta,
            b"error" => EventKind::Error,
            _ => EventKind::Other,
        }
    }

    fn wants_data(self) -> bool {
        matches!(
            self,
            EventKind::Unnamed | EventKind::MessageStart | EventKind::MessageDelta
        )
    }
}

/// Reads token usage from an SSE stream fed in arbitrary chunks.
///
/// Only `message_start` (`message.usage`) and `message_delta` (`usage`, cumulative) are
/// parsed; every other event is stepped over with `memchr` without copying its data. Events
/// may be split across chunks at any byte; lines end in `\n` or `\r\n`.
#[derive(Debug)]
pub struct SseUsageScanner {
    /// The unfinished line carried over from the previous chunk.
    line: Vec<u8>,
    /// The rest of the current line is irrelevant (a data line of an uninteresting event).
    skipping_line: bool,
    event: EventKind,
    data: Vec<u8>,
    has_data: bool,
    data_overflow: bool,
    metered: Metered,
}

impl Default for SseUsageScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl SseUsageScanner {
    pub fn new() -> Self {
        SseUsageScanner {
            line: Vec::new(),
            skipping_line: false,
            event: EventKind::Unnamed,
            data: Vec::new(),
            has_data: false,
            data_overflow: false,
            metered: Metered::default(),
        }
    }

    /// Scans the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(pos) = memchr(b'\n', rest) {
            let piece = &rest[..pos];
            rest = &rest[pos + 1..];
            if self.skipping_line {
                self.skipping_line = false;
            } else if self.line.is_empty() {
                self.process_line(piece);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(piece);
                self.process_line(&line);
                line.clear();
                self.line = line;
            }
        }
        if rest.is_empty() || self.skipping_line {
            return;
        }
        self.line.extend_from_slice(rest);
        let irrelevant = self.event == EventKind::Other && !could_matter(&self.line);
        if irrelevant || self.line.len() > MAX_EVENT_DATA {
            if !irrelevant {
                self.data_overflow = true;
            }
            self.line.clear();
            self.skipping_line = true;
        }
    }

    /// What has been seen so far.
    pub fn metered(&self) -> Metered {
        self.metered
    }

    /// Ends the stream: a last event without its blank line is still taken into account.
    pub fn finish(&mut self) -> Metered {
        if !self.skipping_line && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line);
        }
        self.skipping_line = false;
        self.line.clear();
        self.dispatch();
        self.metered
    }

    fn process_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.dispatch();
            return;
        }
        let (field, value) = match memchr(b':', line) {
            Some(0) => return, // comment
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event = EventKind::from_name(value),
            b"data" if self.event.wants_data() && !self.data_overflow => {
                if self.data.len() + value.len() >= MAX_EVENT_DATA {
                    self.data_overflow = true;
                    self.data.clear();
                    return;
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = std::mem::replace(&mut self.event, EventKind::Unnamed);
        if event == EventKind::Error {
            self.metered.error_event = true;
        } else if event.wants_data() && self.has_data && !self.data_overflow {
            self.apply_data(event);
        }
        self.data.clear();
        self.has_data = false;
        self.data_overflow = false;
    }

    fn apply_data(&mut self, event: EventKind) {
        #[derive(Deserialize)]
        struct MessageData {
            #[serde(default)]
            usage: Option<UsageReport>,
        }
        #[derive(Deserialize)]
        struct EventData<'a> {
            #[serde(rename = "type", borrow, default)]
            kind: Option<Cow<'a, str>>,
            #[serde(default)]
            message: Option<MessageData>,
            #[serde(default)]
            usage: Option<UsageReport>,
        }
        let data: EventData<'_> = match serde_json::from_slice(&self.data) {
            Ok(data) => data,
            Err(error) => {
                tracing::debug!(%error, "unreadable usage event in upstream stream");
                return;
            }
        };
        let kind = match (event, data.kind.as_deref()) {
            (EventKind::Unnamed, Some("message_start")) => EventKind::MessageStart,
            (EventKind::Unnamed, Some("message_delta")) => EventKind::MessageDelta,
            (EventKind::Unnamed, Some("error")) => {
                self.metered.error_event = true;
                return;
            }
            (EventKind::Unnamed, _) => return,
            (named, _) => named,
        };
        let report = match kind {
            EventKind::MessageStart => data.message.and_then(|m| m.usage),
            _ => data.usage,
        };
        if let Some(report) = report {
            report.apply_to(&mut self.metered.usage);
        }
    }
}

/// Whether an unfinished line inside an uninteresting event may still matter: it may be a
/// blank line (`\r` of a `\r\n`) or the start of an `event:` field.
fn could_matter(partial: &[u8]) -> bool {
    if partial == b"\r" {
        return true;
    }
    let n = partial.len().min(6);
    partial[..n] == b"event:"[..n]
}

#[cfg(test)]
mod tests;
