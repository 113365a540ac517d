//! Seeded PRNG kept in the module so results never change with a dependency upgrade.

/// xoshiro256** seeded through splitmix64.
pub(super) struct Rng {
    s: [u64; 4],
}

use crate::util::rng::splitmix64;

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        let mut st = seed;
        let s = [splitmix64(&mut st), splitmix64(&mut st), splitmix64(&mut st), splitmix64(&mut st)];
        Rng { s }
    }

    /// A stream per (purpose, round): each round's sampling stays the same whatever earlier rounds drew,
    /// so changing e.g. bagging never shifts feature sampling.
    pub(super) fn derived(seed: u64, purpose: u64, round: u64) -> Self {
        let mut st = seed ^ purpose.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let a = splitmix64(&mut st);
        Rng::new(a ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub(super) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); the multiply-shift avoids modulo bias well enough for sampling.
    pub(super) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// `k` distinct indices of `0..n`, sorted, via a partial Fisher–Yates shuffle.
pub(super) fn sample_sorted(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx.sort_unstable();
    idx
}
