//! Answers from a loaded model for recent readings, and the recent readings of a machine's own data.
use super::error::MlError;
use super::model::{Payload, Recent, UrgencyHours};
use crate::data::Table;
use std::collections::BTreeMap;

/// How many trailing rows of the current life a model needs to answer.
pub fn rows_needed(payload: &Payload) -> usize {
    match payload {
        Payload::Forecast(m) => m.history_rows(),
        // The readings before the last that confirm an alarm need their own feature windows.
        Payload::Anomaly(m) => m.spec.min_rows() + m.confirm.lookback(),
        other => other.feature_spec().map_or(1, |s| s.min_rows()),
    }
}

/// The latest rows of the machine's current (last) life.
pub fn recent_from_table(table: &Table, payload: &Payload) -> Result<Recent, MlError> {
    let ranges = table.life_ranges();
    let Some((_, life)) = ranges.last() else { return Err(MlError::NotEnoughData("the machine has no rows".into())) };
    let need = rows_needed(payload);
    let start = life.end.saturating_sub(need).max(life.start);
    let sensors: BTreeMap<String, Vec<f64>> = table.sensors.iter().map(|s| (s.name.clone(), s.values[start..life.end].to_vec())).collect();
    let timestamps = table.timestamps[start..life.end].to_vec();
    let time_in_life_h = timestamps.last().map(|t| (t - table.timestamps[life.start]) / 3600.0);
    Ok(Recent { timestamps, sensors, time_in_life_h })
}

pub fn answer(payload: &Payload, recent: &Recent, urgency: &UrgencyHours) -> Result<serde_json::Value, MlError> {
    let v = match payload {
        Payload::Classifier(m) => serde_json::to_value(m.predict(recent)?),
        Payload::Regressor(m) => serde_json::to_value(m.predict(recent, urgency)?),
        Payload::Anomaly(m) => serde_json::to_value(m.predict(recent)?),
        Payload::Forecast(m) => serde_json::to_value(m.predict(recent)?),
    };
    Ok(v?)
}

/// One line about a model, for `inspect-model`.
pub fn describe(payload: &Payload) -> String {
    match payload {
        Payload::Classifier(m) => format!(
            "classifier: {} trees on {} features, threshold {:.4}, target {}",
            m.model.n_trees(),
            m.spec.n_features(),
            m.threshold,
            m.target
        ),
        Payload::Regressor(m) => {
            format!("RUL regressor: {} trees on {} features, cap {} h", m.model.n_trees(), m.spec.n_features(), m.cap_hours)
        }
        Payload::Anomaly(m) => m.describe(),
        Payload::Forecast(m) => m.describe(),
    }
}
