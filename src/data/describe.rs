//! `machine.toml`: display metadata and, optionally, a description of any CSV/Parquet files and the role
//! of each column. With no `[[files]]`, the folder's legacy-layout files are read and `[columns]` still applies.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::table::{MachineMeta, SplitHint};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineToml {
    #[serde(default)]
    pub machine: MachineMeta,
    /// Files making up the machine's history, relative to the folder holding `machine.toml`.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub columns: ColumnRoles,
    /// Physical unit per sensor, for display.
    #[serde(default)]
    pub units: BTreeMap<String, String>,
    #[serde(default)]
    pub split: SplitHint,
    /// Labelled anomaly windows kept beside the data (NAB's JSON), used only for evaluation.
    pub anomaly_windows: Option<WindowsSpec>,
    /// What produced each life (the simulator writes its failure modes here); display only.
    #[serde(default)]
    pub lives: Vec<LifeInfo>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// A path, or a pattern with `*` in its last component (e.g. `valve1/*.csv`, sorted numerically).
    pub path: String,
    /// `train`, `val`, `test` or `healthy` (reference data known to be normal); omit to let millwright split.
    pub split: Option<String>,
    /// `,` (default), `;`, `tab` or `whitespace`.
    pub delimiter: Option<String>,
    /// Whether the first line names the columns (default true).
    pub header: Option<bool>,
    /// Column names, required when `header = false`.
    pub names: Option<Vec<String>>,
    /// Every matched file is its own run (a life), e.g. SKAB's experiments.
    #[serde(default)]
    pub file_is_life: bool,
    /// A file with one RUL value per unit (in unit order) at that unit's last row: C-MAPSS's `RUL_FD001.txt`.
    pub rul_at_end: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRoles {
    /// Time column: datetime text, ISO-8601 or epoch seconds; or a cycle/index column with `step_seconds`.
    pub timestamp: Option<String>,
    /// Seconds per step when `timestamp` is a cycle or row index (C-MAPSS cycles, AI4I's UDI).
    pub step_seconds: Option<f64>,
    /// Which run-to-failure life (or independent run) a row belongs to.
    pub unit: Option<String>,
    /// A given 0/1 failure label.
    pub label: Option<String>,
    /// Remaining useful life, hours.
    pub rul: Option<String>,
    /// Lives run to failure: RUL at each row = time left to the life's last row (hours).
    #[serde(default)]
    pub rul_from_end: bool,
    /// Upper cap for RUL derived from the end of a life (C-MAPSS convention: 125 cycles).
    pub rul_cap_hours: Option<f64>,
    /// 0/1 anomaly ground truth, used only for evaluation.
    pub anomaly: Option<String>,
    /// Sensor columns; default: every other numeric column.
    pub sensors: Option<Vec<String>>,
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Text columns turned into numeric codes by position in the list (e.g. AI4I `Type = ["L", "M", "H"]`).
    #[serde(default)]
    pub categorical: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsSpec {
    /// JSON file: either a list of `[start, end]` pairs or an object whose `key` holds that list.
    pub path: String,
    pub key: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifeInfo {
    /// Which legacy-layout file (`train`, `val`, `test`) and which life within it, counted from 0.
    pub split: String,
    pub index: usize,
    pub rows: usize,
    pub failure_mode: String,
    #[serde(default)]
    pub initial_wear: f64,
}

impl MachineToml {
    pub fn parse(text: &str) -> Result<MachineToml, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string_pretty(self).map_err(|e| e.to_string())
    }
}
