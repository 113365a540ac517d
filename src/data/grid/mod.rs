//! Readings finer than the training grid, put onto it: a sensor's readings within one grid step become one
//! row (their mean, plus the spread or extremes the setting asks for), so that feature windows mean hours
//! and days at any sampling rate and a long 1 s history trains on a bounded number of rows. Steps are
//! aligned to the epoch, so a live reading lands in the step a training reading at the same time did, and
//! training, the per-row export and live answers aggregate with the same code.
pub(super) mod spec;

use super::error::DataError;
use super::table::{Sensor, Split, Table};
pub use spec::{Grid, GridStat, GridSummary, column_stat, source_sensor};
use std::collections::BTreeMap;
use std::ops::Range;

/// `data.grid`: when readings are put onto a coarser grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GridChoice {
    /// Only a machine with more rows than the budget, onto the finest step that fits it.
    Auto,
    Off,
    /// Onto this step (seconds) whenever the data is finer.
    Every(f64),
}

impl GridChoice {
    /// `"auto"`, `"off"` or a duration such as `"1 min"`, `"10 min"`, `"30 s"`.
    pub fn parse(text: &str) -> Result<GridChoice, String> {
        match text.trim() {
            "auto" => Ok(GridChoice::Auto),
            "off" | "none" => Ok(GridChoice::Off),
            other => match super::describe::parse_duration(other) {
                Some(s) if (1.0..=86_400.0).contains(&s) => Ok(GridChoice::Every(s)),
                _ => Err(format!(
                    "{text:?} is not a grid: write \"auto\", \"off\" or a step between 1 s and 1 d, e.g. \"1 min\" or \"10 min\""
                )),
            },
        }
    }
}

/// The configured grid policy (`[data]` grid, grid_rows, grid_stats).
#[derive(Clone, Debug, PartialEq)]
pub struct GridSetting {
    pub choice: GridChoice,
    /// `Auto` leaves a machine with at most this many rows as it is.
    pub max_rows: usize,
    pub stats: Vec<GridStat>,
}

/// A list of step statistics must keep the mean: it is the column that keeps the sensor's name, which the
/// models and every prediction request use. The config and the command line both refuse a list without it.
pub fn check_stats(stats: &[GridStat]) -> Result<(), &'static str> {
    if stats.contains(&GridStat::Mean) {
        Ok(())
    } else {
        Err("must include \"mean\" (the column that keeps the sensor's name); add any of \"min\", \"max\", \"std\", \"last\", \"count\"")
    }
}

impl Default for GridSetting {
    fn default() -> Self {
        GridSetting { choice: GridChoice::Auto, max_rows: 100_000, stats: vec![GridStat::Mean, GridStat::Std] }
    }
}

/// Steps `Auto` chooses from: the first that brings the rows under the budget. Hourly data is never made
/// coarser: past an hour a step hides the hours before a failure (many rows are subsampled instead).
const STEPS_S: [f64; 13] = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0];
/// Feature windows reach 72 h in at most 500 rows from a 10 min step on; lives that long get at least it.
const DAY_SCALE_STEP_S: f64 = 600.0;
const DAY_SCALE_LIFE_S: f64 = 72.0 * 3600.0;

/// What the grid choice looks at: a whole table, or a loader's first rows scaled up to the rows expected.
pub struct Extent<'a> {
    pub rows: usize,
    pub interval_s: f64,
    pub median_life_s: f64,
    /// Rows the data would have on a step.
    pub steps_on: &'a dyn Fn(f64) -> usize,
    /// True when the figures are estimated from the first rows (the reason then says "about").
    pub estimated: bool,
}

impl GridSetting {
    /// The grid this table should train on, with the reason in words; `None` keeps the rows as they are.
    pub fn grid_for(&self, table: &Table) -> Option<(Grid, String)> {
        let steps = |s: f64| steps_on(table, s);
        self.grid_for_extent(&Extent {
            rows: table.n_rows(),
            interval_s: table.interval_s,
            median_life_s: median_life_span(table),
            steps_on: &steps,
            estimated: false,
        })
    }

