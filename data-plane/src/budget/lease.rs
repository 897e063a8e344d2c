//! What the data plane asks the control plane for, and what it answers, in domain terms
//! (the protobuf conversion lives in `control_plane`).

use tollgate_policy::CounterKey;

/// One counter in a `Lease` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseAsk {
    pub counter: CounterKey,
    /// Grant at least this much more, or nothing.
    pub need: u64,
    /// Grant up to this much more.
    pub want: u64,
    /// Unused headroom handed back.
    pub release: u64,
}

impl LeaseAsk {
    /// An ask that only renews the lease and reads the counter.
    pub(crate) fn renew(counter: CounterKey) -> Self {
        LeaseAsk {
            counter,
            need: 0,
            want: 0,
            release: 0,
        }
    }
}

/// The control plane's view of one counter after a `Lease` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CounterState {
    /// Added to this data plane's lease (0 when refused).
    pub granted: u64,
    pub limit: u64,
    /// The ledger: cost of stored usage charged to the counter.
    pub spent: u64,
    /// This data plane's earlier lease had expired; its grants no longer count.
    pub lease_reset: bool,
    /// How long the control plane keeps this data plane's lease without renewal, as it
    /// answered (its expiry minus its clock); `None` when it did not say.
    pub expires_in: Option<std::time::Duration>,
}

/// The answer to a `Lease` call: one state per ask, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseReply {
    pub granted: bool,
    pub counters: Vec<CounterState>,
    /// Index of the first ask that did not fit (when `!granted`).
    pub blocked_index: usize,
}

/// Month-, week- and day-to-date spend of one principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SpendSummary {
    pub day: u64,
    pub week: u64,
    pub month: u64,
}

/// A `Lease` or `SpendSummary` call that got no usable answer.
#[derive(Debug, thiserror::Error)]
#[error("control plane spend call failed: {message}")]
pub(crate) struct SpendCallError {
    pub message: String,
    /// The control plane (or its database) could not be reached or timed out: the outage
    /// mode applies. Otherwise it answered with a refusal the outage mode must not bypass
    /// (a malformed ask, a window it does not accept, bad credentials).
    pub unreachable: bool,
}

impl SpendCallError {
    /// The call could not reach a working control plane.
    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        SpendCallError {
            message: message.into(),
            unreachable: true,
        }
    }

    /// The control plane answered, but not with something usable.
    pub(crate) fn refused(message: impl Into<String>) -> Self {
        SpendCallError {
            message: message.into(),
            unreachable: false,
        }
    }

    /// Classifies a gRPC status: transport failures, timeouts and server-side failures
    /// (its database gone) mean the counter cannot be read; the rest are refusals.
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Aborted => SpendCallError::unreachable(message),
            _ => SpendCallError::refused(message),
        }
    }
}
