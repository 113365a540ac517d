//! The one trainer interface: a machine's table + typed parameters → a model and its report.
use super::model::Payload;
use super::report::Report;
use super::{MlError, ModelType, TrainContext, TrainParams};
use crate::data::Table;
use std::path::Path;

pub struct Trained {
    pub payload: Payload,
    pub report: Report,
}

pub fn train(model_type: ModelType, table: &Table, params: &TrainParams, ctx: &TrainContext) -> Result<Trained, MlError> {
    params.validate().map_err(MlError::Invalid)?;
    ctx.checkpoint()?;
    let (payload, mut report) = match model_type {
        ModelType::Classification => super::classify::train(table, params, ctx)?,
        ModelType::Regression => super::regress::train(table, params, ctx)?,
        ModelType::Anomaly => super::anomaly::train(table, params, ctx)?,
        ModelType::Timeseries => super::timeseries::train(table, params, ctx)?,
    };
    report.params = Some(params.clone());
    report.peak_rss_bytes = crate::util::peak_rss_bytes().unwrap_or(0);
    ctx.progress(1.0, || "done".into());
    Ok(Trained { payload, report })
}

/// A stable fingerprint of the data a model was trained on, kept in its bundle header.
pub fn data_fingerprint(table: &Table) -> String {
    let cols: Vec<(&str, &[f64])> = std::iter::once(("timestamp", table.timestamps.as_slice()))
        .chain(table.sensors.iter().map(|s| (s.name.as_str(), s.values.as_slice())))
        .collect();
    super::bundle::fingerprint(table.n_rows(), &cols)
}

impl Trained {
    /// Writes `<dir>/model.mwm` and `<dir>/report.json` (bundle first, so a report never describes a missing model).
    pub fn save(&mut self, dir: &Path, table: &Table) -> Result<u64, MlError> {
        std::fs::create_dir_all(dir).map_err(|e| MlError::Invalid(format!("{}: {e}", dir.display())))?;
        let size = self.payload.save(&dir.join(MODEL_FILE), &self.report, &data_fingerprint(table))?;
        self.report.model_size_bytes = size;
        let json = serde_json::to_vec_pretty(&self.report).map_err(|e| MlError::Invalid(e.to_string()))?;
        crate::util::fsx::write_atomic(&dir.join(REPORT_FILE), &json).map_err(|e| MlError::Invalid(format!("{}: {e}", dir.display())))?;
        Ok(size)
    }
}

pub const MODEL_FILE: &str = "model.mwm";
pub const REPORT_FILE: &str = "report.json";
