//! Table 1 of BENCHMARKS.md: the standard protocols of the shared datasets beside the anchors measured for the
//! Python stack on the same files (../shared/datasets/README.md).
use super::BenchError;
use super::measure::{Probe, median};
use super::protocol::{DATASETS, dataset_dir, protocol_models, run_models};
use crate::ml::TrainParams;
use serde::Serialize;

/// A published or measured reference figure for one metric of one dataset.
struct Anchor {
    dataset: &'static str,
    metric: &'static str,
    /// e.g. "AutoGluon 12.3 in 122 s, 41.8 MB".
    text: &'static str,
}

/// From ../shared/datasets/README.md (measured on this class of machine).
const ANCHORS: &[Anchor] = &[
    Anchor { dataset: "cmapss-fd001", metric: "RMSE last cycle", text: "AutoGluon 12.3 (122 s, 41.8 MB); LightGBM 12.7" },
    Anchor { dataset: "ai4i2020", metric: "f1", text: "AutoGluon 0.78 (57 MB); LightGBM 0.80 (0.5 s, 0.33 MB)" },
    Anchor { dataset: "ai4i2020", metric: "roc_auc", text: "AutoGluon 0.974" },
];

/// What a metric must reach.
#[derive(Clone, Copy, Debug)]
enum Bound {
    /// A fixed figure (≤ when lower is better, ≥ otherwise).
    Fixed(f64),
    /// Better than the row's own baseline on the same origins/rows (for forecasts: the best of naive, daily
    /// and weekly seasonal naive).
    BeatsBaseline,
    /// Within ± the tolerance of a nominal value (interval coverage).
    Within(f64, f64),
}

/// What a protocol's metric must meet: a metric bound, a train-time bound and a model-size bound (issue 15's
/// targets: forecasts beat the best simple rule with calibrated intervals, SKAB at the leaderboard's best,
/// FD001 / AI4I at least where they were, FD001 within LightGBM's 2.0 s on one thread).
struct Target {
    dataset: &'static str,
    metric: &'static str,
    higher_is_better: bool,
    bound: Bound,
    max_seconds: f64,
    max_model_bytes: u64,
}

impl Target {
    /// `dataset` names one dataset, or a family when it ends in `*`.
    fn applies_to(&self, dataset: &str) -> bool {
        match self.dataset.strip_suffix('*') {
            Some(prefix) => dataset.starts_with(prefix),
            None => self.dataset == dataset,
        }
    }
}

const TARGETS: &[Target] = &[
    Target {
        dataset: "cmapss-fd001",
        metric: "RMSE last cycle",
        higher_is_better: false,
        bound: Bound::Fixed(11.8),
        max_seconds: 2.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "ai4i2020",
        metric: "f1",
        higher_is_better: true,
        bound: Bound::Fixed(0.81),
        max_seconds: 5.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "skab-valve1",
        metric: "f1",
        higher_is_better: true,
        bound: Bound::Fixed(0.78),
        max_seconds: 60.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "nab-windows/*",
        metric: "windows missed",
        higher_is_better: false,
        bound: Bound::Fixed(0.0),
        max_seconds: 60.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "nab-windows/*",
        metric: "alarms outside",
        higher_is_better: false,
        bound: Bound::Fixed(0.05),
        max_seconds: 60.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "nab-traffic/*",
        metric: "mase",
        higher_is_better: false,
        bound: Bound::BeatsBaseline,
        max_seconds: 60.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "nab-traffic/*",
        metric: "coverage80",
        higher_is_better: true,
        bound: Bound::Within(0.80, 0.05),
        max_seconds: 60.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "nab-traffic/*",
        metric: "coverage95",
        higher_is_better: true,
        bound: Bound::Within(0.95, 0.05),
        max_seconds: 60.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "nab-ambient-temperature",
        metric: "mase",
        higher_is_better: false,
        bound: Bound::BeatsBaseline,
        max_seconds: 60.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "nab-ambient-temperature",
        metric: "coverage80",
        higher_is_better: true,
        bound: Bound::Within(0.80, 0.05),
        max_seconds: 60.0,
        max_model_bytes: 2_000_000,
    },
    Target {
        dataset: "nab-ambient-temperature",
        metric: "coverage95",
        higher_is_better: true,
        bound: Bound::Within(0.95, 0.05),
        max_seconds: 60.0,
        max_model_bytes: 2_000_000,
    },
];

#[derive(Clone, Debug, Serialize)]
pub struct AccuracyRow {
    pub dataset: String,
    pub model_type: String,
    pub metric: String,
    pub value: f64,
    /// The in-process baseline beside it (mean predictor, prevalence, seasonal naive, ...).
    pub baseline: f64,
    pub anchor: Option<String>,
    /// Median over the repeats.
    pub train_seconds: f64,
    pub peak_rss_mb: f64,
    pub model_kb: f64,
    /// "met" / "MISSED: …" where a target is set on this row.
    pub verdict: Option<String>,
}

