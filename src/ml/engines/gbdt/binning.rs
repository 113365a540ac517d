//! Quantile binning: each feature becomes at most `max_bins` numeric bins plus one bin for NaN.

use super::par::{balanced_ranges, map_jobs};
use super::rng::{Rng, sample_sorted};
use super::{GbdtError, Matrix};

/// Bins estimated from at most this many rows: quantiles settle long before that, and sorting stays cheap.
const MAX_BIN_SAMPLE: usize = 100_000;
const PURPOSE_BIN_SAMPLE: u64 = 1;

/// Bin `b < n_numeric` holds values in `(bounds[b-1], bounds[b]]`; bin `n_numeric` holds NaN.
#[derive(Debug, Clone)]
pub(super) struct FeatureBins {
    pub bounds: Vec<f32>,
    pub n_numeric: usize,
}

impl FeatureBins {
    pub fn n_bins(&self) -> usize {
        self.n_numeric + 1
    }

    pub fn nan_bin(&self) -> usize {
        self.n_numeric
    }

    pub fn bin_of(&self, v: f32) -> u8 {
        let b = if v.is_nan() { self.n_numeric } else { self.bounds.partition_point(|&t| t < v) };
        b as u8
    }

    /// Raw threshold equivalent to "numeric bin <= b goes left"; the last numeric bin means every number goes left.
    pub fn threshold(&self, b: usize) -> f32 {
        self.bounds.get(b).copied().unwrap_or(f32::MAX)
    }
}

/// Features per interleaved group. One 4-byte load then fetches a row's bins for four features, which
/// matters because a child leaf visits its rows in scattered order.
pub(super) const LANES: usize = 4;

/// The training matrix as bin indices: groups of [`LANES`] features, each stored row-major
/// (`bins[group * n_rows * LANES + row * LANES + lane]`); lanes past the last feature stay 0.
pub(super) struct Binned {
    pub n_rows: usize,
    pub bins: Vec<u8>,
    pub features: Vec<FeatureBins>,
    /// Start of each feature's slots in a histogram; the last entry is the total.
    pub offsets: Vec<usize>,
    /// Whether a feature can be split at all (a constant feature never can).
    pub splittable: Vec<bool>,
}

impl Binned {
    #[cfg(test)]
    pub fn build(x: &Matrix, max_bins: usize, seed: u64, threads: usize) -> Result<Self, GbdtError> {
        let sample = sample_rows(x.n_rows, seed);
        let features = map_jobs((0..x.n_cols).collect(), threads, &|c| feature_bins(x.column(c), sample.as_deref(), max_bins))?;
        let mut data = Binned::empty(x.n_rows, features);
        data.fill(0, x, threads)?;
        Ok(data.finished())
    }

    /// The same bins as [`Binned::build`] on the whole matrix, without ever holding it: `rows` gives the
    /// features of the listed rows (positions in `0..n_rows`, ascending) as a matrix. Bins are chosen from the
    /// same sampled rows as [`Binned::build`] chooses them from, then the rest is binned a chunk at a time.
    pub fn build_by_rows<E: From<GbdtError>>(
        n_rows: usize,
        max_bins: usize,
        seed: u64,
        threads: usize,
        chunk_rows: usize,
        rows: &mut dyn FnMut(&[usize]) -> Result<Matrix, E>,
    ) -> Result<Self, E> {
        let sampled: Vec<usize> = sample_rows(n_rows, seed).unwrap_or_else(|| (0..n_rows).collect());
        let sample = checked(rows(&sampled)?, sampled.len(), None)?;
        // Every column of the sample matrix is the sample itself.
        let features = map_jobs((0..sample.n_cols).collect(), threads, &|c| feature_bins(sample.column(c), None, max_bins))?;
        let mut data = Binned::empty(n_rows, features);
        if sampled.len() == n_rows {
            // Up to MAX_BIN_SAMPLE rows the sample is every row: bin it as it is rather than compute it twice.
            data.fill(0, &sample, threads)?;
            return Ok(data.finished());
        }
        drop(sample);
        let positions: Vec<usize> = (0..n_rows).collect();
        for (k, chunk) in positions.chunks(chunk_rows.max(1)).enumerate() {
            let x = checked(rows(chunk)?, chunk.len(), Some(data.features.len()))?;
            data.fill(k * chunk_rows.max(1), &x, threads)?;
        }
        Ok(data.finished())
    }

