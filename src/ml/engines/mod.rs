//! The algorithms the trainers drive, each self-contained (std, serde, thiserror and the crate's RNG): histogram
//! gradient boosting ([`gbdt`]), unsupervised anomaly detectors ([`detectors`]) and univariate forecasting
//! ([`forecast`]). None of them knows machines, tables or training contexts.
pub mod detectors;
pub mod forecast;
pub mod gbdt;
