//! Causal rolling-window features, computed by the same code at training and at prediction time.
//!
//! For each sensor the feature row of row `i` holds, in this order:
//! * the raw value of row `i` (if `spec.raw`),
//! * for every window `w` (in rows) and every stat: the stat over the last `w` rows of the same life
//!   ending at `i` (`{sensor}__{stat}_{w}`),
//!
//! followed by `time_in_life_h` (hours since the first row of the life) if `spec.time_in_life`.
//!
//! Rules the rest of millwright (and the README) rely on:
//! * **Causal.** A feature of row `i` only uses rows of the same life at or before `i`; a window never
//!   reaches into another life or into the future.
//! * **Missing values.** A NaN (or infinite) reading is skipped inside windows: stats are computed over
//!   the valid readings of the window. A window with no valid reading gives NaN. A raw NaN stays NaN (and a
//!   raw infinity becomes NaN): the gradient-boosted trees route missing values themselves, so nothing is
//!   imputed.
//! * **Start of a life.** The first rows of a life use the rows available (a window of row 3 covers rows
//!   0..=3), needing one valid reading.
//! * **Stats.** `mean`; `std` is the population standard deviation (0 for a single reading); `min`; `max`;
//!   `slope` is the least-squares slope of the valid readings against their row position, in units per
//!   hour at the nominal `interval_s` (0 for a single reading). Positions rather than timestamps are used so
//!   the prediction path, which only receives values, computes exactly the same number.
//! * **Identical at prediction time.** Every windowed stat is a deterministic function of the values inside
//!   the window only (see [`PowerSums`]), so [`features_for_last_row`] given the last
//!   [`FeatureSpec::min_rows`] rows reproduces the training feature row bit for bit. A prediction with less
//!   history than that is an error, never a zero-filled row.

use super::lengths::{LengthMismatch, check_len};
use crate::data::Table;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use thiserror::Error;

/// Nominal window lengths `for_table` aims for.
const TARGET_WINDOW_HOURS: [f64; 3] = [6.0, 24.0, 72.0];
/// Below 3 rows a std or slope says almost nothing.
const MIN_WINDOW_ROWS: usize = 3;
/// Caps memory and the history a prediction needs on high-rate data.
const MAX_WINDOW_ROWS: usize = 500;
/// When the table's interval is unusable, rows are treated as hours so windows are 6/24/72 rows.
const FALLBACK_INTERVAL_S: f64 = 3600.0;
const TIME_IN_LIFE_NAME: &str = "time_in_life_h";
/// Below this many (row × sensor) cells, spawning threads costs more than it saves.
const PARALLEL_MIN_CELLS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum FeatureError {
    #[error("unknown sensor `{0}`: the table has no such column")]
    UnknownSensor(String),
    #[error("too few rows for prediction: need {min_rows}, got {n}")]
    TooFewRows { min_rows: usize, n: usize },
    #[error("mismatched lengths: {what} has {got} values, expected {expected}")]
    LengthMismatch { what: String, expected: usize, got: usize },
    #[error("empty input: {0}")]
    Empty(String),
    #[error("row {row} is out of range: the table has {n_rows} rows")]
    RowOutOfRange { row: usize, n_rows: usize },
    #[error("rows must be strictly ascending: row {row} follows row {prev}")]
    UnsortedRows { prev: usize, row: usize },
    #[error("the spec includes time in life, so time_in_life_h must be given")]
    MissingTimeInLife,
    #[error("invalid feature spec: {0}")]
    InvalidSpec(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    Mean,
    Std,
    Min,
    Max,
    Slope,
}

impl Stat {
    pub const ALL: [Stat; 5] = [Stat::Mean, Stat::Std, Stat::Min, Stat::Max, Stat::Slope];

    pub fn name(self) -> &'static str {
        match self {
            Stat::Mean => "mean",
            Stat::Std => "std",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Slope => "slope",
        }
    }
}

/// Which features a model uses; saved with the model so prediction rebuilds exactly the same columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub sensors: Vec<String>,
    /// Window lengths in rows, ascending.
    pub windows: Vec<usize>,
    /// Span of each window in seconds (`rows × interval_s`), for display.
    pub window_seconds: Vec<f64>,
    pub stats: Vec<Stat>,
    /// Include the current value of each sensor.
    pub raw: bool,
    pub time_in_life: bool,
    /// Nominal seconds between rows; the unit of `slope` is per hour at this interval.
    pub interval_s: f64,
}

