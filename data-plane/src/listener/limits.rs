//! What one client, or all of them together, may hold of the client listener: requests in
//! flight, time and bytes to send a request head, HTTP/2 streams, resets and keep-alive.
//!
//! The header read timeout also bounds idle connections: hyper starts it again whenever an
//! HTTP/1 connection waits for its next request head, and a connection (HTTP/1 or HTTP/2, or
//! one that has not yet sent enough to tell) with no request in flight for that long is asked
//! to close (see `listener::connection`).

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// hyper refuses smaller HTTP/1 read buffers.
const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;

/// Bounds on the client listener. The defaults are on; see `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Requests served at once (response bodies and streams included); beyond it a request
    /// is answered `529 overloaded_error` with `retry-after` at once.
    pub max_concurrent_requests: usize,
    /// Time a client has to send a whole request head (HTTP/1), and how long a connection
    /// with no request in flight is kept open (HTTP/1 and HTTP/2).
    pub header_read_timeout: Duration,
    /// Largest request head: HTTP/1 read buffer (a larger head gets 431) and the HTTP/2
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`.
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request (more gets 431).
    pub max_headers: usize,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` per connection.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 streams a client may reset before they are served; beyond it the connection
    /// is closed with `GOAWAY` (the "rapid reset" flood).
    pub http2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 streams the server may reset because of client protocol errors before the
    /// connection is closed with `GOAWAY`.
    pub http2_max_local_error_reset_streams: usize,
    /// HTTP/2 keep-alive `PING` interval; `None` = no pings.
    pub http2_keep_alive_interval: Option<Duration>,
    /// An unanswered keep-alive `PING` closes the connection after this long.
    pub http2_keep_alive_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_concurrent_requests: 2048,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            http2_max_concurrent_streams: 256,
            http2_max_pending_accept_reset_streams: 20,
            http2_max_local_error_reset_streams: 1024,
            http2_keep_alive_interval: Some(Duration::from_secs(60)),
            http2_keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

impl ListenerLimits {
    /// Adds every problem to `problems`.
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        if self.max_concurrent_requests == 0
            || self.max_concurrent_requests > tokio::sync::Semaphore::MAX_PERMITS
        {
            problems.push("max_concurrent_requests: must be positive (and sane)".to_owned());
        }
        if self.header_read_timeout.is_zero() {
            problems.push("header_read_timeout: must be positive".to_owned());
        }
        if self.max_header_bytes < MIN_MAX_HEADER_BYTES
            || u32::try_from(self.max_header_bytes).is_err()
        {
            problems.push(format!(
                "max_header_bytes: must be between {MIN_MAX_HEADER_BYTES} and {}",
                u32::MAX
            ));
        }
        if self.max_headers == 0 {
            problems.push("max_headers: must be positive".to_owned());
        }
        if self.http2_max_concurrent_streams == 0 {
            problems.push("http2_max_concurrent_streams: must be positive".to_owned());
        }
        if self.http2_keep_alive_interval.is_some_and(|d| d.is_zero()) {
            problems.push("http2_keep_alive_interval: must be positive (or off)".to_owned());
        }
        if self.http2_keep_alive_timeout.is_zero() {
            problems.push("http2_keep_alive_timeout: must be positive".to_owned());
        }
    }

    /// A connection builder for HTTP/1.1 and h2c with these limits. Call on validated
    /// limits only (hyper panics on a read buffer under 8 KiB; it is raised here anyway).
    pub(crate) fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(self.max_header_bytes.max(MIN_MAX_HEADER_BYTES))
            .max_headers(self.max_headers);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(self.http2_max_pending_accept_reset_streams)
            .max_local_error_reset_streams(self.http2_max_local_error_reset_streams)
            .keep_alive_interval(self.http2_keep_alive_interval)
            .keep_alive_timeout(self.http2_keep_alive_timeout);
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let mut problems = Vec::new();
        ListenerLimits::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn reports_every_bad_limit() {
        let limits = ListenerLimits {
            max_concurrent_requests: 0,
            header_read_timeout: Duration::ZERO,
            max_header_bytes: 100,
            max_headers: 0,
            http2_max_concurrent_streams: 0,
            http2_max_pending_accept_reset_streams: 0,
            http2_max_local_error_reset_streams: 0,
            http2_keep_alive_interval: Some(Duration::ZERO),
            http2_keep_alive_timeout: Duration::ZERO,
        };
        let mut problems = Vec::new();
        limits.validate(&mut problems);
        assert_eq!(problems.len(), 7, "{problems:?}");
    }
}
