//! "Will this machine fail soon?": GBDT with class weighting, threshold tuned on validation for F1.
use super::supervised::{self, Prepared, candidates, fit_candidate, leader};
use crate::data::Table;
use crate::ml::engines::gbdt;
use crate::ml::error::MlError;
use crate::ml::recent::Recent;
use crate::ml::report::{Headline, Report, Stopwatch, top_importance};
use crate::ml::shared::context::TrainContext;
use crate::ml::shared::features::FeatureSpec;
use crate::ml::shared::metrics;
use crate::ml::shared::params::{ModelType, TrainParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassifierModel {
    pub spec: FeatureSpec,
    pub model: gbdt::Model,
    /// Tuned on validation for F1.
    pub threshold: f64,
    pub target: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailureAnswer {
    pub failure_probability: f64,
    pub will_fail: bool,
    pub threshold: f64,
    /// healthy / degrading / warning / critical, relative to the tuned threshold.
    pub health: String,
    pub target: String,
}

impl ClassifierModel {
    pub fn predict(&self, recent: &Recent) -> Result<FailureAnswer, MlError> {
        let p = self.model.predict(&recent.last_row_features(&self.spec)?);
        let t = self.threshold;
        let health = if p >= (1.0 + t) / 2.0 {
            "critical"
        } else if p >= t {
            "warning"
        } else if p >= t / 2.0 {
            "degrading"
        } else {
            "healthy"
        };
        Ok(FailureAnswer { failure_probability: p, will_fail: p >= t, threshold: t, health: health.into(), target: self.target.clone() })
    }
}

/// The label column if the data has one, else "RUL ≤ horizon". Never built from sensor readings.
pub fn target(table: &Table, params: &TrainParams) -> Result<(Vec<f64>, String), MlError> {
    if let Some(label) = &table.label {
        return Ok((
            label.iter().map(|v| if v.is_finite() { f64::from(u8::from(*v >= 0.5)) } else { f64::NAN }).collect(),
            "the data's failure label".into(),
        ));
    }
    if let Some(rul) = &table.rul {
        let h = params.horizon_hours;
        let y = rul.iter().map(|r| if r.is_finite() { f64::from(u8::from(*r <= h)) } else { f64::NAN }).collect();
        return Ok((y, format!("failure within {h} h (RUL ≤ {h} h)")));
    }
    Err(MlError::Unsupported(
        "classification needs a failure label or a RUL column to define \"fails soon\"; this machine has neither".into(),
    ))
}

/// Why the training rows hold one class, and what to change: with a RUL column the horizon decides it.
fn one_class_advice(table: &Table, params: &TrainParams, positives: usize, n: usize) -> String {
    let head = format!("the training rows hold only one class ({positives} positives of {n}); nothing to learn");
    if table.label.is_some() || table.rul.is_none() {
        return format!("{head}: the failure label has one value on every training row");
    }
    let h = params.horizon_hours;
    let longest =
        table.life_ranges().iter().map(|(_, r)| (table.timestamps[r.end - 1] - table.timestamps[r.start]) / 3600.0).fold(0.0, f64::max);
    if positives == n {
        let suggest = (longest / 4.0).clamp(1.0, 48.0).round();
        format!(
            "{head}: the horizon ({h} h) is longer than every life (the longest is {longest:.0} h), so every row counts as \"fails within the horizon\"; try horizon_hours = {suggest}"
        )
    } else {
        format!(
            "{head}: no training row is within {h} h of a failure (no life in the training split ends in one, or the horizon is too short); try a longer horizon_hours, e.g. 48"
        )
    }
}

fn as_bool(y: &[f32]) -> Vec<bool> {
    y.iter().map(|v| *v >= 0.5).collect()
}

pub fn train(table: &Table, params: &TrainParams, ctx: &TrainContext) -> Result<(ClassifierModel, Report), MlError> {
    let mut sw = Stopwatch::start();
    let (y_all, target_text) = target(table, params)?;
    let mut p = supervised::prepare(table, params, ctx, &y_all, true, &mut sw)?;
    let mut report = Report::new(ModelType::Classification, &table.machine_id);
    report.target = target_text;
    let ytr = as_bool(&p.train.y);
    let positives = ytr.iter().filter(|b| **b).count();
    if positives == 0 || positives == ytr.len() {
        return Err(MlError::NotEnoughData(one_class_advice(table, params, positives, ytr.len())));
    }
    if positives < 20 {
        report.warnings.push(format!("only {positives} positive training rows: metrics will be noisy"));
    }
    // Weight the rare class up, but only by the square root of the imbalance: full balancing over-predicts
    // failures. Whether weighting helps at all depends on the data, so an unweighted candidate competes too.
    let pos_weight = ((ytr.len() - positives) as f64 / positives as f64).sqrt() as f32;
    let weights: Vec<f32> = ytr.iter().map(|b| if *b { pos_weight } else { 1.0 }).collect();

    ctx.stage("train", 0.2, 0.85, format!("{} training rows, {positives} positive", ytr.len()));
    supervised::screen_features(&mut p, gbdt::Objective::Binary, params.seed, ctx, &mut sw)?;
    let yval = as_bool(&p.val.y);
    let cands = candidates(gbdt::Objective::Binary, params.quality, params.seed, ctx.threads(), p.train.rows.len());
    let mut best: Option<(f64, supervised::Fitted)> = None;
    let mut board = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let n = cands.len() as f64;
        let w = c.class_weighted.then_some(weights.as_slice());
        let fitted = fit_candidate(c, &p, w, ctx, i as f64 / n, (i + 1) as f64 / n)?;
        let scores = fitted.model.predict_matrix(&p.val.x);
        // Threshold-free and robust to rare positives: average precision on validation picks the model.
        let score = metrics::pr_auc(&yval, &scores).unwrap_or(0.0);
        let row = leader(c.name, "validation PR AUC", score, &fitted, false);
        ctx.leaderboard(row.clone());
        board.push(row);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, fitted));
        }
        if ctx.out_of_time() {
            break;
        }
    }
    let Some((_, chosen)) = best else { return Err(MlError::NoCandidate) };
    sw.lap("train");
    ctx.checkpoint()?;

    ctx.stage("evaluate", 0.85, 1.0, "threshold on validation, metrics on test");
    let val_scores = chosen.model.predict_matrix(&p.val.x);
    let threshold = match metrics::best_f1_threshold(&yval, &val_scores) {
        Some((t, _)) => t,
        None => {
            report.warnings.push("validation has no positive rows: threshold left at 0.5".into());
            0.5
        }
    };
    let yte = as_bool(&p.test.y);
    let test_scores = p.score_test(table, &chosen.model)?;
    let m = metrics::classification_metrics(&yte, &test_scores, threshold);
    let base = metrics::prior_baseline(&ytr, &yte);
    let always = metrics::always_positive_baseline(&yte);
    if m.positives == 0 {
        report.warnings.push("the test split has no positive rows: recall, F1 and AUC are undefined".into());
    }
    report.headline = Headline::new("f1", m.f1, always.always_positive_f1, "always predict failure", true);
    report.metrics = serde_json::to_value(m).unwrap_or_default();
    report.baseline = json!({ "prior": base, "always_positive_f1": always.always_positive_f1, "prevalence": always.prevalence });
    report.confusion = Some(m.confusion);
    report.leaderboard = supervised::with_chosen(board, chosen.name);
    report.feature_importance = top_importance(&p.spec.names(), &chosen.model.feature_importance_gain(), 20);
    report.samples = score_samples(&p, &test_scores, &yte);
    report.split = supervised::split_summary(&p);
    report.test_rows = p.test.rows.clone();
    report.data = supervised::data_summary(table, &p);
    sw.lap("evaluate");
    report.timings = sw.laps.clone();
    report.train_seconds = sw.total();
    report.warnings.extend(p.dropped.iter().map(|s| format!("sensor {s} is constant on the training rows and was dropped")));
    let model = ClassifierModel { spec: p.spec, model: chosen.model, threshold, target: report.target.clone() };
    Ok((model, report))
}

