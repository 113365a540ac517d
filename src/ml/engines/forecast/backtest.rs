//! Rolling-origin evaluation and per-series model selection.

use super::metrics::{coverage, seasonal_naive_mae, smape};
use super::models::ModelKind;
use super::{
    ForecastError, Forecaster, MIN_ORIGINS_FOR_EMPIRICAL, Model, Progress, Result, State, check_finite, effective_period, fill_gaps, report,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestScore {
    pub mae: f64,
    /// Percent, 0..=200.
    pub smape: f64,
    /// MAE over the in-sample seasonal-naive MAE of the history before the first origin;
    /// `None` when that history is constant (the scale would be 0).
    pub mase: Option<f64>,
    pub coverage80: f64,
    pub coverage95: f64,
    pub origins: usize,
}

/// The chosen model (refitted on the whole series) and how every candidate scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    pub model: Model,
    pub leaderboard: Vec<(String, BacktestScore)>,
    /// Seasonal period actually used (1 when the series was too short for `period`).
    pub period: usize,
}

struct Detailed {
    score: BacktestScore,
    /// |error| at each step ahead, one entry per origin.
    abs_errors: Vec<Vec<f64>>,
}

/// Rolling-origin backtest on the tail of `series` (gap-free): origins every `h` steps ending `h`
/// before the end, at most `n_origins` of them, each leaving enough history to fit on. `make` fits a
/// model on the history before an origin.
pub fn backtest(
    series: &[f64],
    period: usize,
    h: usize,
    n_origins: usize,
    make: impl Fn(&[f64]) -> Result<Model>,
    progress: Progress<'_>,
) -> Result<BacktestScore> {
    let mut fit = |train: &[f64], _: Progress<'_>| make(train);
    Ok(run_backtest(series, period, h, n_origins, &mut fit, progress)?.score)
}

type FitFn<'a> = dyn FnMut(&[f64], Progress<'_>) -> Result<Model> + 'a;

fn run_backtest(
    series: &[f64],
    period: usize,
    h: usize,
    n_origins: usize,
    fit: &mut FitFn<'_>,
    progress: Progress<'_>,
) -> Result<Detailed> {
    check_finite(series)?;
    if h == 0 || n_origins == 0 {
        return Err(ForecastError::InvalidParameter("backtest needs h >= 1 and n_origins >= 1".into()));
    }
    let origins = origin_points(series.len(), period, h, n_origins)?;
    let mut abs_errors = vec![Vec::with_capacity(origins.len()); h];
    let (mut actual_all, mut mean_all) = (Vec::new(), Vec::new());
    let (mut lo80, mut hi80, mut lo95, mut hi95) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (j, &o) in origins.iter().enumerate() {
        let span = 1.0 / origins.len() as f64;
        let model = fit(&series[..o], &mut |f| progress((j as f64 + f) * span))?;
        let fc = model.forecast(h);
        let actual = &series[o..o + h];
        for (k, (a, m)) in actual.iter().zip(&fc.mean).enumerate() {
            abs_errors[k].push((a - m).abs());
        }
        actual_all.extend_from_slice(actual);
        mean_all.extend(fc.mean);
        lo80.extend(fc.lo80);
        hi80.extend(fc.hi80);
        lo95.extend(fc.lo95);
        hi95.extend(fc.hi95);
        report(progress, (j + 1) as f64 * span)?;
    }
    let mae = super::mae(&actual_all, &mean_all);
    let scale = seasonal_naive_mae(&series[..origins[0]], period).filter(|s| *s > 0.0);
    let score = BacktestScore {
        mae,
        smape: smape(&actual_all, &mean_all),
        mase: scale.map(|s| mae / s),
        coverage80: coverage(&actual_all, &lo80, &hi80),
        coverage95: coverage(&actual_all, &lo95, &hi95),
        origins: origins.len(),
    };
    Ok(Detailed { score, abs_errors })
}

