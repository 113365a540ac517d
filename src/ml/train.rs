//! The one trainer interface: a machine's table + typed parameters → a [`Trained`] model, ready to be handed
//! out as bundle bytes. Writing them is the model registry's job.
use super::error::MlError;
use super::model::Payload;
use super::report::Report;
use super::shared::context::TrainContext;
use super::shared::params::{ModelType, TrainParams};
use super::trainers::{anomaly, classify, forecast, regress};
use crate::data::Table;

pub const MODEL_FILE: &str = "model.mwm";
pub const REPORT_FILE: &str = "report.json";

pub struct Trained {
    pub payload: Payload,
    pub report: Report,
    /// The data the model learned from ([`super::bundle::fingerprint`] of its table), kept in the bundle header.
    pub fingerprint: String,
}

pub fn train(model_type: ModelType, table: &Table, params: &TrainParams, ctx: &TrainContext) -> Result<Trained, MlError> {
    params.validate().map_err(MlError::Params)?;
    ctx.checkpoint()?;
    let (payload, mut report) = match model_type {
        ModelType::Classification => classify::train(table, params, ctx).map(|(m, r)| (Payload::Classifier(m), r))?,
        ModelType::Regression => regress::train(table, params, ctx).map(|(m, r)| (Payload::Regressor(m), r))?,
        ModelType::Anomaly => anomaly::train(table, params, ctx).map(|(m, r)| (Payload::Anomaly(m), r))?,
        ModelType::Timeseries => forecast::train(table, params, ctx).map(|(m, r)| (Payload::Forecast(m), r))?,
    };
    report.params = Some(params.clone());
    report.peak_rss_bytes = crate::util::peak_rss_bytes().unwrap_or(0);
    report.data.profile = Some(super::drift::profile_of(table));
    report.data.last_time = table.timestamps.iter().copied().filter(|t| t.is_finite()).reduce(f64::max);
    let fingerprint = data_fingerprint(table);
    ctx.progress(1.0, || "done".into());
    Ok(Trained { payload, report, fingerprint })
}

/// Every column with its name, timestamps first, so a renamed or reordered sensor changes the fingerprint.
fn data_fingerprint(table: &Table) -> String {
    let cols: Vec<(&str, &[f64])> = std::iter::once(("timestamp", table.timestamps.as_slice()))
        .chain(table.sensors.iter().map(|s| (s.name.as_str(), s.values.as_slice())))
        .collect();
    super::bundle::fingerprint(table.n_rows(), &cols)
}

impl Trained {
    /// The model file's bytes: a header (model type, versions, feature spec, this fingerprint, the report's
    /// headline and test metrics), then the encoded payload.
    pub fn bundle(&self) -> Result<Vec<u8>, MlError> {
        self.payload.bundle(&self.report, &self.fingerprint)
    }

    /// The length of [`Trained::bundle`], from the header and the payload's encoded length: nothing is built.
    pub fn bundle_size(&self) -> Result<u64, MlError> {
        self.payload.bundle_size(&self.report, &self.fingerprint)
    }
}
