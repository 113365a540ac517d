//! How much memory a job will need at its peak, from the machine's rows × features and the model types.
//!
//! The coefficients come from measured runs (`millwright train`, peak RSS minus the process's idle size, on
//! the simulated fleet at 5 000–150 000 rows; see tests/guard.rs, which checks the estimate against a real
//! run). The trees dominate: up to 100,000 training rows their f32 feature matrix is held while it is binned,
//! and with the u8 bins, gradients and the row subsets of the splits that comes to about 7 bytes per
//! row × feature; past that only a 100,000-row sample is held as f32 and each further row costs its bins and
//! its share of the validation matrix, about 3 bytes. The coefficients carry a margin for quality `best` and
//! more threads. Models of a batch train one after another, so a batch needs its largest model plus the table.
use crate::data::grid::{Extent, GridSetting};
use crate::data::{MachineSummary, STREAM_AFTER_ROWS, Summaries, Table};
use crate::ml::{ModelType, Quality, TrainParams};
use serde::Serialize;
use std::sync::Arc;

/// What the estimate needs to know about a machine's data.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shape {
    pub rows: usize,
    pub sensors: Vec<String>,
    /// Rows the models train on: fewer than `rows` when the readings go onto a training grid.
    pub train_rows: usize,
    /// Columns each sensor becomes on that grid (its mean plus the statistics asked for); 1 without one.
    pub columns_per_sensor: usize,
}

impl Shape {
    pub fn of(table: &Table, grid: &GridSetting) -> Shape {
        let (train_rows, columns_per_sensor) = grid.trained_shape(table);
        Shape { rows: table.n_rows(), sensors: table.sensors.iter().map(|s| s.name.clone()).collect(), train_rows, columns_per_sensor }
    }

    /// From the machine's metadata, without loading it (what listing reads: the rows, the interval and the
    /// lives); the steps on a grid are estimated as lives of equal length without gaps.
    pub fn of_summary(s: &MachineSummary, grid: &GridSetting) -> Shape {
        let lives = s.lives.max(1);
        let life_rows = s.rows.div_ceil(lives);
        let steps = |step: f64| lives * ((life_rows as f64 * s.interval_s / step).ceil() as usize).max(1);
        let extent = Extent {
            rows: s.rows,
            interval_s: s.interval_s,
            median_life_s: life_rows as f64 * s.interval_s,
            steps_on: &steps,
            estimated: true,
        };
        let (train_rows, columns_per_sensor) = match grid.grid_for_extent(&extent) {
            Some((g, _)) => (steps(g.step_s).min(s.rows), g.stats.len().max(1)),
            None => (s.rows, 1),
        };
        Shape { rows: s.rows, sensors: s.sensor_names.clone(), train_rows, columns_per_sensor }
    }

    fn sensors_used(&self, exclude: &[String]) -> usize {
        self.sensors.iter().filter(|s| !exclude.contains(s)).count().max(1)
    }
}

/// Features per sensor at most: the reading plus 5 statistics over 3 windows (features.rs).
const FEATURES_PER_SENSOR: u64 = 16;
/// The loaded table: every sensor plus timestamps, life ids and targets, as f64.
const TABLE_COLUMNS_EXTRA: u64 = 4;

/// (fixed bytes, bytes per row × feature) per model type, quality standard.
fn coefficients(t: ModelType) -> (u64, f64) {
    const MIB: u64 = 1024 * 1024;
    match t {
        ModelType::Classification => (16 * MIB, 7.5),
        ModelType::Regression => (24 * MIB, 7.5),
        ModelType::Anomaly => (6 * MIB, 1.5),
        ModelType::Timeseries => (4 * MIB, 1.2),
    }
}

/// Training rows whose features the tree models hold as f32 while binning them (the bins' sample).
const TREE_ROWS_AS_F32: u64 = 100_000;
/// Bytes per row × feature past those rows: the bins (1), the validation matrix's share and the gradients.
const TREE_BYTES_PAST_SAMPLE: f64 = 3.0;

