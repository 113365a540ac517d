//! Unsupervised anomaly detectors trained on healthy rows only, a score calibrator and a weighted
//! ensemble of calibrated detectors.
//!
//! Every detector imputes missing values (NaN) with the per-column training median it stores, so a
//! fitted detector can score rows on its own without the training data. Scores are "higher = more
//! anomalous"; their raw scales differ per detector, which is why the [`Ensemble`] averages
//! [`calibrator::Calibrator`]-mapped scores in `[0, 1]` instead of raw ones.
//!
//! Self-contained: depends only on `std`, `serde` and `thiserror`, so it compiles inside any crate.

mod calibrator;
mod ensemble;
mod iforest;
mod linalg;
mod mahalanobis;
mod pca;
mod rng;
mod robust_z;
mod stats;
mod trailing;

pub use ensemble::{DetectorKind, Ensemble, EnsembleConfig, EnsembleScore, threshold_for_contamination};
pub use pca::PcaConfig;
pub use trailing::{MAX_WINDOW as TRAILING_MAX_WINDOW, MIN_WINDOW as TRAILING_MIN_WINDOW, Trailing};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum DetectorError {
    #[error("cancelled")]
    Cancelled,
    #[error("no training rows")]
    Empty,
    #[error("no feature columns")]
    NoColumns,
    #[error("data has {len} values but {n_rows} rows x {n_cols} columns need {expected}")]
    Shape { len: usize, n_rows: usize, n_cols: usize, expected: usize },
    #[error("too few rows: {got}, need at least {need}")]
    TooFewRows { got: usize, need: usize },
    #[error("too many columns: {got}, at most {max}")]
    TooManyColumns { got: usize, max: usize },
    #[error("rows have {got} columns but the detector was trained on {expected}")]
    ColumnMismatch { got: usize, expected: usize },
    #[error("no finite scores to calibrate on")]
    NoScores,
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("covariance is not positive definite even after regularisation")]
    NotPositiveDefinite,
}

pub type Result<T> = std::result::Result<T, DetectorError>;

/// Progress callback: receives the fraction of the current job done (0..=1); returning `false`
/// asks the job to stop, which it does with [`DetectorError::Cancelled`].
pub type Progress<'a> = &'a mut dyn FnMut(f64) -> bool;

/// Dense row-major matrix of feature rows. NaN marks a missing value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    pub n_rows: usize,
    pub n_cols: usize,
    pub data: Vec<f64>,
}

impl Rows {
    /// Checks that `data` really holds `n_rows * n_cols` values.
    pub fn new(n_rows: usize, n_cols: usize, data: Vec<f64>) -> Result<Self> {
        let rows = Rows { n_rows, n_cols, data };
        rows.validate()?;
        Ok(rows)
    }

    /// Builds row-major rows from column-major data (one `Vec` per column, equal lengths).
    pub fn from_columns(columns: &[Vec<f64>]) -> Result<Self> {
        let n_cols = columns.len();
        let n_rows = columns.first().map_or(0, Vec::len);
        if let Some(bad) = columns.iter().find(|c| c.len() != n_rows) {
            return Err(DetectorError::Shape { len: bad.len(), n_rows, n_cols, expected: n_rows });
        }
        let mut data = Vec::with_capacity(n_rows * n_cols);
        for r in 0..n_rows {
            data.extend(columns.iter().map(|c| c[r]));
        }
        Rows::new(n_rows, n_cols, data)
    }

