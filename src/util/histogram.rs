//! A lock-free histogram of durations for counters shown in `/api/health`: buckets 25 % wide from 1 ms up
//! (so a quantile is within 25 % of the truth), recorded from any thread without a lock.
use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: usize = 96;
const GROWTH: f64 = 1.25;

pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: std::array::from_fn(|_| AtomicU64::new(0)), max_us: AtomicU64::new(0) }
    }
}

/// The bucket whose upper bound is the first at or above `ms` (bucket 0 holds everything up to 1 ms).
fn bucket(ms: f64) -> usize {
    if ms <= 1.0 {
        return 0;
    }
    ((ms.ln() / GROWTH.ln()).ceil() as usize).min(BUCKETS - 1)
}

fn upper_ms(b: usize) -> f64 {
    GROWTH.powi(b as i32)
}

impl Histogram {
    /// Records one duration in milliseconds; a negative one (a clock set back) counts as 0.
    pub fn record_ms(&self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { return };
        self.counts[bucket(ms)].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max((ms * 1000.0) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1), in ms; `None` before anything was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(upper_ms(b).min(self.max_ms()));
            }
        }
        Some(self.max_ms())
    }

    pub fn max_ms(&self) -> f64 {
        self.max_us.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// `{count, p50_ms, p99_ms, max_ms}` for a health answer.
    pub fn summary(&self) -> serde_json::Value {
        let round = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
        serde_json::json!({ "count": self.count(), "p50_ms": round(self.quantile_ms(0.5)), "p99_ms": round(self.quantile_ms(0.99)), "max_ms": round(Some(self.max_ms()).filter(|_| self.count() > 0)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_within_a_bucket_of_the_truth() {
        let h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for i in 1..=1000 {
            h.record_ms(f64::from(i));
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((500.0..=625.0).contains(&p50), "{p50}");
        assert!((990.0..=1000.0).contains(&p99), "{p99}: never above the largest value recorded");
        assert_eq!(h.max_ms(), 1000.0);
        h.record_ms(-5.0);
        h.record_ms(f64::NAN);
        assert_eq!(h.count(), 1001, "a negative duration counts as 0, NaN not at all");
    }
}
