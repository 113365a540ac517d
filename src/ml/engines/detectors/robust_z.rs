//! Per-column robust z-scores: cheap, explainable, blind to broken correlations.

use super::stats::Imputer;
use super::{Detector, Progress, Result, Rows, report};
use serde::{Deserialize, Serialize};

/// How per-column |z| values become one score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Aggregate {
    /// Largest |z|: one wild sensor is enough.
    #[default]
    Max,
    /// Root mean square of z: rewards many mildly-off sensors.
    Rms,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustZ {
    pub imputer: Imputer,
    pub aggregate: Aggregate,
}

impl RobustZ {
    pub fn fit(rows: &Rows, aggregate: Aggregate, progress: Progress<'_>) -> Result<Self> {
        rows.validate_for_training(1)?;
        report(progress, 0.0)?;
        let imputer = Imputer::fit(rows);
        report(progress, 1.0)?;
        Ok(RobustZ { imputer, aggregate })
    }
}

impl Detector for RobustZ {
    fn name(&self) -> &'static str {
        "robust_z"
    }

    fn score(&self, row: &[f64]) -> f64 {
        let z = self.imputer.z(row);
        match self.aggregate {
            Aggregate::Max => z.iter().fold(0.0, |m: f64, v| m.max(v.abs())),
            Aggregate::Rms => (z.iter().map(|v| v * v).sum::<f64>() / z.len().max(1) as f64).sqrt(),
        }
    }

    fn contributions(&self, row: &[f64]) -> Vec<f64> {
        self.imputer.z(row).into_iter().map(f64::abs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::gaussian;
    use super::*;

    #[test]
    fn flags_a_single_wild_column() {
        let rows = gaussian(1000, 3, 5);
        let d = RobustZ::fit(&rows, Aggregate::Max, &mut |_| true).unwrap();
        assert!(d.score(&[0.0, 0.0, 0.0]) < 0.5);
        assert!(d.score(&[0.0, 8.0, 0.0]) > 6.0);
        let c = d.contributions(&[0.0, 8.0, 0.0]);
        assert!(c[1] > c[0] && c[1] > c[2]);
        let rms = RobustZ { aggregate: Aggregate::Rms, ..d.clone() };
        assert!(rms.score(&[0.0, 8.0, 0.0]) < d.score(&[0.0, 8.0, 0.0]));
    }
}
