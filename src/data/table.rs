//! The one in-memory shape every machine is loaded into, whatever its files looked like.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which rows a split given by the data itself puts where. `Healthy` rows are reference data known to be
/// normal (SKAB's anomaly-free file): only the anomaly detector fits on them, nothing is scored on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
    Healthy,
}

impl Split {
    pub fn parse(s: &str) -> Option<Split> {
        match s {
            "train" => Some(Split::Train),
            "val" | "valid" | "validation" => Some(Split::Val),
            "test" => Some(Split::Test),
            "healthy" | "normal" | "anomaly-free" => Some(Split::Healthy),
            _ => None,
        }
    }
}

/// How the folder was recognised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `train/val/test` files as the system we replace wrote them (`parquet` or `csv`).
    Legacy { format: String },
    /// A `machine.toml` naming files and column roles.
    Described,
}

/// Display metadata (from `machine.toml`'s `[machine]` table).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineMeta {
    pub name: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub family: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sensor {
    pub name: String,
    /// Physical unit for display, e.g. `mm/s`; empty when unknown.
    pub unit: String,
    /// One value per row; NaN is a missing reading.
    pub values: Vec<f64>,
}

/// A machine's whole history, columnar. Rows are grouped by life and time-ordered within a life.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub machine_id: String,
    pub meta: MachineMeta,
    pub layout: Layout,
    pub sources: Vec<PathBuf>,
    /// Seconds since the Unix epoch (or cycle × step for cycle-indexed data).
    pub timestamps: Vec<f64>,
    /// Index of the run-to-failure life (or independent run) each row belongs to.
    pub life: Vec<u32>,
    /// True when lives come from the data (a unit column, RUL resets, one file per run), so splits go by life.
    pub lives_known: bool,
    /// Split given by the data itself (legacy-layout files, or `split =` per file in `machine.toml`).
    pub given_split: Option<Vec<Split>>,
    pub sensors: Vec<Sensor>,
    /// Given 0/1 failure label.
    pub label: Option<Vec<f64>>,
    /// Remaining useful life in hours.
    pub rul: Option<Vec<f64>>,
    /// 0/1 anomaly ground truth, used only for evaluation.
    pub anomaly: Option<Vec<f64>>,
    /// Median step between consecutive rows of a life, seconds.
    pub interval_s: f64,
    /// How the described table wants rows split when it gives no split of its own.
    pub split_hint: SplitHint,
    /// RUL cap the data's description asks for (C-MAPSS's 125 cycles), used when training sets none.
    pub rul_cap_hint: Option<f64>,
    /// Set when the rows are steps of a training grid rather than readings as recorded (see [`super::grid`]).
    pub grid: Option<super::grid::spec::GridSummary>,
}

/// A protocol the data's description asks for (e.g. AI4I's stratified 80/20); `Auto` lets millwright decide.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitHint {
    #[serde(default)]
    pub method: SplitMethod,
    pub test_fraction: Option<f64>,
    pub val_fraction: Option<f64>,
    pub seed: Option<u64>,
    /// The first N rows of every life are known to be normal (SKAB's experiments start healthy): the anomaly
    /// detector may fit on them, and they are never scored.
    pub healthy_head_rows: Option<usize>,
    /// `[anomaly] reference = "trailing"`: each reading is judged against this many hours of readings before
    /// it rather than against a healthy reference (see `detectors::Trailing`).
    #[serde(default)]
    pub trailing_reference_hours: Option<f64>,
    /// `[anomaly] reference = "healthy"`: never a trailing reference, even for a series that wanders.
    #[serde(default)]
    pub healthy_reference_only: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitMethod {
    #[default]
    Auto,
    ByLife,
    Chronological,
    Stratified,
}

impl Table {
    pub fn n_rows(&self) -> usize {
        self.timestamps.len()
    }

    pub fn n_lives(&self) -> usize {
        let mut ids: Vec<u32> = self.life.clone();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    pub fn sensor_names(&self) -> Vec<&str> {
        self.sensors.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn sensor(&self, name: &str) -> Option<&Sensor> {
        self.sensors.iter().find(|s| s.name == name)
    }

    /// Row ranges `[start, end)` of each life, in row order.
    pub fn life_ranges(&self) -> Vec<(u32, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut start = 0;
        for i in 1..=self.life.len() {
            if i == self.life.len() || self.life[i] != self.life[start] {
                out.push((self.life[start], start..i));
                start = i;
            }
        }
        out
    }

    pub fn display_name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or(&self.machine_id)
    }

    /// Number of positive labels, if the data has labels.
    pub fn label_positives(&self) -> Option<usize> {
        self.label.as_ref().map(|l| l.iter().filter(|v| **v >= 0.5).count())
    }
}