/// Row × feature cells a model type costs, weighted as the cells up to the sample cost.
fn weighted_rows(t: ModelType, rows: u64, per_cell: f64) -> f64 {
    match t {
        ModelType::Classification | ModelType::Regression if rows > TREE_ROWS_AS_F32 => {
            TREE_ROWS_AS_F32 as f64 + (rows - TREE_ROWS_AS_F32) as f64 * TREE_BYTES_PAST_SAMPLE / per_cell
        }
        _ => rows as f64,
    }
}

/// Peak memory a job adds to the daemon, in bytes (an upper estimate).
pub fn estimate_bytes(shape: &Shape, types: &[ModelType], params: Option<&TrainParams>) -> u64 {
    let exclude = params.map(|p| p.exclude_sensors.as_slice()).unwrap_or(&[]);
    let sensors = shape.sensors_used(exclude) as u64;
    let columns = sensors * shape.columns_per_sensor as u64;
    // The tree models fit on at most max_train_rows training rows, plus validation rows in proportion.
    let fitted = params.map_or(shape.train_rows, |p| shape.train_rows.min(p.max_train_rows.saturating_mul(10) / 7));
    let rows = fitted as u64;
    let features = columns * FEATURES_PER_SENSOR + 1;
    // Quality best grows more candidates and deeper trees; more threads keep more histograms alive.
    let quality = match params.map(|p| p.quality) {
        Some(Quality::Best) => 1.3,
        _ => 1.0,
    };
    let threads = params.map_or(1, |p| p.threads.max(1)) as f64;
    let thread_factor = 1.0 + 0.05 * (threads - 1.0).min(8.0);
    // The table as loaded, and its copy on the grid when there is one. Readings going onto a grid are held
    // only until the grid is chosen, then aggregated as they stream in.
    let held = if shape.train_rows < shape.rows { shape.rows.min(STREAM_AFTER_ROWS) } else { shape.rows };
    let raw = held as u64 * (shape.sensors.len() as u64 + TABLE_COLUMNS_EXTRA) * 8;
    let gridded = if shape.train_rows < shape.rows { rows * (columns + TABLE_COLUMNS_EXTRA) * 8 } else { 0 };
    let table = raw + gridded;
    let model = types
        .iter()
        .map(|&t| {
            let (fixed, per_cell) = coefficients(t);
            fixed + (weighted_rows(t, rows, per_cell) * features as f64 * per_cell * quality * thread_factor) as u64
        })
        .max()
        .unwrap_or(0);
    table + model
}

/// Machine shapes by id, from the summaries the listing reads (shared with the API, so a folder is read once).
pub struct ShapeCache {
    summaries: Arc<Summaries>,
    grid: GridSetting,
}

impl ShapeCache {
    pub fn new(summaries: Arc<Summaries>, grid: GridSetting) -> ShapeCache {
        ShapeCache { summaries, grid }
    }

