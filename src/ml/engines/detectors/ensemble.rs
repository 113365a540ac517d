//! Weighted average of calibrated detectors, with a threshold set for a target false-alarm rate.

use super::calibrator::Calibrator;
use super::iforest::{IsolationForest, IsolationForestConfig};
use super::mahalanobis::{Mahalanobis, MahalanobisConfig};
use super::pca::{PcaConfig, PcaReconstruction, PcaT2Q};
use super::robust_z::{Aggregate, RobustZ};
use super::stats::{quantile_sorted, sorted_finite};
use super::{Detector, DetectorError, Progress, Result, Rows, report};
use serde::{Deserialize, Serialize};

const ROWS_PER_REPORT: usize = 4096;

/// Which detector to train, with its settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DetectorKind {
    IsolationForest(IsolationForestConfig),
    RobustZ(Aggregate),
    Mahalanobis(MahalanobisConfig),
    Pca(PcaConfig),
    /// PCA's T² and Q together (appended last: bundles store the variant's position).
    PcaT2Q(PcaConfig),
}

/// A fitted detector of any kind: a closed enum rather than `Box<dyn Detector>` so it serialises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnyDetector {
    IsolationForest(IsolationForest),
    RobustZ(RobustZ),
    Mahalanobis(Mahalanobis),
    Pca(PcaReconstruction),
    PcaT2Q(PcaT2Q),
}

impl AnyDetector {
    pub fn fit(kind: &DetectorKind, rows: &Rows, progress: Progress<'_>) -> Result<Self> {
        Ok(match kind {
            DetectorKind::IsolationForest(c) => AnyDetector::IsolationForest(IsolationForest::fit(rows, c, progress)?),
            DetectorKind::RobustZ(a) => AnyDetector::RobustZ(RobustZ::fit(rows, *a, progress)?),
            DetectorKind::Mahalanobis(c) => AnyDetector::Mahalanobis(Mahalanobis::fit(rows, c, progress)?),
            DetectorKind::Pca(c) => AnyDetector::Pca(PcaReconstruction::fit(rows, c, progress)?),
            DetectorKind::PcaT2Q(c) => AnyDetector::PcaT2Q(PcaT2Q::fit(rows, c, progress)?),
        })
    }

    fn inner(&self) -> &dyn Detector {
        match self {
            AnyDetector::IsolationForest(d) => d,
            AnyDetector::RobustZ(d) => d,
            AnyDetector::Mahalanobis(d) => d,
            AnyDetector::Pca(d) => d,
            AnyDetector::PcaT2Q(d) => d,
        }
    }
}

impl Detector for AnyDetector {
    fn name(&self) -> &'static str {
        self.inner().name()
    }
    fn score(&self, row: &[f64]) -> f64 {
        self.inner().score(row)
    }
    fn contributions(&self, row: &[f64]) -> Vec<f64> {
        self.inner().contributions(row)
    }
}

/// How calibrated detector scores `q_i` (weights `w_i`) become the ensemble score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Combine {
    /// `Σ w_i q_i / Σ w_i`. Simple, but a row must look extreme to *every* detector to pass a
    /// high threshold: one detector at 0.99995 and one at 0.75 average to ~0.87, below a typical
    /// 99 % threshold, so single-detector anomalies are missed.
    Mean,
    /// `1 - Π (1 - q_i)^(w_i / Σw)`: one minus the weighted geometric mean of the healthy tail
    /// probabilities. Equivalent to averaging the evidence `-ln(1 - q_i)`, so one detector that
    /// is very sure can carry the row past the threshold. Still monotone in every `q_i`, in [0, 1].
    #[default]
    GeometricTail,
}

/// Tail probabilities are floored so a saturated calibrator (q = 1) yields finite evidence.
const MIN_TAIL: f64 = 1e-300;

impl Combine {
    /// Per-detector quantity that is averaged (also how much say a detector gets in explanations).
    fn evidence(self, q: f64) -> f64 {
        match self {
            Combine::Mean => q,
            Combine::GeometricTail => -(1.0 - q).max(MIN_TAIL).ln(),
        }
    }

