//! The four trainers, one per model type. Each takes a machine's table, the typed parameters and the training
//! context, and returns its own model type with its report; [`crate::ml::train()`] wraps the model in a
//! [`crate::ml::model::Payload`].
//! - [`classify`]: "will this machine fail soon?" (GBDT, threshold tuned on validation);
//! - [`regress`]: "how many hours until failure?" (GBDT on capped RUL);
//! - `supervised`: the pipeline those two share (split, features, candidates with early stopping);
//! - [`anomaly`]: "is current behaviour abnormal?" (detector ensemble fitted on healthy rows);
//! - [`forecast`]: "what will the sensors read tomorrow?" (the forecaster: the API, the config, MQTT and the
//!   files on disk call its model type `timeseries`).
pub mod anomaly;
pub mod classify;
pub mod confirm;
pub mod forecast;
pub mod regress;
mod supervised;
