//! Rate limits on the request path: requests and tokens per minute, and concurrency, per
//! org, group, user and key, plus upstream ceilings per provider target.
//!
//! The buckets live behind the control plane (token buckets refilled over a minute;
//! concurrency slots leased per data plane with a TTL). This data plane spends from slices
//! it was granted ([`ledger`]): far from a limit a request's admission is one check under a
//! short mutex; only when a slice runs short does it make one `RateLease` call for every
//! short bucket. A [`RateHold`] settles with the real token usage when the response ends
//! and, dropped unsettled, settles at zero tokens (the request still counts as a request).
//! The keeper renews concurrency leases in use and hands idle slices back. See
//! `docs/rate-limits.md` for the semantics and the overshoot bound.

mod admission;
mod headers;
mod keeper;
mod lease;
mod ledger;

#[cfg(test)]
mod tests;

pub(crate) use admission::{Demand, RateAdmission, RateHold, RateLimited, RateLimiter};
pub(crate) use headers::{
    UNAVAILABLE_MESSAGE, limited_headers, limited_message, unavailable_headers,
};
pub(crate) use keeper::spawn_rate_keeper;
pub(crate) use lease::{BucketState, RateAsk, RateReply};
pub use ledger::{Charge, Ledger};
