//! Robust column statistics and the NaN imputation every detector shares.

use super::Rows;
use serde::{Deserialize, Serialize};

/// Consistency factor making the MAD estimate σ for Gaussian data.
pub const MAD_TO_SD: f64 = 1.4826;
/// Same for the inter-quartile range.
const IQR_TO_SD: f64 = 1.0 / 1.349;
/// Same for the mean absolute deviation.
const MEAN_ABS_TO_SD: f64 = 1.2533;
/// How far (in robust sds) an infinite reading is placed: far enough to dominate every score,
/// finite so no detector's arithmetic turns it into NaN.
const INF_DEVIATION: f64 = 1e6;

/// Linear-interpolated quantile (type 7) of an ascending slice; NaN for an empty slice.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Finite values of `values`, sorted ascending.
pub fn sorted_finite(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// Robust σ of an ascending, finite, non-empty slice around `median`.
///
/// MAD breaks down to 0 when more than half the values are equal (idle machines, quantised
/// sensors), so fall back to IQR, then the mean absolute deviation, then a tiny floor relative to
/// the magnitude of the data: dividing by it never yields inf/NaN and a column that never moved in
/// healthy data still flags any movement.
pub fn robust_scale(sorted: &[f64], median: f64) -> f64 {
    let max_abs = sorted.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    let floor = if max_abs > 0.0 { 1e-9 * max_abs } else { 1e-12 };
    let deviations = sorted_finite(sorted.iter().map(|x| (x - median).abs()));
    let mad = quantile_sorted(&deviations, 0.5) * MAD_TO_SD;
    if mad > floor {
        return mad;
    }
    let iqr = (quantile_sorted(sorted, 0.75) - quantile_sorted(sorted, 0.25)) * IQR_TO_SD;
    if iqr > floor {
        return iqr;
    }
    let mean_abs = deviations.iter().sum::<f64>() / deviations.len().max(1) as f64 * MEAN_ABS_TO_SD;
    if mean_abs > floor {
        return mean_abs;
    }
    floor
}

/// Per-column training median (for imputation and centring) and robust scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imputer {
    pub medians: Vec<f64>,
    pub scales: Vec<f64>,
}

impl Imputer {
    /// Columns with no finite value at all get median 0 and scale 1: the detector still works and
    /// treats any later reading of that column as a deviation from 0.
    pub fn fit(rows: &Rows) -> Imputer {
        let mut medians = Vec::with_capacity(rows.n_cols);
        let mut scales = Vec::with_capacity(rows.n_cols);
        for c in 0..rows.n_cols {
            let col = sorted_finite(rows.iter().map(|r| r[c]));
            if col.is_empty() {
                medians.push(0.0);
                scales.push(1.0);
                continue;
            }
            let med = quantile_sorted(&col, 0.5);
            medians.push(med);
            scales.push(robust_scale(&col, med));
        }
        Imputer { medians, scales }
    }

    pub fn n_cols(&self) -> usize {
        self.medians.len()
    }

    /// Row with NaN/missing replaced by the median and ±inf by a huge finite deviation.
    pub fn fill(&self, row: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.n_cols());
        self.fill_into(row, &mut out);
        out
    }

    pub fn fill_into(&self, row: &[f64], out: &mut Vec<f64>) {
        out.clear();
        for (c, (&med, &scale)) in self.medians.iter().zip(&self.scales).enumerate() {
            let x = row.get(c).copied().unwrap_or(f64::NAN);
            out.push(if x.is_nan() {
                med
            } else if x.is_infinite() {
                med + x.signum() * INF_DEVIATION * scale
            } else {
                x
            });
        }
    }

    /// Robust z-scores `(x - median) / scale` of a filled row.
    pub fn z(&self, row: &[f64]) -> Vec<f64> {
        let mut out = self.fill(row);
        for ((x, med), scale) in out.iter_mut().zip(&self.medians).zip(&self.scales) {
            *x = (*x - med) / scale;
        }
        out
    }

    /// Whole training matrix imputed, row-major.
    pub fn fill_rows(&self, rows: &Rows) -> Vec<f64> {
        let mut data = Vec::with_capacity(rows.data.len());
        let mut buf = Vec::with_capacity(rows.n_cols);
        for r in rows.iter() {
            self.fill_into(r, &mut buf);
            data.extend_from_slice(&buf);
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 4.0);
        assert!((quantile_sorted(&v, 0.5) - 2.5).abs() < 1e-12);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn scale_never_zero() {
        assert!(robust_scale(&[5.0; 10], 5.0) > 0.0);
        assert!(robust_scale(&[0.0; 10], 0.0) > 0.0);
        // More than half equal: MAD is 0, the fallback still sees the spread.
        let v = sorted_finite([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
        assert!(robust_scale(&v, 0.0) > 0.1);
    }

    #[test]
    fn imputer_fills_nan_and_inf() {
        let rows = Rows::new(4, 2, vec![1.0, f64::NAN, 2.0, f64::NAN, 3.0, f64::NAN, 4.0, f64::NAN]).unwrap();
        let imp = Imputer::fit(&rows);
        assert_eq!(imp.medians, vec![2.5, 0.0]);
        assert_eq!(imp.scales[1], 1.0);
        let f = imp.fill(&[f64::NAN]);
        assert_eq!(f, vec![2.5, 0.0]);
        let g = imp.fill(&[f64::INFINITY, f64::NEG_INFINITY]);
        assert!(g.iter().all(|x| x.is_finite()));
        assert!(g[0] > 1e5 && g[1] < -1e5);
    }
}
