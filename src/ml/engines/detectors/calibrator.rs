//! Maps a detector's raw score to [0, 1] via the empirical CDF of scores on held-out healthy rows,
//! so detectors with unrelated scales can be averaged and thresholded together.

use super::stats::{quantile_sorted, sorted_finite};
use super::{DetectorError, Result};
use serde::{Deserialize, Serialize};

/// Knots kept at most: enough resolution for any practical threshold, small on disk.
pub const MAX_KNOTS: usize = 1000;

/// Piecewise-linear empirical CDF with exponential tails.
///
/// Knot `i` is a distinct held-out score `s` with plotting position `q = rank/(n+1)`, so the
/// highest held-out score maps to `n/(n+1) < 1` and scores beyond it keep rising towards 1 as
/// `1 - (1 - q_max)·exp(-(s - s_max)/tail_scale)`; below the lowest knot the CDF decays to 0 the
/// same way. Result: continuous, non-decreasing everywhere, strictly inside [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    pub scores: Vec<f64>,
    pub quantiles: Vec<f64>,
    pub tail_scale: f64,
}

impl Calibrator {
    /// Non-finite scores are ignored; at least one finite score is required.
    pub fn fit(held_out_scores: &[f64]) -> Result<Self> {
        let sorted = sorted_finite(held_out_scores.iter().copied());
        let n = sorted.len();
        let (Some(&lo), Some(&hi)) = (sorted.first(), sorted.last()) else {
            return Err(DetectorError::NoScores);
        };
        let mut scores = Vec::new();
        let mut quantiles = Vec::new();
        for (i, &s) in sorted.iter().enumerate() {
            let q = (i + 1) as f64 / (n + 1) as f64;
            // Ties collapse to one knot holding the highest rank: CDF = P(S <= s).
            if scores.last() == Some(&s) {
                if let Some(last) = quantiles.last_mut() {
                    *last = q;
                }
            } else {
                scores.push(s);
                quantiles.push(q);
            }
        }
        let (scores, quantiles) = thin(scores, quantiles, MAX_KNOTS);
        let spread = hi - quantile_sorted(&sorted, 0.5);
        let floor = 1e-12 * hi.abs().max(lo.abs()).max(1.0);
        Ok(Calibrator { scores, quantiles, tail_scale: spread.max(floor) })
    }

    /// Calibrated score in [0, 1]. NaN maps to 1: a detector that cannot score a row should alarm
    /// rather than hide it.
    pub fn map(&self, s: f64) -> f64 {
        if s.is_nan() {
            return 1.0;
        }
        let (Some(&s_min), Some(&s_max)) = (self.scores.first(), self.scores.last()) else {
            return 0.5;
        };
        let q_min = self.quantiles.first().copied().unwrap_or(0.0);
        let q_max = self.quantiles.last().copied().unwrap_or(1.0);
        let scale = self.tail_scale.max(f64::MIN_POSITIVE);
        if s >= s_max {
            return (1.0 - (1.0 - q_max) * (-(s - s_max) / scale).exp()).clamp(0.0, 1.0);
        }
        if s < s_min {
            return (q_min * (-(s_min - s) / scale).exp()).clamp(0.0, 1.0);
        }
        // s_min <= s < s_max, so 1 <= k < len.
        let k = self.scores.partition_point(|&x| x <= s);
        let (s0, s1) = (self.scores[k - 1], self.scores[k]);
        let (q0, q1) = (self.quantiles[k - 1], self.quantiles[k]);
        (q0 + (q1 - q0) * (s - s0) / (s1 - s0)).clamp(0.0, 1.0)
    }
}

/// Keeps at most `max` knots spread evenly by index, always including both ends.
fn thin(scores: Vec<f64>, quantiles: Vec<f64>, max: usize) -> (Vec<f64>, Vec<f64>) {
    let m = scores.len();
    if m <= max || max < 2 {
        return (scores, quantiles);
    }
    let picks = (0..max).map(|k| (k as f64 * (m - 1) as f64 / (max - 1) as f64).round() as usize);
    let mut s = Vec::with_capacity(max);
    let mut q = Vec::with_capacity(max);
    for i in picks {
        if s.last() != Some(&scores[i]) {
            s.push(scores[i]);
            q.push(quantiles[i]);
        }
    }
    (s, q)
}

#[cfg(test)]
mod tests {
    use super::super::rng::SplitMix64;
    use super::*;

    fn assert_monotone(c: &Calibrator, lo: f64, hi: f64) {
        let mut prev = -1.0;
        for i in 0..=20_000 {
            let s = lo + (hi - lo) * i as f64 / 20_000.0;
            let v = c.map(s);
            assert!((0.0..=1.0).contains(&v), "{s} -> {v}");
            assert!(v >= prev, "not monotone at {s}: {v} < {prev}");
            prev = v;
        }
    }

    #[test]
    fn monotone_and_bounded() {
        let mut rng = SplitMix64::new(3);
        let scores: Vec<f64> = (0..5000).map(|_| rng.normal().exp()).collect();
        let c = Calibrator::fit(&scores).unwrap();
        assert!(c.scores.len() <= MAX_KNOTS);
        assert_monotone(&c, -5.0, 100.0);
        assert!(c.map(1e9) > 0.999 && c.map(1e9) <= 1.0);
        assert!(c.map(-1e9) >= 0.0);
        // Median of held-out maps near 0.5.
        assert!((c.map(1.0) - 0.5).abs() < 0.03);
        assert_eq!(c.map(f64::NAN), 1.0);
        assert_eq!(c.map(f64::INFINITY), 1.0);
    }

    #[test]
    fn ties_and_constant_scores() {
        let c = Calibrator::fit(&[2.0; 50]).unwrap();
        assert_monotone(&c, 1.0, 3.0);
        assert!(c.map(2.0) > 0.97);
        assert!(c.map(2.0 + 1e-6) > c.map(2.0) || c.map(2.0) == 1.0);
        let d = Calibrator::fit(&[0.0, 0.0, 0.0, 1.0, 1.0, 5.0, f64::NAN]).unwrap();
        assert_monotone(&d, -1.0, 7.0);
        assert!(Calibrator::fit(&[f64::NAN]).is_err());
        assert!(Calibrator::fit(&[]).is_err());
    }
}
