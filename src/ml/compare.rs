//! Champion and challenger: a newly trained model beside the one that was live, both scored on the rows
//! the new one was tested on — rows neither was fitted or selected on when the live one was trained on
//! older data — with the new model's headline metric. A scheduled retrain goes live only when the new model
//! is not worse; a person's training goes live anyway, with the comparison in its report.
use super::model::Payload;
pub use super::report::Comparison;
use super::shared::features::features_for_rows;
use super::shared::metrics;
use super::shared::params::TrainParams;
use super::trainers::{anomaly, classify, forecast};
use crate::data::Table;

/// What the live model was fitted and selected on, as far as its report tells. Only rows it cannot have seen
/// count in a comparison: a row of a given test split (when its own split was that given one: such rows are
/// test rows for every model), or a row newer than the data it was trained on. Lives split at random, or rows
/// stratified, would otherwise put its own training rows among the new model's test rows and favour it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChampionData {
    pub given_split: bool,
    /// The newest row's time in its data (older reports lack it).
    pub last_time: Option<f64>,
}

impl ChampionData {
    pub fn from_report(report: &serde_json::Value) -> ChampionData {
        ChampionData { given_split: report["split"]["method"] == "given", last_time: report["data"]["last_time"].as_f64() }
    }

    fn unseen(&self, table: &Table, row: usize) -> bool {
        let given_test = self.given_split && table.given_split.as_ref().is_some_and(|g| g.get(row) == Some(&crate::data::Split::Test));
        given_test || self.last_time.is_some_and(|t| table.timestamps.get(row).is_some_and(|r| *r > t))
    }
}

/// Scores `challenger` and `champion` on `rows` of `table` (the challenger's test rows) with the
/// challenger's headline metric: RMSE for remaining life, F1 for the failure classifier, PR AUC against the
/// same ground truth (or proxy) for the anomaly detector, MASE on the held-out days after the live model's data
/// for the forecaster (`rows` are not used: its held-out part is the end of the grid). Models of the same type
/// only; a live model that cannot read this data (another set of sensors) is not compared.
pub fn compare(
    table: &Table,
    params: &TrainParams,
    rows: &[usize],
    challenger: &Payload,
    (champion, champion_version, seen): (&Payload, u32, ChampionData),
) -> Comparison {
    if let (Payload::Forecast(new), Payload::Forecast(live)) = (challenger, champion) {
        // Held out by time: the days after the live model's data are unseen by it, whatever its split.
        return finish(champion_version, forecast::compare_held_out(new, live, table).map(|(a, b, n)| ("mase", false, a, b, n)));
    }
    let unseen: Vec<usize> = rows.iter().copied().filter(|&r| seen.unseen(table, r)).collect();
    if unseen.is_empty() && !rows.is_empty() {
        return Comparison::not_compared(
            champion_version,
            format!(
                "none of the {} held-out rows is known to be unseen by v{champion_version} (its split differs, and no row is newer than its data)",
                rows.len()
            ),
        );
    }
    let rows = unseen.as_slice();
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
        (Payload::Anomaly(new), Payload::Anomaly(live)) => match anomaly::truth(table, params, rows) {
            None => Err("the data has no anomaly labels, RUL or failure label to judge detectors by".to_string()),
            Some((_, y, _)) if !y.iter().any(|b| *b) => Err("the held-out rows hold no abnormal period: PR AUC says nothing".to_string()),
            Some((rows, y, _)) => {
                // Each row judged against its run's threshold, as in evaluation; PR AUC needs only the order.
                let pr_auc = |m: &anomaly::AnomalyModel| -> Result<f64, String> {
                    let all = m.score_table(table).map_err(|e| e.to_string())?;
                    let s: Vec<f64> = rows.iter().map(|&r| all.get(r).map_or(f64::NAN, |x| x.score - x.threshold)).collect();
                    metrics::classification_metrics(&y, &s, 0.0).pr_auc.ok_or_else(|| "no PR AUC on these rows".to_string())
                };
                match (pr_auc(new), pr_auc(live)) {
                    (Ok(a), Ok(b)) => Ok(("pr_auc", true, a, b, rows.len())),
                    (_, Err(e)) => Err(format!("the live model cannot score this data ({e})")),
                    (Err(e), _) => Err(e),
                }
            }
        },
        (a, b) if a.model_type() != b.model_type() => Err(format!("the live model is a {} model", b.model_type())),
        (a, _) => Err(format!("{} models are not compared on the same rows yet", a.model_type())),
    };
    finish(champion_version, outcome)
}

