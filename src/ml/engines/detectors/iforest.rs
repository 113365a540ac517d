//! Isolation forest (Liu, Ting & Zhou 2008): anomalies are isolated by fewer random splits.

use super::rng::SplitMix64;
use super::stats::Imputer;
use super::{Detector, DetectorError, Progress, Result, Rows, report};
use serde::{Deserialize, Serialize};

/// Marks a leaf in [`IsolationForest::feature`]; also caps the column count at `u16::MAX - 1`.
const LEAF: u16 = u16::MAX;
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestConfig {
    pub n_trees: usize,
    /// Rows drawn (without replacement) per tree; capped at the number of training rows.
    pub sample_size: usize,
    pub seed: u64,
}

impl Default for IsolationForestConfig {
    fn default() -> Self {
        IsolationForestConfig { n_trees: 100, sample_size: 256, seed: 0x5EED }
    }
}

/// All trees in flat parallel arrays (compact to serialise, cache-friendly to walk).
///
/// Node `i` is a leaf when `feature[i] == u16::MAX`; then `value[i]` is the finished path length
/// (depth + c(leaf size)). Otherwise rows with `x[feature] < value` go to `left[i]`, the rest to
/// `left[i] + 1`. Thresholds are `f32` to halve the model size; training partitions with the
/// rounded threshold, so scoring is exactly consistent with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    pub imputer: Imputer,
    pub sample_size: usize,
    pub roots: Vec<u32>,
    pub feature: Vec<u16>,
    pub value: Vec<f32>,
    pub left: Vec<u32>,
}

/// Average path length of an unsuccessful BST search among `n` points: the normaliser c(n).
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let m = (n - 1) as f64;
            2.0 * (m.ln() + EULER_GAMMA) - 2.0 * m / n as f64
        }
    }
}

impl IsolationForest {
    pub fn fit(rows: &Rows, config: &IsolationForestConfig, progress: Progress<'_>) -> Result<Self> {
        rows.validate_for_training(2)?;
        if rows.n_cols >= LEAF as usize {
            return Err(DetectorError::TooManyColumns { got: rows.n_cols, max: LEAF as usize - 1 });
        }
        if config.n_trees == 0 || config.sample_size < 2 {
            return Err(DetectorError::InvalidParameter("isolation forest needs n_trees >= 1 and sample_size >= 2".into()));
        }
        report(progress, 0.0)?;
        let imputer = Imputer::fit(rows);
        let psi = config.sample_size.min(rows.n_rows);
        let height_limit = (psi as f64).log2().ceil() as usize;
        let mut forest = IsolationForest {
            imputer,
            sample_size: psi,
            roots: Vec::with_capacity(config.n_trees),
            feature: Vec::new(),
            value: Vec::new(),
            left: Vec::new(),
        };
        let base = SplitMix64::new(config.seed);
        let mut perm: Vec<u32> = (0..rows.n_rows as u32).collect();
        let mut sample = Vec::with_capacity(psi * rows.n_cols);
        let mut buf = Vec::with_capacity(rows.n_cols);
        for t in 0..config.n_trees {
            let mut rng = base.fork(t as u64);
            draw_sample(rows, &forest.imputer, psi, &mut perm, &mut rng, &mut sample, &mut buf);
            let mut builder = TreeBuilder { forest: &mut forest, sample: &sample, n_cols: rows.n_cols, height_limit, rng: &mut rng };
            let root = builder.forest.push_node();
            let mut idx: Vec<usize> = (0..psi).collect();
            builder.build(root, &mut idx, 0);
            forest.roots.push(root);
            report(progress, (t + 1) as f64 / config.n_trees as f64)?;
        }
        Ok(forest)
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Mean path length E(h) of a filled row over all trees.
    fn mean_path_length(&self, x: &[f64]) -> f64 {
        let mut total = 0.0;
        for &root in &self.roots {
            let mut node = root as usize;
            // Bounded by the node count so a corrupted deserialised model cannot loop forever.
            for _ in 0..self.feature.len() {
                let f = match self.feature.get(node) {
                    Some(&f) if f != LEAF => f as usize,
                    _ => break,
                };
                let threshold = self.value.get(node).copied().unwrap_or(0.0) as f64;
                let go_right = x.get(f).copied().unwrap_or(0.0) >= threshold;
                node = self.left.get(node).copied().unwrap_or(u32::MAX) as usize + go_right as usize;
            }
            total += self.value.get(node).copied().unwrap_or(0.0) as f64;
        }
        total / self.roots.len().max(1) as f64
    }

    fn push_node(&mut self) -> u32 {
        self.feature.push(LEAF);
        self.value.push(0.0);
        self.left.push(0);
        (self.feature.len() - 1) as u32
    }
}

/// Copies `psi` random distinct rows (imputed) into `sample`, row-major.
fn draw_sample(
    rows: &Rows,
    imputer: &Imputer,
    psi: usize,
    perm: &mut [u32],
    rng: &mut SplitMix64,
    sample: &mut Vec<f64>,
    buf: &mut Vec<f64>,
) {
    // Partial Fisher–Yates: `perm` stays a permutation, so reusing it across trees stays uniform.
    for i in 0..psi {
        let j = i + rng.below(perm.len() - i);
        perm.swap(i, j);
    }
    sample.clear();
    for &r in &perm[..psi] {
        imputer.fill_into(rows.row(r as usize), buf);
        sample.extend_from_slice(buf);
    }
}

struct TreeBuilder<'a> {
    forest: &'a mut IsolationForest,
    sample: &'a [f64],
    n_cols: usize,
    height_limit: usize,
    rng: &'a mut SplitMix64,
}

