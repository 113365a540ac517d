//! The four trainers and what they share: one interface ([`train`]), causal features, leak-free splits,
//! honest metrics beside their baselines, versioned bundles and predictions.
pub mod bundle;
pub mod context;
pub mod detectors;
pub mod features;
pub mod forecast;
pub mod gbdt;
pub mod metrics;
pub mod split;

mod params;
pub use context::{Event, LeaderRow, PauseGate, TrainContext};
pub use params::{ModelType, Quality, TrainParams, bounds, check_range};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MlError {
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("features: {0}")]
    Features(#[from] features::FeatureError),
    #[error("split: {0}")]
    Split(#[from] split::SplitError),
    #[error("gradient boosting: {0}")]
    Gbdt(#[from] gbdt::GbdtError),
    #[error("anomaly detectors: {0}")]
    Detector(#[from] detectors::DetectorError),
    #[error("forecast: {0}")]
    Forecast(#[from] forecast::ForecastError),
    #[error("model file: {0}")]
    Bundle(#[from] bundle::BundleError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
}

pub mod anomaly;
pub mod classify;
pub mod eval;
pub mod model;
pub mod predict;
pub mod regress;
pub mod report;
mod supervised;
pub mod timeseries;
mod train;
pub use train::{MODEL_FILE, REPORT_FILE, Trained, data_fingerprint, train};
