use serde::{Deserialize, Serialize};

/// The four models of a complete system, in the order a batch trains them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Classification,
    Regression,
    Anomaly,
    Timeseries,
}

impl ModelType {
    pub const ALL: [ModelType; 4] = [ModelType::Classification, ModelType::Regression, ModelType::Anomaly, ModelType::Timeseries];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Classification => "classification",
            ModelType::Regression => "regression",
            ModelType::Anomaly => "anomaly",
            ModelType::Timeseries => "timeseries",
        }
    }

    /// Accepts the replaced stack's names and the obvious aliases.
    pub fn parse(s: &str) -> Option<ModelType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classification" | "classifier" => Some(ModelType::Classification),
            "regression" | "rul" => Some(ModelType::Regression),
            "anomaly" | "anomaly_detection" => Some(ModelType::Anomaly),
            "timeseries" | "time_series" | "forecast" => Some(ModelType::Timeseries),
            _ => None,
        }
    }

    /// `all` or a comma-separated list, kept in batch order without duplicates.
    pub fn parse_list(s: &str) -> Result<Vec<ModelType>, String> {
        if s.trim() == "all" {
            return Ok(Self::ALL.to_vec());
        }
        let mut out: Vec<ModelType> = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let t = Self::parse(part)
                .ok_or_else(|| format!("unknown model type {part:?}: use classification, regression, anomaly, timeseries or all"))?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        if out.is_empty() {
            return Err("no model type given".into());
        }
        out.sort();
        Ok(out)
    }

    pub fn question(self) -> &'static str {
        match self {
            ModelType::Classification => "Will this machine fail soon?",
            ModelType::Regression => "How many hours until failure?",
            ModelType::Anomaly => "Is current behaviour abnormal?",
            ModelType::Timeseries => "What will the sensors read tomorrow?",
        }
    }
}

impl std::fmt::Display for ModelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Fast,
    #[default]
    Standard,
    Best,
}

impl Quality {
    pub fn parse(s: &str) -> Option<Quality> {
        match s {
            "fast" => Some(Quality::Fast),
            "standard" => Some(Quality::Standard),
            "best" => Some(Quality::Best),
            _ => None,
        }
    }
}

/// Typed parameters shared by the four trainers; each uses the ones that concern it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// Soft limit per model: trainers stop adding rounds or candidates when it runs out.
    pub time_limit_s: f64,
    pub threads: usize,
    pub quality: Quality,
    pub seed: u64,
    /// Classification target when the data has no label: "fails within this many hours" (RUL ≤ horizon).
    pub horizon_hours: f64,
    /// RUL cap for regression; None = from the data (its description, else a quantile of life lengths).
    pub rul_cap_hours: Option<f64>,
    /// Share of healthy rows the anomaly threshold lets through as alarms.
    pub contamination: f64,
    /// `[k, n]`: an anomaly alarm needs k of the last n readings over the threshold (`[1, 1]`: every reading
    /// on its own). The threshold is calibrated on the confirmed scores, so the healthy alarm rate stays
    /// `contamination`; what changes is that isolated spikes no longer alarm.
    pub alarm_k_of_n: [u32; 2],
    pub forecast_hours: f64,
    pub exclude_sensors: Vec<String>,
    /// The classifier and the RUL model fit on at most this many training rows (and as many validation rows),
    /// taken evenly across every life when there are more; fewer when the time limit allows fewer. Test rows
    /// are never thinned: every metric is on all of them.
    pub max_train_rows: usize,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            time_limit_s: 900.0,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            quality: Quality::Standard,
            seed: 42,
            horizon_hours: 48.0,
            rul_cap_hours: None,
            contamination: 0.02,
            alarm_k_of_n: [1, 1],
            forecast_hours: 24.0,
            exclude_sensors: Vec::new(),
            max_train_rows: 250_000,
        }
    }
}

/// The accepted range of each numeric parameter, named in every refusal so a client can correct itself.
/// Wide enough for any real plant, narrow enough that no value makes a trainer loop, allocate or overflow.
pub mod bounds {
    /// Hours: "fails within" shorter than an hour is not a maintenance horizon; over ten years is no horizon.
    pub const HORIZON_HOURS: (f64, f64) = (1.0, 87_600.0);
    /// Hours ahead: the forecaster's seasons and intervals are checked for up to two weeks.
    pub const FORECAST_HOURS: (f64, f64) = (1.0, 336.0);
    /// Share of healthy rows that may alarm: below 0.1 % no held-out set can calibrate it; half is not "rare".
    pub const CONTAMINATION: (f64, f64) = (0.001, 0.5);
    /// Readings an alarm may wait for: an hour of minute readings; longer is a trend, not a confirmation.
    pub const ALARM_WINDOW: u32 = 60;
    pub const RUL_CAP_HOURS: (f64, f64) = (1.0, 1_000_000.0);
    /// Seconds per model; the daemon lowers the upper end to `training.max_time_limit_s`.
    pub const TIME_LIMIT_S: (f64, f64) = (1.0, 7.0 * 86_400.0);
    /// The daemon lowers this to `training.threads` (or the core count).
    pub const THREADS_MAX: usize = 256;
    /// Rows the tree models fit on: fewer cannot hold a validation split; more than this no Pi holds.
    pub const MAX_TRAIN_ROWS: (usize, usize) = (1_000, 100_000_000);
}

