//! The four trainers and what they share, behind one interface: [`train()`] turns a machine's table and typed
//! parameters into a [`Trained`] model (payload, report, data fingerprint), [`model`] is a model as stored in its
//! bundle, [`predict`] answers with it for recent readings, [`report`] is what the page, the API and the CLI show
//! about it and [`bundle`] is the file format.
//!
//! The folders show the rest:
//! - `trainers/`: one trainer per model type, each returning its own model type and its report, plus the
//!   pipeline the two supervised ones share;
//! - `engines/`: the self-contained algorithms the trainers drive (gradient boosting, anomaly detectors,
//!   univariate forecasting);
//! - `shared/`: the trainers' plumbing (parameters, the training context, causal features, leak-free splits,
//!   metrics beside their baselines).
pub mod bundle;
pub mod compare;
pub mod drift;
mod error;
pub mod model;
pub mod predict;
mod recent;
pub mod report;
mod train;

pub(crate) mod engines;
pub(crate) mod shared;
pub(crate) mod trainers;

pub use error::MlError;
pub use shared::context::{Event, LeaderRow, PauseGate, TrainContext};
pub use shared::params::{ModelType, Quality, TrainParams, bounds, check_range};
pub use train::{MODEL_FILE, REPORT_FILE, Trained, train};
pub use trainers::confirm::Confirm;