/// The comparison from (metric, higher is better, challenger's, champion's, rows), or why there is none.
fn finish(champion_version: u32, outcome: Result<(&str, bool, f64, f64, usize), String>) -> Comparison {
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

    /// One simulated machine of 3,000 hourly rows, loaded.
    fn simulated_machine() -> Table {
        let dir = tempfile::tempdir().unwrap();
        let opts = FleetOptions { out_dir: dir.path().to_path_buf(), machines: 1, rows: 3000, seed: 5, ..Default::default() };
        let fleet = simulate_fleet(&opts).unwrap();
        crate::data::load_machine(dir.path(), &fleet[0].id).unwrap()
    }

    #[test]
    fn a_model_fitted_on_scrambled_readings_loses_to_one_fitted_on_the_real_ones_on_the_same_held_out_rows() {
        let table = simulated_machine();
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
        let given = ChampionData { given_split: true, last_time: None };
        let full = TrainParams { quality: Quality::Fast, threads: 1, ..Default::default() };
        // The same rows with each sensor's values moved half the table along: nothing left to learn from.
        let scramble = |table: &Table| {
            let mut scrambled = table.clone();
            for s in &mut scrambled.sensors {
                let half = s.values.len() / 2;
                s.values.rotate_left(half);
            }
            scrambled
        };
        // For a detector of what is unlike healthy rows, moving values keeps them as healthy as before; one fitted
        // where the step is everywhere but at the end of lives has learnt the opposite of what matters.
        let mut inverted = table.clone();
        for (v, r) in inverted.sensors[0].values.iter_mut().zip(&rul) {
            if *r > 48.0 {
                *v += 5.0;
            }
        }
        // This small machine's readings say little about RUL (its model does no better than the training mean), so the
        // RUL model, too, gets one sensor with something to learn: a ramp of five standard deviations over the last
        // 200 h of each life.
        let mut ramped = table.clone();
        let values: Vec<f64> = ramped.sensors[0].values.iter().copied().filter(|v| v.is_finite()).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
        for (v, r) in ramped.sensors[0].values.iter_mut().zip(&rul) {
            *v += 5.0 * sd * (1.0 - r / 200.0).max(0.0);
        }
        let cases = [
            (ModelType::Regression, &ramped, scramble(&ramped)),
            (ModelType::Classification, &stepped, scramble(&stepped)),
            (ModelType::Anomaly, &stepped, inverted),
        ];
        for (t, table, weak_table) in cases {
            let strong = crate::ml::train(t, table, &full, &ctx()).unwrap();
            let weak = crate::ml::train(t, &weak_table, &full, &ctx()).unwrap();
            let rows = &strong.report.test_rows;
            assert!(!rows.is_empty());
            let c = compare(table, &full, rows, &strong.payload, (&weak.payload, 1, given));
            assert!(c.not_worse && c.rows > 0, "{t}: {}", c.sentence());
            let c = compare(table, &full, rows, &weak.payload, (&strong.payload, 1, given));
            assert!(!c.not_worse, "{t}: the weak model is worse: {}", c.sentence());
            // The model's own test metric is what the comparison computes for it.
            let own = compare(table, &full, rows, &strong.payload, (&strong.payload, 1, given));
            assert!(own.not_worse && own.challenger == own.champion, "{t}: {own:?}");
            assert_eq!(own.challenger, Some(strong.report.headline.value), "{t}: the same rows and metric as the report's headline");
            // A live model whose split was not the given one may have been fitted on these rows: only rows newer
            // than its data count, and here there are none.
            let other_split = ChampionData { given_split: false, last_time: table.timestamps.iter().copied().reduce(f64::max) };
            let c = compare(table, &full, rows, &weak.payload, (&strong.payload, 1, other_split));
            assert!(c.not_worse && c.challenger.is_none() && c.note.as_deref().unwrap_or("").contains("unseen"), "{t}: {c:?}");
            let before_test = ChampionData { given_split: false, last_time: Some(table.timestamps[rows[0]] - 1.0) };
            assert!(
                !compare(table, &full, rows, &weak.payload, (&strong.payload, 1, before_test)).not_worse,
                "{t}: rows after its data count"
            );
        }
    }

    #[test]
    fn a_forecaster_is_compared_on_the_held_out_days_the_live_one_never_saw() {
        use crate::ml::engines::forecast::{FitSpec, Model, ModelKind};
        let table = simulated_machine();
        let params = TrainParams { quality: Quality::Fast, threads: 1, ..Default::default() };
        let trained =
            crate::ml::train(ModelType::Timeseries, &table, &params, &TrainContext::detached(Duration::from_secs(120), 1)).unwrap();
        let Payload::Forecast(strong) = &trained.payload else { panic!("not a forecaster") };
        let first = table.timestamps[0];
        // Live since before every held-out day, and a weak recipe: seasonal naive at a lag of 7 h on hourly data
        // with a daily cycle.
        let mut earlier = strong.clone();
        earlier.fitted_until = first;
        let mut weak = earlier.clone();
        for s in &mut weak.sensors {
            let y: Vec<f64> = table.sensor(&s.sensor).unwrap().values.iter().copied().filter(|v| v.is_finite()).collect();
            s.model = Model::fit_spec(ModelKind::SeasonalNaive, &y, &FitSpec::new(vec![7], weak.horizon), &mut |_| true).unwrap();
            s.periods = vec![7];
        }
        let (weak, earlier) = (Payload::Forecast(weak), Payload::Forecast(earlier));
        let seen = ChampionData::default();
        let c = compare(&table, &params, &[], &trained.payload, (&weak, 1, seen));
        assert!(c.not_worse && c.metric == "mase" && c.rows > 0, "{}", c.sentence());
        let c = compare(&table, &params, &[], &weak, (&earlier, 1, seen));
        assert!(!c.not_worse && c.challenger > c.champion, "the weak recipe is worse: {}", c.sentence());
        let own = compare(&table, &params, &[], &trained.payload, (&earlier, 1, seen));
        assert_eq!(own.challenger, own.champion);
        let headline = trained.report.headline.value;
        assert!((own.challenger.unwrap() - headline).abs() < 1e-9, "{own:?} against the report's {headline}");
        // Live on all of this data: no held-out day is unseen by it.
        let c = compare(&table, &params, &[], &trained.payload, (&trained.payload, 3, seen));
        assert!(c.not_worse && c.challenger.is_none() && c.note.as_deref().unwrap_or("").contains("newer"), "{c:?}");
    }
}
