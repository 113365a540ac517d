//! The standard protocols of the shared datasets (see ../shared/datasets/README.md), run through the same
//! trainers a user gets. Where the protocol scores something the generic report does not (C-MAPSS scores only
//! the last cycle of each test engine), it is computed here from the trained model, on test rows only.
use super::BenchError;
use crate::data::{Split, Table};
use crate::ml::model::{AnomalyModel, Payload, RegressorModel};
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

/// NAB's single series with labelled anomaly windows (`examples/nab-windows/<series>/machine.toml`); the
/// dataset name `nab-windows` stands for all of them.
pub const NAB_WINDOWS: [&str; 12] = [
    "ambient_temperature_system_failure",
    "cpu_utilization_asg_misconfiguration",
    "ec2_request_latency_system_failure",
    "rogue_agent_key_hold",
    "rogue_agent_key_updown",
    "TravelTime_387",
    "TravelTime_451",
    "occupancy_6005",
    "occupancy_t4013",
    "speed_6005",
    "speed_7578",
    "speed_t4013",
];

/// NAB's traffic series (5–15 minute readings with gaps, one to three weeks), forecast 24 h ahead from the
/// same folders as their windows (`nab-traffic/<series>` reads `examples/nab-windows/<series>`).
pub const NAB_TRAFFIC: [&str; 7] =
    ["TravelTime_387", "TravelTime_451", "occupancy_6005", "occupancy_t4013", "speed_6005", "speed_7578", "speed_t4013"];

/// Dataset names with the families `nab-windows` and `nab-traffic` expanded to their series.
pub fn expand_datasets(names: &[String]) -> Vec<String> {
    let family = |prefix: &str, series: &[&str]| series.iter().map(|s| format!("{prefix}/{s}")).collect::<Vec<_>>();
    names
        .iter()
        .flat_map(|n| match n.as_str() {
            "nab-windows" => family(n, &NAB_WINDOWS),
            "nab-traffic" => family(n, &NAB_TRAFFIC),
            _ => vec![n.clone()],
        })
        .collect()
}

/// The folder a dataset name reads, and the models its protocol trains when the name (not the folder)
/// decides them.
pub fn dataset_dir(name: &str) -> Option<(std::path::PathBuf, Option<Vec<ModelType>>)> {
    match name.strip_prefix("nab-traffic/") {
        Some(series) => example_dir(&format!("nab-windows/{series}")).map(|d| (d, Some(vec![ModelType::Timeseries]))),
        None => example_dir(name).map(|d| (d, None)),
    }
}

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
        id if NAB_WINDOWS.contains(&id) => vec![ModelType::Anomaly],
        _ => ModelType::ALL.to_vec(),
    }
}

pub fn run_protocol(table: &Table, params: &TrainParams) -> Result<Vec<ProtocolRow>, BenchError> {
    run_models(table, params, &protocol_models(table))
}

/// [`run_protocol`] for the given models.
pub fn run_models(table: &Table, params: &TrainParams, models: &[ModelType]) -> Result<Vec<ProtocolRow>, BenchError> {
    let mut rows = Vec::new();
    for &t in models {
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
        if NAB_WINDOWS.contains(&table.machine_id.as_str())
            && let Payload::Anomaly(m) = &trained.payload
        {
            let w = nab_windows(table, m)?;
            rows.push(base("windows missed", w.missed as f64, w.windows as f64));
            rows.push(base("alarms outside", w.outside_alarm_rate, params.contamination));
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

/// NAB's window scoring on the rows after the probationary period.
struct WindowScore {
    windows: usize,
    missed: usize,
    /// Share of the scored rows outside every window that alarm.
    outside_alarm_rate: f64,
}

fn nab_windows(table: &Table, m: &AnomalyModel) -> Result<WindowScore, BenchError> {
    let labels = table.anomaly.as_ref().ok_or_else(|| BenchError::Protocol("NAB needs its anomaly windows".into()))?;
    let head = table.split_hint.healthy_head_rows.ok_or_else(|| BenchError::Protocol("NAB needs its probationary period".into()))?;
    let alarms: Vec<bool> = m.score_table(table)?.iter().map(|s| s.alarm).collect();
    let inside: Vec<bool> = labels.iter().map(|l| *l >= 0.5).collect();
    Ok(score_windows(&inside, &alarms, head))
}

/// Windows are the runs of `inside` rows; rows before `head` are neither windows nor false alarms.
fn score_windows(inside: &[bool], alarms: &[bool], head: usize) -> WindowScore {
    let n = inside.len().min(alarms.len());
    let (mut windows, mut missed) = (0, 0);
    let mut r = head;
    while r < n {
        if !inside[r] {
            r += 1;
            continue;
        }
        let start = r;
        while r < n && inside[r] {
            r += 1;
        }
        windows += 1;
        missed += usize::from(!alarms[start..r].iter().any(|a| *a));
    }
    let outside: Vec<bool> = (head..n).filter(|&r| !inside[r]).map(|r| alarms[r]).collect();
    let outside_alarm_rate = outside.iter().filter(|a| **a).count() as f64 / outside.len().max(1) as f64;
    WindowScore { windows, missed, outside_alarm_rate }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nab_windows_count_hits_inside_and_alarms_outside_after_the_probation() {
        let b = |s: &str| s.chars().map(|c| c == '1').collect::<Vec<bool>>();
        //                    probation | scored
        let inside = b("0110000000111000011");
        let alarms = b("1100100000001000000");
        let w = score_windows(&inside, &alarms, 4);
        // The window in the probation is not counted; of the two after it, one has an alarm.
        assert_eq!((w.windows, w.missed), (2, 1));
        // Rows 4..19 outside windows: 4,5,6,7,8,9,13,14,15,16 → one alarm (row 4) in 10.
        assert!((w.outside_alarm_rate - 0.1).abs() < 1e-12, "{}", w.outside_alarm_rate);
        assert_eq!(expand_datasets(&["nab-windows".into(), "ai4i2020".into()]).len(), 13);
    }
}