impl FeatureSpec {
    /// Windows of ~6 h, 24 h and 72 h in rows at the table's interval, clamped to [3, 500] rows and
    /// deduplicated. Windows longer than the median life are dropped (the data could never fill them), keeping
    /// at least one window of >= 3 rows. Sensors are all of the table's minus `exclude`, minus sensors that
    /// are constant (all valid readings equal, or none valid) on `fit_rows` (all rows when `fit_rows` is
    /// empty); those are returned so the report can warn.
    pub fn for_table(table: &Table, exclude: &[String], fit_rows: &[usize], time_in_life: bool) -> (FeatureSpec, Vec<String>) {
        let interval_s = usable_interval(table.interval_s);
        let windows = windows_for(interval_s, median_life_rows(table));
        let (sensors, dropped) = pick_sensors(table, exclude, fit_rows);
        let spec = FeatureSpec {
            sensors,
            window_seconds: windows.iter().map(|&w| w as f64 * interval_s).collect(),
            windows,
            stats: Stat::ALL.to_vec(),
            raw: true,
            time_in_life,
            interval_s,
        };
        (spec, dropped)
    }

    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.n_features());
        for sensor in &self.sensors {
            if self.raw {
                out.push(sensor.clone());
            }
            for w in &self.windows {
                for stat in &self.stats {
                    out.push(format!("{sensor}__{}_{w}", stat.name()));
                }
            }
        }
        if self.time_in_life {
            out.push(TIME_IN_LIFE_NAME.to_string());
        }
        out
    }

    pub fn n_features(&self) -> usize {
        self.sensors.len() * self.per_sensor() + usize::from(self.time_in_life)
    }

    /// Rows of history a prediction needs: the largest window (1 when there are none).
    pub fn min_rows(&self) -> usize {
        self.windows.iter().copied().max().unwrap_or(1).max(1)
    }

    fn per_sensor(&self) -> usize {
        usize::from(self.raw) + self.windows.len() * self.stats.len()
    }

    fn interval_hours(&self) -> f64 {
        usable_interval(self.interval_s) / 3600.0
    }

    /// A spec read back from a model file may have been edited by hand.
    fn validate(&self) -> Result<(), FeatureError> {
        if self.windows.contains(&0) {
            return Err(FeatureError::InvalidSpec("a window of 0 rows".into()));
        }
        if self.n_features() == 0 {
            return Err(FeatureError::InvalidSpec("the spec produces no features".into()));
        }
        Ok(())
    }
}

/// Column-major: the trainers read one feature across all rows at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMatrix {
    pub n_rows: usize,
    pub n_cols: usize,
    /// `data[col * n_rows + row]`
    pub data: Vec<f32>,
}

impl FeatureMatrix {
    #[cfg(test)]
    pub fn row(&self, row: usize) -> Vec<f32> {
        (0..self.n_cols).map(|c| self.data[c * self.n_rows + row]).collect()
    }
}

/// Feature matrix of `rows` (strictly ascending, any subset) of the table; see the module docs for the
/// rules. An empty `rows` gives a matrix with no rows.
pub fn features_for_rows(spec: &FeatureSpec, table: &Table, rows: &[usize]) -> Result<FeatureMatrix, FeatureError> {
    spec.validate()?;
    let n_table = table.n_rows();
    check_len("life", n_table, table.life.len())?;
    check_rows(rows, n_table)?;
    let columns = sensor_columns_of(spec, table)?;
    let runs = runs_for_rows(table, rows, spec.min_rows());
    let mut m = FeatureMatrix::zeros(rows.len(), spec.n_features());
    let time = spec.time_in_life.then(|| time_in_life_for_rows(table, rows));
    fill(spec, &columns, &runs, time.as_deref(), &mut m);
    Ok(m)
}

/// Feature row of the last row of `sensors` (the recent values of `spec.sensors[k]`, one run of consecutive
/// rows of one life, oldest first, at least `spec.min_rows()` long). `time_in_life_h` is that of the last
/// row. Equals bit for bit what [`features_for_rows`] computed for that row in training.
pub fn features_for_last_row(spec: &FeatureSpec, sensors: &[Vec<f64>], time_in_life_h: Option<f64>) -> Result<Vec<f32>, FeatureError> {
    let n = check_run(spec, sensors, time_in_life_h)?;
    // Windows only look `min_rows` back, so older history cannot change the result; skipping it saves work.
    let keep = spec.min_rows().min(n);
    let columns: Vec<&[f64]> = sensors.iter().map(|s| &s[n - keep..]).collect();
    let runs = [Run { start: 0, len: keep, emit: vec![(keep - 1, 0)] }];
    let time = time_in_life_h.filter(|_| spec.time_in_life).map(|t| vec![t as f32]);
    let mut m = FeatureMatrix::zeros(1, spec.n_features());
    fill(spec, &columns, &runs, time.as_deref(), &mut m);
    Ok(m.data)
}

/// Feature rows of every row of a run (same input as [`features_for_last_row`], with the time in life of
/// the FIRST row). Only the tests call it, to hold prediction-time features to training's bit for bit. The first `min_rows - 1` rows see truncated windows, exactly like the first rows of a
/// life; pass that much extra history and drop those rows when every row must match training. Time in life
/// of later rows is extrapolated at the nominal `interval_s`, since the run carries no timestamps.
#[cfg(test)]
pub fn features_for_run(
    spec: &FeatureSpec,
    sensors: &[Vec<f64>],
    start_time_in_life_h: Option<f64>,
) -> Result<FeatureMatrix, FeatureError> {
    let n = check_run(spec, sensors, start_time_in_life_h)?;
    let columns: Vec<&[f64]> = sensors.iter().map(|s| s.as_slice()).collect();
    let runs = [Run { start: 0, len: n, emit: (0..n).map(|i| (i, i)).collect() }];
    let step_h = spec.interval_hours();
    let time =
        start_time_in_life_h.filter(|_| spec.time_in_life).map(|t0| (0..n).map(|k| (t0 + k as f64 * step_h) as f32).collect::<Vec<_>>());
    let mut m = FeatureMatrix::zeros(n, spec.n_features());
    fill(spec, &columns, &runs, time.as_deref(), &mut m);
    Ok(m)
}

