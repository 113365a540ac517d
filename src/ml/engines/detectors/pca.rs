//! PCA on healthy rows: they live near a low-dimensional subspace of the standardised sensors. The
//! reconstruction error (squared prediction error, SPE / Q) sees rows that leave it; [`PcaT2Q`] adds
//! Hotelling's T² for rows that stay in it at an unusual level.

use super::linalg::symmetric_eigen;
use super::mahalanobis::{moments, standardised_sample};
use super::stats::{Imputer, quantile_sorted, sorted_finite};
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
        let s = Subspace::fit(rows, config, progress)?;
        Ok(PcaReconstruction { imputer: s.imputer, mean: s.mean, components: s.components, k: s.k })
    }

    /// Residual of the standardised row after projecting onto the kept components.
    fn residual(&self, row: &[f64]) -> Vec<f64> {
        let mut d = self.imputer.z(row);
        for (x, m) in d.iter_mut().zip(&self.mean) {
            *x -= m;
        }
        project(&self.components, self.k, &d).1
    }
}

/// The principal subspace of the standardised healthy rows, and the sample it was found on.
struct Subspace {
    imputer: Imputer,
    mean: Vec<f64>,
    /// Variance along each kept direction.
    values: Vec<f64>,
    components: Vec<f64>,
    k: usize,
    /// The standardised rows (row-major), for statistics of the fitted rows themselves.
    sample: Vec<f64>,
}

impl Subspace {
    fn fit(rows: &Rows, config: &PcaConfig, progress: Progress<'_>) -> Result<Self> {
        rows.validate_for_training(2)?;
        if !(config.variance_explained > 0.0 && config.variance_explained <= 1.0) || config.max_rows < 2 {
            return Err(DetectorError::InvalidParameter("pca needs 0 < variance_explained <= 1 and max_rows >= 2".into()));
        }
        report(progress, 0.0)?;
        let imputer = Imputer::fit(rows);
        let p = rows.n_cols;
        let sample = standardised_sample(rows, &imputer, config.max_rows, config.seed);
        let all: Vec<usize> = (0..sample.len() / p).collect();
        let (mean, cov) = moments(&sample, p, &all, &mut |f| report(progress, 0.5 * f))?;
        report(progress, 0.5)?;
        let (values, vectors) = symmetric_eigen(&cov, p);
        let k = components_to_keep(&values, config.variance_explained);
        report(progress, 1.0)?;
        Ok(Subspace { imputer, mean, values: values[..k].to_vec(), components: vectors[..k * p].to_vec(), k, sample })
    }
}

/// Scores of a centred, standardised row `d` against a subspace: the coordinates in it and the residual.
fn project(components: &[f64], k: usize, d: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let p = d.len();
    let mut residual = d.to_vec();
    let mut coords = Vec::with_capacity(k);
    for c in components.chunks_exact(p.max(1)).take(k) {
        let t: f64 = c.iter().zip(d).map(|(a, b)| a * b).sum();
        for (ri, ci) in residual.iter_mut().zip(c) {
            *ri -= t * ci;
        }
        coords.push(t);
    }
    (coords, residual)
}

/// Share of the fitted rows' own statistics used as each statistic's unit (the classic control limits are
/// upper quantiles of the healthy data).
const CONTROL_QUANTILE: f64 = 0.99;

/// PCA with both classic process-monitoring statistics: Hotelling's T² inside the principal subspace (a
/// familiar pattern at an unfamiliar level) and Q, the squared prediction error outside it (a new pattern).
/// Each is divided by its 99th percentile on the healthy rows, and the row scores the larger of the two, so
/// it alarms when either control limit is crossed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaT2Q {
    pub imputer: Imputer,
    pub mean: Vec<f64>,
    /// Variance along each kept direction (length `k`).
    pub values: Vec<f64>,
    pub components: Vec<f64>,
    pub k: usize,
    pub t2_unit: f64,
    pub q_unit: f64,
}

