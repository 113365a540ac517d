//! Answers from a loaded model for recent readings, and the recent readings of a machine's own data.
use super::error::MlError;
use super::model::{Payload, Recent, UrgencyHours};
use super::shared::features::FeatureError;
use crate::data::Table;
use crate::data::grid::{Grid, describe_step, last_steps_start, readings_onto_grid};
use std::collections::BTreeMap;

/// How many trailing rows (grid steps, for a model trained on a grid) of the current life a model needs to answer.
pub fn rows_needed(payload: &Payload) -> usize {
    match payload {
        Payload::Forecast(m) => m.history_rows(),
        // The readings before the last that confirm an alarm need their own feature windows.
        Payload::Anomaly(m) => (m.spec.min_rows() + m.confirm.lookback()).max(m.trailing.map_or(0, |t| t.rows_needed())),
        other => other.feature_spec().map_or(1, |s| s.min_rows()),
    }
}

/// The latest readings of the machine's current (last) life, as recorded: for a model on a grid, those of
/// the last steps it needs ([`answer`] aggregates them).
pub fn recent_from_table(table: &Table, payload: &Payload, grid: Option<&Grid>) -> Result<Recent, MlError> {
    let ranges = table.life_ranges();
    let Some((_, life)) = ranges.last() else { return Err(MlError::NotEnoughData("the machine has no rows".into())) };
    let need = rows_needed(payload);
    let start = match grid {
        None => life.end.saturating_sub(need).max(life.start),
        Some(g) => life.start + last_steps_start(&table.timestamps[life.clone()], g, need),
    };
    let sensors: BTreeMap<String, Vec<f64>> = table.sensors.iter().map(|s| (s.name.clone(), s.values[start..life.end].to_vec())).collect();
    let timestamps = table.timestamps[start..life.end].to_vec();
    let time_in_life_h = timestamps.last().map(|t| (t - table.timestamps[life.start]) / 3600.0);
    Ok(Recent { timestamps, sensors, time_in_life_h })
}

/// A model's answer for raw readings; a model trained on a grid gets them aggregated onto it first.
pub fn answer(payload: &Payload, grid: Option<&Grid>, recent: &Recent, urgency: &UrgencyHours) -> Result<serde_json::Value, MlError> {
    match grid {
        None => answer_on_grid(payload, None, recent, urgency),
        Some(g) => {
            let (timestamps, sensors) = readings_onto_grid(&recent.timestamps, &recent.sensors, g);
            answer_on_grid(payload, grid, &Recent { timestamps, sensors, time_in_life_h: recent.time_in_life_h }, urgency)
        }
    }
}

/// What live models answer from when they answer from a machine's own history: per grid they use, only the
/// latest rows of the last life they need, read from the files onto that grid by `load` (which streams them).
pub type Tails = Vec<(Option<Grid>, Table)>;

pub fn history_tails<'m, E>(
    models: impl Iterator<Item = (&'m Payload, Option<&'m Grid>)> + Clone,
    load: impl Fn(crate::data::Tail, Option<&Grid>) -> Result<Table, E>,
) -> Result<Tails, E> {
    let mut tails: Tails = Vec::new();
    for (_, grid) in models.clone() {
        if tails.iter().any(|(g, _)| g.as_ref() == grid) {
            continue;
        }
        // At least the drift window too: the same rows tell how far the readings moved from the training data.
        let rows =
            models.clone().filter(|(_, g)| *g == grid).map(|(p, _)| rows_needed(p)).max().unwrap_or(1).max(super::drift::WINDOW_MAX_ROWS);
        tails.push((grid.cloned(), load(crate::data::Tail { rows }, grid)?));
    }
    crate::util::release_freed_memory();
    Ok(tails)
}

/// The drift of the machine's latest rows from the training data of the first model that kept it (the
/// models of one training share it), on that model's grid.
pub fn drift_from_tails<'m>(models: impl Iterator<Item = &'m super::model::LiveModel>, tails: &Tails) -> Option<super::drift::DriftReport> {
    models
        .filter_map(|m| {
            let profile = m.profile.as_ref()?;
            let (_, table) = tails.iter().find(|(g, _)| g.as_ref() == m.grid.as_ref())?;
            Some(super::drift::assess(profile, table))
        })
        .next()
}

/// A model's answer from the tails [`history_tails`] read.
pub fn answer_from_tails(
    payload: &Payload,
    grid: Option<&Grid>,
    tails: &Tails,
    urgency: &UrgencyHours,
) -> Result<serde_json::Value, MlError> {
    let Some((_, table)) = tails.iter().find(|(g, _)| g.as_ref() == grid) else {
        return Err(MlError::NotEnoughData("no readings".into()));
    };
    recent_from_table(table, payload, None).and_then(|r| answer_on_grid(payload, grid, &r, urgency))
}

/// A model's answer for rows already on its grid (steps read onto it from the machine's files), or for raw
/// readings when it has none.
pub fn answer_on_grid(
    payload: &Payload,
    grid: Option<&Grid>,
    recent: &Recent,
    urgency: &UrgencyHours,
) -> Result<serde_json::Value, MlError> {
    let v = match payload {
        Payload::Classifier(m) => m.predict(recent).map(serde_json::to_value),
        Payload::Regressor(m) => m.predict(recent, urgency).map(serde_json::to_value),
        Payload::Anomaly(m) => m.predict(recent).map(serde_json::to_value),
        Payload::Forecast(m) => m.predict(recent).map(serde_json::to_value),
    };
    Ok(v.map_err(|e| in_steps(e, grid))??)
}

/// "Too few rows" means too few grid steps for a model on a grid: said in steps and in hours of readings.
fn in_steps(e: MlError, grid: Option<&Grid>) -> MlError {
    match (e, grid) {
        (MlError::Features(FeatureError::TooFewRows { min_rows, n }), Some(g)) => MlError::Readings(format!(
            "too few readings: the model works on {} steps and needs {min_rows} of them ({:.1} h of readings); the readings sent fill {n}",
            describe_step(g.step_s),
            min_rows as f64 * g.step_s / 3600.0
        )),
        (e, _) => e,
    }
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
