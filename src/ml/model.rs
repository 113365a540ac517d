//! A trained model as stored in its bundle: one [`Payload`] variant per model type, each holding the model type
//! its trainer returned, and the bundle bytes built from it.
use super::bundle::{self, BundleHeader};
use super::error::MlError;
use super::report::Report;
use super::shared::features::FeatureSpec;
use super::shared::params::ModelType;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use super::recent::Recent;
pub use super::trainers::anomaly::{AnomalyAnswer, AnomalyModel, RowScore};
pub use super::trainers::classify::{ClassifierModel, FailureAnswer};
pub use super::trainers::forecast::{ForecastAnswer, ForecastModel, SensorForecast, SensorForecaster};
pub use super::trainers::regress::{RegressorModel, RulAnswer, UrgencyHours};

/// A model as it answers: its payload and the grid its readings are aggregated onto, if it was trained on one.
#[derive(Debug)]
pub struct LiveModel {
    pub payload: Payload,
    pub grid: Option<crate::data::grid::Grid>,
    /// The training distribution of each sensor, for drift (none in models trained before it was kept).
    pub profile: Option<super::drift::Profile>,
}

impl LiveModel {
    pub fn load(path: &Path) -> Result<(BundleHeader, LiveModel), MlError> {
        let (header, payload) = Payload::load(path)?;
        let (grid, profile) = (header.grid.clone(), header.profile.clone());
        Ok((header, LiveModel { payload, grid, profile }))
    }
}

/// The encoding of [`Payload`] inside a bundle, named in its header.
const PAYLOAD_ENCODING: &str = "postcard";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Payload {
    Classifier(ClassifierModel),
    Regressor(RegressorModel),
    Anomaly(AnomalyModel),
    /// The forecaster: its model type is [`ModelType::Timeseries`], "timeseries" in the API and on disk.
    Forecast(ForecastModel),
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

    fn encode(&self) -> Result<Vec<u8>, MlError> {
        postcard::to_stdvec(self).map_err(MlError::Encode)
    }

    /// Decodes a payload written in bundle format `version` (any the bundle reader accepts).
    fn decode(bytes: &[u8], version: u32) -> Result<Payload, MlError> {
        if version < 3 {
            return postcard::from_bytes::<OldPayload<v2::AnomalyModel>>(bytes).map(Payload::from).map_err(MlError::Decode);
        }
        if version < 5 {
            return postcard::from_bytes::<OldPayload<v4::AnomalyModel>>(bytes).map(Payload::from).map_err(MlError::Decode);
        }
        postcard::from_bytes(bytes).map_err(MlError::Decode)
    }

    /// The whole model file: the header (type, versions, feature spec, data fingerprint, the report's headline
    /// metrics) and the encoded payload.
    pub(crate) fn bundle(&self, report: &Report, fingerprint: &str) -> Result<Vec<u8>, MlError> {
        Ok(bundle::encode(&self.header(report, fingerprint), &self.encode()?)?)
    }

    /// The length of [`Payload::bundle`], from the header and the payload's encoded length: nothing is built.
    pub(crate) fn bundle_size(&self, report: &Report, fingerprint: &str) -> Result<u64, MlError> {
        let payload_len = postcard::experimental::serialized_size(self).map_err(MlError::Encode)?;
        Ok(bundle::encoded_len(&self.header(report, fingerprint), payload_len as u64)?)
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
            payload_encoding: PAYLOAD_ENCODING.into(),
            grid: report.data.grid.as_ref().map(|g| g.grid.clone()),
            profile: report.data.profile.clone(),
        }
    }

    pub fn load(path: &Path) -> Result<(BundleHeader, Payload), MlError> {
        let (header, bytes) = bundle::read(path)?;
        if header.payload_encoding != PAYLOAD_ENCODING {
            return Err(MlError::UnknownEncoding { path: path.to_path_buf(), encoding: header.payload_encoding });
        }
        let payload = Payload::decode(&bytes, header.format_version)?;
        if payload.model_type().as_str() != header.model_type {
            return Err(MlError::TypeMismatch { path: path.to_path_buf(), header: header.model_type, payload: payload.model_type() });
        }
        Ok((header, payload))
    }
}

