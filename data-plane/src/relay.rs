//! What happens to a provider's answer between the provider and the meter.
//!
//! - [`StreamGuard`]: bounds the silence between two chunks (idle timeout), emits `ping`
//!   events during silence for upstreams that send none (Bedrock's event stream), and ends
//!   an event stream that fails after bytes have flowed with a proper SSE `error` event
//!   instead of a cut connection — including a stream still open when the shutdown drain
//!   period ends (`overloaded_error`, so the client retries elsewhere).
//! - [`ModelRewrite`]: makes the answer report the model id the client asked for (routes and
//!   aliases send other ids upstream; Bedrock answers with Anthropic's dated names).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde_json::value::RawValue;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::meter::BoxError;
use crate::meter::UpstreamBody;
use crate::request::edit::{TopLevel, raw_string};

/// Whether the body is an event stream (errors can be told in-band) or opaque JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Sse,
    Opaque,
}

/// The upstream went silent for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?}")]
pub(crate) struct IdleTimeout(Duration);

/// The data plane is shutting down and the drain period is over.
#[derive(Debug, thiserror::Error)]
#[error("the gateway is shutting down")]
pub(crate) struct ShuttingDown;

/// What a client reads when its stream outlives the shutdown drain period.
pub(crate) const SHUTTING_DOWN_MESSAGE: &str =
    "the gateway is shutting down; retry the request (it will reach another instance)";

/// An SSE `error` event in Anthropic's shape.
pub(crate) fn sse_error_event(error_type: &str, message: &str) -> Bytes {
    let data = serde_json::json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
    });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

const PING_EVENT: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// Idle timeout, synthesized pings and in-band errors for one response body.
pub(crate) struct StreamGuard {
    inner: Option<UpstreamBody>,
    framing: Framing,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    ping: Option<(Duration, Pin<Box<Sleep>>)>,
    /// The bytes sent so far end at an event boundary (a blank line).
    at_boundary: bool,
    /// The last two bytes sent (for boundary tracking across chunks).
    tail: [u8; 2],
    /// Completes when the shutdown drain period is over: the stream is then ended.
    drain_over: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl StreamGuard {
    pub(crate) fn new(
        inner: UpstreamBody,
        framing: Framing,
        idle: Duration,
        ping_interval: Option<Duration>,
    ) -> Self {
        let now = Instant::now();
        StreamGuard {
            inner: Some(inner),
            framing,
            idle,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle)),
            ping: ping_interval
                .filter(|_| framing == Framing::Sse)
                .map(|every| (every, Box::pin(tokio::time::sleep_until(now + every)))),
            at_boundary: true,
            tail: [b'\n', b'\n'],
            drain_over: None,
        }
    }

    /// Ends the stream (with an `overloaded_error` event when SSE) once `drain_over` is
    /// cancelled, i.e. when the shutdown drain period is over.
    pub(crate) fn ending_at(mut self, drain_over: CancellationToken) -> Self {
        self.drain_over = Some(Box::pin(drain_over.cancelled_owned()));
        self
    }

    fn note_sent(&mut self, data: &[u8]) {
        match data {
            [] => {}
            [one] => self.tail = [self.tail[1], *one],
            [.., a, b] => self.tail = [*a, *b],
        }
        self.at_boundary = self.tail == [b'\n', b'\n'];
    }

    /// Ends the stream with an error event (SSE) or an error (opaque).
    fn fail(
        &mut self,
        error_type: &str,
        message: &str,
        cause: BoxError,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.inner = None;
        match self.framing {
            Framing::Sse => {
                let event = sse_error_event(error_type, message);
                let data = if self.at_boundary {
                    event
                } else {
                    // Close the half-sent event first; the client discards it.
                    let mut b = BytesMut::with_capacity(event.len() + 2);
                    b.extend_from_slice(b"\n\n");
                    b.extend_from_slice(&event);
                    b.freeze()
                };
                self.note_sent(&data);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Framing::Opaque => Poll::Ready(Some(Err(cause))),
        }
    }
}