    /// The grid for a loader that has read `prefix` of about `expected_rows` rows: its steps and life spans
    /// are scaled by the rows still to come (a life still running in the prefix is assumed to run on).
    pub fn grid_for_prefix(&self, prefix: &Table, expected_rows: usize) -> Option<(Grid, String)> {
        let scale = expected_rows.max(prefix.n_rows()) as f64 / prefix.n_rows().max(1) as f64;
        let steps = |s: f64| (steps_on(prefix, s) as f64 * scale).ceil() as usize;
        let lives = prefix.life_ranges();
        let span = if lives.len() == 1 { median_life_span(prefix) * scale } else { median_life_span(prefix) };
        self.grid_for_extent(&Extent {
            rows: expected_rows.max(prefix.n_rows()),
            interval_s: prefix.interval_s,
            median_life_s: span,
            steps_on: &steps,
            estimated: true,
        })
    }

    pub fn grid_for_extent(&self, e: &Extent) -> Option<(Grid, String)> {
        let interval = e.interval_s;
        if !(interval.is_finite() && interval > 0.0) {
            return None;
        }
        let about = if e.estimated { "about " } else { "" };
        let finer = |step: f64| interval < step * 0.999;
        // Averaging fewer than two readings a step would change the data without shrinking it.
        let worth_it = |step: f64| interval * 2.0 <= step * 1.001;
        let step = match self.choice {
            GridChoice::Off => return None,
            GridChoice::Every(step) => {
                let why = format!(
                    "{about}{} readings at {} aggregated onto {} steps (data.grid = {})",
                    e.rows,
                    describe_step(interval),
                    describe_step(step),
                    describe_step(step)
                );
                return finer(step).then(|| (self.grid(step), why));
            }
            GridChoice::Auto if e.rows <= self.max_rows => return None,
            GridChoice::Auto => {
                let floor = if e.median_life_s >= DAY_SCALE_LIFE_S { DAY_SCALE_STEP_S } else { 0.0 };
                let mut steps = STEPS_S.iter().copied().filter(|&s| worth_it(s) && s >= floor);
                let first = steps.clone().next()?;
                steps.find(|&s| (e.steps_on)(s) <= self.max_rows).unwrap_or(STEPS_S[STEPS_S.len() - 1].max(first))
            }
        };
        let why = format!(
            "{about}{} readings at {} aggregated onto {} steps (more than data.grid_rows = {})",
            e.rows,
            describe_step(interval),
            describe_step(step),
            self.max_rows
        );
        Some((self.grid(step), why))
    }

    /// Rows the models would train on and the columns each sensor would become, without aggregating: what the
    /// resource guard sizes a job by.
    pub fn trained_shape(&self, table: &Table) -> (usize, usize) {
        match self.grid_for(table) {
            Some((grid, _)) => (steps_on(table, grid.step_s), grid.stats.len().max(1)),
            None => (table.n_rows(), 1),
        }
    }

    /// A statistic named twice would make two columns of one name: each is kept once, in the order given.
    fn grid(&self, step_s: f64) -> Grid {
        let mut stats: Vec<GridStat> = Vec::new();
        for s in &self.stats {
            if !stats.contains(s) {
                stats.push(*s);
            }
        }
        Grid { step_s, stats }
    }
}

/// "1 s", "10 min", "1.5 h".
pub fn describe_step(s: f64) -> String {
    if s >= 3600.0 && (s / 3600.0).fract() == 0.0 {
        format!("{} h", s / 3600.0)
    } else if s >= 60.0 && (s / 60.0).fract() == 0.0 {
        format!("{} min", s / 60.0)
    } else {
        format!("{} s", (s * 1000.0).round() / 1000.0)
    }
}

fn median_life_span(table: &Table) -> f64 {
    let mut spans: Vec<f64> =
        table.life_ranges().into_iter().map(|(_, r)| table.timestamps[r.end - 1] - table.timestamps[r.start]).collect();
    if spans.is_empty() {
        return 0.0;
    }
    let mid = spans.len() / 2;
    spans.select_nth_unstable_by(mid, f64::total_cmp);
    spans[mid]
}