impl TreeBuilder<'_> {
    fn at(&self, i: usize, c: usize) -> f64 {
        self.sample[i * self.n_cols + c]
    }

    fn build(&mut self, node: u32, idx: &mut [usize], depth: usize) {
        let split = if depth >= self.height_limit || idx.len() <= 1 { None } else { self.choose_split(idx) };
        let Some((feature, threshold)) = split else {
            self.forest.value[node as usize] = (depth as f64 + average_path_length(idx.len())) as f32;
            return;
        };
        let n_left = partition(idx, |&i| self.at(i, feature) < threshold as f64);
        if n_left == 0 || n_left == idx.len() {
            // f32 rounding pushed the threshold outside the range: nothing separates, so stop here.
            self.forest.value[node as usize] = (depth as f64 + average_path_length(idx.len())) as f32;
            return;
        }
        let left = self.forest.push_node();
        self.forest.push_node();
        let n = node as usize;
        self.forest.feature[n] = feature as u16;
        self.forest.value[n] = threshold;
        self.forest.left[n] = left;
        let (l, r) = idx.split_at_mut(n_left);
        self.build(left, l, depth + 1);
        self.build(left + 1, r, depth + 1);
    }

    /// Random feature that is not constant on this node (random tries first, then a scan from a
    /// random start so wide data with few varying columns still splits), and a uniform threshold.
    fn choose_split(&mut self, idx: &[usize]) -> Option<(usize, f32)> {
        let tries = self.n_cols.min(8);
        for _ in 0..tries {
            let f = self.rng.below(self.n_cols);
            if let Some(t) = self.threshold_on(idx, f) {
                return Some((f, t));
            }
        }
        let start = self.rng.below(self.n_cols);
        let n_cols = self.n_cols;
        (0..n_cols).map(|k| (start + k) % n_cols).find_map(|f| self.threshold_on(idx, f).map(|t| (f, t)))
    }

    fn threshold_on(&mut self, idx: &[usize], f: usize) -> Option<f32> {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &i in idx {
            let x = self.at(i, f);
            lo = lo.min(x);
            hi = hi.max(x);
        }
        if hi > lo { Some((lo + self.rng.next_f64() * (hi - lo)) as f32) } else { None }
    }
}

