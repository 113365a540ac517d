//! The standard protocols of the shared datasets (see ../shared/datasets/README.md), run through the same
//! trainers a user gets. Where the protocol scores something the generic report does not (C-MAPSS scores only
//! the last cycle of each test engine), it is computed here from the trained model, on test rows only.
use super::BenchError;
use crate::data::{Split, Table};
use crate::ml::model::{Payload, RegressorModel};
use crate::ml::shared::metrics;
use crate::ml::{ModelType, TrainContext, TrainParams, train};
use std::time::Duration;

pub struct ProtocolRow {
    pub model_type: String,
    pub metric: String,
    pub value: f64,
    pub baseline: f64,
    pub train_seconds: f64,
    pub peak_rss_bytes: u64,
    pub model_size_bytes: u64,
}

/// The shared datasets with a standard protocol, each described by `examples/<name>/machine.toml`.
pub const DATASETS: [&str; 4] = ["cmapss-fd001", "ai4i2020", "skab-valve1", "nab-ambient-temperature"];

/// `examples/<name>` under the working directory, else under the source tree this binary was built from.
pub fn example_dir(name: &str) -> Option<std::path::PathBuf> {
    let built_from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    [std::path::Path::new("examples").join(name), built_from.join(name)].into_iter().find(|p| p.join("machine.toml").is_file())
}

/// Which models a dataset's protocol trains: C-MAPSS → RUL, AI4I → classification, SKAB → anomaly,
/// NAB → forecast; any other machine → all four with their report headlines.
pub fn protocol_models(table: &Table) -> Vec<ModelType> {
    match table.machine_id.as_str() {
        "cmapss-fd001" => vec![ModelType::Regression],
        "ai4i2020" => vec![ModelType::Classification],
        "skab-valve1" => vec![ModelType::Anomaly],
        "nab-ambient-temperature" => vec![ModelType::Timeseries],
        _ => ModelType::ALL.to_vec(),
    }
}

pub fn run_protocol(table: &Table, params: &TrainParams) -> Result<Vec<ProtocolRow>, BenchError> {
    let mut rows = Vec::new();
    for t in protocol_models(table) {
        let ctx = TrainContext::detached(Duration::from_secs_f64(params.time_limit_s), params.threads);
        let trained = train(t, table, params, &ctx)?;
        let size = trained.bundle_size()?;
        let r = &trained.report;
        let base = |metric: &str, value: f64, baseline: f64| ProtocolRow {
            model_type: t.as_str().into(),
            metric: metric.into(),
            value,
            baseline,
            train_seconds: r.train_seconds,
            peak_rss_bytes: r.peak_rss_bytes,
            model_size_bytes: size,
        };
        if table.machine_id == "cmapss-fd001"
            && let Payload::Regressor(m) = &trained.payload
        {
            let (rmse, score, base_rmse) = cmapss_last_cycle(table, m)?;
            rows.push(base("RMSE last cycle", rmse, base_rmse));
            rows.push(base("NASA score", score, f64::NAN));
            continue;
        }
        rows.push(base(&r.headline.metric, r.headline.value, r.headline.baseline));
        for key in ["f1", "roc_auc", "pr_auc", "precision", "recall", "mae", "r2", "mase", "smape", "mape", "coverage80", "coverage95"]
            .into_iter()
            .filter(|k| *k != r.headline.metric)
        {
            if let Some(v) = r.metrics.get(key).and_then(|v| v.as_f64()) {
                let b = r.baseline.get(key).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
                rows.push(base(key, v, b));
            }
        }
    }
    Ok(rows)
}

/// RMSE and NASA score at the last cycle of each test engine, true RUL capped like the training target.
fn cmapss_last_cycle(table: &Table, m: &RegressorModel) -> Result<(f64, f64, f64), BenchError> {
    let split = table.given_split.as_ref().ok_or_else(|| BenchError::Protocol("C-MAPSS needs its given train/test split".into()))?;
    let rul = table.rul.as_ref().ok_or_else(|| BenchError::Protocol("C-MAPSS needs RUL".into()))?;
    let last_rows: Vec<usize> =
        table.life_ranges().into_iter().filter(|(_, r)| split[r.start] == Split::Test).map(|(_, r)| r.end - 1).collect();
    let pred = m.predict_rows(table, &last_rows)?;
    let actual: Vec<f64> = last_rows.iter().map(|&r| rul[r].min(m.cap_hours)).collect();
    let got =
        metrics::regression_metrics(&actual, &pred, m.cap_hours * 0.1).ok_or_else(|| BenchError::Protocol("no test engines".into()))?;
    let train_mean = {
        let v: Vec<f64> = (0..table.n_rows()).filter(|&i| split[i] == Split::Train).map(|i| rul[i].min(m.cap_hours)).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let base = metrics::regression_metrics(&actual, &vec![train_mean; actual.len()], m.cap_hours * 0.1).map_or(f64::NAN, |b| b.rmse);
    Ok((got.rmse, got.nasa_score, base))
}