    /// Same as [`Rows::new`] but for column-major `data` (column after column).
    pub fn from_column_major(n_rows: usize, n_cols: usize, data: &[f64]) -> Result<Self> {
        check_shape(data.len(), n_rows, n_cols)?;
        let mut out = Vec::with_capacity(data.len());
        for r in 0..n_rows {
            out.extend((0..n_cols).map(|c| data[c * n_rows + r]));
        }
        Rows::new(n_rows, n_cols, out)
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[f64]> {
        // `max(1)` keeps `chunks_exact` legal for zero-column matrices, which training rejects anyway.
        self.data.chunks_exact(self.n_cols.max(1)).take(self.n_rows)
    }

    /// Shape check plus "there is something to train on".
    pub fn validate_for_training(&self, min_rows: usize) -> Result<()> {
        self.validate()?;
        if self.n_cols == 0 {
            return Err(DetectorError::NoColumns);
        }
        if self.n_rows == 0 {
            return Err(DetectorError::Empty);
        }
        if self.n_rows < min_rows {
            return Err(DetectorError::TooFewRows { got: self.n_rows, need: min_rows });
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        check_shape(self.data.len(), self.n_rows, self.n_cols)
    }
}

fn check_shape(len: usize, n_rows: usize, n_cols: usize) -> Result<()> {
    let expected = n_rows.checked_mul(n_cols);
    if expected != Some(len) {
        return Err(DetectorError::Shape { len, n_rows, n_cols, expected: expected.unwrap_or(usize::MAX) });
    }
    Ok(())
}

/// What every detector offers once fitted.
///
/// Rows shorter than the training width are padded with NaN (imputed), longer ones are truncated:
/// scoring never panics on a malformed row, and callers that care check widths up front.
pub trait Detector {
    fn name(&self) -> &'static str;
    /// Raw anomaly score, higher = more anomalous. Always finite.
    fn score(&self, row: &[f64]) -> f64;
    /// Non-negative per-column share of the anomaly (one value per training column), or empty
    /// when the detector cannot attribute its score.
    fn contributions(&self, row: &[f64]) -> Vec<f64>;
}

/// Calls `progress` and turns a "stop" answer into the error every trainer returns.
pub(crate) fn report(progress: &mut dyn FnMut(f64) -> bool, fraction: f64) -> Result<()> {
    if progress(fraction.clamp(0.0, 1.0)) { Ok(()) } else { Err(DetectorError::Cancelled) }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::Rows;
    use super::rng::SplitMix64;

    /// Correlated 2-D Gaussian plus `extra` independent N(0,1) columns.
    pub fn correlated(n: usize, extra: usize, rho: f64, seed: u64) -> Rows {
        let mut rng = SplitMix64::new(seed);
        let cols = 2 + extra;
        let mut data = Vec::with_capacity(n * cols);
        for _ in 0..n {
            let a = rng.normal();
            let b = rho * a + (1.0 - rho * rho).sqrt() * rng.normal();
            data.push(10.0 + 2.0 * a);
            data.push(-3.0 + 0.5 * b);
            for _ in 0..extra {
                data.push(rng.normal());
            }
        }
        Rows { n_rows: n, n_cols: cols, data }
    }

    pub fn gaussian(n: usize, cols: usize, seed: u64) -> Rows {
        let mut rng = SplitMix64::new(seed);
        let data = (0..n * cols).map(|_| rng.normal()).collect();
        Rows { n_rows: n, n_cols: cols, data }
    }

    /// Probability that a random positive outranks a random negative (ties count half).
    pub fn auc(pos: &[f64], neg: &[f64]) -> f64 {
        let mut wins = 0.0;
        for p in pos {
            for q in neg {
                wins += if p > q {
                    1.0
                } else if p == q {
                    0.5
                } else {
                    0.0
                };
            }
        }
        wins / (pos.len() * neg.len()) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_shape_is_checked() {
        assert!(Rows::new(2, 3, vec![0.0; 5]).is_err());
        assert!(Rows::new(2, 3, vec![0.0; 6]).is_ok());
        assert!(Rows::new(usize::MAX, 2, vec![]).is_err());
    }

    #[test]
    fn column_major_matches_row_major() {
        let cm = Rows::from_column_major(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(cm.data, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let cols = Rows::from_columns(&[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]]).unwrap();
        assert_eq!(cols, cm);
        assert!(Rows::from_columns(&[vec![1.0], vec![1.0, 2.0]]).is_err());
    }
}