    fn finish(self, mean_evidence: f64) -> f64 {
        match self {
            Combine::Mean => mean_evidence,
            Combine::GeometricTail => 1.0 - (-mean_evidence).exp(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleConfig {
    /// Detectors with their (non-negative) weights in the average.
    pub detectors: Vec<(DetectorKind, f64)>,
    /// Target false-alarm rate on healthy data, used to set [`Ensemble::threshold`].
    pub contamination: f64,
    pub combine: Combine,
}

impl Default for EnsembleConfig {
    /// Isolation forest (non-linear, multi-modal), robust z (single-sensor excursions) and robust
    /// Mahalanobis (broken correlations). PCA is available but left out: it overlaps Mahalanobis.
    fn default() -> Self {
        EnsembleConfig {
            detectors: vec![
                (DetectorKind::IsolationForest(IsolationForestConfig::default()), 1.0),
                (DetectorKind::RobustZ(Aggregate::Max), 1.0),
                (DetectorKind::Mahalanobis(MahalanobisConfig::default()), 1.0),
            ],
            contamination: 0.01,
            combine: Combine::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub detector: AnyDetector,
    pub calibrator: Calibrator,
    pub weight: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    pub n_cols: usize,
    pub members: Vec<Member>,
    /// Ensemble scores above this are anomalies (set from held-out healthy rows).
    pub threshold: f64,
    pub contamination: f64,
    pub combine: Combine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleScore {
    /// Calibrated detector scores combined per [`Combine`], in [0, 1].
    pub score: f64,
    pub per_detector: Vec<(String, f64)>,
    /// One non-negative share per column, summing to 1.
    pub contributions: Vec<f64>,
}

impl Ensemble {
    /// Trains every detector on `train` and calibrates it on `holdout` (healthy rows the detectors
    /// never saw: calibrating on training rows would make every score look ordinary), then sets
    /// the threshold for `config.contamination` from the holdout's ensemble scores.
    pub fn fit(train: &Rows, holdout: &Rows, config: &EnsembleConfig, progress: Progress<'_>) -> Result<Self> {
        train.validate_for_training(2)?;
        holdout.validate_for_training(1)?;
        if holdout.n_cols != train.n_cols {
            return Err(DetectorError::ColumnMismatch { got: holdout.n_cols, expected: train.n_cols });
        }
        validate_config(config)?;
        report(progress, 0.0)?;
        // Each detector gets an equal slice of progress: 80 % training, 20 % scoring the holdout.
        let k = config.detectors.len() as f64;
        let mut members = Vec::with_capacity(config.detectors.len());
        for (j, (kind, weight)) in config.detectors.iter().enumerate() {
            let base = j as f64 / k;
            let detector = AnyDetector::fit(kind, train, &mut |f| progress(base + 0.8 * f / k))?;
            let scores = score_with_progress(&detector, holdout, &mut |f| progress(base + (0.8 + 0.2 * f) / k))?;
            let calibrator = Calibrator::fit(&scores)?;
            members.push(Member { detector, calibrator, weight: *weight });
        }
        let mut ensemble =
            Ensemble { n_cols: train.n_cols, members, threshold: 1.0, contamination: config.contamination, combine: config.combine };
        let held_out: Vec<f64> = holdout.iter().map(|r| ensemble.score(r).score).collect();
        ensemble.threshold = threshold_for_contamination(&held_out, config.contamination)?;
        report(progress, 1.0)?;
        Ok(ensemble)
    }

    pub fn score(&self, row: &[f64]) -> EnsembleScore {
        let mut total = 0.0;
        let mut weights = 0.0;
        let mut per_detector = Vec::with_capacity(self.members.len());
        let mut contributions = vec![0.0; self.n_cols];
        let mut attributed = 0.0;
        for m in &self.members {
            let calibrated = m.calibrator.map(m.detector.score(row));
            let evidence = self.combine.evidence(calibrated);
            total += m.weight * evidence;
            weights += m.weight;
            per_detector.push((m.detector.name().to_string(), calibrated));
            // Detectors that consider the row more anomalous get more say in the explanation.
            attributed += add_normalised(&mut contributions, &m.detector.contributions(row), m.weight * evidence);
        }
        normalise_or_uniform(&mut contributions, attributed);
        let score = if weights > 0.0 { self.combine.finish(total / weights).clamp(0.0, 1.0) } else { 0.0 };
        EnsembleScore { score, per_detector, contributions }
    }

    pub fn is_anomaly(&self, row: &[f64]) -> bool {
        self.score(row).score > self.threshold
    }
}

fn validate_config(config: &EnsembleConfig) -> Result<()> {
    if config.detectors.is_empty() {
        return Err(DetectorError::InvalidParameter("ensemble needs at least one detector".into()));
    }
    let bad_weight = config.detectors.iter().any(|(_, w)| !(w.is_finite() && *w >= 0.0));
    let total: f64 = config.detectors.iter().map(|(_, w)| w).sum();
    if bad_weight || total <= 0.0 {
        return Err(DetectorError::InvalidParameter("weights must be finite, >= 0 and not all 0".into()));
    }
    if !(0.0..1.0).contains(&config.contamination) {
        return Err(DetectorError::InvalidParameter("contamination must be in [0, 1)".into()));
    }
    Ok(())
}

fn score_with_progress(detector: &dyn Detector, rows: &Rows, progress: &mut dyn FnMut(f64) -> bool) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(rows.n_rows);
    for (i, r) in rows.iter().enumerate() {
        if i % ROWS_PER_REPORT == 0 {
            report(progress, i as f64 / rows.n_rows as f64)?;
        }
        out.push(detector.score(r));
    }
    Ok(out)
}

/// Adds `weight · c / sum(c)` into `acc`; returns the weight actually added (0 if `c` is empty,
/// has a different width, or carries no finite mass).
fn add_normalised(acc: &mut [f64], c: &[f64], weight: f64) -> f64 {
    if c.len() != acc.len() || weight.is_nan() || weight <= 0.0 {
        return 0.0;
    }
    let sum: f64 = c.iter().filter(|v| v.is_finite() && **v > 0.0).sum();
    if !(sum > 0.0 && sum.is_finite()) {
        return 0.0;
    }
    for (a, v) in acc.iter_mut().zip(c) {
        if v.is_finite() && *v > 0.0 {
            *a += weight * v / sum;
        }
    }
    weight
}

fn normalise_or_uniform(c: &mut [f64], total: f64) {
    if total > 0.0 {
        c.iter_mut().for_each(|v| *v /= total);
    } else if !c.is_empty() {
        // Nothing to attribute (every detector calls the row perfectly normal): no column stands out.
        let u = 1.0 / c.len() as f64;
        c.iter_mut().for_each(|v| *v = u);
    }
}

/// The `(1 - contamination)` quantile of ensemble scores on held-out healthy rows: about that share
/// of healthy rows will score above it. Non-finite scores are ignored.
pub fn threshold_for_contamination(held_out_scores: &[f64], contamination: f64) -> Result<f64> {
    if !(0.0..1.0).contains(&contamination) {
        return Err(DetectorError::InvalidParameter("contamination must be in [0, 1)".into()));
    }
    let sorted = sorted_finite(held_out_scores.iter().copied());
    if sorted.is_empty() {
        return Err(DetectorError::NoScores);
    }
    Ok(quantile_sorted(&sorted, 1.0 - contamination))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::correlated;
    use super::*;
    use std::time::Instant;

    fn all_kinds() -> EnsembleConfig {
        let mut cfg = EnsembleConfig::default();
        cfg.detectors.push((DetectorKind::Pca(PcaConfig::default()), 0.5));
        cfg
    }

    #[test]
    fn threshold_gives_requested_false_alarm_rate() {
        let train = correlated(4000, 3, 0.8, 31);
        let holdout = correlated(3000, 3, 0.8, 32);
        let fresh = correlated(6000, 3, 0.8, 33);
        for combine in [Combine::Mean, Combine::GeometricTail] {
            let mut cfg = all_kinds();
            cfg.contamination = 0.05;
            cfg.combine = combine;
            let ens = Ensemble::fit(&train, &holdout, &cfg, &mut |_| true).unwrap();
            let fpr = fresh.iter().filter(|r| ens.is_anomaly(r)).count() as f64 / fresh.n_rows as f64;
            assert!((0.03..=0.075).contains(&fpr), "{combine:?}: false alarm rate {fpr}");
            let s = ens.score(fresh.row(0));
            assert_eq!(s.per_detector.len(), 4);
            assert!((s.contributions.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!((0.0..=1.0).contains(&s.score));
        }
    }

    #[test]
    fn anomaly_scores_high_and_explains_the_right_column() {
        let train = correlated(3000, 3, 0.8, 34);
        let holdout = correlated(1000, 3, 0.8, 35);
        let ens = Ensemble::fit(&train, &holdout, &EnsembleConfig::default(), &mut |_| true).unwrap();
        let row = [10.0, -3.0, 0.0, 9.0, 0.0];
        let s = ens.score(&row);
        assert!(s.score > ens.threshold, "{s:?} vs {}", ens.threshold);
        let top = (0..5).max_by(|&a, &b| s.contributions[a].total_cmp(&s.contributions[b]));
        assert_eq!(top, Some(3));
        // Missing values are imputed, not propagated.
        assert!(ens.score(&[f64::NAN; 5]).score.is_finite());
    }

    #[test]
    fn serde_round_trip_keeps_scores() {
        let train = correlated(1500, 2, 0.7, 36);
        let holdout = correlated(500, 2, 0.7, 37);
        let ens = Ensemble::fit(&train, &holdout, &all_kinds(), &mut |_| true).unwrap();
        let json = serde_json::to_string(&ens).unwrap();
        let back: Ensemble = serde_json::from_str(&json).unwrap();
        // serde_json's default float parser may be 1 ulp off (its `float_roundtrip` feature makes
        // it exact), so compare to within a few ulps rather than bit for bit.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
        for r in holdout.iter().take(200) {
            let (a, b) = (ens.score(r), back.score(r));
            assert!(close(a.score, b.score), "{a:?} vs {b:?}");
            for ((na, va), (nb, vb)) in a.per_detector.iter().zip(&b.per_detector) {
                assert!(na == nb && close(*va, *vb));
            }
            assert!(a.contributions.iter().zip(&b.contributions).all(|(x, y)| close(*x, *y)));
        }
        assert_eq!(ens.threshold, back.threshold);
    }

    #[test]
    fn cancel_returns_quickly() {
        let train = correlated(30_000, 8, 0.7, 38);
        let holdout = correlated(5000, 8, 0.7, 39);
        let started = Instant::now();
        let mut calls = 0;
        let r = Ensemble::fit(&train, &holdout, &all_kinds(), &mut |_| {
            calls += 1;
            calls < 20
        });
        assert_eq!(r.err(), Some(DetectorError::Cancelled));
        assert!(started.elapsed().as_millis() < 500, "{:?}", started.elapsed());
    }

    #[test]
    fn rejects_bad_config() {
        let train = correlated(100, 0, 0.5, 40);
        let cfg = EnsembleConfig { contamination: 1.5, ..EnsembleConfig::default() };
        assert!(Ensemble::fit(&train, &train, &cfg, &mut |_| true).is_err());
        let cfg = EnsembleConfig { detectors: vec![], ..EnsembleConfig::default() };
        assert!(Ensemble::fit(&train, &train, &cfg, &mut |_| true).is_err());
        let narrow = Rows::new(1, 1, vec![0.0]).unwrap();
        assert!(Ensemble::fit(&train, &narrow, &EnsembleConfig::default(), &mut |_| true).is_err());
        assert!(threshold_for_contamination(&[], 0.1).is_err());
        assert_eq!(threshold_for_contamination(&[1.0, 2.0, 3.0], 0.0).unwrap(), 3.0);
    }
}
