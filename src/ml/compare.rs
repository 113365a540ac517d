//! Champion and challenger: a newly trained model beside the one that was live, both scored on the rows
//! the new one was tested on — rows neither was fitted or selected on when the live one was trained on
//! older data — with the new model's headline metric. A scheduled retrain goes live only when the new model
//! is not worse; a person's training goes live anyway, with the comparison in its report.
use super::model::Payload;
use super::shared::features::features_for_rows;
use super::shared::metrics;
use super::shared::params::TrainParams;
use super::trainers::classify;
use crate::data::Table;
use serde::{Deserialize, Serialize};

/// The outcome, as the report, the API and the page show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The live version compared with.
    pub champion_version: u32,
    /// `rmse_hours` (lower is better) or `f1` (higher is better); empty when not compared.
    pub metric: String,
    pub higher_is_better: bool,
    pub challenger: Option<f64>,
    pub champion: Option<f64>,
    /// Held-out rows both were scored on.
    pub rows: usize,
    /// The new model is at least as good as the live one on those rows (true when they could not be compared).
    pub not_worse: bool,
    /// Why there is no comparison, when there is none.
    pub note: Option<String>,
}

impl Comparison {
    fn not_compared(champion_version: u32, why: impl Into<String>) -> Comparison {
        Comparison {
            champion_version,
            metric: String::new(),
            higher_is_better: false,
            challenger: None,
            champion: None,
            rows: 0,
            not_worse: true,
            note: Some(why.into()),
        }
    }

    /// One line for logs and the job: "RMSE 41.2 h against 38.0 h of live v3 on 1,200 held-out rows".
    pub fn sentence(&self) -> String {
        match (self.challenger, self.champion) {
            (Some(a), Some(b)) => format!(
                "{} {a:.4} against {b:.4} of live v{} on {} held-out rows: {}",
                self.metric,
                self.champion_version,
                self.rows,
                if self.not_worse { "not worse" } else { "worse" }
            ),
            _ => format!("not compared with live v{}: {}", self.champion_version, self.note.as_deref().unwrap_or("no comparison")),
        }
    }
}

