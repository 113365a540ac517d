//! "How many hours until failure?": GBDT on RUL capped at a piecewise limit, early stopping on validation lives.
use super::supervised::{self, Prepared, candidates, fit_candidate};
use crate::data::Table;
use crate::ml::engines::gbdt;
use crate::ml::error::MlError;
use crate::ml::recent::Recent;
use crate::ml::report::{Headline, Report, Stopwatch, sample_indices, top_importance};
use crate::ml::shared::context::TrainContext;
use crate::ml::shared::features::{FeatureSpec, features_for_rows};
use crate::ml::shared::metrics;
use crate::ml::shared::params::{ModelType, TrainParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegressorModel {
    pub spec: FeatureSpec,
    pub model: gbdt::Model,
    pub cap_hours: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RulAnswer {
    pub rul_hours: f64,
    pub rul_days: f64,
    pub urgency: String,
    /// The model never predicts past its cap: a value at the cap means "at least this long".
    pub at_cap: bool,
    pub cap_hours: f64,
}

/// Urgency classes for RUL answers, hours (configurable by the caller; these are the replaced stack's defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UrgencyHours {
    pub critical: f64,
    pub high: f64,
    pub medium: f64,
}

impl Default for UrgencyHours {
    fn default() -> Self {
        UrgencyHours { critical: 24.0, high: 72.0, medium: 168.0 }
    }
}

impl RegressorModel {
    pub fn predict(&self, recent: &Recent, urgency: &UrgencyHours) -> Result<RulAnswer, MlError> {
        let h = self.model.predict(&recent.last_row_features(&self.spec)?).clamp(0.0, self.cap_hours);
        let class = if h < urgency.critical {
            "critical"
        } else if h < urgency.high {
            "high"
        } else if h < urgency.medium {
            "medium"
        } else {
            "low"
        };
        Ok(RulAnswer {
            rul_hours: h,
            rul_days: h / 24.0,
            urgency: class.into(),
            at_cap: h >= self.cap_hours * 0.98,
            cap_hours: self.cap_hours,
        })
    }

    /// Hours to failure at rows of a table (each from the history before it in its life), capped like the answers.
    pub fn predict_rows(&self, table: &Table, rows: &[usize]) -> Result<Vec<f64>, MlError> {
        let x = features_for_rows(&self.spec, table, rows)?;
        let x = gbdt::Matrix::new(x.n_rows, x.n_cols, x.data)?;
        Ok(self.model.predict_matrix(&x).into_iter().map(|v| v.clamp(0.0, self.cap_hours)).collect())
    }
}

/// The cap: the caller's, else the data description's, else half the median life length — degradation is
/// rarely visible earlier, and an uncapped target asks the model to tell "1,000 h left" from "900 h left" in
/// healthy data, which no sensor can. The report states which rule applied.
pub fn choose_cap(table: &Table, params: &TrainParams, hint: Option<f64>) -> Result<(f64, String), MlError> {
    if let Some(c) = params.rul_cap_hours {
        return Ok((c, format!("RUL capped at {c} h (given)")));
    }
    if let Some(c) = hint {
        return Ok((c, format!("RUL capped at {c} h (from the data's description)")));
    }
    let rul = table.rul.as_ref().ok_or_else(no_rul)?;
    let mut lengths: Vec<f64> = table
        .life_ranges()
        .iter()
        .map(|(_, r)| rul[r.clone()].iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max))
        .filter(|v| *v > 0.0)
        .collect();
    if lengths.is_empty() {
        return Err(MlError::NotEnoughData("the RUL column has no positive values".into()));
    }
    lengths.sort_by(f64::total_cmp);
    let cap = (lengths[lengths.len() / 2] * 0.5).max(1.0).round();
    Ok((cap, format!("RUL capped at {cap} h (half the median life of {} lives)", lengths.len())))
}

fn no_rul() -> MlError {
    MlError::Unsupported("regression needs a RUL column (hours to failure) or lives that run to failure; this machine has neither".into())
}

