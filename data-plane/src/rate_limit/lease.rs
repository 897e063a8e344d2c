//! What the data plane asks the control plane for in a `RateLease` call, and what it
//! answers, in domain terms (the protobuf conversion lives in `control_plane`).

use std::time::Duration;

use tollgate_policy::BucketKey;

/// One bucket in a `RateLease` call. Units are the limit's: requests, tokens or slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateAsk {
    pub bucket: BucketKey,
    /// Grant at least this much more, or nothing (asks of one call are all-or-nothing).
    pub need: u64,
    /// Grant up to this much more.
    pub want: u64,
    /// Unused tokens / free slots handed back (applied whether or not the grant succeeds).
    pub release: u64,
}

impl RateAsk {
    /// An ask that only reads the bucket (and renews a concurrency lease).
    pub(crate) fn renew(bucket: BucketKey) -> Self {
        RateAsk {
            bucket,
            need: 0,
            want: 0,
            release: 0,
        }
    }
}

/// The control plane's view of one bucket after a `RateLease` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BucketState {
    /// Added to this data plane's holding (0 when refused).
    pub granted: u64,
    /// The limit in force; 0 when the limit no longer exists (stop enforcing it).
    pub limit: u64,
    /// Per-minute kinds: whole units left in the bucket. Concurrency: free slots.
    pub available: u64,
    /// When refused and this bucket is short: milliseconds until the need fits (0 unknown).
    pub retry_after_ms: u64,
    /// Per-minute kinds: milliseconds until the bucket is full again.
    pub full_in_ms: u64,
    /// Concurrency: this data plane's lease had expired; its earlier slots no longer count.
    pub lease_reset: bool,
    /// Concurrency: the slots this data plane's lease holds after the call (absolute).
    pub held: u64,
    /// Concurrency: how long the control plane keeps this data plane's slots without
    /// renewal, as it answered (its expiry minus its clock); `None` when it did not say.
    pub expires_in: Option<Duration>,
}

/// The answer to a `RateLease` call: one state per ask, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateReply {
    /// False when some ask's `need` did not fit; nothing was granted then.
    pub granted: bool,
    pub buckets: Vec<BucketState>,
    /// Index of the first ask that did not fit (when `!granted`).
    pub blocked_index: usize,
}
