//! Tiny seeded PRNG so results are reproducible for a seed without an external crate.

use serde::{Deserialize, Serialize};

/// SplitMix64: one 64-bit state, passes BigCrush, more than good enough for sampling rows and
/// split points.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        crate::util::rng::splitmix64(&mut self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n); `n == 0` yields 0. Lemire's multiply-shift: bias ≤ n/2^64.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal via Box–Muller (one of the pair is dropped: simplicity over speed).
    #[cfg(test)]
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: keeps ln finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Independent stream for sub-task `k`, so per-tree results do not depend on earlier trees'
    /// consumption of random numbers.
    pub fn fork(&self, k: u64) -> SplitMix64 {
        let mut s = SplitMix64::new(self.state ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03));
        s.next_u64();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            let x = a.next_f64();
            assert_eq!(x, b.next_f64());
            assert!((0.0..1.0).contains(&x));
            assert!(a.below(10) < 10);
            b.below(10);
        }
        assert_eq!(a.below(0), 0);
    }
}