fn step_key(t: f64, step: f64) -> i64 {
    (t / step).floor() as i64
}

/// Rows the table would have on this step.
fn steps_on(table: &Table, step: f64) -> usize {
    table.life_ranges().into_iter().map(|(_, r)| buckets(&table.timestamps[r], step).len()).sum()
}

/// Consecutive readings sharing a step, as ranges into `timestamps` (time-ordered, so a step's readings
/// are adjacent).
fn buckets(timestamps: &[f64], step: f64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=timestamps.len() {
        if i == timestamps.len() || step_key(timestamps[i], step) != step_key(timestamps[start], step) {
            out.push(start..i);
            start = i;
        }
    }
    out
}

/// One statistic of one sensor's readings in one step, over its valid (finite) readings; NaN when none.
fn stat_of(values: &[f64], stat: GridStat) -> f64 {
    let valid = || values.iter().copied().filter(|v| v.is_finite());
    let n = valid().count();
    if stat == GridStat::Count {
        return n as f64;
    }
    if n == 0 {
        return f64::NAN;
    }
    match stat {
        GridStat::Mean => valid().sum::<f64>() / n as f64,
        GridStat::Min => valid().fold(f64::INFINITY, f64::min),
        GridStat::Max => valid().fold(f64::NEG_INFINITY, f64::max),
        // Two passes over a step's few readings: exact where sums of squares would cancel.
        GridStat::Std => {
            let mean = valid().sum::<f64>() / n as f64;
            (valid().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64).sqrt()
        }
        GridStat::Last => values.iter().rev().copied().find(|v| v.is_finite()).unwrap_or(f64::NAN),
        GridStat::Count => n as f64,
    }
}

/// A table's rows on a grid, before the summary: the readings each step holds, in step order.
pub struct Aggregated {
    pub table: Table,
    pub counts: Vec<usize>,
}

/// The table on `grid`: one row per step that has readings, per life. Labels and anomaly marks are the
/// step's maximum (a failure anywhere in it counts), remaining life and the given split the step's last row's.
pub fn onto_grid(table: &Table, grid: &Grid, why: String) -> Result<Table, DataError> {
    let Aggregated { mut table, counts } = aggregate(table, grid)?;
    table.split_hint.healthy_head_rows = healthy_head_on_grid(table.split_hint.healthy_head_rows, table.interval_s, grid.step_s);
    let raw_interval_s = table.interval_s;
    table.interval_s = grid.step_s;
    table.grid = Some(summary(&table, grid, why, counts.iter().sum(), raw_interval_s, counts));
    Ok(table)
}

/// A healthy head given in readings, in grid steps.
pub fn healthy_head_on_grid(rows: Option<usize>, raw_interval_s: f64, step_s: f64) -> Option<usize> {
    rows.map(|n| ((n as f64 * raw_interval_s / step_s).floor() as usize).max(1))
}

/// What putting the readings onto `grid` did, from the gridded rows and the readings each step held.
pub fn summary(gridded: &Table, grid: &Grid, why: String, raw_rows: usize, raw_interval_s: f64, mut counts: Vec<usize>) -> GridSummary {
    let readings_per_step = if counts.is_empty() {
        0.0
    } else {
        let mid = counts.len() / 2;
        *counts.select_nth_unstable(mid).1 as f64
    };
    let mut empty_steps = 0;
    for (_, life) in gridded.life_ranges() {
        for pair in gridded.timestamps[life].windows(2) {
            let gap = step_key(pair[1], grid.step_s) - step_key(pair[0], grid.step_s);
            empty_steps += usize::try_from(gap - 1).unwrap_or(0);
        }
    }
    GridSummary { grid: grid.clone(), why, raw_rows, raw_interval_s, rows: gridded.n_rows(), readings_per_step, empty_steps }
}

