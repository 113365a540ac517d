//! Mahalanobis distance under a robust (trimmed, C-step) covariance of median/MAD-standardised
//! data: catches readings that are normal one by one but break the usual relations between sensors.

use super::linalg::{backward, cholesky, forward};
use super::rng::SplitMix64;
use super::stats::{Imputer, quantile_sorted, sorted_finite};
use super::{Detector, DetectorError, Progress, Result, Rows, report};
use serde::{Deserialize, Serialize};

/// Rows between progress calls inside the O(n·p²) passes.
const ROWS_PER_REPORT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MahalanobisConfig {
    /// Fraction of rows (closest to the centre) kept for each refit; 0.75 resists up to 25 %
    /// contamination of the "healthy" data.
    pub keep_fraction: f64,
    /// Concentration steps (refit on the closest rows); the subset usually stops changing in 2–4.
    pub c_steps: usize,
    /// Ridge added to the diagonal, relative to the mean variance: keeps nearly collinear sensors
    /// (duplicates, derived features) invertible.
    pub ridge: f64,
    /// Rows used for the fit at most (random subset, seeded): bounds time on a Raspberry Pi.
    pub max_rows: usize,
    pub seed: u64,
}

impl Default for MahalanobisConfig {
    fn default() -> Self {
        MahalanobisConfig { keep_fraction: 0.75, c_steps: 4, ridge: 1e-3, max_rows: 20_000, seed: 0x5EED }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mahalanobis {
    pub imputer: Imputer,
    /// Centre in standardised units.
    pub mean: Vec<f64>,
    /// Packed lower Cholesky factor of the regularised covariance (standardised units).
    pub chol: Vec<f64>,
    /// Rescales d² so its median on training rows matches the χ²_p median: trimming shrinks the
    /// covariance, and this puts scores back on a familiar scale.
    pub d2_scale: f64,
}

struct Fit {
    mean: Vec<f64>,
    chol: Vec<f64>,
}

impl Mahalanobis {
    pub fn fit(rows: &Rows, config: &MahalanobisConfig, progress: Progress<'_>) -> Result<Self> {
        rows.validate_for_training(2)?;
        if !(config.keep_fraction > 0.0 && config.keep_fraction <= 1.0) || config.max_rows < 2 {
            return Err(DetectorError::InvalidParameter("mahalanobis needs 0 < keep_fraction <= 1 and max_rows >= 2".into()));
        }
        report(progress, 0.0)?;
        let imputer = Imputer::fit(rows);
        let p = rows.n_cols;
        let z = standardised_sample(rows, &imputer, config.max_rows, config.seed);
        let n = z.len() / p;
        let keep = ((config.keep_fraction * n as f64).ceil() as usize).clamp(2.min(n), n);
        // Progress: each C-step is a fit pass plus a distance pass, plus the final pair.
        let passes = 2 * (config.c_steps + 1);
        let mut subset: Vec<usize> = (0..n).collect();
        let mut fit = fit_subset(&z, p, &subset, config.ridge, &mut |f| report_part(progress, 0, passes, f))?;
        let mut d2 = distances(&z, p, &fit, &mut |f| report_part(progress, 1, passes, f))?;
        for step in 1..=config.c_steps {
            let next = closest(&d2, keep);
            if next == subset {
                break;
            }
            subset = next;
            fit = fit_subset(&z, p, &subset, config.ridge, &mut |f| report_part(progress, 2 * step, passes, f))?;
            d2 = distances(&z, p, &fit, &mut |f| report_part(progress, 2 * step + 1, passes, f))?;
        }
        let median_d2 = quantile_sorted(&sorted_finite(d2), 0.5);
        let d2_scale = if median_d2 > 0.0 { chi2_median(p) / median_d2 } else { 1.0 };
        report(progress, 1.0)?;
        Ok(Mahalanobis { imputer, mean: fit.mean, chol: fit.chol, d2_scale })
    }

    /// Standardised deviation from the centre and its image under Σ⁻¹'s half: (d, L⁻¹d).
    fn solve(&self, row: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut d = self.imputer.z(row);
        for (x, m) in d.iter_mut().zip(&self.mean) {
            *x -= m;
        }
        let y = forward(&self.chol, &d);
        (d, y)
    }
}

fn report_part(progress: &mut dyn FnMut(f64) -> bool, pass: usize, passes: usize, f: f64) -> Result<()> {
    report(progress, (pass as f64 + f) / passes as f64)
}

/// Imputed, standardised rows (a seeded random subset when there are more than `max_rows`).
pub(super) fn standardised_sample(rows: &Rows, imputer: &Imputer, max_rows: usize, seed: u64) -> Vec<f64> {
    let mut picked: Vec<usize> = (0..rows.n_rows).collect();
    if rows.n_rows > max_rows {
        let mut rng = SplitMix64::new(seed);
        for i in 0..max_rows {
            let j = i + rng.below(rows.n_rows - i);
            picked.swap(i, j);
        }
        picked.truncate(max_rows);
        picked.sort_unstable(); // keeps memory access sequential
    }
    let mut z = Vec::with_capacity(picked.len() * rows.n_cols);
    for i in picked {
        z.extend(imputer.z(rows.row(i)));
    }
    z
}

fn fit_subset(z: &[f64], p: usize, subset: &[usize], ridge: f64, progress: &mut dyn FnMut(f64) -> Result<()>) -> Result<Fit> {
    let (mean, mut cov) = moments(z, p, subset, progress)?;
    let mean_var = (0..p).map(|a| cov[a * p + a]).sum::<f64>() / p as f64;
    // The absolute floor keeps a fully constant subset (all variances 0) invertible.
    let lambda = ridge.max(0.0) * mean_var + 1e-9;
    for a in 0..p {
        cov[a * p + a] += lambda;
    }
    let chol = cholesky(&cov, p).ok_or(DetectorError::NotPositiveDefinite)?;
    Ok(Fit { mean, chol })
}

/// Mean and (n-1)-normalised covariance (p×p row-major) of the rows `subset` of `z`.
pub(super) fn moments(z: &[f64], p: usize, subset: &[usize], progress: &mut dyn FnMut(f64) -> Result<()>) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = subset.len().max(1) as f64;
    let mut mean = vec![0.0; p];
    for &i in subset {
        for (m, x) in mean.iter_mut().zip(&z[i * p..(i + 1) * p]) {
            *m += x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut cov = vec![0.0; p * p];
    let mut d = vec![0.0; p];
    for (k, &i) in subset.iter().enumerate() {
        if k % ROWS_PER_REPORT == 0 {
            progress(k as f64 / n)?;
        }
        for ((dk, x), m) in d.iter_mut().zip(&z[i * p..(i + 1) * p]).zip(&mean) {
            *dk = x - m;
        }
        for a in 0..p {
            let da = d[a];
            for b in 0..=a {
                cov[a * p + b] += da * d[b];
            }
        }
    }
    for a in 0..p {
        for b in 0..=a {
            let v = cov[a * p + b] / (n - 1.0).max(1.0);
            cov[a * p + b] = v;
            cov[b * p + a] = v;
        }
    }
    Ok((mean, cov))
}

fn distances(z: &[f64], p: usize, fit: &Fit, progress: &mut dyn FnMut(f64) -> Result<()>) -> Result<Vec<f64>> {
    let n = z.len() / p;
    let mut out = Vec::with_capacity(n);
    let mut d = vec![0.0; p];
    for i in 0..n {
        if i % ROWS_PER_REPORT == 0 {
            progress(i as f64 / n as f64)?;
        }
        for ((dk, x), m) in d.iter_mut().zip(&z[i * p..(i + 1) * p]).zip(&fit.mean) {
            *dk = x - m;
        }
        out.push(forward(&fit.chol, &d).iter().map(|v| v * v).sum());
    }
    Ok(out)
}

/// Indices of the `keep` smallest distances, sorted (so equality means "same subset").
fn closest(d2: &[f64], keep: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..d2.len()).collect();
    if keep < idx.len() {
        idx.select_nth_unstable_by(keep, |&a, &b| d2[a].total_cmp(&d2[b]));
        idx.truncate(keep);
    }
    idx.sort_unstable();
    idx
}

/// Wilson–Hilferty approximation of the χ² median with `p` degrees of freedom.
fn chi2_median(p: usize) -> f64 {
    let k = p as f64;
    k * (1.0 - 2.0 / (9.0 * k)).powi(3)
}

impl Detector for Mahalanobis {
    fn name(&self) -> &'static str {
        "mahalanobis"
    }

    /// Squared robust Mahalanobis distance, ~χ²_p on healthy rows.
    fn score(&self, row: &[f64]) -> f64 {
        let (_, y) = self.solve(row);
        y.iter().map(|v| v * v).sum::<f64>() * self.d2_scale
    }

    /// dᵢ·(Σ⁻¹d)ᵢ clipped at 0: these sum to d² unless some terms were negative (a column that
    /// "explains away" another), so each is the column's share of the distance.
    fn contributions(&self, row: &[f64]) -> Vec<f64> {
        let (d, y) = self.solve(row);
        let w = backward(&self.chol, &y);
        d.iter().zip(&w).map(|(a, b)| (a * b * self.d2_scale).max(0.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::robust_z::{Aggregate, RobustZ};
    use super::super::testutil::correlated;
    use super::*;

    #[test]
    fn catches_correlation_break_that_robust_z_misses() {
        let rows = correlated(3000, 2, 0.95, 11);
        let maha = Mahalanobis::fit(&rows, &MahalanobisConfig::default(), &mut |_| true).unwrap();
        let rz = RobustZ::fit(&rows, Aggregate::Max, &mut |_| true).unwrap();
        // +1.5 sd on column 0 and -1.5 sd on column 1: each ordinary, together impossible at rho 0.95.
        let odd = [10.0 + 2.0 * 1.5, -3.0 - 0.5 * 1.5, 0.0, 0.0];
        let healthy_maha: Vec<f64> = rows.iter().map(|r| maha.score(r)).collect();
        let healthy_rz: Vec<f64> = rows.iter().map(|r| rz.score(r)).collect();
        let q99 = |v: &[f64]| quantile_sorted(&sorted_finite(v.iter().copied()), 0.99);
        assert!(maha.score(&odd) > 3.0 * q99(&healthy_maha), "maha {} vs {}", maha.score(&odd), q99(&healthy_maha));
        assert!(rz.score(&odd) < q99(&healthy_rz), "robust z {} vs {}", rz.score(&odd), q99(&healthy_rz));
        let c = maha.contributions(&odd);
        assert!(c[0] + c[1] > 5.0 * (c[2] + c[3]));
        assert!(c.iter().all(|v| *v >= 0.0));
    }

    #[test]
    fn robust_to_contaminated_training() {
        let mut rows = correlated(2000, 0, 0.9, 12);
        for i in 0..100 {
            rows.data[i * 2] = 10.0 + 2.0 * 3.0;
            rows.data[i * 2 + 1] = -3.0 - 0.5 * 3.0;
        }
        let maha = Mahalanobis::fit(&rows, &MahalanobisConfig::default(), &mut |_| true).unwrap();
        assert!(maha.score(&[16.0, -4.5]) > 50.0);
        let median = quantile_sorted(&sorted_finite(rows.iter().map(|r| maha.score(r))), 0.5);
        assert!((median - chi2_median(2)).abs() < 0.2);
    }

    #[test]
    fn duplicate_and_constant_columns_stay_invertible() {
        let base = correlated(500, 0, 0.5, 13);
        let mut data = Vec::new();
        for r in base.iter() {
            data.extend_from_slice(&[r[0], r[0], 7.0, r[1]]);
        }
        let rows = Rows::new(500, 4, data).unwrap();
        let maha = Mahalanobis::fit(&rows, &MahalanobisConfig::default(), &mut |_| true).unwrap();
        assert!(maha.score(&[10.0, 10.0, 7.0, -3.0]).is_finite());
        assert!(maha.score(&[10.0, 10.0, 8.0, -3.0]) > 1e3);
    }

    #[test]
    fn cancel_is_prompt() {
        let rows = correlated(5000, 3, 0.5, 14);
        let mut calls = 0;
        let r = Mahalanobis::fit(&rows, &MahalanobisConfig::default(), &mut |_| {
            calls += 1;
            false
        });
        assert_eq!(r, Err(DetectorError::Cancelled));
        assert_eq!(calls, 1);
    }
}