/// A payload as an older format wrote it: the same variants in the same order, with that format's anomaly model.
#[derive(Deserialize)]
enum OldPayload<A> {
    Classifier(ClassifierModel),
    Regressor(RegressorModel),
    Anomaly(A),
    Forecast(ForecastModel),
}

impl<A: Into<AnomalyModel>> From<OldPayload<A>> for Payload {
    fn from(p: OldPayload<A>) -> Self {
        match p {
            OldPayload::Classifier(m) => Payload::Classifier(m),
            OldPayload::Regressor(m) => Payload::Regressor(m),
            OldPayload::Anomaly(m) => Payload::Anomaly(m.into()),
            OldPayload::Forecast(m) => Payload::Forecast(m),
        }
    }
}

/// Format versions 3 and 4 (one payload encoding), as written: before the trailing reference.
mod v4 {
    use crate::ml::engines::detectors::Ensemble;
    use crate::ml::shared::features::FeatureSpec;
    use crate::ml::trainers::confirm::Confirm;
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct AnomalyModel {
        spec: FeatureSpec,
        ensemble: Ensemble,
        contamination: f64,
        reference: Option<Vec<f64>>,
        confirm: Confirm,
        run_thresholds: Vec<(u32, f64)>,
        live_threshold: f64,
    }

    impl From<AnomalyModel> for super::AnomalyModel {
        fn from(m: AnomalyModel) -> Self {
            let AnomalyModel { spec, ensemble, contamination, reference, confirm, run_thresholds, live_threshold } = m;
            super::AnomalyModel { spec, ensemble, contamination, reference, confirm, run_thresholds, live_threshold, trailing: None }
        }
    }
}

/// Format version 2, as it was written: read so that models trained before an upgrade keep answering.
mod v2 {
    use crate::ml::engines::detectors::Ensemble;
    use crate::ml::shared::features::FeatureSpec;
    use crate::ml::trainers::confirm::Confirm;
    use serde::Deserialize;

    /// Before the alarm confirmation: every reading alarmed on its own.
    #[derive(Deserialize)]
    pub struct AnomalyModel {
        spec: FeatureSpec,
        ensemble: Ensemble,
        contamination: f64,
        reference: Option<Vec<f64>>,
    }

    impl From<AnomalyModel> for super::AnomalyModel {
        fn from(m: AnomalyModel) -> Self {
            let AnomalyModel { spec, ensemble, contamination, reference } = m;
            let live_threshold = ensemble.threshold;
            super::AnomalyModel {
                spec,
                ensemble,
                contamination,
                reference,
                confirm: Confirm::SINGLE,
                run_thresholds: Vec::new(),
                live_threshold,
                trailing: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::simulate::{FleetOptions, simulate_fleet};
    use crate::ml::{Quality, TrainContext, TrainParams};

    #[test]
    fn an_anomaly_model_written_before_the_trailing_reference_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let opts = FleetOptions { out_dir: dir.path().to_path_buf(), machines: 1, rows: 2000, seed: 3, ..Default::default() };
        let fleet = simulate_fleet(&opts).unwrap();
        let table = crate::data::load_machine(dir.path(), &fleet[0].id).unwrap();
        let params = TrainParams { quality: Quality::Fast, threads: 1, ..Default::default() };
        let ctx = TrainContext::detached(std::time::Duration::from_secs(60), 1);
        let trained = crate::ml::train(ModelType::Anomaly, &table, &params, &ctx).unwrap();
        let bytes = trained.payload.encode().unwrap();
        // Versions 3 and 4 wrote the same fields but the last; a `None` there is one zero byte at the end.
        assert_eq!(bytes.last(), Some(&0));
        let old = &bytes[..bytes.len() - 1];
        let (Payload::Anomaly(now), Ok(Payload::Anomaly(then))) = (&trained.payload, Payload::decode(old, 4)) else {
            panic!("a version 4 anomaly payload did not decode")
        };
        assert_eq!((then.trailing, then.live_threshold, then.spec.clone()), (None, now.live_threshold, now.spec.clone()));
        assert!(Payload::decode(old, 5).is_err(), "version 5 payloads carry the trailing reference");
    }
}
