//! The path and query parameters the model routes share, checked the same way everywhere.
use super::ApiError;
use crate::ml::ModelType;
use serde::Deserialize;

/// `?version=N`: one version of a model instead of the live one.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct VersionQuery {
    pub version: Option<u32>,
}

pub(super) fn model_type(s: &str) -> Result<ModelType, ApiError> {
    ModelType::parse(s)
        .ok_or_else(|| ApiError::bad_request(format!("unknown model type {s:?}: use classification, regression, anomaly or timeseries")))
}

pub(super) fn machine(s: &str) -> Result<(), ApiError> {
    crate::data::MachineId::parse(s)?;
    Ok(())
}