impl FeatureMatrix {
    fn zeros(n_rows: usize, n_cols: usize) -> Self {
        FeatureMatrix { n_rows, n_cols, data: vec![0.0; n_rows * n_cols] }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Choosing the spec

fn usable_interval(interval_s: f64) -> f64 {
    if interval_s.is_finite() && interval_s > 0.0 { interval_s } else { FALLBACK_INTERVAL_S }
}

fn median_life_rows(table: &Table) -> usize {
    let mut lens: Vec<usize> = table.life_ranges().into_iter().map(|(_, r)| r.len()).collect();
    if lens.is_empty() {
        return 0;
    }
    lens.sort_unstable();
    lens[(lens.len() - 1) / 2]
}

fn windows_for(interval_s: f64, median_life: usize) -> Vec<usize> {
    let mut windows: Vec<usize> =
        TARGET_WINDOW_HOURS.iter().map(|h| ((h * 3600.0 / interval_s).round() as usize).clamp(MIN_WINDOW_ROWS, MAX_WINDOW_ROWS)).collect();
    windows.sort_unstable();
    windows.dedup();
    let smallest = windows[0];
    windows.retain(|&w| w <= median_life);
    if windows.is_empty() {
        // Short lives still deserve some smoothing; a window a life cannot fill is truncated like at its start.
        windows.push(median_life.clamp(MIN_WINDOW_ROWS, smallest));
    }
    windows
}

fn pick_sensors(table: &Table, exclude: &[String], fit_rows: &[usize]) -> (Vec<String>, Vec<String>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for sensor in table.sensors.iter().filter(|s| !exclude.contains(&s.name)) {
        if is_constant(&sensor.values, fit_rows) {
            dropped.push(sensor.name.clone());
        } else {
            kept.push(sensor.name.clone());
        }
    }
    (kept, dropped)
}

/// A sensor with a single value (or none) on the fitting rows cannot inform a model, only add noise columns.
fn is_constant(values: &[f64], fit_rows: &[usize]) -> bool {
    let mut first: Option<f64> = None;
    let mut check = |v: f64| {
        if !v.is_finite() {
            return true;
        }
        match first {
            None => {
                first = Some(v);
                true
            }
            Some(f) => f == v,
        }
    };
    if fit_rows.is_empty() { values.iter().all(|&v| check(v)) } else { fit_rows.iter().filter_map(|&r| values.get(r)).all(|&v| check(v)) }
}

// ---------------------------------------------------------------------------------------------------------
// Input checks

impl From<LengthMismatch> for FeatureError {
    fn from(LengthMismatch { what, expected, got }: LengthMismatch) -> Self {
        FeatureError::LengthMismatch { what, expected, got }
    }
}

fn check_rows(rows: &[usize], n_rows: usize) -> Result<(), FeatureError> {
    for (k, &row) in rows.iter().enumerate() {
        if row >= n_rows {
            return Err(FeatureError::RowOutOfRange { row, n_rows });
        }
        if k > 0 && rows[k - 1] >= row {
            return Err(FeatureError::UnsortedRows { prev: rows[k - 1], row });
        }
    }
    Ok(())
}

fn sensor_columns_of<'t>(spec: &FeatureSpec, table: &'t Table) -> Result<Vec<&'t [f64]>, FeatureError> {
    spec.sensors
        .iter()
        .map(|name| {
            let sensor = table.sensor(name).ok_or_else(|| FeatureError::UnknownSensor(name.clone()))?;
            check_len(&format!("sensor `{name}`"), table.n_rows(), sensor.values.len())?;
            Ok(sensor.values.as_slice())
        })
        .collect()
}

