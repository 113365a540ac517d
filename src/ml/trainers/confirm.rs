//! "k of the last n readings": an anomaly alarm confirmed over a few readings, so one noisy reading is not an
//! alarm. Expressed as a score so that thresholds, curves and exports keep one meaning: the confirmed score
//! of a reading is the k-th largest raw score among it and the n − 1 readings before it in the same run,
//! and it is over the threshold exactly when at least k of those n raw scores are.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    pub k: u32,
    pub n: u32,
}

impl Confirm {
    /// Every reading on its own (no smoothing).
    pub const SINGLE: Confirm = Confirm { k: 1, n: 1 };

    pub fn from_params(k_of_n: [u32; 2]) -> Confirm {
        let [k, n] = k_of_n;
        Confirm { k: k.max(1), n: n.max(k).max(1) }
    }

    pub fn is_single(&self) -> bool {
        self.n <= 1
    }

    /// Readings before the scored one that its confirmation looks at.
    pub fn lookback(&self) -> usize {
        self.n.saturating_sub(1) as usize
    }

    /// The rows whose raw scores confirm row `r`: it and up to [`Confirm::lookback`] before it, never before
    /// `run_start`, its run's first row.
    pub fn window(&self, r: usize, run_start: usize) -> std::ops::RangeInclusive<usize> {
        r.saturating_sub(self.lookback()).max(run_start).min(r)..=r
    }

    /// The confirmed score of the last reading of `window` (oldest first; only its last `n` count). At a
    /// run's start, with fewer than k readings so far, nothing can be confirmed yet: the score is 0, the
    /// ensemble's "entirely normal" (its scores lie in [0, 1]).
    pub fn score(&self, window: &[f64]) -> f64 {
        let tail = &window[window.len().saturating_sub(self.n as usize)..];
        if tail.len() < self.k as usize {
            return 0.0;
        }
        let mut sorted = tail.to_vec();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        sorted[self.k as usize - 1]
    }

    pub fn describe(&self) -> String {
        if self.is_single() { "every reading on its own".into() } else { format!("{} of the last {} readings", self.k, self.n) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_threshold_exactly_when_k_of_the_last_n_readings_are() {
        let c = Confirm { k: 3, n: 5 };
        let threshold = 0.5;
        // Windows of 5 raw scores with 0..=5 of them over the threshold, in every position.
        for mask in 0u32..32 {
            let window: Vec<f64> = (0..5).map(|i| if mask >> i & 1 == 1 { 0.9 } else { 0.1 }).collect();
            let over = mask.count_ones() >= 3;
            assert_eq!(c.score(&window) > threshold, over, "{window:?}");
        }
        // Older readings do not count.
        assert!(c.score(&[0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1]) < threshold);
        // A single spike never alarms; a run's first two readings cannot confirm 3.
        assert!(c.score(&[0.1, 0.1, 0.99, 0.1, 0.1]) < threshold);
        assert!(c.score(&[0.9, 0.9]) < threshold);
        assert_eq!(Confirm::SINGLE.score(&[0.2, 0.7]), 0.7);
        assert_eq!(Confirm::from_params([4, 2]), Confirm { k: 4, n: 4 });
        // The window stops at the run's first row.
        assert_eq!(c.window(10, 0), 6..=10);
        assert_eq!(c.window(10, 8), 8..=10);
        assert_eq!(Confirm::SINGLE.window(10, 0), 10..=10);
    }
}
