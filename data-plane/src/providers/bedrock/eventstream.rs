//! AWS event stream (InvokeModelWithResponseStream) → Anthropic SSE.
//!
//! Messages are buffered across HTTP chunks until complete; each message's prelude CRC is
//! checked as soon as its 12 prelude bytes are in (so a corrupted length is caught at once,
//! not after buffering megabytes), then `aws-smithy-eventstream` parses it, checking both
//! CRCs again. What each message becomes:
//!
//! - `:message-type` `event`, `:event-type` `chunk`: the payload `{"bytes": base64}` holds one
//!   Anthropic stream event → `event: {type}\ndata: {json}\n\n`. Bedrock's
//!   `amazon-bedrock-invocationMetrics` member of `message_stop` is removed (it is not part
//!   of Anthropic's event; usage is already in `message_start` / `message_delta`). Events
//!   without a string `type` are dropped, as the official SDKs do.
//! - `:message-type` `exception` (`:exception-type`) or `error` (`:error-code`): one SSE
//!   `error` event in Anthropic's shape, then the end of the body.
//! - A CRC or framing error, or an undecodable chunk: an `error` event ("upstream stream was
//!   corrupted") and the end — never partial bytes.
//! - The upstream ending inside a message: an `error` event.
//! - An error of the upstream body itself is passed on as an error (the stream guard
//!   downstream turns it into an SSE `error` event).
//!
//! Every complete event decoded from one upstream chunk goes out as one frame; nothing is
//! held back once complete.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::Message;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::errors::{corrupted_stream_event, stream_error, truncated_stream_event};
use crate::meter::{BoxError, UpstreamBody};
use crate::request::edit::TopLevel;

/// total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// A message with no headers and no payload.
const MIN_MESSAGE_LEN: usize = 16;
/// botocore's limits: 128 KiB of headers, 24 MiB of payload.
const MAX_HEADERS_LEN: usize = 128 * 1024;
const MAX_MESSAGE_LEN: usize = 24 * 1024 * 1024 + MAX_HEADERS_LEN + MIN_MESSAGE_LEN;

/// Bedrock's per-invocation metrics on `message_stop`.
const INVOCATION_METRICS: &str = "amazon-bedrock-invocationMetrics";

/// The stream cannot be decoded any further.
#[derive(Debug)]
pub(super) struct Corrupt;

/// The translation state, independent of the body plumbing.
#[derive(Debug, Default)]
pub(super) struct Decoder {
    buf: BytesMut,
    ended: bool,
}

impl Decoder {
    /// Feeds upstream bytes, appending the SSE of every message they complete to `out`.
    /// Returns `false` once the stream is over (an error event was written).
    pub(super) fn feed(&mut self, data: &[u8], out: &mut BytesMut) -> bool {
        if self.ended {
            return false;
        }
        self.buf.extend_from_slice(data);
        loop {
            match self.next_message() {
                Ok(None) => return true,
                Ok(Some(message)) => {
                    if let Err(end) = translate(&message, out) {
                        out.extend_from_slice(&end);
                        self.end();
                        return false;
                    }
                }
                Err(Corrupt) => {
                    out.extend_from_slice(&corrupted_stream_event());
                    self.end();
                    return false;
                }
            }
        }
    }

    /// The upstream ended: an error event if it stopped inside a message.
    pub(super) fn finish(&mut self, out: &mut BytesMut) {
        if !self.ended && !self.buf.is_empty() {
            out.extend_from_slice(&truncated_stream_event());
        }
        self.end();
    }

    fn end(&mut self) {
        self.ended = true;
        self.buf = BytesMut::new();
    }

    #[cfg(test)]
    pub(super) fn buffer(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `None` if more bytes are needed.
    pub(super) fn next_message(&mut self) -> Result<Option<Message>, Corrupt> {
        let Some(prelude) = self.buf.get(..PRELUDE_LEN) else {
            return Ok(None);
        };
        let word = |at: usize| -> Result<u32, Corrupt> {
            prelude
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or(Corrupt)
        };
        let total = usize::try_from(word(0)?).map_err(|_| Corrupt)?;
        let headers_len = usize::try_from(word(4)?).map_err(|_| Corrupt)?;
        let prelude_crc = word(8)?;
        if crc32(prelude.get(..8).ok_or(Corrupt)?) != prelude_crc {
            return Err(Corrupt);
        }
        if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&total)
            || headers_len > MAX_HEADERS_LEN
            || headers_len > total - MIN_MESSAGE_LEN
        {
            return Err(Corrupt);
        }
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let message = self.buf.split_to(total).freeze();
        read_message_from(message).map(Some).map_err(|_| Corrupt)
    }
}