impl Body for StreamGuard {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.inner.is_none() {
            return Poll::Ready(None);
        }
        // Checked first, so a provider that never pauses cannot hold shutdown up.
        if let Some(drain_over) = this.drain_over.as_mut()
            && drain_over.as_mut().poll(cx).is_ready()
        {
            this.drain_over = None;
            tracing::debug!("shutdown drain period over; ending the response");
            return this.fail(
                "overloaded_error",
                SHUTTING_DOWN_MESSAGE,
                Box::new(ShuttingDown),
            );
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let now = Instant::now();
                this.idle_timer.as_mut().reset(now + this.idle);
                if let Some((every, timer)) = this.ping.as_mut() {
                    timer.as_mut().reset(now + *every);
                }
                if let Some(data) = frame.data_ref() {
                    let data = data.clone();
                    this.note_sent(&data);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(error))) => {
                tracing::warn!(%error, "upstream failed mid-response");
                return this.fail("api_error", "upstream provider failed mid-response", error);
            }
            Poll::Ready(None) => {
                this.inner = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.idle_timer.as_mut().poll(cx).is_ready() {
            let idle = this.idle;
            tracing::warn!(?idle, "upstream idle timeout");
            return this.fail(
                "timeout_error",
                "upstream provider stopped sending; the response was cut",
                Box::new(IdleTimeout(idle)),
            );
        }
        if this.at_boundary
            && let Some((every, timer)) = this.ping.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            let every = *every;
            timer.as_mut().reset(Instant::now() + every);
            // Re-register the timer's waker for the next interval.
            let _ = timer.as_mut().poll(cx);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(PING_EVENT)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, self.framing) {
            (Some(inner), Framing::Opaque) => inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

/// Largest JSON answer rewritten in memory; larger ones pass unchanged.
const MAX_JSON_REWRITE: usize = 32 << 20;
/// Largest SSE prefix searched for `message_start`.
const MAX_SSE_SEARCH: usize = 1 << 20;

enum RewriteState {
    /// SSE: looking for `message_start` (buffered bytes not yet sent).
    SearchingSse(BytesMut),
    /// JSON: collecting the whole answer.
    CollectingJson(BytesMut),
    Passthrough,
}

/// Rewrites the model id in the answer to the client's.
pub(crate) struct ModelRewrite {
    inner: UpstreamBody,
    model: String,
    state: RewriteState,
    finished: bool,
    /// An upstream error to report after the held-back bytes.
    error: Option<BoxError>,
}

impl ModelRewrite {
    pub(crate) fn new(inner: UpstreamBody, framing: Framing, client_model: &str) -> Self {
        let state = match framing {
            Framing::Sse => RewriteState::SearchingSse(BytesMut::new()),
            Framing::Opaque => RewriteState::CollectingJson(BytesMut::new()),
        };
        ModelRewrite {
            inner,
            model: client_model.to_owned(),
            state,
            finished: false,
            error: None,
        }
    }

    /// Takes complete events out of `buf`; rewrites `message_start`. Returns what can be
    /// sent and whether the search is over.
    fn scan_sse(&self, buf: &mut BytesMut) -> (BytesMut, bool) {
        let mut out = BytesMut::new();
        while let Some(end) = event_end(buf) {
            let event = buf.split_to(end);
            if let Some(rewritten) = rewrite_message_start(&event, &self.model) {
                out.extend_from_slice(&rewritten);
                out.extend_from_slice(&buf.split());
                return (out, true);
            }
            let done = is_named(&event, b"message_start");
            out.extend_from_slice(&event);
            if done {
                out.extend_from_slice(&buf.split());
                return (out, true);
            }
        }
        let give_up = buf.len() > MAX_SSE_SEARCH;
        if give_up {
            out.extend_from_slice(&buf.split());
        }
        (out, give_up)
    }
}

/// The end (exclusive) of the first complete event in `buf`.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn is_named(event: &[u8], name: &[u8]) -> bool {
    event.split(|b| *b == b'\n').any(|line| {
        line.strip_prefix(b"event:")
            .is_some_and(|n| n.trim_ascii() == name)
    })
}

/// A `message_start` event with `message.model` set to `model`; `None` if `event` is not
/// one or already names `model`. Every other member keeps its bytes and place.
fn rewrite_message_start(event: &[u8], model: &str) -> Option<Bytes> {
    // Exactly one event (mixed line endings could merge two: leave such input alone).
    let names = event
        .split(|b| *b == b'\n')
        .filter(|line| line.starts_with(b"event:"))
        .count();
    if names != 1 || !is_named(event, b"message_start") {
        return None;
    }
    let data = event
        .split(|b| *b == b'\n')
        .find_map(|line| line.strip_prefix(b"data:"))?
        .trim_ascii();
    let mut outer = TopLevel::parse(data).ok()?;
    let message = outer.get("message")?.get().to_owned();
    let rewritten = rewrite_model(message.as_bytes(), model)?;
    let rewritten = RawValue::from_string(String::from_utf8(rewritten.to_vec()).ok()?).ok()?;
    outer.set("message", rewritten);
    let mut out = BytesMut::with_capacity(event.len() + model.len() + 32);
    out.extend_from_slice(b"event: message_start\ndata: ");
    out.extend_from_slice(&outer.to_bytes(&[]));
    out.extend_from_slice(b"\n\n");
    Some(out.freeze())
}

/// A JSON object with its top-level `model` set to `model` (other members unchanged, in
/// place); `None` if it has no `model` or already names `model`.
fn rewrite_model(body: &[u8], model: &str) -> Option<Bytes> {
    let mut top = TopLevel::parse(body).ok()?;
    let current = top.get("model")?;
    if serde_json::from_str::<&str>(current.get()).ok() == Some(model) {
        return None;
    }
    top.set("model", raw_string(model));
    Some(top.to_bytes(&[]))
}

impl Body for ModelRewrite {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            let polled = Pin::new(&mut this.inner).poll_frame(cx);
            let frame = match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    // Flush what was held back, then the error on the next poll.
                    let held = match &mut this.state {
                        RewriteState::SearchingSse(buf) | RewriteState::CollectingJson(buf) => {
                            buf.split().freeze()
                        }
                        RewriteState::Passthrough => Bytes::new(),
                    };
                    this.state = RewriteState::Passthrough;
                    this.finished = true;
                    if held.is_empty() {
                        return Poll::Ready(Some(Err(e)));
                    }
                    this.error = Some(e);
                    return Poll::Ready(Some(Ok(Frame::data(held))));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    let out = match std::mem::replace(&mut this.state, RewriteState::Passthrough) {
                        RewriteState::SearchingSse(buf) => buf.freeze(),
                        RewriteState::CollectingJson(buf) => {
                            rewrite_model(&buf, &this.model).unwrap_or_else(|| buf.freeze())
                        }
                        RewriteState::Passthrough => Bytes::new(),
                    };
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            match &mut this.state {
                RewriteState::Passthrough => return Poll::Ready(Some(Ok(Frame::data(data)))),
                RewriteState::CollectingJson(buf) => {
                    buf.extend_from_slice(&data);
                    if buf.len() > MAX_JSON_REWRITE {
                        let out = buf.split().freeze();
                        this.state = RewriteState::Passthrough;
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                RewriteState::SearchingSse(buf) => {
                    buf.extend_from_slice(&data);
                    let mut taken = std::mem::take(buf);
                    let (out, done) = this.scan_sse(&mut taken);
                    if done {
                        this.state = RewriteState::Passthrough;
                    } else if let RewriteState::SearchingSse(buf) = &mut this.state {
                        *buf = taken;
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.error.is_none()
            && (self.finished
                || (matches!(self.state, RewriteState::Passthrough) && self.inner.is_end_stream()))
    }
}

#[cfg(test)]
mod tests;