/// `name` within `[lo, hi]` (both inclusive), finite; the message names the range.
pub fn check_range(name: &str, v: f64, (lo, hi): (f64, f64), unit: &str) -> Result<(), String> {
    if v.is_finite() && v >= lo && v <= hi { Ok(()) } else { Err(format!("{name} must be between {lo} and {hi}{unit}, got {v}")) }
}

impl TrainParams {
    /// Refuses values no trainer can honour, with the field, the accepted range and the fix.
    pub fn validate(&self) -> Result<(), String> {
        check_range("time_limit", self.time_limit_s, bounds::TIME_LIMIT_S, " seconds")?;
        check_range("horizon_hours", self.horizon_hours, bounds::HORIZON_HOURS, " hours")?;
        check_range("forecast_hours", self.forecast_hours, bounds::FORECAST_HOURS, " hours")?;
        if let Some(c) = self.rul_cap_hours {
            check_range("rul_cap_hours", c, bounds::RUL_CAP_HOURS, " hours")?;
        }
        // The upper end is open: a threshold letting half the healthy rows alarm is no detector.
        if !(self.contamination.is_finite()
            && self.contamination >= bounds::CONTAMINATION.0
            && self.contamination < bounds::CONTAMINATION.1)
        {
            return Err(format!(
                "contamination must be at least {} and below {}, got {}",
                bounds::CONTAMINATION.0,
                bounds::CONTAMINATION.1,
                self.contamination
            ));
        }
        if self.threads == 0 || self.threads > bounds::THREADS_MAX {
            return Err(format!("threads must be between 1 and {}, got {}", bounds::THREADS_MAX, self.threads));
        }
        let (lo, hi) = bounds::MAX_TRAIN_ROWS;
        if !(lo..=hi).contains(&self.max_train_rows) {
            return Err(format!("max_train_rows must be between {lo} and {hi}, got {}", self.max_train_rows));
        }
        let [k, n] = self.alarm_k_of_n;
        if !(1 <= k && k <= n && n <= bounds::ALARM_WINDOW) {
            return Err(format!(
                "alarm_k_of_n must be [k, n] with n between 1 and {} and k between 1 and n (e.g. [3, 5]: 3 of the last 5 readings), got [{k}, {n}]",
                bounds::ALARM_WINDOW
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists() {
        assert_eq!(ModelType::parse_list("all").unwrap(), ModelType::ALL);
        assert_eq!(ModelType::parse_list("timeseries,rul,rul").unwrap(), [ModelType::Regression, ModelType::Timeseries]);
        assert!(ModelType::parse_list("magic").unwrap_err().contains("magic"));
        assert!(TrainParams::default().validate().is_ok());
        assert!(TrainParams { contamination: 0.7, ..Default::default() }.validate().is_err());
        assert!(TrainParams { time_limit_s: -1.0, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn tiny_and_huge_numbers_are_refused_with_their_range() {
        for (p, name) in [
            (TrainParams { horizon_hours: 1e308, ..Default::default() }, "horizon_hours"),
            (TrainParams { horizon_hours: 1e-300, ..Default::default() }, "horizon_hours"),
            (TrainParams { contamination: 1e-300, ..Default::default() }, "contamination"),
            (TrainParams { alarm_k_of_n: [4, 3], ..Default::default() }, "alarm_k_of_n"),
            (TrainParams { alarm_k_of_n: [0, 5], ..Default::default() }, "alarm_k_of_n"),
            (TrainParams { alarm_k_of_n: [1, 61], ..Default::default() }, "alarm_k_of_n"),
            (TrainParams { forecast_hours: 1e-300, ..Default::default() }, "forecast_hours"),
            (TrainParams { time_limit_s: 0.0001, ..Default::default() }, "time_limit"),
            (TrainParams { rul_cap_hours: Some(f64::INFINITY), ..Default::default() }, "rul_cap_hours"),
            (TrainParams { threads: 257, ..Default::default() }, "threads"),
            (TrainParams { max_train_rows: 10, ..Default::default() }, "max_train_rows"),
        ] {
            let e = p.validate().unwrap_err();
            assert!(e.starts_with(name) && e.contains("between") || e.contains("at least"), "{name}: {e}");
        }
        // The ends of each range are accepted.
        let edges = TrainParams {
            horizon_hours: 1.0,
            forecast_hours: 336.0,
            contamination: 0.001,
            time_limit_s: 1.0,
            threads: 1,
            ..Default::default()
        };
        assert!(edges.validate().is_ok());
    }
}
