//! Latency histograms and their percentiles.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A histogram of microseconds from 1 µs to 60 s with 3 significant digits.
#[expect(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram always accepts"
)]
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Records `d` in microseconds, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 60_000_000);
    h.saturating_record(us);
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }

    /// `self − base`, percentile by percentile (the latency a hop adds).
    pub fn minus(&self, base: &Percentiles) -> Percentiles {
        Percentiles {
            count: self.count,
            p50_ms: self.p50_ms - base.p50_ms,
            p90_ms: self.p90_ms - base.p90_ms,
            p99_ms: self.p99_ms - base.p99_ms,
            max_ms: self.max_ms - base.max_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_milliseconds() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 0.5).abs() < 0.01);
        assert!((p.p99_ms - 0.99).abs() < 0.01);
        assert!((p.max_ms - 1.0).abs() < 0.01);
        let added = p.minus(&Percentiles { p50_ms: 0.2, ..p });
        assert!((added.p50_ms - 0.3).abs() < 0.01);
    }
}