/// Runs each dataset's protocol `repeats` times (models are seeded, so the metrics repeat exactly; times and
/// memory are medians). A dataset whose files are missing is reported as an error, not skipped.
pub fn accuracy(datasets: &[String], params: &TrainParams, repeats: usize) -> Result<Vec<AccuracyRow>, BenchError> {
    let mut out = Vec::new();
    for name in &super::protocol::expand_datasets(datasets) {
        let (dir, models) = dataset_dir(name).ok_or_else(|| {
            BenchError::Missing(format!("examples/{name}/machine.toml (known: {}, nab-windows, nab-traffic)", DATASETS.join(", ")))
        })?;
        let table = crate::data::load_machine_dir(&dir)?;
        let models = models.unwrap_or_else(|| protocol_models(&table));
        let mut runs = Vec::new();
        for _ in 0..repeats.max(1) {
            let probe = Probe::start();
            let rows = run_models(&table, params, &models)?;
            runs.push((rows, probe.stop()));
        }
        let seconds = |i: usize| median(&runs.iter().map(|(r, _)| r[i].train_seconds).collect::<Vec<_>>());
        let peak_mb = median(&runs.iter().map(|(_, s)| s.peak_rss_bytes as f64 / 1e6).collect::<Vec<_>>());
        let Some((first, _)) = runs.first() else {
            continue;
        };
        for (i, r) in first.iter().enumerate() {
            let mut row = AccuracyRow {
                dataset: name.clone(),
                model_type: r.model_type.clone(),
                metric: r.metric.clone(),
                value: r.value,
                baseline: r.baseline,
                anchor: ANCHORS.iter().find(|a| a.dataset == name && a.metric == r.metric).map(|a| a.text.to_string()),
                train_seconds: seconds(i),
                peak_rss_mb: peak_mb,
                model_kb: r.model_size_bytes as f64 / 1024.0,
                verdict: None,
            };
            row.verdict = TARGETS.iter().find(|t| t.applies_to(name) && t.metric == r.metric).map(|t| verdict(t, &row, r.model_size_bytes));
            out.push(row);
        }
    }
    Ok(out)
}

fn verdict(t: &Target, row: &AccuracyRow, model_bytes: u64) -> String {
    let mut missed = Vec::new();
    let (metric_ok, wanted) = match t.bound {
        Bound::Fixed(b) if t.higher_is_better => (row.value >= b, format!("≥ {b}")),
        Bound::Fixed(b) => (row.value <= b, format!("≤ {b}")),
        Bound::BeatsBaseline if t.higher_is_better => (row.value > row.baseline, format!("> baseline {:.3}", row.baseline)),
        Bound::BeatsBaseline => (row.value < row.baseline, format!("< baseline {:.3}", row.baseline)),
        Bound::Within(centre, tol) => ((row.value - centre).abs() <= tol, format!("{centre} ± {tol}")),
    };
    if !metric_ok {
        missed.push(format!("{} {:.3} vs target {wanted}", t.metric, row.value));
    }
    if row.train_seconds > t.max_seconds {
        missed.push(format!("{:.2} s > {} s", row.train_seconds, t.max_seconds));
    }
    if model_bytes > t.max_model_bytes {
        missed.push(format!("{} KB > {} KB", model_bytes / 1024, t.max_model_bytes / 1024));
    }
    if missed.is_empty() { "met".into() } else { format!("MISSED: {}", missed.join("; ")) }
}

pub fn print(rows: &[AccuracyRow]) {
    println!(
        "{:<24} {:<15} {:<16} {:>9} {:>9} {:>8} {:>8} {:>8}  {:<10} anchor",
        "dataset", "model", "metric", "value", "baseline", "train s", "peak MB", "model KB", "target"
    );
    for r in rows {
        println!(
            "{:<24} {:<15} {:<16} {:>9.4} {:>9.4} {:>8.2} {:>8.0} {:>8.1}  {:<10} {}",
            r.dataset,
            r.model_type,
            r.metric,
            r.value,
            r.baseline,
            r.train_seconds,
            r.peak_rss_mb,
            r.model_kb,
            r.verdict.as_deref().unwrap_or("-"),
            r.anchor.as_deref().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: f64, seconds: f64) -> AccuracyRow {
        AccuracyRow {
            dataset: "cmapss-fd001".into(),
            model_type: "regression".into(),
            metric: "RMSE last cycle".into(),
            value,
            baseline: 40.0,
            anchor: None,
            train_seconds: seconds,
            peak_rss_mb: 50.0,
            model_kb: 100.0,
            verdict: None,
        }
    }

    #[test]
    fn verdicts_name_every_missed_bound() {
        let t = &TARGETS[0];
        assert_eq!(verdict(t, &row(11.7, 1.5), 180_000), "met");
        let v = verdict(t, &row(12.9, 6.5), 3_000_000);
        assert!(v.starts_with("MISSED") && v.contains("12.900") && v.contains("6.50 s") && v.contains("KB"), "{v}");
    }

    #[test]
    fn forecast_targets_are_relative_to_the_best_baseline_and_the_nominal_coverage() {
        let mase = TARGETS.iter().find(|t| t.metric == "mase").unwrap();
        let mut r = row(0.81, 3.0);
        r.baseline = 0.98;
        assert_eq!(verdict(mase, &r, 1000), "met");
        r.baseline = 0.80;
        assert!(verdict(mase, &r, 1000).contains("< baseline 0.800"));
        let cov = TARGETS.iter().find(|t| t.metric == "coverage80").unwrap();
        assert_eq!(verdict(cov, &row(0.83, 3.0), 1000), "met");
        assert!(verdict(cov, &row(0.69, 3.0), 1000).contains("0.8 ± 0.05"));
    }
}
