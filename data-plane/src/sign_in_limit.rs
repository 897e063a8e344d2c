//! A per-client-address rate limit on the sign-in paths the data plane forwards to the
//! control plane (`/oauth/…`, `/device…`, the authorization-server metadata): a token bucket
//! per address, refilled at `per_minute` up to `burst`. Over it: `429 rate_limit_error` with
//! `retry-after`.
//!
//! The address is the TCP peer's (no `X-Forwarded-For`: there is no trusted-proxy setting).
//! IPv6 clients are keyed by their /64, which one client typically owns. The table is
//! bounded: buckets that have refilled are forgotten first, then the least recently used.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Addresses tracked at once.
const MAX_TRACKED: usize = 10_000;

/// How many sign-in requests one address may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInLimitSettings {
    /// Sustained rate; 0 turns the limit off.
    pub per_minute: u32,
    /// Requests allowed at once before the rate applies.
    pub burst: u32,
}

impl Default for SignInLimitSettings {
    fn default() -> Self {
        SignInLimitSettings {
            per_minute: 30,
            burst: 30,
        }
    }
}

impl SignInLimitSettings {
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        if self.per_minute > 0 && self.burst == 0 {
            problems.push("sign_in_burst: must be positive when the limit is on".to_owned());
        }
    }
}

/// A refusal: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryAfter(pub u64);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The per-address buckets.
#[derive(Debug)]
pub(crate) struct SignInLimit {
    settings: SignInLimitSettings,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    max_tracked: usize,
}

impl SignInLimit {
    pub(crate) fn new(settings: SignInLimitSettings) -> Self {
        Self::with_capacity(settings, MAX_TRACKED)
    }

    fn with_capacity(settings: SignInLimitSettings, max_tracked: usize) -> Self {
        SignInLimit {
            settings,
            buckets: Mutex::new(HashMap::new()),
            max_tracked: max_tracked.max(1),
        }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.settings.per_minute) / 60.0
    }

    /// Takes one request from `addr`'s bucket, or says how long until there is one.
    pub(crate) fn check(&self, addr: IpAddr) -> Result<(), RetryAfter> {
        if self.settings.per_minute == 0 {
            return Ok(());
        }
        let key = client_key(addr);
        let now = Instant::now();
        let burst = f64::from(self.settings.burst);
        let rate = self.per_second();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(&key) && buckets.len() >= self.max_tracked {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
            Err(RetryAfter(wait.as_secs().saturating_add(1)))
        }
    }

    /// Makes room: forgets full buckets; if none is, the least recently used one.
    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let burst = f64::from(self.settings.burst);
        let rate = self.per_second();
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
        });
        if buckets.len() >= self.max_tracked
            && let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| *k)
        {
            buckets.remove(&oldest);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// IPv4 as is (IPv4-mapped IPv6 too); IPv6 by its /64.
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_minute: u32, burst: u32) -> SignInLimit {
        SignInLimit::new(SignInLimitSettings { per_minute, burst })
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_beyond_the_burst_and_refills_at_the_rate() {
        let limit = limit(60, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limit.check(ip), Ok(()));
        }
        let Err(RetryAfter(secs)) = limit.check(ip) else {
            panic!("the fourth request must be refused");
        };
        assert!((1..=2).contains(&secs), "{secs}");
        // Another address has its own bucket.
        assert_eq!(limit.check("192.0.2.2".parse().unwrap()), Ok(()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limit.check(ip), Ok(()));
        assert!(limit.check(ip).is_err());
    }

    #[test]
    fn zero_rate_turns_the_limit_off() {
        let limit = limit(0, 0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(limit.check(ip), Ok(()));
        }
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_v4_is_v4() {
        let limit = limit(1, 1);
        assert_eq!(limit.check("2001:db8::1".parse().unwrap()), Ok(()));
        assert!(limit.check("2001:db8::2".parse().unwrap()).is_err());
        assert_eq!(limit.check("2001:db8:0:1::1".parse().unwrap()), Ok(()));
        assert_eq!(limit.check("192.0.2.9".parse().unwrap()), Ok(()));
        assert!(limit.check("::ffff:192.0.2.9".parse().unwrap()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_stays_bounded() {
        let limit = SignInLimit::with_capacity(
            SignInLimitSettings {
                per_minute: 1,
                burst: 5,
            },
            4,
        );
        for i in 0..50_u8 {
            let _ = limit.check(IpAddr::from([10, 0, 0, i]));
            assert!(limit.tracked() <= 4);
        }
    }
}