/// The rows of `table` on `grid` (the interval and split hint left as they were; the caller sums up).
pub fn aggregate(table: &Table, grid: &Grid) -> Result<Aggregated, DataError> {
    for s in &table.sensors {
        if source_sensor(&s.name) != s.name {
            return Err(DataError::GridName { column: s.name.clone() });
        }
    }
    let step = grid.step_s;
    let mut steps: Vec<Range<usize>> = Vec::new();
    for (_, life) in table.life_ranges() {
        let local = buckets(&table.timestamps[life.clone()], step);
        steps.extend(local.into_iter().map(|r| life.start + r.start..life.start + r.end));
    }
    let first_of = |col: &[f64]| -> Vec<f64> { steps.iter().map(|r| col[r.start]).collect() };
    let last_of = |col: &[f64]| -> Vec<f64> { steps.iter().map(|r| col[r.end - 1]).collect() };
    let max_of = |col: &[f64]| -> Vec<f64> { steps.iter().map(|r| stat_of(&col[r.clone()], GridStat::Max)).collect() };
    let sensors = table
        .sensors
        .iter()
        .flat_map(|s| {
            grid.stats.iter().map(|&stat| Sensor {
                name: stat.column_name(&s.name),
                unit: if stat == GridStat::Count { String::new() } else { s.unit.clone() },
                values: steps.iter().map(|r| stat_of(&s.values[r.clone()], stat)).collect(),
            })
        })
        .collect();
    let counts = steps.iter().map(|r| r.len()).collect();
    let table = Table {
        machine_id: table.machine_id.clone(),
        meta: table.meta.clone(),
        layout: table.layout.clone(),
        sources: table.sources.clone(),
        timestamps: first_of(&table.timestamps).into_iter().map(|t| step_key(t, step) as f64 * step).collect(),
        life: steps.iter().map(|r| table.life[r.start]).collect(),
        lives_known: table.lives_known,
        given_split: table.given_split.as_ref().map(|g| steps.iter().map(|r| g[r.end - 1]).collect::<Vec<Split>>()),
        sensors,
        label: table.label.as_deref().map(max_of),
        rul: table.rul.as_deref().map(last_of),
        anomaly: table.anomaly.as_deref().map(max_of),
        interval_s: table.interval_s,
        split_hint: table.split_hint.clone(),
        rul_cap_hint: table.rul_cap_hint,
        grid: None,
    };
    Ok(Aggregated { table, counts })
}

/// Where the rows that may still share a step with rows to come begin: the last (life, step) of the rows.
pub fn open_step_start(timestamps: &[f64], life: &[u32], step_s: f64) -> usize {
    let (Some(&t), Some(&l)) = (timestamps.last(), life.last()) else { return 0 };
    let key = step_key(t, step_s);
    let mut i = timestamps.len();
    while i > 0 && life[i - 1] == l && step_key(timestamps[i - 1], step_s) == key {
        i -= 1;
    }
    i
}

/// [`onto_grid`] when the setting calls for it; the table unchanged otherwise.
pub fn apply(table: Table, setting: &GridSetting) -> Result<Table, DataError> {
    match setting.grid_for(&table) {
        Some((grid, why)) => onto_grid(&table, &grid, why),
        None => Ok(table),
    }
}

/// Where the readings of the last `steps` steps begin in one life's time-ordered `timestamps`: the raw
/// readings an answer from `steps` grid steps needs.
pub fn last_steps_start(timestamps: &[f64], grid: &Grid, steps: usize) -> usize {
    let Some(&last) = timestamps.last() else { return 0 };
    let first_key = step_key(last, grid.step_s) - i64::try_from(steps).unwrap_or(i64::MAX).saturating_sub(1);
    timestamps.partition_point(|&t| step_key(t, grid.step_s) < first_key)
}