pub fn train(table: &Table, params: &TrainParams, ctx: &TrainContext) -> Result<(RegressorModel, Report), MlError> {
    let mut sw = Stopwatch::start();
    let rul = table.rul.as_ref().ok_or_else(no_rul)?;
    let (cap, cap_text) = choose_cap(table, params, table.rul_cap_hint)?;
    let y: Vec<f64> = rul.iter().map(|r| if r.is_finite() { r.min(cap) } else { f64::NAN }).collect();
    let mut p = supervised::prepare(table, params, ctx, &y, false, &mut sw)?;
    let mut report = Report::new(ModelType::Regression, &table.machine_id);
    report.target = format!("remaining useful life in hours; {cap_text}");
    ctx.log(cap_text);

    ctx.stage("train", 0.2, 0.85, format!("{} training rows", p.train.rows.len()));
    supervised::screen_features(&mut p, gbdt::Objective::Regression, params.seed, ctx, &mut sw)?;
    let cands = candidates(gbdt::Objective::Regression, params.quality, params.seed, ctx.threads(), p.train.rows.len());
    let yval: Vec<f64> = p.val.y.iter().map(|v| f64::from(*v)).collect();
    let mut best: Option<(f64, supervised::Fitted)> = None;
    let mut board = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let n = cands.len() as f64;
        let fitted = fit_candidate(c, &p, None, ctx, i as f64 / n, (i + 1) as f64 / n)?;
        let pred = fitted.model.predict_matrix(&p.val.x);
        let rmse = metrics::regression_metrics(&yval, &pred, cap * 0.1).map_or(f64::INFINITY, |m| m.rmse);
        let row = supervised::leader(c.name, "validation RMSE (h)", rmse, &fitted, false);
        ctx.leaderboard(row.clone());
        board.push(row);
        if best.as_ref().is_none_or(|(s, _)| rmse < *s) {
            best = Some((rmse, fitted));
        }
        if ctx.out_of_time() {
            break;
        }
    }
    let Some((_, chosen)) = best else { return Err(MlError::NoCandidate) };
    sw.lap("train");
    ctx.checkpoint()?;

    ctx.stage("evaluate", 0.85, 1.0, "metrics on test lives");
    let yte: Vec<f64> = p.test.y.iter().map(|v| f64::from(*v)).collect();
    let pred: Vec<f64> = p.score_test(table, &chosen.model)?.into_iter().map(|v| v.clamp(0.0, cap)).collect();
    let m = metrics::regression_metrics(&yte, &pred, cap * 0.1).ok_or_else(|| MlError::NotEnoughData("no test rows to evaluate".into()))?;
    let train_mean = p.train.y.iter().map(|v| f64::from(*v)).sum::<f64>() / p.train.y.len().max(1) as f64;
    let base = metrics::regression_metrics(&yte, &vec![train_mean; yte.len()], cap * 0.1);
    let base_rmse = base.as_ref().map_or(f64::NAN, |b| b.rmse);
    report.headline = Headline::new("rmse_hours", m.rmse, base_rmse, "training mean", false).in_unit("h");
    report.metrics = json!({ "rmse": m.rmse, "mae": m.mae, "r2": m.r2, "bias": m.bias, "nasa_score": m.nasa_score,
        "mae_critical": m.mae_critical, "critical_limit_hours": cap * 0.1, "cap_hours": cap, "n": m.n });
    report.baseline = json!({ "name": "training mean", "value_hours": train_mean, "metrics": base });
    report.leaderboard = supervised::with_chosen(board, chosen.name);
    report.feature_importance = top_importance(&p.spec.names(), &chosen.model.feature_importance_gain(), 20);
    report.samples = predicted_vs_actual(table, &p, &yte, &pred);
    report.split = supervised::split_summary(&p);
    report.test_rows = p.test.rows.clone();
    report.data = supervised::data_summary(table, &p);
    report.warnings.extend(p.dropped.iter().map(|s| format!("sensor {s} is constant on the training rows and was dropped")));
    sw.lap("evaluate");
    report.timings = sw.laps.clone();
    report.train_seconds = sw.total();
    Ok((RegressorModel { spec: p.spec, model: chosen.model, cap_hours: cap }, report))
}

/// Up to three test lives, each thinned to ≤ 150 points: hours since the life began, true and predicted RUL.
fn predicted_vs_actual(table: &Table, p: &Prepared, actual: &[f64], pred: &[f64]) -> serde_json::Value {
    let mut lives: Vec<serde_json::Value> = Vec::new();
    let mut start = 0;
    while start < p.test.rows.len() && lives.len() < 3 {
        let life = table.life[p.test.rows[start]];
        let end = (start..p.test.rows.len()).find(|&i| table.life[p.test.rows[i]] != life).unwrap_or(p.test.rows.len());
        let t0 = table.timestamps[p.test.rows[start]];
        let pts: Vec<[f64; 3]> = sample_indices(end - start, 150)
            .into_iter()
            .map(|k| {
                let i = start + k;
                [((table.timestamps[p.test.rows[i]] - t0) / 3600.0 * 10.0).round() / 10.0, actual[i], (pred[i] * 10.0).round() / 10.0]
            })
            .collect();
        lives.push(json!({ "life": life, "points": pts }));
        start = end;
    }
    json!({ "predicted_vs_actual": { "columns": ["hours", "actual", "predicted"], "lives": lives } })
}