impl PcaT2Q {
    pub fn fit(rows: &Rows, config: &PcaConfig, progress: Progress<'_>) -> Result<Self> {
        let s = Subspace::fit(rows, config, progress)?;
        let p = rows.n_cols;
        let mut model = PcaT2Q {
            imputer: s.imputer,
            mean: s.mean,
            values: s.values.iter().map(|v| v.max(1e-9)).collect(),
            components: s.components,
            k: s.k,
            t2_unit: 1.0,
            q_unit: 1.0,
        };
        let (mut t2s, mut qs) = (Vec::new(), Vec::new());
        for z in s.sample.chunks_exact(p.max(1)) {
            let (t2, q) = model.statistics_of_standardised(z.to_vec());
            t2s.push(t2);
            qs.push(q);
        }
        let unit = |v: Vec<f64>| quantile_sorted(&sorted_finite(v), CONTROL_QUANTILE).max(1e-9);
        model.t2_unit = unit(t2s);
        model.q_unit = unit(qs);
        Ok(model)
    }

    fn statistics_of_standardised(&self, mut d: Vec<f64>) -> (f64, f64) {
        for (x, m) in d.iter_mut().zip(&self.mean) {
            *x -= m;
        }
        let (coords, residual) = project(&self.components, self.k, &d);
        let t2 = coords.iter().zip(&self.values).map(|(t, v)| t * t / v).sum();
        (t2, residual.iter().map(|r| r * r).sum())
    }

    /// (T², Q) of a raw row.
    pub fn statistics(&self, row: &[f64]) -> (f64, f64) {
        self.statistics_of_standardised(self.imputer.z(row))
    }
}

impl Detector for PcaT2Q {
    fn name(&self) -> &'static str {
        "pca_t2_q"
    }

    fn score(&self, row: &[f64]) -> f64 {
        let (t2, q) = self.statistics(row);
        (t2 / self.t2_unit).max(q / self.q_unit)
    }

    /// From the statistic that decides the score: each column's squared residual for Q, and for T² each
    /// column's part of the whitened projection, |Σ_c t_c p_ci / λ_c · d_i|.
    fn contributions(&self, row: &[f64]) -> Vec<f64> {
        let mut d = self.imputer.z(row);
        for (x, m) in d.iter_mut().zip(&self.mean) {
            *x -= m;
        }
        let (coords, residual) = project(&self.components, self.k, &d);
        let t2: f64 = coords.iter().zip(&self.values).map(|(t, v)| t * t / v).sum();
        let q: f64 = residual.iter().map(|r| r * r).sum();
        if q / self.q_unit >= t2 / self.t2_unit {
            return residual.into_iter().map(|r| r * r).collect();
        }
        let p = d.len();
        (0..p)
            .map(|i| {
                let w: f64 = self.components.chunks_exact(p.max(1)).zip(&coords).zip(&self.values).map(|((c, t), v)| t * c[i] / v).sum();
                (w * d[i]).abs()
            })
            .collect()
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

    #[test]
    fn t2_q_sees_a_new_pattern_and_a_familiar_one_at_an_unfamiliar_level() {
        let rows = correlated(2000, 0, 0.98, 21);
        let reconstruction = PcaReconstruction::fit(&rows, &PcaConfig::default(), &mut |_| true).unwrap();
        let both = PcaT2Q::fit(&rows, &PcaConfig::default(), &mut |_| true).unwrap();
        // About 1 % of the healthy rows pass each unit, by construction.
        let over = rows.iter().filter(|r| both.score(r) > 1.0).count() as f64 / rows.n_rows as f64;
        assert!((0.005..0.04).contains(&over), "{over}");
        let normal = [11.0, -2.75];
        let broken = [13.0, -3.75];
        // Six standard deviations along the correlation: no residual, but far out in the subspace.
        let far_along = [22.0, -3.0 + 0.5 * 0.98 * 6.0];
        assert!(both.score(&normal) < 1.0);
        assert!(both.score(&broken) > 3.0, "{}", both.score(&broken));
        assert!(both.score(&far_along) > 3.0, "{}", both.score(&far_along));
        let healthy_q = sorted_finite(rows.iter().map(|r| reconstruction.score(r)));
        let q99 = quantile_sorted(&healthy_q, 0.99);
        assert!(reconstruction.score(&far_along) < q99, "Q alone does not see a level along the subspace");
        let (t2, q) = both.statistics(&far_along);
        assert!(t2 / both.t2_unit > q / both.q_unit);
        let c = both.contributions(&far_along);
        assert!(c.iter().all(|v| v.is_finite() && *v >= 0.0) && c.iter().sum::<f64>() > 0.0);
    }
}
