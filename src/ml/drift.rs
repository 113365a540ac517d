//! Drift: how far a machine's recent readings have moved from the data its models were trained on, per sensor.
//!
//! At training each sensor's distribution is kept as its deciles, the share of training rows between them
//! and the range its middle 99 % spans (a few hundred bytes in the model's header). At scoring the recent
//! rows are compared two ways:
//! - the share of them outside that range: a regime the models never saw. This decides the level — stable
//!   below 5 % (1 % is expected), large from 25 % — because a machine wearing out moves its readings
//!   towards the ends of lives the models were trained on: that is what they are for, not a reason to
//!   call them stale just when they matter;
//! - the population stability index, PSI = Σ (r − t) · ln(r / t) over the bins (r, t: the recent and
//!   training shares), shown beside it: how much the distribution changed at all, within the range too.
//!   A sample of n rows scores about (bins − 1) / n on identical distributions; that much is taken off.
//!
//! Fewer than [`MIN_ROWS`] recent rows give no judgement.
use crate::data::Table;
use serde::{Deserialize, Serialize};

/// Bins per sensor (deciles of the training rows).
const BINS: usize = 10;
/// Fewer recent rows than this give no judgement: the sampling noise alone would read as drift.
pub const MIN_ROWS: usize = 100;
/// The recent window: the last day of readings, or the last [`WINDOW_MIN_ROWS`] rows if the day holds
/// fewer (hourly data), at most [`WINDOW_MAX_ROWS`]. A day covers a daily cycle, so a cool night is not
/// read as drift from a warm average.
pub const WINDOW_S: f64 = 86_400.0;
pub const WINDOW_MIN_ROWS: usize = 200;
pub const WINDOW_MAX_ROWS: usize = 5_000;
/// A share no bin falls below, so that an empty bin does not make the index infinite.
const FLOOR: f64 = 1e-4;
/// The share of recent readings outside the training range from which drift is moderate, and large.
pub const MODERATE: f64 = 0.05;
pub const LARGE: f64 = 0.25;
/// The training range: the middle 99 % of its values.
const RANGE_TAIL: f64 = 0.005;

/// One sensor's training distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorBins {
    pub name: String,
    /// Inner bin edges, increasing: a value v falls in the first bin whose edge is above it.
    pub edges: Vec<f64>,
    /// The share of training rows in each bin (edges.len() + 1 of them).
    pub shares: Vec<f64>,
    /// The range of the middle 99 % of training values.
    pub lo: f64,
    pub hi: f64,
}

/// Every sensor's training distribution.
pub type Profile = Vec<SensorBins>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Stable,
    Moderate,
    Large,
}

