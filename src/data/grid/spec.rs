//! What a training grid is, as the table, the report and the model file carry it: plain data, so the table
//! can name its grid without depending on the aggregation.
use serde::{Deserialize, Serialize};

/// What a grid step keeps of a sensor's readings, each one column of the gridded table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GridStat {
    Mean,
    Min,
    Max,
    Std,
    Last,
    /// Valid readings in the step: a sensor that drops out shows as a falling count.
    Count,
}

impl GridStat {
    pub const ALL: [GridStat; 6] = [GridStat::Mean, GridStat::Min, GridStat::Max, GridStat::Std, GridStat::Last, GridStat::Count];

    pub fn as_str(self) -> &'static str {
        match self {
            GridStat::Mean => "mean",
            GridStat::Min => "min",
            GridStat::Max => "max",
            GridStat::Std => "std",
            GridStat::Last => "last",
            GridStat::Count => "count",
        }
    }

    pub fn parse(s: &str) -> Option<GridStat> {
        GridStat::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The mean keeps the sensor's own name, so a gridded model needs the same sensors a raw one does.
    pub(super) fn column_name(self, sensor: &str) -> String {
        match self {
            GridStat::Mean => sensor.to_string(),
            other => format!("{sensor}{STAT_SEPARATOR}{}", other.as_str()),
        }
    }
}

/// Between a sensor's name and the statistic in a gridded column's name ("vibration:std").
const STAT_SEPARATOR: char = ':';

/// The sensor a column of a gridded table is made from ("vibration:std" → "vibration").
pub fn source_sensor(column: &str) -> &str {
    match column.rsplit_once(STAT_SEPARATOR) {
        Some((sensor, stat)) if GridStat::parse(stat).is_some() => sensor,
        _ => column,
    }
}

/// The statistic a column of a gridded table holds ("vibration:std" → std; a plain name is the mean).
pub fn column_stat(column: &str) -> GridStat {
    column.rsplit_once(STAT_SEPARATOR).and_then(|(_, stat)| GridStat::parse(stat)).unwrap_or(GridStat::Mean)
}

impl Grid {
    /// The columns each sensor becomes on this grid, sensor by sensor, in the grid's order of statistics.
    pub fn column_names(&self, sensors: &[String]) -> Vec<String> {
        sensors.iter().flat_map(|s| self.stats.iter().map(move |stat| stat.column_name(s))).collect()
    }
}

/// The step rows were aggregated onto, and what each step keeps; stored with every model trained on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub step_s: f64,
    pub stats: Vec<GridStat>,
}

/// What putting a table onto its grid did, for the report and `inspect-data`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridSummary {
    pub grid: Grid,
    pub why: String,
    pub raw_rows: usize,
    pub raw_interval_s: f64,
    pub rows: usize,
    /// Median readings per step.
    pub readings_per_step: f64,
    /// Steps inside lives with no reading at all: gaps are left as gaps, never filled in.
    pub empty_steps: usize,
}
