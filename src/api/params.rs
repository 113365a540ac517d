//! What the model routes share: their path and query parameters, checked and resolved the same way everywhere.
use super::{ApiError, AppState};
use crate::ml::ModelType;
use crate::registry::VersionInfo;
use serde::Deserialize;
use serde_json::{Value, json};

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

/// The version `?version=` names, else the live one; 404 when there is none.
pub(super) fn model_version(state: &AppState, id: &str, t: ModelType, version: Option<u32>) -> Result<VersionInfo, ApiError> {
    match version {
        Some(v) => state.registry.versions(id, t)?.into_iter().find(|i| i.version == v),
        None => state.registry.live(id, t)?,
    }
    .ok_or_else(|| ApiError::not_found(format!("no {t} model{} for {id}", version.map_or(String::new(), |v| format!(" version {v}")))))
}

/// A version's report with its grade; reports saved before grades existed get theirs computed on the way out.
pub(super) fn graded_report(state: &AppState, id: &str, t: ModelType, version: Option<u32>) -> Result<Value, ApiError> {
    let mut report = state.registry.report(id, t, version)?;
    if report.get("quality").is_none() && report.is_object() {
        report["quality"] = json!(crate::verdict::grade(t.as_str(), &report));
    }
    Ok(report)
}