impl Level {
    fn of(outside: f64) -> Level {
        if outside >= LARGE {
            Level::Large
        } else if outside >= MODERATE {
            Level::Moderate
        } else {
            Level::Stable
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SensorDrift {
    pub sensor: String,
    /// The share of recent readings outside the training range (which decides the level).
    pub outside: f64,
    pub psi: f64,
    pub level: Level,
    /// Median of the recent rows and of the training rows (the bin edge nearest it): which way it moved.
    pub recent_median: f64,
    pub training_median: f64,
}

/// The recent window against the training data: every sensor, largest drift first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DriftReport {
    pub level: Option<Level>,
    pub rows: usize,
    /// The window's first and last time (RFC 3339).
    pub from: Option<String>,
    pub to: Option<String>,
    pub sensors: Vec<SensorDrift>,
    /// Why there is no judgement, if there is none.
    pub note: Option<String>,
}

fn bin_of(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|e| *e <= v)
}

fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// One sensor's bins from its training values; `None` when it has no values.
fn bins(name: &str, values: &[f64]) -> Option<SensorBins> {
    let v = sorted_finite(values);
    if v.is_empty() {
        return None;
    }
    let mut edges: Vec<f64> = (1..BINS).map(|k| v[(k * v.len() / BINS).min(v.len() - 1)]).collect();
    // A sensor with few distinct values (a valve's 0 and 1) has repeated deciles: one edge each.
    edges.dedup();
    let mut counts = vec![0usize; edges.len() + 1];
    for x in &v {
        counts[bin_of(&edges, *x)] += 1;
    }
    let shares = counts.iter().map(|c| *c as f64 / v.len() as f64).collect();
    let at = |q: f64| v[((q * v.len() as f64) as usize).min(v.len() - 1)];
    Some(SensorBins { name: name.to_string(), edges, shares, lo: at(RANGE_TAIL), hi: at(1.0 - RANGE_TAIL) })
}

/// The training distribution of every sensor of `table`.
pub fn profile_of(table: &Table) -> Profile {
    table.sensors.iter().filter_map(|s| bins(&s.name, &s.values)).collect()
}

/// The median a sensor's bins imply: the edge where the cumulative share passes a half.
fn median_of(b: &SensorBins) -> f64 {
    let mut acc = 0.0;
    for (k, s) in b.shares.iter().enumerate() {
        acc += s;
        if acc >= 0.5 {
            return b.edges.get(k).or(b.edges.last()).copied().unwrap_or(f64::NAN);
        }
    }
    b.edges.last().copied().unwrap_or(f64::NAN)
}

/// How the recent values of one sensor compare with its training values; `None` with too few values.
struct Compared {
    outside: f64,
    psi: f64,
    median: f64,
}

/// `recent` against `b`: the share outside the training range, and PSI less the noise of a sample of its size.
fn compare(b: &SensorBins, recent: &[f64]) -> Option<Compared> {
    let v = sorted_finite(recent);
    if v.len() < MIN_ROWS {
        return None;
    }
    let mut counts = vec![0usize; b.shares.len()];
    for x in &v {
        counts[bin_of(&b.edges, *x)] += 1;
    }
    let n = v.len() as f64;
    let raw: f64 = counts
        .iter()
        .zip(&b.shares)
        .map(|(c, t)| {
            let (r, t) = ((*c as f64 / n).max(FLOOR), t.max(FLOOR));
            (r - t) * (r / t).ln()
        })
        .sum();
    let noise = (b.shares.len() as f64 - 1.0) / n;
    let outside = v.iter().filter(|x| **x < b.lo || **x > b.hi).count() as f64 / n;
    Some(Compared { outside, psi: (raw - noise).max(0.0), median: v[v.len() / 2] })
}

/// The rows of the recent window: the last day, or the last [`WINDOW_MIN_ROWS`] if the day holds fewer.
pub fn window(timestamps: &[f64]) -> std::ops::Range<usize> {
    let Some(last) = timestamps.last() else { return 0..0 };
    let day = timestamps.partition_point(|t| *t < last - WINDOW_S);
    let start = day.min(timestamps.len().saturating_sub(WINDOW_MIN_ROWS));
    start.max(timestamps.len().saturating_sub(WINDOW_MAX_ROWS))..timestamps.len()
}

/// Compares the recent rows of `table` (its last life, the window of [`window`]) with `profile`.
pub fn assess(profile: &Profile, table: &Table) -> DriftReport {
    let life = table.life_ranges().last().map(|(_, r)| r.clone()).unwrap_or(0..0);
    let ts = &table.timestamps[life.clone()];
    let w = window(ts);
    let rows = w.len();
    let stamp = |i: usize| ts.get(i).map(|t| crate::util::time::format_timestamp(*t));
    let (from, to) = (stamp(w.start), stamp(w.end.wrapping_sub(1)));
    let mut sensors: Vec<SensorDrift> = profile
        .iter()
        .filter_map(|b| {
            let s = table.sensors.iter().find(|s| s.name == b.name)?;
            let recent = &s.values[life.start + w.start..life.start + w.end];
            let c = compare(b, recent)?;
            Some(SensorDrift {
                sensor: b.name.clone(),
                outside: c.outside,
                psi: c.psi,
                level: Level::of(c.outside),
                recent_median: c.median,
                training_median: median_of(b),
            })
        })
        .collect();
    sensors.sort_by(|a, b| b.outside.total_cmp(&a.outside).then(b.psi.total_cmp(&a.psi)));
    let level = sensors.iter().map(|s| s.level).max();
    let note = level.is_none().then(|| format!("{rows} recent rows: at least {MIN_ROWS} with values are needed to judge drift"));
    DriftReport { level, rows, from, to, sensors, note }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::Rng;

    fn normal(rng: &mut Rng, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        (0..n).map(|_| mean + sd * rng.normal()).collect()
    }

    #[test]
    fn the_same_distribution_is_stable_a_shifted_one_large_and_a_small_sample_no_judgement() {
        let mut rng = Rng::new(7);
        let train = bins("t", &normal(&mut rng, 20_000, 50.0, 5.0)).unwrap();
        assert_eq!(train.edges.len(), 9);
        assert!(train.shares.iter().all(|s| (s - 0.1).abs() < 0.01), "{:?}", train.shares);
        assert!((median_of(&train) - 50.0).abs() < 0.5);
        assert!((train.lo - (50.0 - 2.576 * 5.0)).abs() < 0.5 && (train.hi - (50.0 + 2.576 * 5.0)).abs() < 0.5, "{train:?}");
        for n in [150, 1_000, 5_000] {
            let same = compare(&train, &normal(&mut rng, n, 50.0, 5.0)).unwrap();
            assert_eq!(Level::of(same.outside), Level::Stable, "n = {n}: {} outside", same.outside);
            assert!(same.psi < 0.1, "n = {n}: PSI {}", same.psi);
        }
        // Within the range, however much it moved: a wearing machine, not a new regime (PSI says it moved).
        let worn = compare(&train, &normal(&mut rng, 1_000, 58.0, 2.0)).unwrap();
        assert_eq!(Level::of(worn.outside), Level::Stable, "{} outside", worn.outside);
        assert!(worn.psi > 0.5, "PSI {}", worn.psi);
        let edge = compare(&train, &normal(&mut rng, 1_000, 57.5, 5.0)).unwrap();
        assert_eq!(Level::of(edge.outside), Level::Moderate, "one and a half standard deviations: {} outside", edge.outside);
        let shifted = compare(&train, &normal(&mut rng, 1_000, 80.0, 5.0)).unwrap();
        assert_eq!(Level::of(shifted.outside), Level::Large, "six standard deviations: {} outside", shifted.outside);
        assert!((shifted.median - 80.0).abs() < 1.0);
        assert!(compare(&train, &normal(&mut rng, MIN_ROWS - 1, 80.0, 5.0)).is_none());
        assert!(compare(&train, &[f64::NAN; 500]).is_none(), "missing readings are no sample");

        // Two values (a valve): a bin each; a value it never took is large drift, one of its two alone is not.
        let valve = bins("v", &(0..1000).map(|i| f64::from(i % 2)).collect::<Vec<_>>()).unwrap();
        assert_eq!(valve.shares, vec![0.0, 0.5, 0.5], "below 0, 0, 1");
        assert_eq!(Level::of(compare(&valve, &[1.0; 200]).unwrap().outside), Level::Stable);
        assert_eq!(Level::of(compare(&valve, &[2.0; 200]).unwrap().outside), Level::Large);
    }

    #[test]
    fn the_window_is_the_last_day_or_the_last_rows_when_the_day_holds_few() {
        let minutely: Vec<f64> = (0..10_000).map(|i| f64::from(i) * 60.0).collect();
        assert_eq!(window(&minutely), 10_000 - 1_441..10_000);
        let hourly: Vec<f64> = (0..1_000).map(|i| f64::from(i) * 3_600.0).collect();
        assert_eq!(window(&hourly), 800..1_000);
        let secondly: Vec<f64> = (0..100_000).map(f64::from).collect();
        assert_eq!(window(&secondly), 95_000..100_000);
        assert_eq!(window(&[]), 0..0);
    }
}
