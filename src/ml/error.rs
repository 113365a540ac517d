//! Why training, encoding or answering failed: one variant per cause, keeping the source error where there is one.
use super::bundle::BundleError;
use super::engines::detectors::DetectorError;
use super::engines::forecast::ForecastError;
use super::engines::gbdt::GbdtError;
use super::shared::context::Cancelled;
use super::shared::features::FeatureError;
use super::shared::params::ModelType;
use super::shared::split::SplitError;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MlError {
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("features: {0}")]
    Features(#[from] FeatureError),
    #[error("split: {0}")]
    Split(#[from] SplitError),
    #[error("gradient boosting: {0}")]
    Gbdt(#[from] GbdtError),
    #[error("anomaly detectors: {0}")]
    Detector(#[from] DetectorError),
    #[error("forecast: {0}")]
    Forecast(#[from] ForecastError),
    #[error("model file: {0}")]
    Bundle(#[from] BundleError),
    /// The machine's data lacks what this model type learns from (a failure label, RUL).
    #[error("{0}")]
    Unsupported(String),
    /// Training parameters out of range: the message of [`super::TrainParams::validate`].
    #[error("{0}")]
    Params(String),
    /// The data, as the parameters select it, holds too little to train or test the model (rows with a target,
    /// classes, healthy rows, usable sensors).
    #[error("{0}")]
    NotEnoughData(String),
    #[error("no candidate finished")]
    NoCandidate,
    /// Readings a prediction was asked for that the model cannot answer from (a sensor missing, too few rows).
    #[error("{0}")]
    Readings(String),
    #[error("cannot encode the model: {0}")]
    Encode(#[source] postcard::Error),
    #[error("the model payload is unreadable ({0}); retrain the model")]
    Decode(#[source] postcard::Error),
    #[error("{}: unknown payload encoding {encoding:?}", path.display())]
    UnknownEncoding { path: PathBuf, encoding: String },
    #[error("{}: header says {header} but the payload is a {payload} model", path.display())]
    TypeMismatch { path: PathBuf, header: String, payload: ModelType },
    /// An answer that has no JSON form.
    #[error(transparent)]
    Answer(#[from] serde_json::Error),
    /// A failure with no variant of its own: the job runner reports a trainer's panic through it.
    #[error("{0}")]
    Invalid(String),
}

impl From<Cancelled> for MlError {
    fn from(_: Cancelled) -> Self {
        MlError::Cancelled
    }
}