    /// None when the machine cannot be loaded: the runner then fails the job with the real error.
    pub fn shape(&self, machine: &str) -> Option<Shape> {
        let summary = self.summaries.get(machine).ok()?;
        Some(Shape::of_summary(&summary, &self.grid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(rows: usize, sensors: usize) -> Shape {
        Shape { rows, sensors: (0..sensors).map(|i| format!("s{i}")).collect(), train_rows: rows, columns_per_sensor: 1 }
    }

    #[test]
    fn a_machine_on_a_training_grid_is_sized_by_its_steps() {
        let raw = shape(1_200_000, 9);
        let gridded = Shape { train_rows: 20_000, columns_per_sensor: 2, ..raw.clone() };
        let (r, g) = (estimate_bytes(&raw, &ModelType::ALL, None), estimate_bytes(&gridded, &ModelType::ALL, None));
        // Only the readings before the grid is chosen are held raw; the models train on 60× fewer rows of
        // twice the columns.
        let held = STREAM_AFTER_ROWS as u64 * (9 + TABLE_COLUMNS_EXTRA) * 8;
        assert!(g > held && g < held + 100 * 1024 * 1024, "{g}");
        // Unthinned (no parameters), the raw rows past the binning sample still cost several times more.
        assert!(r > 3 * g, "{r} {g}");
    }

    #[test]
    fn a_shape_from_metadata_alone_finds_the_grid_the_loader_will() {
        let summary = |rows: usize, lives: usize, interval_s: f64| MachineSummary {
            id: "m".into(),
            name: "m".into(),
            family: String::new(),
            layout: "machine.toml".into(),
            rows,
            sensors: 2,
            sensor_names: vec!["a".into(), "b".into()],
            lives,
            has_label: false,
            has_rul: false,
            has_anomaly: false,
            interval_s,
            last_time: None,
        };
        // 10 million 1 s readings in one life: 116 days, onto 10 min steps (the day-scale floor fits the budget).
        let s = Shape::of_summary(&summary(10_000_000, 1, 1.0), &GridSetting::default());
        assert_eq!((s.rows, s.train_rows, s.columns_per_sensor), (10_000_000, 16_667, 2));
        // Hourly rows stay as they are.
        let s = Shape::of_summary(&summary(200_000, 10, 3600.0), &GridSetting::default());
        assert_eq!((s.train_rows, s.columns_per_sensor), (200_000, 1));
    }

    #[test]
    fn grows_with_rows_and_sensors_and_a_batch_costs_its_largest_model() {
        let small = estimate_bytes(&shape(10_000, 9), &[ModelType::Regression], None);
        let tall = estimate_bytes(&shape(100_000, 9), &[ModelType::Regression], None);
        let wide = estimate_bytes(&shape(10_000, 30), &[ModelType::Regression], None);
        assert!(tall > 3 * small && wide > small * 3 / 2, "{small} {tall} {wide}");
        let batch = estimate_bytes(&shape(50_000, 9), &ModelType::ALL, None);
        let trees = estimate_bytes(&shape(50_000, 9), &[ModelType::Regression], None);
        let forecast = estimate_bytes(&shape(50_000, 9), &[ModelType::Timeseries], None);
        assert_eq!(batch, trees);
        assert!(forecast < trees / 3);
    }

    #[test]
    fn excluded_sensors_and_quality_count() {
        let s = shape(50_000, 9);
        let base = TrainParams { threads: 1, ..TrainParams::default() };
        let fewer = TrainParams { exclude_sensors: vec!["s0".into(), "s1".into(), "s2".into()], ..base.clone() };
        let best = TrainParams { quality: Quality::Best, ..base.clone() };
        let t = [ModelType::Classification];
        assert!(estimate_bytes(&s, &t, Some(&fewer)) < estimate_bytes(&s, &t, Some(&base)));
        assert!(estimate_bytes(&s, &t, Some(&best)) > estimate_bytes(&s, &t, Some(&base)));
        // A million rows thinned to a quarter of a million cost about what those rows cost.
        let big = shape(1_000_000, 9);
        let thinned = TrainParams { max_train_rows: 250_000, ..base.clone() };
        let unthinned = TrainParams { max_train_rows: 100_000_000, ..base.clone() };
        assert!(estimate_bytes(&big, &t, Some(&thinned)) * 5 < estimate_bytes(&big, &t, Some(&unthinned)) * 3);
        // Past the 100,000 rows held as f32 for binning, a row costs its bins and its share of validation only.
        let at = |rows| estimate_bytes(&shape(rows, 9), &t, Some(&base)) as f64;
        let (below, past) = (at(100_000) - at(50_000), at(150_000) - at(100_000));
        assert!(past < below / 2.0 && past > below / 4.0, "{below} {past}");
    }
}