    /// The bins of `columns` (ascending, in range) only, regrouped.
    pub fn select(&self, columns: &[usize]) -> Self {
        let mut out = Binned::empty(self.n_rows, columns.iter().map(|&c| self.features[c].clone()).collect());
        let group_len = self.n_rows * LANES;
        for (i, &c) in columns.iter().enumerate() {
            let src = &self.bins[(c / LANES) * group_len..(c / LANES + 1) * group_len];
            let dst = &mut out.bins[(i / LANES) * group_len..(i / LANES + 1) * group_len];
            for (d, s) in dst.chunks_exact_mut(LANES).zip(src.chunks_exact(LANES)) {
                d[i % LANES] = s[c % LANES];
            }
        }
        out.finished()
    }

    fn empty(n_rows: usize, features: Vec<FeatureBins>) -> Self {
        let bins = vec![0u8; features.len().div_ceil(LANES) * n_rows * LANES];
        Binned { n_rows, bins, features, offsets: Vec::new(), splittable: Vec::new() }
    }

    /// Bins the rows of `x` as rows `first..` of this data, each group of features in its own job. An infinite
    /// value is refused: NaN is what missing means.
    fn fill(&mut self, first: usize, x: &Matrix, threads: usize) -> Result<(), GbdtError> {
        let group_len = self.n_rows * LANES;
        let n_groups = self.features.len().div_ceil(LANES);
        let features = &self.features;
        let mut jobs = Vec::new();
        let mut rest: &mut [u8] = &mut self.bins;
        for r in balanced_ranges(&vec![1usize; n_groups], threads * 4) {
            let (head, tail) = rest.split_at_mut(r.len() * group_len);
            jobs.push((r, head));
            rest = tail;
        }
        let infinite = map_jobs(jobs, threads, &|(groups, out): (std::ops::Range<usize>, &mut [u8])| {
            for (g, dst) in groups.zip(out.chunks_mut(group_len.max(1))) {
                let rows = dst.get_mut(first * LANES..(first + x.n_rows) * LANES).unwrap_or_default();
                for c in g * LANES..((g + 1) * LANES).min(x.n_cols) {
                    if let Some(row) = x.column(c).iter().position(|v| v.is_infinite()) {
                        return Some(GbdtError::InfiniteFeature { col: c, row: first + row });
                    }
                    for (cell, &v) in rows.chunks_exact_mut(LANES).zip(x.column(c)) {
                        cell[c % LANES] = features[c].bin_of(v);
                    }
                }
            }
            None
        })?;
        infinite.into_iter().flatten().next().map_or(Ok(()), Err)
    }

    fn finished(mut self) -> Self {
        let mut offsets = Vec::with_capacity(self.features.len() + 1);
        let mut acc = 0;
        for f in &self.features {
            offsets.push(acc);
            acc += f.n_bins();
        }
        offsets.push(acc);
        self.offsets = offsets;
        self.splittable = (0..self.features.len()).map(|f| self.is_splittable(f)).collect();
        self
    }

    fn is_splittable(&self, f: usize) -> bool {
        let fb = &self.features[f];
        fb.n_numeric >= 2 || (fb.n_numeric == 1 && (0..self.n_rows).any(|r| self.bin(f, r) as usize == fb.nan_bin()))
    }

    /// The interleaved rows of feature group `g`.
    pub fn group(&self, g: usize) -> &[u8] {
        let len = self.n_rows * LANES;
        &self.bins[g * len..(g + 1) * len]
    }

    pub fn bin(&self, f: usize, r: usize) -> u8 {
        self.bins[(f / LANES) * self.n_rows * LANES + r * LANES + f % LANES]
    }

    pub fn n_groups(&self) -> usize {
        self.features.len().div_ceil(LANES)
    }

    /// Histogram slots of group `g`: its features are consecutive, so this is one span.
    pub fn group_span(&self, g: usize) -> std::ops::Range<usize> {
        let nf = self.features.len();
        self.offsets[(g * LANES).min(nf)]..self.offsets[((g + 1) * LANES).min(nf)]
    }
}

fn sample_rows(n: usize, seed: u64) -> Option<Vec<usize>> {
    (n > MAX_BIN_SAMPLE).then(|| sample_sorted(&mut Rng::derived(seed, PURPOSE_BIN_SAMPLE, 0), n, MAX_BIN_SAMPLE))
}