/// Ascending forecast origins; each keeps at least `min_train` values of history.
fn origin_points(n: usize, period: usize, h: usize, n_origins: usize) -> Result<Vec<usize>> {
    // Three periods let seasonal models start; half the series keeps short series testable.
    let min_train = 3usize.saturating_mul(period.max(1)).min(n / 2).max(10);
    let need = min_train + h;
    if n < need {
        return Err(ForecastError::TooShort { got: n, need });
    }
    let mut origins: Vec<usize> = (0..n_origins).map_while(|i| (n - h).checked_sub(i * h)).filter(|&o| o >= min_train).collect();
    origins.reverse();
    if origins.is_empty() {
        return Err(ForecastError::TooShort { got: n, need });
    }
    Ok(origins)
}

/// Backtests every candidate on the tail of `series` (training data only: the caller keeps its
/// test data out), picks the lowest MAE (ties: the simpler model) and refits it on the whole series.
///
/// Gaps are filled first. A constant series gets a naive model with zero-width intervals; a series
/// too short for even one backtest origin gets a naive model and an empty leaderboard.
pub fn select_and_fit(series: &[f64], period: usize, h: usize, n_origins: usize, progress: Progress<'_>) -> Result<Selected> {
    if h == 0 || n_origins == 0 {
        return Err(ForecastError::InvalidParameter("select_and_fit needs h >= 1 and n_origins >= 1".into()));
    }
    let y = fill_gaps(series)?;
    let m = effective_period(period, y.len());
    report(progress, 0.0)?;
    if is_constant(&y) {
        let model = Model { kind: ModelKind::Naive, state: State::Naive { last: y[y.len() - 1] }, sigma: 0.0, empirical: vec![] };
        report(progress, 1.0)?;
        return Ok(Selected { model, leaderboard: vec![], period: m });
    }
    let candidates = ModelKind::candidates(m);
    let units = (candidates.len() + 1) as f64;
    let mut leaderboard = Vec::new();
    let mut best: Option<(ModelKind, Detailed)> = None;
    for (i, &kind) in candidates.iter().enumerate() {
        let mut fit = |train: &[f64], p: Progress<'_>| Model::fit(kind, train, m, p);
        let result = run_backtest(&y, m, h, n_origins, &mut fit, &mut |f| progress((i as f64 + f) / units));
        let detailed = match result {
            Ok(d) => d,
            Err(ForecastError::Cancelled) => return Err(ForecastError::Cancelled),
            // Too short for any origin: the same holds for every candidate.
            Err(ForecastError::TooShort { .. }) => break,
            // A candidate that cannot fit this series just drops out of the race.
            Err(_) => continue,
        };
        leaderboard.push((kind.name().to_string(), detailed.score.clone()));
        if best.as_ref().is_none_or(|(_, b)| detailed.score.mae < b.score.mae) {
            best = Some((kind, detailed));
        }
    }
    let base = candidates.len() as f64 / units;
    let refit_progress = &mut |f: f64| progress(base + f / units);
    let model = match best {
        Some((kind, detailed)) => {
            let mut model = Model::fit(kind, &y, m, refit_progress)?;
            if detailed.score.origins >= MIN_ORIGINS_FOR_EMPIRICAL {
                model.empirical = empirical_quantiles(detailed.abs_errors);
            }
            model
        }
        None => Model::fit(ModelKind::Naive, &y, m, refit_progress)?,
    };
    report(progress, 1.0)?;
    Ok(Selected { model, leaderboard, period: m })
}

fn is_constant(y: &[f64]) -> bool {
    let (lo, hi) = y.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    hi - lo <= 1e-12 * lo.abs().max(hi.abs()).max(1e-300)
}

/// Per step: 80 % and 95 % quantiles of |error|, made non-decreasing in the horizon (uncertainty
/// does not shrink further out; a dip is sampling noise from few origins).
fn empirical_quantiles(abs_errors: Vec<Vec<f64>>) -> Vec<[f64; 2]> {
    let mut out = Vec::with_capacity(abs_errors.len());
    let mut running = [0.0f64, 0.0];
    for mut errs in abs_errors {
        errs.retain(|e| e.is_finite());
        errs.sort_unstable_by(f64::total_cmp);
        let q = |p: f64| {
            if errs.is_empty() {
                return 0.0;
            }
            let pos = p * (errs.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(errs.len() - 1);
            errs[lo] + (errs[hi] - errs[lo]) * (pos - lo as f64)
        };
        running = [running[0].max(q(0.8)), running[1].max(q(0.95))];
        out.push(running);
    }
    out
}