/// Scores `challenger` and `champion` on `rows` of `table` (the challenger's test rows) with the
/// challenger's headline metric. Models of the same type only; an anomaly detector or a forecaster is not
/// compared yet (their held-out scores are not row by row), and neither is a live model that cannot read
/// this data (another set of sensors).
pub fn compare(
    table: &Table,
    params: &TrainParams,
    rows: &[usize],
    challenger: &Payload,
    champion: &Payload,
    champion_version: u32,
) -> Comparison {
    let outcome = match (challenger, champion) {
        (Payload::Regressor(new), Payload::Regressor(live)) => {
            let Some(rul) = table.rul.as_ref() else { return Comparison::not_compared(champion_version, "the data has no RUL") };
            let (rows, y): (Vec<usize>, Vec<f64>) =
                rows.iter().filter(|&&r| rul[r].is_finite()).map(|&r| (r, rul[r].min(new.cap_hours))).unzip();
            let critical = new.cap_hours * 0.1;
            let rmse = |m: &super::trainers::regress::RegressorModel| {
                m.predict_rows(table, &rows).map(|p| metrics::regression_metrics(&y, &p, critical).map(|m| m.rmse))
            };
            match (rmse(new), rmse(live)) {
                (Ok(Some(a)), Ok(Some(b))) => Ok(("rmse_hours", false, a, b, rows.len())),
                (_, Err(e)) => Err(format!("the live model cannot score this data ({e})")),
                _ => Err("no held-out rows to score".to_string()),
            }
        }
        (Payload::Classifier(new), Payload::Classifier(live)) => match classify::target(table, params) {
            Err(e) => Err(e.to_string()),
            Ok((y_all, _)) => {
                let (rows, y): (Vec<usize>, Vec<bool>) =
                    rows.iter().filter(|&&r| y_all[r].is_finite()).map(|&r| (r, y_all[r] >= 0.5)).unzip();
                let f1 = |m: &classify::ClassifierModel| -> Result<f64, String> {
                    let x = features_for_rows(&m.spec, table, &rows).map_err(|e| e.to_string())?;
                    let x = super::engines::gbdt::Matrix::new(x.n_rows, x.n_cols, x.data).map_err(|e| e.to_string())?;
                    Ok(metrics::classification_metrics(&y, &m.model.predict_matrix(&x), m.threshold).f1)
                };
                match (f1(new), f1(live)) {
                    _ if !y.iter().any(|b| *b) => Err("the held-out rows hold no failure: F1 says nothing".to_string()),
                    (Ok(a), Ok(b)) => Ok(("f1", true, a, b, rows.len())),
                    (_, Err(e)) => Err(format!("the live model cannot score this data ({e})")),
                    (Err(e), _) => Err(e),
                }
            }
        },
        (a, b) if a.model_type() != b.model_type() => Err(format!("the live model is a {} model", b.model_type())),
        (a, _) => Err(format!("{} models are not compared on the same rows yet", a.model_type())),
    };
    match outcome {
        Ok((metric, higher_is_better, a, b, n)) => Comparison {
            champion_version,
            metric: metric.into(),
            higher_is_better,
            challenger: Some(a),
            champion: Some(b),
            rows: n,
            not_worse: if higher_is_better { a >= b } else { a <= b },
            note: None,
        },
        Err(why) => Comparison::not_compared(champion_version, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::simulate::{FleetOptions, simulate_fleet};
    use crate::ml::{ModelType, Quality, TrainContext};
    use std::time::Duration;

    #[test]
    fn a_model_fitted_on_scrambled_readings_loses_to_one_fitted_on_the_real_ones_on_the_same_held_out_rows() {
        let dir = tempfile::tempdir().unwrap();
        let opts = FleetOptions { out_dir: dir.path().to_path_buf(), machines: 1, rows: 3000, seed: 5, ..Default::default() };
        let fleet = simulate_fleet(&opts).unwrap();
        let table = crate::data::load_machine(dir.path(), &fleet[0].id).unwrap();
        // The simulator's wear shows too late for a 48 h warning (its classifier is graded "not useful"); for
        // the classifier, one sensor that steps up in the last 48 h of each life gives it something to be good at.
        let mut stepped = table.clone();
        let rul = table.rul.clone().unwrap();
        for (v, r) in stepped.sensors[0].values.iter_mut().zip(&rul) {
            if *r <= 48.0 {
                *v += 5.0;
            }
        }
        let ctx = || TrainContext::detached(Duration::from_secs(120), 1);
        let full = TrainParams { quality: Quality::Fast, threads: 1, ..Default::default() };
        for (t, table) in [(ModelType::Regression, &table), (ModelType::Classification, &stepped)] {
            // The same rows with each sensor's values moved half the table along: nothing left to learn from.
            let mut scrambled = table.clone();
            for s in &mut scrambled.sensors {
                let half = s.values.len() / 2;
                s.values.rotate_left(half);
            }
            let strong = crate::ml::train(t, table, &full, &ctx()).unwrap();
            let weak = crate::ml::train(t, &scrambled, &full, &ctx()).unwrap();
            let rows = &strong.report.test_rows;
            assert!(!rows.is_empty());
            let c = compare(table, &full, rows, &strong.payload, &weak.payload, 1);
            assert!(c.not_worse && c.rows > 0, "{t}: {}", c.sentence());
            let c = compare(table, &full, rows, &weak.payload, &strong.payload, 1);
            assert!(!c.not_worse, "{t}: the weak model is worse: {}", c.sentence());
            // The model's own test metric is what the comparison computes for it.
            let own = compare(table, &full, rows, &strong.payload, &strong.payload, 1);
            assert!(own.not_worse && own.challenger == own.champion, "{t}: {own:?}");
            assert_eq!(own.challenger, Some(strong.report.headline.value), "{t}: the same rows and metric as the report's headline");
        }
        let anomaly = crate::ml::train(ModelType::Anomaly, &table, &full, &ctx()).unwrap();
        let c = compare(&table, &full, &[], &anomaly.payload, &anomaly.payload, 3);
        assert!(c.not_worse && c.challenger.is_none() && c.note.as_deref().unwrap_or("").contains("not compared"), "{c:?}");
    }
}