/// A chunk of features as asked for: `rows` rows (and `cols` columns when the sample set them).
fn checked(x: Matrix, rows: usize, cols: Option<usize>) -> Result<Matrix, GbdtError> {
    x.check_shape()?;
    if x.n_rows != rows || cols.is_some_and(|c| c != x.n_cols) {
        let n_cols = cols.unwrap_or(x.n_cols);
        return Err(GbdtError::MatrixShape { n_rows: rows, n_cols, expected: rows.saturating_mul(n_cols), got: x.data.len() });
    }
    Ok(x)
}

/// One feature's bins, from its values on the sampled rows (all rows when `sample` is None).
fn feature_bins(col: &[f32], sample: Option<&[usize]>, max_bins: usize) -> FeatureBins {
    let mut values: Vec<f32> = match sample {
        Some(rows) => rows.iter().filter_map(|&r| col.get(r).copied()).filter(|v| !v.is_nan()).collect(),
        None => col.iter().copied().filter(|v| !v.is_nan()).collect(),
    };
    values.sort_unstable_by(f32::total_cmp);
    let distinct = count_distinct(&values);
    let bounds = bin_bounds(&distinct, max_bins);
    FeatureBins { n_numeric: if distinct.is_empty() { 0 } else { bounds.len() + 1 }, bounds }
}

/// Sorted distinct values with their counts; -0.0 and 0.0 count as one value since `<=` cannot tell them apart.
fn count_distinct(sorted: &[f32]) -> Vec<(f32, usize)> {
    let mut out: Vec<(f32, usize)> = Vec::new();
    for &v in sorted {
        match out.last_mut() {
            Some((last, c)) if *last == v => *c += 1,
            _ => out.push((v, 1)),
        }
    }
    out
}

/// Upper bounds between bins: one bin per distinct value when they fit, otherwise greedy equal-count bins
/// whose target is recomputed after each bin so one heavy value (e.g. many zeros) does not starve the rest.
fn bin_bounds(distinct: &[(f32, usize)], max_bins: usize) -> Vec<f32> {
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| midpoint(w[0].0, w[1].0)).collect();
    }
    let mut remaining: usize = distinct.iter().map(|d| d.1).sum();
    let mut bins_left = max_bins;
    let mut target = remaining as f64 / bins_left as f64;
    let mut acc = 0usize;
    let mut bounds = Vec::with_capacity(max_bins - 1);
    for (i, w) in distinct.windows(2).enumerate() {
        acc += w[0].1;
        let values_left = distinct.len() - (i + 1);
        // Close early when the values left only just cover the bins left, so none is wasted.
        if acc as f64 >= target || values_left < bins_left {
            bounds.push(midpoint(w[0].0, w[1].0));
            remaining -= acc;
            acc = 0;
            bins_left -= 1;
            if bins_left == 1 {
                break;
            }
            target = remaining as f64 / bins_left as f64;
        }
    }
    bounds
}

/// A threshold `t` with `a <= t < b`, the midpoint when it is representable.
fn midpoint(a: f32, b: f32) -> f32 {
    let m = ((a as f64 + b as f64) * 0.5) as f32;
    if m.is_finite() && a <= m && m < b { m } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_one_bin_each() {
        let d = count_distinct(&[1.0, 1.0, 2.0, 3.0]);
        let b = bin_bounds(&d, 255);
        assert_eq!(b, vec![1.5, 2.5]);
    }

    #[test]
    fn many_values_respect_max_bins_and_heavy_values() {
        let mut v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        v.extend(std::iter::repeat_n(0.0, 5000));
        v.sort_unstable_by(f32::total_cmp);
        let b = bin_bounds(&count_distinct(&v), 16);
        assert!(b.len() <= 15 && b.len() >= 10, "{}", b.len());
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        assert!(b[0] < 1.0);
    }

    #[test]
    fn bin_of_matches_threshold() {
        let d = count_distinct(&[0.0, 1.0, 2.0, 3.0, 4.0]);
        let fb = FeatureBins { bounds: bin_bounds(&d, 3), n_numeric: 3 };
        for v in [-1.0f32, 0.0, 0.5, 1.0, 2.0, 3.5, 4.0, 9.0] {
            for k in 0..fb.n_numeric {
                assert_eq!(fb.bin_of(v) as usize <= k, v <= fb.threshold(k), "v={v} k={k}");
            }
        }
        assert_eq!(fb.bin_of(f32::NAN) as usize, fb.nan_bin());
    }
}