/// Score histograms of test rows by true class, for the page's distribution plot.
fn score_samples(_p: &Prepared, scores: &[f64], y: &[bool]) -> serde_json::Value {
    let mut pos = [0u32; 20];
    let mut neg = [0u32; 20];
    for (s, t) in scores.iter().zip(y) {
        let bin = ((s.clamp(0.0, 1.0) * 20.0) as usize).min(19);
        if *t { pos[bin] += 1 } else { neg[bin] += 1 }
    }
    json!({ "score_histogram": { "bins": 20, "positive": pos, "negative": neg } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::shared::features::features_for_rows;
    use crate::ml::shared::params::Quality;
    use crate::ml::shared::split::plan_split;
    use std::path::Path;
    use std::time::Duration;

    /// AI4I 2020 as `examples/` describes it, when the shared datasets sit beside the repository.
    fn ai4i() -> Option<Table> {
        let dir = Path::new("examples/ai4i2020");
        if !dir.join("../../../shared/datasets").is_dir() {
            eprintln!("skipping ai4i2020: ../shared/datasets is absent");
            return None;
        }
        Some(crate::data::load_machine_dir(dir).unwrap())
    }

    #[test]
    fn the_decision_threshold_comes_from_validation_rows_only() {
        let Some(table) = ai4i() else { return };
        let params = TrainParams { quality: Quality::Fast, threads: 2, ..TrainParams::default() };
        let (m, report) = train(&table, &params, &TrainContext::detached(Duration::from_secs(300), 2)).unwrap();
        let (y, _) = target(&table, &params).unwrap();
        let plan = plan_split(&table, params.seed, 0, Some(&y)).unwrap();
        let scores_on = |rows: &[usize]| {
            let x = features_for_rows(&m.spec, &table, rows).unwrap();
            m.model.predict_matrix(&gbdt::Matrix::new(x.n_rows, x.n_cols, x.data).unwrap())
        };
        let labels = |rows: &[usize]| rows.iter().map(|&r| y[r] >= 0.5).collect::<Vec<bool>>();
        let (t_val, _) = metrics::best_f1_threshold(&labels(&plan.val), &scores_on(&plan.val)).unwrap();
        let (t_test, _) = metrics::best_f1_threshold(&labels(&plan.test), &scores_on(&plan.test)).unwrap();
        assert_eq!(m.threshold, t_val, "the stored threshold is the validation optimum");
        assert_ne!(m.threshold, t_test, "and not the test optimum");
        assert_eq!(report.metrics["threshold"].as_f64().unwrap(), t_val);
    }
}
