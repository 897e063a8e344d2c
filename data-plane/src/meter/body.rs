//! The metering response body and what happens when the client leaves early.
//!
//! # Billing a client that disconnects
//!
//! The provider bills for what it generates, whether or not our client reads it. So when
//! the client drops the response before the upstream has finished (hyper drops the body),
//! the body's `Drop` hands the upstream body and its meter to a background task that keeps
//! reading the upstream to its end — bounded by `disconnect_drain_timeout`, and by the
//! shutdown drain bound once the data plane is stopping — and then records the usage with
//! outcome `client_disconnected` (or `truncated` if a bound cut it short). We bill what the
//! provider bills; the cost is holding the upstream connection open until it is done, which
//! also returns that connection to the pool instead of resetting it.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Meter;
use crate::usage::{Outcome, PendingUsage};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any upstream (or generated) response body.
pub(crate) type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// How long to keep reading an upstream whose client has gone.
#[derive(Debug, Clone)]
pub(crate) struct DrainPolicy {
    pub timeout: Duration,
    /// Drain tasks are tracked so shutdown can wait for their usage records.
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    /// After shutdown starts, drains get this long before they are cut.
    pub shutdown_grace: Duration,
    /// Cancelled by the listener when the shutdown drain period is over: responses still
    /// streaming to a client are then ended (SSE: with an `error` event) and metered.
    pub drain_over: CancellationToken,
}

impl DrainPolicy {
    /// Completes once shutdown has started and its grace period has passed.
    pub(crate) fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let shutdown = self.shutdown.clone();
        let grace = self.shutdown_grace;
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        }
    }
}

/// Passes the upstream body through frame by frame while metering it; records usage once.
pub(crate) struct MeteredBody {
    /// `None` once the usage has been recorded.
    state: Option<Metering>,
}

struct Metering {
    inner: UpstreamBody,
    meter: Meter,
    pending: PendingUsage,
    drain: DrainPolicy,
}

impl MeteredBody {
    pub(crate) fn new(
        inner: UpstreamBody,
        meter: Meter,
        pending: PendingUsage,
        drain: DrainPolicy,
    ) -> Self {
        MeteredBody {
            state: Some(Metering {
                inner,
                meter,
                pending,
                drain,
            }),
        }
    }
}

impl Metering {
    /// The upstream ended normally.
    fn end(mut self) {
        let metered = self.meter.finish();
        let outcome = if metered.error_event && self.drain.drain_over.is_cancelled() {
            // Ended by the relay when the shutdown drain period ran out.
            Outcome::Truncated
        } else if self.pending.status() >= 400 || metered.error_event {
            Outcome::UpstreamError
        } else {
            Outcome::Complete
        };
        self.pending.finish(&metered.usage, outcome);
    }

    fn finish(mut self, outcome: Outcome) {
        let metered = self.meter.finish();
        self.pending.finish(&metered.usage, outcome);
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(m) = this.state.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(&mut m.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    m.meter.feed(data);
                    m.pending.relayed(data);
                }
                if m.inner.is_end_stream()
                    && let Some(m) = this.state.take()
                {
                    m.end();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                if let Some(m) = this.state.take() {
                    // A JSON answer cut when the shutdown drain period ran out is truncated.
                    let outcome = if m.drain.drain_over.is_cancelled() {
                        Outcome::Truncated
                    } else {
                        Outcome::UpstreamError
                    };
                    m.finish(outcome);
                }
                Poll::Ready(Some(Err(error)))
            }
            None => {
                if let Some(m) = this.state.take() {
                    m.end();
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state.as_ref().is_none_or(|m| m.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.state
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |m| m.inner.size_hint())
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        let Some(m) = self.state.take() else {
            return;
        };
        if m.inner.is_end_stream() {
            m.end();
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let tracker = m.drain.tracker.clone();
                tracker.spawn_on(drain_after_disconnect(m), &handle);
            }
            Err(_) => m.finish(Outcome::Truncated),
        }
    }
}

/// Reads the upstream on after the client left, then records the usage.
async fn drain_after_disconnect(mut m: Metering) {
    let deadline = tokio::time::sleep(m.drain.timeout);
    let stopping = m.drain.stopping();
    tokio::pin!(deadline, stopping);
    let outcome = loop {
        tokio::select! {
            biased;
            frame = m.inner.frame() => match frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        m.meter.feed(data);
                    }
                }
                // An upstream failure after the client left: bill what was seen.
                Some(Err(_)) | None => break Outcome::ClientDisconnected,
            },
            () = &mut deadline => break Outcome::Truncated,
            () = &mut stopping => break Outcome::Truncated,
        }
    };
    m.finish(outcome);
}

#[cfg(test)]
mod tests;
