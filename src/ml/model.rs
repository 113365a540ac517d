//! A trained model as stored in its bundle, and what it answers for recent readings.
use super::bundle::{self, BundleHeader};
use super::features::{FeatureSpec, features_for_last_row};
use super::report::Report;
use super::{MlError, ModelType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassifierModel {
    pub spec: FeatureSpec,
    pub model: super::gbdt::Model,
    /// Tuned on validation for F1.
    pub threshold: f64,
    pub target: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegressorModel {
    pub spec: FeatureSpec,
    pub model: super::gbdt::Model,
    pub cap_hours: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Payload {
    Classifier(ClassifierModel),
    Regressor(RegressorModel),
    Anomaly(super::anomaly::AnomalyModel),
    Forecast(super::timeseries::ForecastModel),
}

impl Payload {
    pub fn model_type(&self) -> ModelType {
        match self {
            Payload::Classifier(_) => ModelType::Classification,
            Payload::Regressor(_) => ModelType::Regression,
            Payload::Anomaly(_) => ModelType::Anomaly,
            Payload::Forecast(_) => ModelType::Timeseries,
        }
    }

    pub fn feature_spec(&self) -> Option<&FeatureSpec> {
        match self {
            Payload::Classifier(m) => Some(&m.spec),
            Payload::Regressor(m) => Some(&m.spec),
            Payload::Anomaly(m) => Some(&m.spec),
            Payload::Forecast(_) => None,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, MlError> {
        postcard::to_stdvec(self).map_err(|e| MlError::Invalid(format!("cannot encode the model: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Payload, MlError> {
        postcard::from_bytes(bytes).map_err(|e| MlError::Invalid(format!("the model payload is unreadable ({e}); retrain the model")))
    }

    /// Writes the bundle atomically; returns its size in bytes.
    pub fn save(&self, path: &Path, report: &Report, fingerprint: &str) -> Result<u64, MlError> {
        Ok(bundle::write(path, &self.header(report, fingerprint), &self.encode()?)?)
    }

    /// The bundle's size on disk, without writing it (benchmarks and protocols report it).
    pub fn bundle_size(&self, report: &Report, fingerprint: &str) -> Result<u64, MlError> {
        Ok(bundle::encode(&self.header(report, fingerprint), &self.encode()?)?.len() as u64)
    }

    fn header(&self, report: &Report, fingerprint: &str) -> BundleHeader {
        BundleHeader {
            format_version: bundle::FORMAT_VERSION,
            model_type: self.model_type().as_str().into(),
            millwright_version: env!("CARGO_PKG_VERSION").into(),
            machine_id: report.machine_id.clone(),
            created_at: report.created_at.clone(),
            feature_spec: serde_json::to_value(self.feature_spec()).unwrap_or_default(),
            data_fingerprint: fingerprint.into(),
            metrics: serde_json::json!({ "headline": report.headline, "test": report.metrics }),
            payload_encoding: "postcard".into(),
        }
    }

    pub fn load(path: &Path) -> Result<(BundleHeader, Payload), MlError> {
        let (header, bytes) = bundle::read(path)?;
        if header.payload_encoding != "postcard" {
            return Err(MlError::Invalid(format!("{}: unknown payload encoding {:?}", path.display(), header.payload_encoding)));
        }
        let payload = Payload::decode(&bytes)?;
        if payload.model_type().as_str() != header.model_type {
            return Err(MlError::Invalid(format!(
                "{}: header says {} but the payload is a {} model",
                path.display(),
                header.model_type,
                payload.model_type()
            )));
        }
        Ok((header, payload))
    }
}

/// Recent readings of one machine: consecutive rows of its current life, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Recent {
    pub timestamps: Vec<f64>,
    pub sensors: BTreeMap<String, Vec<f64>>,
    /// Hours since the current life began, at the last row; only models trained with time-in-life need it.
    pub time_in_life_h: Option<f64>,
}

impl Recent {
    /// The columns a feature spec needs, in its order; a missing sensor is an error, never zeros.
    pub fn columns_for(&self, names: &[String]) -> Result<Vec<Vec<f64>>, MlError> {
        names
            .iter()
            .map(|n| {
                self.sensors.get(n).cloned().ok_or_else(|| {
                    MlError::Invalid(format!("sensor {n:?} is missing from the readings (the model needs: {})", names.join(", ")))
                })
            })
            .collect()
    }

    pub fn last_row_features(&self, spec: &FeatureSpec) -> Result<Vec<f32>, MlError> {
        let cols = self.columns_for(&spec.sensors)?;
        let til = if spec.time_in_life {
            Some(
                self.time_in_life_h
                    .ok_or_else(|| MlError::Invalid("this model needs time_in_life_h (hours since the current life began)".into()))?,
            )
        } else {
            None
        };
        Ok(features_for_last_row(spec, &cols, til)?)
    }

    pub fn last_timestamp(&self) -> Option<f64> {
        self.timestamps.last().copied()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailureAnswer {
    pub failure_probability: f64,
    pub will_fail: bool,
    pub threshold: f64,
    /// healthy / degrading / warning / critical, relative to the tuned threshold.
    pub health: String,
    pub target: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RulAnswer {
    pub rul_hours: f64,
    pub rul_days: f64,
    pub urgency: String,
    /// The model never predicts past its cap: a value at the cap means "at least this long".
    pub at_cap: bool,
    pub cap_hours: f64,
}

/// Urgency classes for RUL answers, hours (configurable by the caller; these are the seed's defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UrgencyHours {
    pub critical: f64,
    pub high: f64,
    pub medium: f64,
}

impl Default for UrgencyHours {
    fn default() -> Self {
        UrgencyHours { critical: 24.0, high: 72.0, medium: 168.0 }
    }
}

impl ClassifierModel {
    pub fn predict(&self, recent: &Recent) -> Result<FailureAnswer, MlError> {
        let p = self.model.predict(&recent.last_row_features(&self.spec)?);
        let t = self.threshold;
        let health = if p >= (1.0 + t) / 2.0 {
            "critical"
        } else if p >= t {
            "warning"
        } else if p >= t / 2.0 {
            "degrading"
        } else {
            "healthy"
        };
        Ok(FailureAnswer { failure_probability: p, will_fail: p >= t, threshold: t, health: health.into(), target: self.target.clone() })
    }
}

impl RegressorModel {
    pub fn predict(&self, recent: &Recent, urgency: &UrgencyHours) -> Result<RulAnswer, MlError> {
        let h = self.model.predict(&recent.last_row_features(&self.spec)?).clamp(0.0, self.cap_hours);
        let class = if h < urgency.critical {
            "critical"
        } else if h < urgency.high {
            "high"
        } else if h < urgency.medium {
            "medium"
        } else {
            "low"
        };
        Ok(RulAnswer {
            rul_hours: h,
            rul_days: h / 24.0,
            urgency: class.into(),
            at_cap: h >= self.cap_hours * 0.98,
            cap_hours: self.cap_hours,
        })
    }
}
