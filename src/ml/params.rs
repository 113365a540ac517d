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

    /// Accepts the seed's names and the obvious aliases.
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
            let t = Self::parse(part).ok_or_else(|| format!("unknown model type {part:?}: use classification, regression, anomaly, timeseries or all"))?;
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
    pub forecast_hours: f64,
    pub exclude_sensors: Vec<String>,
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
            forecast_hours: 24.0,
            exclude_sensors: Vec::new(),
        }
    }
}

impl TrainParams {
    /// Refuses values no trainer can honour, with the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| if v.is_finite() && v > 0.0 { Ok(()) } else { Err(format!("{name} must be a positive number, got {v}")) };
        positive("time_limit", self.time_limit_s)?;
        positive("horizon_hours", self.horizon_hours)?;
        positive("forecast_hours", self.forecast_hours)?;
        if let Some(c) = self.rul_cap_hours {
            positive("rul_cap_hours", c)?;
        }
        if !(self.contamination > 0.0 && self.contamination < 0.5) {
            return Err(format!("contamination must be in (0, 0.5), got {}", self.contamination));
        }
        if self.threads == 0 || self.threads > 256 {
            return Err(format!("threads must be 1..=256, got {}", self.threads));
        }
        if self.forecast_hours > 24.0 * 14.0 {
            return Err(format!("forecast_hours must be at most 336 (two weeks), got {}", self.forecast_hours));
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
}