/// Validates a prediction-time run and returns its length.
fn check_run(spec: &FeatureSpec, sensors: &[Vec<f64>], time_h: Option<f64>) -> Result<usize, FeatureError> {
    spec.validate()?;
    check_len("sensors", spec.sensors.len(), sensors.len())?;
    if spec.time_in_life && time_h.is_none() {
        return Err(FeatureError::MissingTimeInLife);
    }
    let Some(first) = sensors.first() else {
        // Only time in life: there is no history to need.
        return Ok(1);
    };
    let n = first.len();
    for (name, values) in spec.sensors.iter().zip(sensors) {
        check_len(&format!("sensor `{name}`"), n, values.len())?;
    }
    if n == 0 {
        return Err(FeatureError::Empty("no rows of sensor history".into()));
    }
    if n < spec.min_rows() {
        return Err(FeatureError::TooFewRows { min_rows: spec.min_rows(), n });
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------------------
// Computing

/// A contiguous stretch of one life (`start..start+len` in the caller's sensor slices) and the positions in it
/// whose features are wanted, as `(position in run, output row)`.
struct Run {
    start: usize,
    len: usize,
    emit: Vec<(usize, usize)>,
}

/// Groups the wanted rows by life. A run starts `warmup - 1` rows before its first wanted row (or at the life
/// start): windows never look further back, so older rows would be computed for nothing.
fn runs_for_rows(table: &Table, rows: &[usize], warmup: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut next = 0;
    for (_, range) in table.life_ranges() {
        let first = next;
        while next < rows.len() && rows[next] < range.end {
            next += 1;
        }
        if first == next {
            continue;
        }
        let start = rows[first].saturating_sub(warmup - 1).max(range.start);
        let end = rows[next - 1] + 1;
        let emit = (first..next).map(|k| (rows[k] - start, k)).collect();
        runs.push(Run { start, len: end - start, emit });
    }
    runs
}

fn time_in_life_for_rows(table: &Table, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len());
    let mut next = 0;
    for (_, range) in table.life_ranges() {
        let t0 = table.timestamps[range.start];
        while next < rows.len() && rows[next] < range.end {
            out.push(((table.timestamps[rows[next]] - t0) / 3600.0) as f32);
            next += 1;
        }
    }
    out
}

/// Writes all sensor columns (in parallel over sensors when the work is large) and the time column.
fn fill(spec: &FeatureSpec, columns: &[&[f64]], runs: &[Run], time: Option<&[f32]>, m: &mut FeatureMatrix) {
    let n_rows = m.n_rows;
    let block = spec.per_sensor() * n_rows;
    let (sensor_part, time_part) = m.data.split_at_mut(block * columns.len());
    if let Some(t) = time {
        time_part.copy_from_slice(t);
    }
    if block == 0 {
        return;
    }
    let mut jobs: Vec<(&[f64], &mut [f32])> = columns.iter().copied().zip(sensor_part.chunks_mut(block)).collect();
    let work: usize = runs.iter().map(|r| r.len).sum::<usize>() * columns.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len());
    if threads <= 1 || work < PARALLEL_MIN_CELLS {
        run_jobs(spec, runs, n_rows, &mut jobs);
        return;
    }
    let per_thread = jobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for group in jobs.chunks_mut(per_thread) {
            scope.spawn(move || run_jobs(spec, runs, n_rows, group));
        }
    });
}

fn run_jobs(spec: &FeatureSpec, runs: &[Run], n_rows: usize, jobs: &mut [(&[f64], &mut [f32])]) {
    let mut scratch = Scratch::default();
    for (values, out) in jobs.iter_mut() {
        for run in runs {
            let ys = &values[run.start..run.start + run.len];
            sensor_features(spec, ys, &run.emit, out, n_rows, &mut scratch);
        }
    }
}

/// Buffers reused across sensors and runs of one thread.
#[derive(Default)]
struct Scratch {
    sums: PowerSums,
    min_q: VecDeque<usize>,
    max_q: VecDeque<usize>,
}

/// The features of one sensor over one run, written to `out` (this sensor's block of columns).
fn sensor_features(spec: &FeatureSpec, ys: &[f64], emit: &[(usize, usize)], out: &mut [f32], n_rows: usize, scratch: &mut Scratch) {
    let mut col = 0;
    if spec.raw {
        for &(pos, row) in emit {
            out[row] = if ys[pos].is_finite() { ys[pos] as f32 } else { f32::NAN };
        }
        col = 1;
    }
    if spec.windows.is_empty() || spec.stats.is_empty() {
        return;
    }
    let needs_sums = spec.stats.iter().any(|s| matches!(s, Stat::Mean | Stat::Std | Stat::Slope));
    if needs_sums {
        scratch.sums.build(ys, spec.min_rows());
    }
    let ctx = WindowCtx { stats: &spec.stats, ys, emit, n_rows, interval_h: spec.interval_hours(), needs_sums };
    for &w in &spec.windows {
        let cols = &mut out[col * n_rows..(col + spec.stats.len()) * n_rows];
        window_features(&ctx, w, cols, scratch);
        col += spec.stats.len();
    }
}

/// What every window of one sensor's run shares.
struct WindowCtx<'a> {
    stats: &'a [Stat],
    ys: &'a [f64],
    emit: &'a [(usize, usize)],
    n_rows: usize,
    interval_h: f64,
    /// False when no stat reads the sums, which are then not built for this run.
    needs_sums: bool,
}

/// One window's stats for every emitted position. Min/max come from monotonic deques (exact, so history
/// cannot perturb them); mean/std/slope from [`PowerSums`].
fn window_features(ctx: &WindowCtx, w: usize, cols: &mut [f32], scratch: &mut Scratch) {
    let WindowCtx { stats, ys, emit, n_rows, interval_h, needs_sums } = *ctx;
    let Scratch { sums, min_q, max_q } = scratch;
    min_q.clear();
    max_q.clear();
    let mut next = emit.iter().peekable();
    for (pos, &y) in ys.iter().enumerate() {
        let Some(&&(want, row)) = next.peek() else {
            break;
        };
        push_monotonic(min_q, ys, pos, y, |new, old| new <= old);
        push_monotonic(max_q, ys, pos, y, |new, old| new >= old);
        let lo = (pos + 1).saturating_sub(w);
        evict_before(min_q, lo);
        evict_before(max_q, lo);
        if pos != want {
            continue;
        }
        next.next();
        // An empty min deque means no valid reading in the window, so every stat is NaN.
        let moments = if needs_sums && !min_q.is_empty() { sums.window(lo, pos + 1) } else { Moments::default() };
        for (k, stat) in stats.iter().enumerate() {
            let v = match stat {
                Stat::Mean => moments.mean(),
                Stat::Std => moments.std(),
                Stat::Slope => moments.slope_per_row() / interval_h,
                Stat::Min => min_q.front().map_or(f64::NAN, |&i| ys[i]),
                Stat::Max => max_q.front().map_or(f64::NAN, |&i| ys[i]),
            };
            cols[k * n_rows + row] = v as f32;
        }
    }
}

