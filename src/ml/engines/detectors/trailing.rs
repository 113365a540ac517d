//! A reading judged against the readings just before it, for series with no reference long enough to hold
//! their normal range (a traffic sensor's weekdays and weekends, a server's load that steps): the robust
//! distance of each sensor's value from the median of its trailing window, in MADs, the largest over the
//! sensors; the alarm threshold is the larger of a floor and a high quantile of the same scores over the
//! trailing window, so a series that is always a little restless does not alarm all the time.
//!
//! Nothing is fitted: a level the machine settles into becomes its own reference within one window. That is
//! the point, and the limit: a slow drift is never abnormal here, only a change faster than the window.
use super::stats::{MAD_TO_SD, quantile_sorted, sorted_finite};
use serde::{Deserialize, Serialize};

/// A trailing window shorter than this says little about a sensor's spread.
pub const MIN_WINDOW: usize = 30;
/// Bounds the work per reading (a sort of the window per sensor) on high-rate data.
pub const MAX_WINDOW: usize = 1_000;
/// Readings needed in the window before a reading is judged at all.
const MIN_REFERENCE: usize = 10;
/// MADs from the trailing median below which a reading never alarms.
const FLOOR: f64 = 3.0;
/// The share of the trailing window's own scores the threshold sits above.
const QUANTILE: f64 = 0.97;
/// The spread of a flat sensor: a change of 1 % of its level counts as one MAD.
const FLAT_SHARE: f64 = 0.01;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trailing {
    /// Readings in the trailing window.
    pub window: usize,
    pub floor: f64,
    pub quantile: f64,
}

/// One reading's score and the threshold it is judged by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrailingScore {
    pub score: f64,
    pub threshold: f64,
}

impl TrailingScore {
    pub fn alarm(&self) -> bool {
        self.score > self.threshold
    }
}

impl Trailing {
    /// A window of `hours` at `interval_s` between readings, within [`MIN_WINDOW`, `MAX_WINDOW`].
    pub fn for_interval(interval_s: f64, hours: f64) -> Trailing {
        let rows = if interval_s.is_finite() && interval_s > 0.0 && hours.is_finite() && hours > 0.0 {
            (hours * 3600.0 / interval_s).round()
        } else {
            MIN_WINDOW as f64
        };
        Trailing { window: (rows.min(MAX_WINDOW as f64) as usize).max(MIN_WINDOW), floor: FLOOR, quantile: QUANTILE }
    }

    /// Readings of history a score with its threshold needs: a window of scores, each with its own window.
    pub fn rows_needed(&self) -> usize {
        2 * self.window + 1
    }

    /// Each sensor's distance from its trailing median at reading `t`, in MADs (0 without a reference).
    pub fn sensor_scores(&self, columns: &[&[f64]], t: usize) -> Vec<f64> {
        columns.iter().map(|c| self.distance(c, t)).collect()
    }

    /// Every reading of one run (columns of equal length, one per sensor), oldest first.
    pub fn score_run(&self, columns: &[&[f64]]) -> Vec<TrailingScore> {
        let n = columns.iter().map(|c| c.len()).min().unwrap_or(0);
        let scores: Vec<f64> = (0..n).map(|t| self.score_at(columns, t)).collect();
        (0..n).map(|t| TrailingScore { score: scores[t], threshold: self.threshold(&scores[t.saturating_sub(self.window)..t]) }).collect()
    }

    /// The last reading's score and threshold from the readings before it (at most [`Self::rows_needed`] used).
    pub fn score_last(&self, columns: &[&[f64]]) -> Option<TrailingScore> {
        let n = columns.iter().map(|c| c.len()).min().unwrap_or(0);
        let t = n.checked_sub(1)?;
        let from = t.saturating_sub(self.window);
        let past: Vec<f64> = (from..t).map(|i| self.score_at(columns, i)).collect();
        Some(TrailingScore { score: self.score_at(columns, t), threshold: self.threshold(&past) })
    }

    fn score_at(&self, columns: &[&[f64]], t: usize) -> f64 {
        columns.iter().map(|c| self.distance(c, t)).fold(0.0, f64::max)
    }

    fn distance(&self, column: &[f64], t: usize) -> f64 {
        let Some(&x) = column.get(t).filter(|x| x.is_finite()) else { return 0.0 };
        let reference = sorted_finite(column[t.saturating_sub(self.window)..t].iter().copied());
        if reference.len() < MIN_REFERENCE {
            return 0.0;
        }
        let centre = quantile_sorted(&reference, 0.5);
        let mad = MAD_TO_SD * quantile_sorted(&sorted_finite(reference.iter().map(|v| (v - centre).abs())), 0.5);
        let spread = mad.max(FLAT_SHARE * centre.abs()).max(1e-9);
        (x - centre).abs() / spread
    }

    fn threshold(&self, past: &[f64]) -> f64 {
        let mut past = past.to_vec();
        if past.is_empty() {
            return self.floor;
        }
        past.sort_unstable_by(f64::total_cmp);
        let k = ((self.quantile * past.len() as f64) as usize).min(past.len() - 1);
        past[k].max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daily-ish wave with noise, stepping to a new level halfway: a series whose normal range moves.
    fn stepping(n: usize) -> Vec<f64> {
        (0..n)
            .map(|t| {
                let level = if t < n / 2 { 50.0 } else { 80.0 };
                level + 5.0 * (t as f64 * std::f64::consts::TAU / 48.0).sin() + ((t * 7919) % 13) as f64 * 0.2
            })
            .collect()
    }

    #[test]
    fn a_spike_alarms_a_settled_new_level_does_not() {
        let mut y = stepping(600);
        y[450] += 40.0;
        let t = Trailing::for_interval(3600.0, 48.0);
        assert_eq!(t.window, 48);
        let s = t.score_run(&[&y]);
        assert!(s[450].alarm(), "{:?}", s[450]);
        // After the step the new level is the reference within a window: the last 100 readings are quiet.
        let late = s[500..].iter().filter(|x| x.alarm()).count();
        assert_eq!(late, 0, "{:?}", &s[500..]);
        // The step itself is a change faster than the window.
        assert!(s[300..310].iter().any(|x| x.alarm()));
    }

    #[test]
    fn the_last_reading_scores_as_in_the_whole_run_and_missing_readings_are_skipped() {
        let mut y = stepping(300);
        y[100] = f64::NAN;
        let z: Vec<f64> = y.iter().map(|v| v * 2.0).collect();
        let t = Trailing::for_interval(600.0, 4.0);
        let run = t.score_run(&[&y, &z]);
        let last = t.score_last(&[&y[300 - t.rows_needed()..], &z[300 - t.rows_needed()..]]).unwrap();
        assert_eq!(last, run[299]);
        assert_eq!(run[100].score, 0.0, "a missing reading has no distance");
        assert!(run.iter().all(|s| s.score.is_finite() && s.threshold >= FLOOR));
    }

    #[test]
    fn windows_stay_within_bounds_and_a_flat_sensor_gets_one_percent_of_its_level() {
        assert_eq!(Trailing::for_interval(1.0, 24.0).window, MAX_WINDOW);
        assert_eq!(Trailing::for_interval(86_400.0, 24.0).window, MIN_WINDOW);
        assert_eq!(Trailing::for_interval(f64::NAN, 24.0).window, MIN_WINDOW);
        let mut flat = vec![100.0; 40];
        flat.push(104.0);
        let t = Trailing::for_interval(3600.0, 30.0);
        assert!((t.sensor_scores(&[&flat], 40)[0] - 4.0).abs() < 1e-9);
    }
}
