//! PCA reconstruction error (squared prediction error, SPE / Q statistic): healthy rows live near a
//! low-dimensional subspace of the standardised sensors; rows that leave it are anomalous.

use super::linalg::symmetric_eigen;
use super::mahalanobis::{moments, standardised_sample};
use super::stats::Imputer;
use super::{Detector, DetectorError, Progress, Result, Rows, report};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PcaConfig {
    /// Keep the fewest components explaining at least this share of the variance.
    pub variance_explained: f64,
    pub max_rows: usize,
    pub seed: u64,
}

impl Default for PcaConfig {
    fn default() -> Self {
        PcaConfig { variance_explained: 0.9, max_rows: 20_000, seed: 0x5EED }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaReconstruction {
    pub imputer: Imputer,
    pub mean: Vec<f64>,
    /// `k` principal directions, each of length p, row after row.
    pub components: Vec<f64>,
    pub k: usize,
}

impl PcaReconstruction {
    pub fn fit(rows: &Rows, config: &PcaConfig, progress: Progress<'_>) -> Result<Self> {
        rows.validate_for_training(2)?;
        if !(config.variance_explained > 0.0 && config.variance_explained <= 1.0) || config.max_rows < 2 {
            return Err(DetectorError::InvalidParameter("pca needs 0 < variance_explained <= 1 and max_rows >= 2".into()));
        }
        report(progress, 0.0)?;
        let imputer = Imputer::fit(rows);
        let p = rows.n_cols;
        let z = standardised_sample(rows, &imputer, config.max_rows, config.seed);
        let all: Vec<usize> = (0..z.len() / p).collect();
        let (mean, cov) = moments(&z, p, &all, &mut |f| report(progress, 0.5 * f))?;
        report(progress, 0.5)?;
        let (values, vectors) = symmetric_eigen(&cov, p);
        let k = components_to_keep(&values, config.variance_explained);
        report(progress, 1.0)?;
        Ok(PcaReconstruction { imputer, mean, components: vectors[..k * p].to_vec(), k })
    }

    /// Residual of the standardised row after projecting onto the kept components.
    fn residual(&self, row: &[f64]) -> Vec<f64> {
        let mut d = self.imputer.z(row);
        for (x, m) in d.iter_mut().zip(&self.mean) {
            *x -= m;
        }
        let p = d.len();
        let mut r = d.clone();
        for c in self.components.chunks_exact(p.max(1)).take(self.k) {
            let proj: f64 = c.iter().zip(&d).map(|(a, b)| a * b).sum();
            for (ri, ci) in r.iter_mut().zip(c) {
                *ri -= proj * ci;
            }
        }
        r
    }
}

/// Fewest leading components reaching `share` of the variance, leaving at least one residual
/// direction (otherwise every row reconstructs perfectly and the score is always 0).
fn components_to_keep(values: &[f64], share: f64) -> usize {
    let p = values.len();
    let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
    if total <= 0.0 || p <= 1 {
        return 0;
    }
    let mut acc = 0.0;
    for (i, v) in values.iter().enumerate() {
        acc += v.max(0.0);
        if acc >= share * total {
            return (i + 1).min(p - 1);
        }
    }
    p - 1
}

impl Detector for PcaReconstruction {
    fn name(&self) -> &'static str {
        "pca_reconstruction"
    }

    fn score(&self, row: &[f64]) -> f64 {
        self.residual(row).iter().map(|v| v * v).sum()
    }

    /// Squared residual per column: sums to the score.
    fn contributions(&self, row: &[f64]) -> Vec<f64> {
        self.residual(row).into_iter().map(|v| v * v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::correlated;
    use super::*;

    #[test]
    fn catches_correlation_break() {
        let rows = correlated(2000, 0, 0.98, 21);
        let pca = PcaReconstruction::fit(&rows, &PcaConfig::default(), &mut |_| true).unwrap();
        assert_eq!(pca.k, 1);
        let normal = pca.score(&[13.0, -2.25]);
        let odd = pca.score(&[13.0, -3.75]);
        assert!(odd > 20.0 * normal.max(1e-3), "{odd} vs {normal}");
        let c = pca.contributions(&[13.0, -3.75]);
        assert!((c.iter().sum::<f64>() - odd).abs() < 1e-9);
    }
}