/// Keeps the deque's values monotonic so its front is the window's extreme; missing readings never enter.
fn push_monotonic(q: &mut VecDeque<usize>, ys: &[f64], pos: usize, y: f64, dominates: impl Fn(f64, f64) -> bool) {
    if !y.is_finite() {
        return;
    }
    while q.back().is_some_and(|&b| dominates(y, ys[b])) {
        q.pop_back();
    }
    q.push_back(pos);
}

fn evict_before(q: &mut VecDeque<usize>, lo: usize) {
    while q.front().is_some_and(|&f| f < lo) {
        q.pop_front();
    }
}

/// Sums over the valid readings of a stretch, with positions `t` counted from the stretch's first row:
/// count, Σt, Σt², Σy, Σy², Σt·y.
#[derive(Clone, Copy, Default, Debug)]
struct Moments {
    c: f64,
    x: f64,
    x2: f64,
    s: f64,
    q: f64,
    t: f64,
}

impl Moments {
    fn of(y: f64) -> Self {
        if y.is_finite() { Moments { c: 1.0, x: 0.0, x2: 0.0, s: y, q: y * y, t: 0.0 } } else { Moments::default() }
    }

    /// `self` followed by `right`, which starts `offset` rows later; positions of `right` are re-based.
    fn then(self, right: Moments, offset: f64) -> Moments {
        Moments {
            c: self.c + right.c,
            x: self.x + (offset * right.c + right.x),
            x2: self.x2 + (offset * offset * right.c + 2.0 * offset * right.x + right.x2),
            s: self.s + right.s,
            q: self.q + right.q,
            t: self.t + (offset * right.s + right.t),
        }
    }

    fn mean(&self) -> f64 {
        if self.c == 0.0 { f64::NAN } else { self.s / self.c }
    }

    fn std(&self) -> f64 {
        if self.c == 0.0 {
            return f64::NAN;
        }
        // Rounding can push a tiny variance below zero.
        ((self.q - self.s * self.mean()) / self.c).max(0.0).sqrt()
    }

    fn slope_per_row(&self) -> f64 {
        if self.c == 0.0 {
            return f64::NAN;
        }
        let x_mean = self.x / self.c;
        let sxx = self.x2 - self.x * x_mean;
        if self.c < 2.0 || sxx <= 0.0 {
            return 0.0;
        }
        (self.t - x_mean * self.s) / sxx
    }
}

/// Window sums that depend only on the values inside the window, never on the rows before it.
///
/// Plain running sums (add the new row, subtract the leaving one) carry the rounding of every row they ever
/// saw, so the prediction path, which starts from the recent rows only, would differ in the last bits and
/// occasionally flip an f32. Instead, level `k` holds the moments of the `2^k` consecutive rows starting at
/// each row, each built from two blocks of level `k-1` in a fixed order; a window of length `L` is the blocks
/// of `L`'s binary digits laid end to end from the window start. Each window then costs at most log2(L)
/// combines and the result is a function of the window's values alone: O(rows × log(max window)) per sensor
/// (about 9 levels for a 500-row window; memory 48 bytes × rows × levels for the longest life, per thread).
#[derive(Default)]
struct PowerSums {
    levels: Vec<Vec<Moments>>,
}

impl PowerSums {
    fn build(&mut self, ys: &[f64], max_window: usize) {
        let n_levels = (usize::BITS - max_window.leading_zeros()) as usize;
        self.levels.resize_with(n_levels.max(1), Vec::new);
        let base = &mut self.levels[0];
        base.clear();
        base.extend(ys.iter().map(|&y| Moments::of(y)));
        for k in 1..self.levels.len() {
            let half = 1usize << (k - 1);
            let (done, rest) = self.levels.split_at_mut(k);
            let prev = &done[k - 1];
            let cur = &mut rest[0];
            cur.clear();
            let len = prev.len().saturating_sub(half);
            cur.extend((0..len).map(|a| prev[a].then(prev[a + half], half as f64)));
        }
    }