/// In-place partition; returns how many elements satisfy `pred` (they come first).
fn partition(idx: &mut [usize], pred: impl Fn(&usize) -> bool) -> usize {
    let mut k = 0;
    for i in 0..idx.len() {
        if pred(&idx[i]) {
            idx.swap(i, k);
            k += 1;
        }
    }
    k
}

impl Detector for IsolationForest {
    fn name(&self) -> &'static str {
        "isolation_forest"
    }

    /// 2^(-E(h)/c(ψ)) in (0, 1]; ~0.5 or less for ordinary rows, towards 1 for isolated ones.
    fn score(&self, row: &[f64]) -> f64 {
        let x = self.imputer.fill(row);
        let c = average_path_length(self.sample_size).max(f64::MIN_POSITIVE);
        2f64.powf(-self.mean_path_length(&x) / c)
    }

    /// Trees do not attribute a path length to features, so this reports the robust |z| of each
    /// column (median/MAD from training) as a proxy for "which readings look unusual".
    fn contributions(&self, row: &[f64]) -> Vec<f64> {
        self.imputer.z(row).into_iter().map(f64::abs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{auc, gaussian};
    use super::*;

    fn shifted_rows(n: usize, cols: usize, frac: f64, seed: u64) -> (Rows, Vec<bool>) {
        let mut rows = gaussian(n, cols, seed);
        let mut rng = SplitMix64::new(seed ^ 99);
        let mut is_out = vec![false; n];
        for (i, out) in is_out.iter_mut().enumerate() {
            if rng.next_f64() < frac {
                *out = true;
                for c in 0..cols {
                    rows.data[i * cols + c] += 4.0;
                }
            }
        }
        (rows, is_out)
    }

    #[test]
    fn ranks_shifted_points_above_inliers() {
        let (rows, is_out) = shifted_rows(3000, 5, 0.02, 1);
        let forest = IsolationForest::fit(&rows, &IsolationForestConfig::default(), &mut |_| true).unwrap();
        let scores: Vec<f64> = rows.iter().map(|r| forest.score(r)).collect();
        let pos: Vec<f64> = scores.iter().zip(&is_out).filter(|(_, o)| **o).map(|(s, _)| *s).collect();
        let neg: Vec<f64> = scores.iter().zip(&is_out).filter(|(_, o)| !**o).map(|(s, _)| *s).collect();
        assert!(pos.len() > 20);
        let a = auc(&pos, &neg);
        assert!(a > 0.95, "auc {a}");
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    }

    #[test]
    fn deterministic_for_seed_and_handles_nan() {
        let mut rows = gaussian(500, 3, 2);
        rows.data[4] = f64::NAN;
        let cfg = IsolationForestConfig { n_trees: 20, ..Default::default() };
        let a = IsolationForest::fit(&rows, &cfg, &mut |_| true).unwrap();
        let b = IsolationForest::fit(&rows, &cfg, &mut |_| true).unwrap();
        assert_eq!(a, b);
        let s = a.score(&[f64::NAN, f64::INFINITY]);
        assert!(s.is_finite());
    }

    #[test]
    fn constant_data_does_not_panic() {
        let rows = Rows::new(50, 2, vec![1.0; 100]).unwrap();
        let f = IsolationForest::fit(&rows, &IsolationForestConfig::default(), &mut |_| true).unwrap();
        assert!(f.score(&[1.0, 1.0]).is_finite());
    }

    #[test]
    fn cancel_stops_early() {
        let rows = gaussian(2000, 4, 3);
        let mut calls = 0;
        let r = IsolationForest::fit(&rows, &IsolationForestConfig::default(), &mut |_| {
            calls += 1;
            calls < 3
        });
        assert_eq!(r, Err(DetectorError::Cancelled));
        assert_eq!(calls, 3);
    }

    #[test]
    fn rejects_bad_input() {
        let cfg = IsolationForestConfig::default();
        assert!(IsolationForest::fit(&Rows::new(0, 2, vec![]).unwrap(), &cfg, &mut |_| true).is_err());
        assert!(IsolationForest::fit(&Rows::new(3, 0, vec![]).unwrap(), &cfg, &mut |_| true).is_err());
    }
}