/// Raw readings of one life (oldest first) on `grid`, as [`onto_grid`] puts a table's rows: the same steps,
/// the same columns. The last step may still be filling; it is used as it stands.
pub fn readings_onto_grid(timestamps: &[f64], sensors: &BTreeMap<String, Vec<f64>>, grid: &Grid) -> (Vec<f64>, BTreeMap<String, Vec<f64>>) {
    let steps = buckets(timestamps, grid.step_s);
    let times = steps.iter().map(|r| step_key(timestamps[r.start], grid.step_s) as f64 * grid.step_s).collect();
    let mut out = BTreeMap::new();
    for (name, values) in sensors {
        for &stat in &grid.stats {
            let column = steps.iter().map(|r| values.get(r.clone()).map_or(f64::NAN, |v| stat_of(v, stat))).collect();
            out.insert(stat.column_name(name), column);
        }
    }
    (times, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Layout, MachineMeta, SplitHint};

    fn table(timestamps: Vec<f64>, life: Vec<u32>, values: Vec<f64>) -> Table {
        let n = timestamps.len();
        Table {
            machine_id: "m".into(),
            meta: MachineMeta::default(),
            layout: Layout::Described,
            sources: Vec::new(),
            interval_s: if n > 1 { timestamps[1] - timestamps[0] } else { 1.0 },
            timestamps,
            life,
            lives_known: true,
            given_split: None,
            sensors: vec![Sensor { name: "v".into(), unit: "mm/s".into(), values }],
            label: Some((0..n).map(|i| if i == n - 2 { 1.0 } else { 0.0 }).collect()),
            rul: Some((0..n).map(|i| (n - 1 - i) as f64).collect()),
            anomaly: None,
            split_hint: SplitHint::default(),
            rul_cap_hint: None,
            grid: None,
        }
    }

    fn grid(step_s: f64, stats: &[GridStat]) -> Grid {
        Grid { step_s, stats: stats.to_vec() }
    }

    #[test]
    fn a_step_keeps_the_stats_of_its_valid_readings() {
        // Two lives of 1 s readings; a 4 s grid; a missing reading in the first step; a gap of two empty steps.
        let ts = vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 16.0, 17.0, 100.0, 101.0];
        let life = vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        let v = vec![1.0, f64::NAN, 3.0, 5.0, 10.0, 20.0, 7.0, 9.0, 2.0, 4.0];
        let all = [GridStat::Mean, GridStat::Min, GridStat::Max, GridStat::Std, GridStat::Last, GridStat::Count];
        let g = onto_grid(&table(ts, life, v), &grid(4.0, &all), "test".into()).unwrap();
        assert_eq!(g.timestamps, vec![0.0, 4.0, 16.0, 100.0]);
        assert_eq!(g.life, vec![0, 0, 0, 1]);
        let col = |name: &str| g.sensor(name).unwrap().values.clone();
        assert_eq!(col("v"), vec![3.0, 15.0, 8.0, 3.0]);
        assert_eq!(col("v:min"), vec![1.0, 10.0, 7.0, 2.0]);
        assert_eq!(col("v:max"), vec![5.0, 20.0, 9.0, 4.0]);
        assert!((col("v:std")[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(col("v:last"), vec![5.0, 20.0, 9.0, 4.0]);
        assert_eq!(col("v:count"), vec![3.0, 2.0, 2.0, 2.0]);
        assert_eq!(g.sensor("v:count").unwrap().unit, "");
        // The label at row 8 (the second to last) marks the last life's step; RUL is the step's last row's.
        assert_eq!(g.label.as_deref(), Some(&[0.0, 0.0, 0.0, 1.0][..]));
        assert_eq!(g.rul.as_deref(), Some(&[6.0, 4.0, 2.0, 0.0][..]));
        let s = g.grid.as_ref().unwrap();
        assert_eq!((s.raw_rows, s.rows, s.empty_steps), (10, 4, 2));
        assert_eq!(g.interval_s, 4.0);
    }

    #[test]
    fn live_readings_land_in_the_steps_training_used() {
        let ts: Vec<f64> = (0..600).map(|i| 1_700_000_000.0 + i as f64).collect();
        let v: Vec<f64> = (0..600).map(|i| (i as f64 * 0.1).sin()).collect();
        let g = grid(60.0, &[GridStat::Mean, GridStat::Std]);
        let trained = onto_grid(&table(ts.clone(), vec![0; 600], v.clone()), &g, String::new()).unwrap();
        // The last 200 readings only: the steps they fill completely match training's exactly.
        let sensors = BTreeMap::from([("v".to_string(), v[400..].to_vec())]);
        let (times, cols) = readings_onto_grid(&ts[400..], &sensors, &g);
        let n = times.len();
        // The last three steps' readings start where the third step from the end does.
        let from = last_steps_start(&ts, &g, 3);
        assert_eq!(step_key(ts[from], 60.0), step_key(ts[599], 60.0) - 2);
        assert_eq!(step_key(ts[from - 1], 60.0), step_key(ts[599], 60.0) - 3);
        assert_eq!(times[n - 1], *trained.timestamps.last().unwrap());
        for name in ["v", "v:std"] {
            let t = &trained.sensor(name).unwrap().values;
            assert_eq!(cols[name][n - 2], t[t.len() - 2], "{name}");
            assert_eq!(cols[name][n - 1], t[t.len() - 1], "{name}");
        }
    }

    #[test]
    fn auto_leaves_small_tables_and_fits_big_ones_under_the_budget() {
        let n = 5000;
        let t = table((0..n).map(|i| i as f64).collect(), vec![0; n], vec![1.0; n]);
        let mut setting = GridSetting { max_rows: 10_000, ..GridSetting::default() };
        assert!(setting.grid_for(&t).is_none());
        setting.max_rows = 1000;
        let (g, why) = setting.grid_for(&t).unwrap();
        assert_eq!(g.step_s, 5.0, "{why}");
        assert!(why.contains("data.grid_rows = 1000"), "{why}");
        setting.choice = GridChoice::Off;
        assert!(setting.grid_for(&t).is_none());
        setting.choice = GridChoice::Every(60.0);
        setting.stats = vec![GridStat::Mean, GridStat::Max, GridStat::Mean];
        assert_eq!(setting.grid_for(&t).unwrap().0, grid(60.0, &[GridStat::Mean, GridStat::Max]));
        // A step no finer than the data changes nothing.
        setting.choice = GridChoice::Every(1.0);
        assert!(setting.grid_for(&t).is_none());
    }

    #[test]
    fn long_lives_get_a_step_that_holds_day_scale_windows() {
        let n = 400_000; // 4.6 days at 1 s
        let t = table((0..n).map(|i| i as f64).collect(), vec![0; n], vec![1.0; n]);
        let (g, _) = GridSetting::default().grid_for(&t).unwrap();
        assert_eq!(g.step_s, DAY_SCALE_STEP_S);
    }

    #[test]
    fn a_sensor_named_like_a_grid_column_is_refused() {
        let mut t = table(vec![0.0, 1.0, 2.0], vec![0; 3], vec![1.0; 3]);
        t.sensors[0].name = "v:max".into();
        let e = onto_grid(&t, &grid(2.0, &[GridStat::Mean]), String::new()).unwrap_err();
        assert!(e.to_string().contains("v:max") && e.to_string().contains("data.grid"), "{e}");
        assert_eq!(source_sensor("v:max"), "v");
        assert_eq!(source_sensor("a:b"), "a:b");
    }

    #[test]
    fn grid_choices_parse_with_a_helpful_refusal() {
        assert_eq!(GridChoice::parse("auto"), Ok(GridChoice::Auto));
        assert_eq!(GridChoice::parse("off"), Ok(GridChoice::Off));
        assert_eq!(GridChoice::parse("10 min"), Ok(GridChoice::Every(600.0)));
        let e = GridChoice::parse("sometimes").unwrap_err();
        assert!(e.contains("\"1 min\""), "{e}");
        assert!(GridChoice::parse("0.5 s").is_err());
        assert_eq!(describe_step(600.0), "10 min");
        assert_eq!(describe_step(0.5), "0.5 s");
    }
}