    /// Moments of rows `lo..hi`.
    fn window(&self, lo: usize, hi: usize) -> Moments {
        let len = hi - lo;
        let mut acc = Moments::default();
        let mut offset = 0usize;
        for k in (0..self.levels.len()).rev() {
            if len & (1 << k) != 0 {
                acc = acc.then(self.levels[k][lo + offset], offset as f64);
                offset += 1 << k;
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Layout, MachineMeta, Sensor, SplitHint};
    use crate::util::rng::Rng;

    fn table(lives: &[usize], n_sensors: usize, interval_s: f64, seed: u64) -> Table {
        let mut rng = Rng::new(seed);
        let n: usize = lives.iter().sum();
        let mut life = Vec::with_capacity(n);
        let mut timestamps = Vec::with_capacity(n);
        for (id, &len) in lives.iter().enumerate() {
            for k in 0..len {
                life.push(id as u32);
                timestamps.push(1.0e9 + id as f64 * 1.0e7 + k as f64 * interval_s);
            }
        }
        let sensors = (0..n_sensors)
            .map(|s| Sensor {
                name: format!("s{s}"),
                unit: String::new(),
                values: (0..n).map(|i| 100.0 * s as f64 + (i % 97) as f64 * 0.1 + rng.normal()).collect(),
            })
            .collect();
        Table {
            machine_id: "m".into(),
            meta: MachineMeta::default(),
            layout: Layout::Described,
            sources: vec![],
            timestamps,
            life,
            lives_known: true,
            given_split: None,
            sensors,
            label: None,
            rul: None,
            anomaly: None,
            interval_s,
            split_hint: SplitHint::default(),
            rul_cap_hint: None,
            grid: None,
        }
    }

    fn spec_for(t: &Table) -> FeatureSpec {
        FeatureSpec::for_table(t, &[], &[], true).0
    }

    fn all_rows(t: &Table) -> Vec<usize> {
        (0..t.n_rows()).collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Reference: each stat computed directly from the window's valid values.
    fn naive(ys: &[f64], w: usize, stat: Stat, interval_h: f64) -> f64 {
        let lo = ys.len().saturating_sub(w);
        let pts: Vec<(f64, f64)> = ys[lo..].iter().enumerate().filter(|(_, y)| y.is_finite()).map(|(t, &y)| (t as f64, y)).collect();
        if pts.is_empty() {
            return f64::NAN;
        }
        let n = pts.len() as f64;
        let mean = pts.iter().map(|p| p.1).sum::<f64>() / n;
        match stat {
            Stat::Mean => mean,
            Stat::Std => (pts.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / n).sqrt(),
            Stat::Min => pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
            Stat::Max => pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
            Stat::Slope => {
                let xm = pts.iter().map(|p| p.0).sum::<f64>() / n;
                let sxx: f64 = pts.iter().map(|p| (p.0 - xm).powi(2)).sum();
                if sxx == 0.0 { 0.0 } else { pts.iter().map(|p| (p.0 - xm) * (p.1 - mean)).sum::<f64>() / sxx / interval_h }
            }
        }
    }

    #[test]
    fn windows_for_hourly_data_are_6_24_72() {
        let t = table(&[300, 300], 2, 3600.0, 1);
        let spec = spec_for(&t);
        assert_eq!(spec.windows, vec![6, 24, 72]);
        assert_eq!(spec.window_seconds, vec![6.0 * 3600.0, 24.0 * 3600.0, 72.0 * 3600.0]);
        assert_eq!(spec.min_rows(), 72);
    }

    #[test]
    fn windows_for_one_second_data_clamp_to_500() {
        let t = table(&[2000], 1, 1.0, 1);
        assert_eq!(spec_for(&t).windows, vec![500]);
        // 10-minute data: 36, 144, 432 rows.
        let t = table(&[2000], 1, 600.0, 1);
        assert_eq!(spec_for(&t).windows, vec![36, 144, 432]);
    }

    #[test]
    fn windows_longer_than_lives_are_dropped_but_one_stays() {
        let t = table(&[50, 40, 60], 1, 3600.0, 1);
        assert_eq!(spec_for(&t).windows, vec![6, 24]);
        let t = table(&[4, 5, 5], 1, 3600.0, 1);
        assert_eq!(spec_for(&t).windows, vec![5]);
        let t = table(&[2, 2], 1, 3600.0, 1);
        assert_eq!(spec_for(&t).windows, vec![3]);
        let mut t = table(&[100], 1, f64::NAN, 1);
        t.interval_s = 0.0;
        let spec = spec_for(&t);
        assert_eq!((spec.windows, spec.interval_s), (vec![6, 24, 72], 3600.0));
    }

    #[test]
    fn constant_and_excluded_sensors_are_dropped() {
        let mut t = table(&[100], 4, 3600.0, 1);
        t.sensors[1].values.iter_mut().for_each(|v| *v = 7.0);
        t.sensors[1].values[3] = f64::NAN;
        t.sensors[2].values.iter_mut().for_each(|v| *v = f64::NAN);
        // Varies only outside the fitting rows: constant for the model.
        t.sensors[3].values.iter_mut().enumerate().for_each(|(i, v)| *v = if i < 50 { 1.0 } else { i as f64 });
        let fit: Vec<usize> = (0..50).collect();
        let (spec, dropped) = FeatureSpec::for_table(&t, &["s0".to_string()], &fit, false);
        assert!(spec.sensors.is_empty());
        assert_eq!(dropped, vec!["s1", "s2", "s3"]);
        let (spec, dropped) = FeatureSpec::for_table(&t, &[], &[], false);
        assert_eq!(spec.sensors, vec!["s0", "s3"]);
        assert_eq!(dropped, vec!["s1", "s2"]);
    }

    #[test]
    fn names_match_n_features_and_layout() {
        let t = table(&[300], 2, 3600.0, 1);
        let spec = spec_for(&t);
        let names = spec.names();
        assert_eq!(names.len(), spec.n_features());
        assert_eq!(names[0], "s0");
        assert_eq!(names[1], "s0__mean_6");
        assert_eq!(names[5], "s0__slope_6");
        assert_eq!(names[6], "s0__mean_24");
        assert_eq!(names[16], "s1");
        assert_eq!(names.last().map(String::as_str), Some("time_in_life_h"));
        let m = features_for_rows(&spec, &t, &all_rows(&t)).unwrap();
        assert_eq!((m.n_rows, m.n_cols), (300, names.len()));
    }

    #[test]
    fn stats_match_a_direct_computation() {
        let mut t = table(&[150, 120], 1, 1800.0, 3);
        for i in [0, 5, 6, 7, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 151] {
            t.sensors[0].values[i] = f64::NAN;
        }
        let spec = spec_for(&t);
        let m = features_for_rows(&spec, &t, &all_rows(&t)).unwrap();
        let interval_h = 0.5;
        for (_, range) in t.life_ranges() {
            for i in range.clone() {
                let hist = &t.sensors[0].values[range.start..=i];
                let mut col = 1;
                for &w in &spec.windows {
                    for &stat in &spec.stats {
                        let want = naive(hist, w, stat, interval_h);
                        let got = m.data[col * m.n_rows + i] as f64;
                        let tol = 1e-4 * (1.0 + want.abs());
                        assert!(
                            (want.is_nan() && got.is_nan()) || (want - got).abs() <= tol,
                            "row {i} w {w} {stat:?}: want {want} got {got}"
                        );
                        col += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn nan_handling() {
        let mut t = table(&[20], 1, 3600.0, 1);
        let v = &mut t.sensors[0].values;
        for x in v.iter_mut() {
            *x = 1.0;
        }
        v[0] = 5.0;
        v[1..8].iter_mut().for_each(|x| *x = f64::NAN);
        v[8] = 3.0;
        v[9] = f64::INFINITY;
        let spec = FeatureSpec {
            sensors: vec!["s0".into()],
            windows: vec![3],
            window_seconds: vec![3.0 * 3600.0],
            stats: Stat::ALL.to_vec(),
            raw: true,
            time_in_life: false,
            interval_s: 3600.0,
        };
        let m = features_for_rows(&spec, &t, &all_rows(&t)).unwrap();
        // Raw NaN stays NaN, raw infinity becomes NaN.
        assert!(m.row(1)[0].is_nan() && m.row(9)[0].is_nan());
        // Row 2: window rows 0..=2 holds one valid value (5): mean 5, std 0, min = max = 5, slope 0.
        assert_eq!(&m.row(2)[1..], &[5.0, 0.0, 5.0, 5.0, 0.0]);
        // Row 5: no valid value in rows 3..=5: every stat is NaN.
        assert!(m.row(5)[1..].iter().all(|x| x.is_nan()));
        // Row 10: rows 8 (3.0), 9 (inf → missing), 10 (1.0): slope over positions 0 and 2 = -1 per row.
        assert_eq!(&m.row(10)[1..], &[2.0, 1.0, 1.0, 3.0, -1.0]);
    }

    #[test]
    fn features_are_causal_within_a_life_and_isolated_between_lives() {
        let t = table(&[200, 150, 180], 3, 3600.0, 5);
        let spec = spec_for(&t);
        let rows = all_rows(&t);
        let base = features_for_rows(&spec, &t, &rows).unwrap();
        let rows_equal = |m: &FeatureMatrix, range: std::ops::Range<usize>| range.clone().all(|i| bits(&base.row(i)) == bits(&m.row(i)));
        // A future row of life 1 (rows 200..350).
        let mut future = t.clone();
        future.sensors.iter_mut().for_each(|s| s.values[300] += 1000.0);
        let m = features_for_rows(&spec, &future, &rows).unwrap();
        assert!(rows_equal(&m, 0..300));
        assert!(!rows_equal(&m, 300..301));
        // Every row of the other lives, including the ones just before life 1 starts.
        let mut others = t.clone();
        for s in &mut others.sensors {
            let (head, tail) = s.values.split_at_mut(350);
            head[..200].iter_mut().chain(tail).for_each(|v| *v = -3.0 * *v + 17.0);
        }
        let m = features_for_rows(&spec, &others, &rows).unwrap();
        assert!(rows_equal(&m, 200..350));
        assert!(!rows_equal(&m, 0..1) && !rows_equal(&m, 350..351));
    }

    #[test]
    fn subsets_of_rows_match_the_full_matrix() {
        let t = table(&[200, 150, 180], 2, 3600.0, 7);
        let spec = spec_for(&t);
        let full = features_for_rows(&spec, &t, &all_rows(&t)).unwrap();
        let subset = vec![0, 3, 150, 199, 200, 320, 400, 529];
        let m = features_for_rows(&spec, &t, &subset).unwrap();
        for (k, &i) in subset.iter().enumerate() {
            assert_eq!(bits(&m.row(k)), bits(&full.row(i)), "row {i}");
        }
        let empty = features_for_rows(&spec, &t, &[]).unwrap();
        assert_eq!((empty.n_rows, empty.n_cols), (0, spec.n_features()));
    }

    #[test]
    fn last_row_and_run_paths_equal_training_bit_for_bit() {
        let mut t = table(&[400, 300], 3, 3600.0, 11);
        t.sensors[1].values[350] = f64::NAN;
        t.sensors[2].values.iter_mut().skip(360).step_by(3).for_each(|v| *v = f64::NAN);
        let spec = spec_for(&t);
        let full = features_for_rows(&spec, &t, &all_rows(&t)).unwrap();
        let w = spec.min_rows();
        for last in [w - 1 + 400, 500, 699, w - 1, 399] {
            let life_start = if last >= 400 { 400 } else { 0 };
            let available = last + 1 - life_start;
            for history in [w, w + 17, available].into_iter().filter(|&h| h <= available) {
                let lo = last + 1 - history;
                let sensors: Vec<Vec<f64>> = t.sensors.iter().map(|s| s.values[lo..=last].to_vec()).collect();
                let hours = (t.timestamps[last] - t.timestamps[life_start]) / 3600.0;
                let row = features_for_last_row(&spec, &sensors, Some(hours)).unwrap();
                assert_eq!(bits(&row), bits(&full.row(last)), "last {last} history {history}");
                let run = features_for_run(&spec, &sensors, Some(hours - (history - 1) as f64)).unwrap();
                assert_eq!(bits(&run.row(history - 1)), bits(&full.row(last)));
            }
        }
        // A run starting at the life start matches training on every row.
        let sensors: Vec<Vec<f64>> = t.sensors.iter().map(|s| s.values[400..700].to_vec()).collect();
        let run = features_for_run(&spec, &sensors, Some(0.0)).unwrap();
        for k in 0..300 {
            assert_eq!(bits(&run.row(k)), bits(&full.row(400 + k)), "run row {k}");
        }
    }

    #[test]
    fn prediction_errors_are_explicit() {
        let t = table(&[300], 2, 3600.0, 1);
        let spec = spec_for(&t);
        let short = vec![vec![1.0; 71], vec![1.0; 71]];
        let err = features_for_last_row(&spec, &short, Some(1.0)).unwrap_err();
        assert_eq!(err, FeatureError::TooFewRows { min_rows: 72, n: 71 });
        assert_eq!(err.to_string(), "too few rows for prediction: need 72, got 71");
        assert!(matches!(features_for_run(&spec, &short, Some(1.0)), Err(FeatureError::TooFewRows { .. })));
        let ok = vec![vec![1.0; 72], vec![1.0; 72]];
        assert!(matches!(features_for_last_row(&spec, &ok, None), Err(FeatureError::MissingTimeInLife)));
        assert!(matches!(features_for_last_row(&spec, &[vec![1.0; 72]], Some(1.0)), Err(FeatureError::LengthMismatch { .. })));
        assert!(matches!(
            features_for_last_row(&spec, &[vec![1.0; 72], vec![1.0; 73]], Some(1.0)),
            Err(FeatureError::LengthMismatch { .. })
        ));
        assert!(matches!(features_for_last_row(&spec, &[vec![], vec![]], Some(1.0)), Err(FeatureError::Empty(_))));
        let mut unknown = spec.clone();
        unknown.sensors.push("nope".into());
        assert_eq!(features_for_rows(&unknown, &t, &[0]).unwrap_err(), FeatureError::UnknownSensor("nope".into()));
        assert!(matches!(features_for_rows(&spec, &t, &[3, 2]), Err(FeatureError::UnsortedRows { .. })));
        assert!(matches!(features_for_rows(&spec, &t, &[300]), Err(FeatureError::RowOutOfRange { .. })));
    }

    #[test]
    fn spec_round_trips_through_json() {
        let t = table(&[300], 2, 3600.0, 1);
        let spec = spec_for(&t);
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains("\"mean\""));
        let back: FeatureSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn fifty_thousand_rows_by_ten_sensors_is_fast() {
        let t = table(&[10_000; 5], 10, 3600.0, 9);
        let spec = spec_for(&t);
        assert_eq!(spec.n_features(), 10 * 16 + 1);
        let rows = all_rows(&t);
        let start = std::time::Instant::now();
        let m = features_for_rows(&spec, &t, &rows).unwrap();
        let hourly = start.elapsed();
        let mut fast = t.clone();
        fast.interval_s = 60.0; // windows 360, 500: the widest case
        let spec_fast = spec_for(&fast);
        let start = std::time::Instant::now();
        let _ = features_for_rows(&spec_fast, &fast, &rows).unwrap();
        let minutely = start.elapsed();
        eprintln!("features 50000 x 10 sensors: hourly windows {hourly:?}, 1-minute windows {minutely:?}");
        assert_eq!(m.data.len(), 50_000 * 161);
        if !cfg!(debug_assertions) {
            assert!(hourly.as_secs_f64() < 0.5 && minutely.as_secs_f64() < 0.5);
        }
    }
}
