//! The training report: what the page, the API and the CLI show about a model. Every metric in it was
//! computed on rows the model was neither fitted nor selected on, beside a baseline on the same rows.
use super::shared::context::LeaderRow;
use super::shared::metrics::Confusion;
use super::shared::params::{ModelType, TrainParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Instant;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SplitSummary {
    pub method: String,
    pub train_rows: usize,
    pub val_rows: usize,
    pub test_rows: usize,
    pub healthy_rows: usize,
    pub train_lives: usize,
    pub val_lives: usize,
    pub test_lives: usize,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DataSummary {
    pub rows: usize,
    pub sensors: usize,
    pub sensors_used: Vec<String>,
    pub sensors_dropped: Vec<String>,
    pub interval_s: f64,
    pub lives: usize,
    pub features: usize,
    pub feature_windows_rows: Vec<usize>,
    pub time_in_life: bool,
    /// How the readings were put onto the training grid; absent when they were used as recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<crate::data::grid::GridSummary>,
    /// The newest row's time in the data trained on (epoch seconds), so a schedule can tell how much newer
    /// the machine's data has become.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<f64>,
    /// Each sensor's distribution in the data trained on, for the drift of later readings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<super::drift::Profile>,
}

/// The one number a card shows, its baseline on the same test rows, and which direction is better.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Headline {
    pub metric: String,
    pub value: f64,
    pub baseline: f64,
    pub baseline_name: String,
    pub higher_is_better: bool,
    /// Positive when the model beats its baseline: relative improvement (e.g. 0.4 = 40 % better).
    pub improvement: f64,
    /// The unit of `value` and `baseline` ("h" for an RUL error), empty for a ratio or a score.
    #[serde(default)]
    pub unit: String,
}

impl Headline {
    pub fn new(metric: &str, value: f64, baseline: f64, baseline_name: &str, higher_is_better: bool) -> Headline {
        let improvement = if higher_is_better {
            if baseline.abs() > 1e-12 { (value - baseline) / baseline.abs() } else { value - baseline }
        } else if baseline.abs() > 1e-12 {
            (baseline - value) / baseline.abs()
        } else {
            baseline - value
        };
        Headline {
            metric: metric.into(),
            value,
            baseline,
            baseline_name: baseline_name.into(),
            higher_is_better,
            improvement,
            unit: String::new(),
        }
    }

    pub fn in_unit(mut self, unit: &str) -> Headline {
        self.unit = unit.into();
        self
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub model_type: String,
    pub machine_id: String,
    pub created_at: String,
    pub millwright_version: String,
    /// What the model predicts, in words (e.g. "failure within 48 h (RUL ≤ 48 h)").
    pub target: String,
    pub headline: Headline,
    /// Test-set metrics of the chosen model.
    pub metrics: Value,
    /// The same metrics for the baseline, on the same rows.
    pub baseline: Value,
    pub leaderboard: Vec<LeaderRow>,
    pub confusion: Option<Confusion>,
    pub feature_importance: Vec<(String, f64)>,
    /// Type-specific samples for plots: predicted vs actual, forecast vs truth, score distribution.
    pub samples: Value,
    pub split: SplitSummary,
    pub data: DataSummary,
    pub timings: Vec<(String, f64)>,
    pub train_seconds: f64,
    pub peak_rss_bytes: u64,
    pub model_size_bytes: u64,
    pub params: Option<TrainParams>,
    pub warnings: Vec<String>,
    /// This model beside the model that was live when it was trained, on the same held-out rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<Comparison>,
    /// The rows the test metrics were computed on (the supervised models), for that comparison; not stored.
    #[serde(skip)]
    pub test_rows: Vec<usize>,
}

impl Report {
    pub fn new(model_type: ModelType, machine_id: &str) -> Report {
        Report {
            model_type: model_type.as_str().into(),
            machine_id: machine_id.into(),
            created_at: crate::util::time::format_timestamp(crate::util::time::now_secs()),
            millwright_version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }
    }
}

/// Wall time per stage, for the report.
pub struct Stopwatch {
    start: Instant,
    last: Instant,
    pub laps: Vec<(String, f64)>,
}

impl Stopwatch {
    pub fn start() -> Stopwatch {
        let now = Instant::now();
        Stopwatch { start: now, last: now, laps: Vec::new() }
    }

    pub fn lap(&mut self, stage: &str) {
        let now = Instant::now();
        self.laps.push((stage.into(), (now - self.last).as_secs_f64()));
        self.last = now;
    }

    pub fn total(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// The `k` most important named features, normalised to sum 1.
pub fn top_importance(names: &[String], gains: &[f64], k: usize) -> Vec<(String, f64)> {
    let total: f64 = gains.iter().filter(|g| g.is_finite()).sum();
    let mut pairs: Vec<(String, f64)> = names
        .iter()
        .zip(gains)
        .filter(|(_, g)| g.is_finite() && **g > 0.0)
        .map(|(n, g)| (n.clone(), if total > 0.0 { g / total } else { 0.0 }))
        .collect();
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
    pairs.truncate(k);
    pairs
}

/// Evenly spaced indices into `0..n`, at most `k` of them (keeps report samples small).
pub fn sample_indices(n: usize, k: usize) -> Vec<usize> {
    if n <= k {
        return (0..n).collect();
    }
    (0..k).map(|i| i * (n - 1) / (k - 1).max(1)).collect()
}

/// A new model beside the model live when it was trained, on held-out rows the live one never saw
/// ([`super::compare::compare`]), as the report, the API and the page show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The live version compared with.
    pub champion_version: u32,
    /// `rmse_hours` (lower is better) or `f1` (higher is better); empty when not compared.
    pub metric: String,
    pub higher_is_better: bool,
    pub challenger: Option<f64>,
    pub champion: Option<f64>,
    /// Held-out rows both were scored on.
    pub rows: usize,
    /// The new model is at least as good as the live one on those rows (true when they could not be compared).
    pub not_worse: bool,
    /// Why there is no comparison, when there is none.
    pub note: Option<String>,
}

impl Comparison {
    pub(super) fn not_compared(champion_version: u32, why: impl Into<String>) -> Comparison {
        Comparison {
            champion_version,
            metric: String::new(),
            higher_is_better: false,
            challenger: None,
            champion: None,
            rows: 0,
            not_worse: true,
            note: Some(why.into()),
        }
    }

    /// One line for logs and the job: "RMSE 41.2 h against 38.0 h of live v3 on 1,200 held-out rows".
    pub fn sentence(&self) -> String {
        match (self.challenger, self.champion) {
            (Some(a), Some(b)) => format!(
                "{} {a:.4} against {b:.4} of live v{} on {} held-out rows: {}",
                self.metric,
                self.champion_version,
                self.rows,
                if self.not_worse { "not worse" } else { "worse" }
            ),
            _ => format!("not compared with live v{}: {}", self.champion_version, self.note.as_deref().unwrap_or("no comparison")),
        }
    }
}