/// A string header of `message`.
fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

/// Appends the SSE for one message; `Err(event)` ends the stream with `event`.
fn translate(message: &Message, out: &mut BytesMut) -> Result<(), Bytes> {
    match header(message, ":message-type") {
        Some("event") => {
            if header(message, ":event-type") == Some("chunk") {
                chunk(message.payload(), out).map_err(|Corrupt| corrupted_stream_event())?;
            }
            // Other event types (none today) carry nothing for the client.
            Ok(())
        }
        Some("exception") => {
            let name = header(message, ":exception-type").unwrap_or("");
            Err(error_event(name, message.payload()))
        }
        Some("error") => {
            let name = header(message, ":error-code").unwrap_or("");
            Err(error_event(name, b""))
        }
        _ => Ok(()),
    }
}

fn error_event(name: &str, payload: &[u8]) -> Bytes {
    let (error_type, message) = stream_error(name, payload);
    crate::relay::sse_error_event(error_type, &message)
}

/// `{"bytes": "<base64 of one Anthropic event>", "p": …}` → `event: {type}\ndata: {json}\n\n`.
fn chunk(payload: &[u8], out: &mut BytesMut) -> Result<(), Corrupt> {
    #[derive(Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        bytes: Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<Cow<'a, str>>,
    }
    let chunk: Chunk<'_> = serde_json::from_slice(payload).map_err(|_| Corrupt)?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(chunk.bytes.as_bytes())
        .map_err(|_| Corrupt)?;
    // A chunk is one JSON value; one without a string `type` has no SSE name and is dropped.
    let Ok(event) = serde_json::from_slice::<Event<'_>>(&json) else {
        return if serde_json::from_slice::<serde_json::Value>(&json).is_ok() {
            Ok(())
        } else {
            Err(Corrupt)
        };
    };
    let Some(kind) = event.kind.filter(|k| is_event_name(k)) else {
        return Ok(());
    };
    let data = event_data(&kind, &json)?;
    out.reserve(kind.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\n\n");
    Ok(())
}

/// An SSE event name: Anthropic's are `snake_case` words.
fn is_event_name(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The event's JSON as one `data:` line: verbatim, unless it spans lines (re-serialised
/// compactly) or is a `message_stop` carrying Bedrock's invocation metrics (removed).
fn event_data<'j>(kind: &str, json: &'j [u8]) -> Result<Cow<'j, [u8]>, Corrupt> {
    let json = json.trim_ascii();
    if kind == "message_stop" {
        let mut top = TopLevel::parse(json).map_err(|_| Corrupt)?;
        if top.get(INVOCATION_METRICS).is_some() {
            top.remove(INVOCATION_METRICS);
            let compact = top.to_bytes(&[]);
            return Ok(Cow::Owned(one_line(&compact)?.into_owned()));
        }
    }
    one_line(json)
}

fn one_line(json: &[u8]) -> Result<Cow<'_, [u8]>, Corrupt> {
    if !json.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Ok(Cow::Borrowed(json));
    }
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|_| Corrupt)?;
    serde_json::to_vec(&value)
        .map(Cow::Owned)
        .map_err(|_| Corrupt)
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as the event-stream prelude uses.
pub(super) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        let index = usize::from((crc as u8) ^ b);
        crc = TABLE.get(index).copied().unwrap_or(0) ^ (crc >> 8);
    }
    !crc
}

/// The body adapter: upstream event-stream bytes in, Anthropic SSE out.
pub(super) struct EventStreamToSse {
    /// `None` once the stream is over.
    inner: Option<UpstreamBody>,
    decoder: Decoder,
}

impl EventStreamToSse {
    pub(super) fn boxed(inner: UpstreamBody) -> UpstreamBody {
        EventStreamToSse {
            inner: Some(inner),
            decoder: Decoder::default(),
        }
        .boxed_unsync()
    }
}

impl Body for EventStreamToSse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let mut out = BytesMut::new();
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers carry nothing for the client.
                        continue;
                    };
                    if !this.decoder.feed(&data, &mut out) {
                        this.inner = None;
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    this.inner = None;
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    this.decoder.finish(&mut out);
                    this.inner = None;
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
