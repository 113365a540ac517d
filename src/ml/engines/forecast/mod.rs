//! Univariate forecasting of each sensor on a regular grid, `h` steps ahead: baselines, additive
//! damped Holt–Winters and a seasonal-decomposition + damped ETS model, chosen per series by a
//! rolling-origin backtest.
//!
//! Fitted models keep only what forecasting needs (levels, trends, one season of offsets,
//! residual scales), so they serialise to a few hundred bytes per sensor.
//!
//! ## Seasons
//! [`candidate_periods`] gives the day and the week in grid steps; [`detect_periods`] keeps those the
//! autocorrelation of the series shows (none for a series without a cycle). Several seasons are removed one
//! after another ([`ModelKind::Mstl`]); seasonal naive and the seasonal median are tried at every period the
//! history supports.
//!
//! ## Prediction intervals
//! Each model stores σ, the sd of its in-sample one-step residuals, and forecasts step `k` with
//! the model's analytic variance factor `v_k` (e.g. `k` for naive, `1 + Σ c_j²` for ETS):
//! half-width `z·σ·√v_k` with z = 1.2816 (80 %) / 1.96 (95 %). When the model was chosen by
//! [`select_and_fit`] with at least [`MIN_ORIGINS_FOR_EMPIRICAL`] backtest origins (or two holding 100
//! readings between them), it stores calibrated half-widths per step instead: the error scale per step (RMS
//! over the origins, made non-decreasing) times the 80 % / 95 % quantiles of |error| / scale pooled over every
//! step and origin. Analytic widths assume the model is right and were too wide on some series and too narrow
//! on others; the pooled quantiles hit the nominal coverage on the backtest by construction.
//!
//! ## Gaps
//! Models are fitted on gap-free series ([`fill_gaps`]). Backtests take the series with its gaps (non-finite
//! values): each origin's history is filled on its own, and only real readings are scored.
//!
//! Self-contained: depends only on `std`, `serde` and `thiserror`.

mod backtest;
mod ets;
mod metrics;
mod models;

#[cfg(test)]
pub use backtest::select_and_fit;
pub use backtest::{BacktestScore, Candidate, SelectOptions, backtest, select_with};
pub use metrics::{mae, mape_skipping_near_zero};
pub use models::{FitSpec, Member, ModelKind, State};

use serde::{Deserialize, Serialize};
use thiserror::Error;

const Z80: f64 = 1.281_551_565_5;
const Z95: f64 = 1.959_963_985;
/// Backtest origins needed before per-step empirical error quantiles are trusted.
pub const MIN_ORIGINS_FOR_EMPIRICAL: usize = 5;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ForecastError {
    #[error("cancelled")]
    Cancelled,
    #[error("empty series")]
    Empty,
    #[error("series has no finite value")]
    AllMissing,
    #[error("series has non-finite values; fill gaps first")]
    NonFinite,
    #[error("series too short: {got} values, need at least {need}")]
    TooShort { got: usize, need: usize },
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
}

pub type Result<T> = std::result::Result<T, ForecastError>;

/// Progress callback: fraction done (0..=1); returning `false` cancels with
/// [`ForecastError::Cancelled`].
pub type Progress<'a> = &'a mut dyn FnMut(f64) -> bool;

pub(crate) fn report(progress: &mut dyn FnMut(f64) -> bool, fraction: f64) -> Result<()> {
    if progress(fraction.clamp(0.0, 1.0)) { Ok(()) } else { Err(ForecastError::Cancelled) }
}

/// Point forecast and central 80 % / 95 % prediction intervals, one value per step ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub mean: Vec<f64>,
    pub lo80: Vec<f64>,
    pub hi80: Vec<f64>,
    pub lo95: Vec<f64>,
    pub hi95: Vec<f64>,
}

pub trait Forecaster {
    fn forecast(&self, h: usize) -> Forecast;
}

/// A fitted forecasting model of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub kind: ModelKind,
    pub state: State,
    /// Sd of in-sample one-step residuals.
    pub sigma: f64,
    /// Per step ahead: backtest quantiles of |error| as `[q80, q95]`; empty = analytic only.
    pub empirical: Vec<[f64; 2]>,
}

impl Model {
    /// Fits `kind` on a gap-free series. `period` is the seasonal period in steps (1 = none); it is
    /// reduced to 1 when the series holds fewer than three periods.
    pub fn fit(kind: ModelKind, series: &[f64], period: usize, progress: Progress<'_>) -> Result<Model> {
        Self::fit_spec(kind, series, &FitSpec::new(vec![period], 1), progress)
    }

    /// Fits `kind` with every season in `spec` and smoothing judged on `spec.horizon` steps ahead.
    pub fn fit_spec(kind: ModelKind, series: &[f64], spec: &FitSpec, progress: Progress<'_>) -> Result<Model> {
        check_finite(series)?;
        let (state, sigma) = models::fit_state(kind, series, spec, progress)?;
        Ok(Model { kind, state, sigma: if sigma.is_finite() { sigma } else { 0.0 }, empirical: vec![] })
    }

    /// Fits the mean of several (kind, seasons) members on one series.
    pub fn fit_combination(members: &[(ModelKind, Vec<usize>)], series: &[f64], horizon: usize, progress: Progress<'_>) -> Result<Model> {
        let mut fitted = Vec::with_capacity(members.len());
        let mut sigma = 0.0;
        for (i, (kind, periods)) in members.iter().enumerate() {
            let span = 1.0 / members.len().max(1) as f64;
            let m = Model::fit_spec(*kind, series, &FitSpec::new(periods.clone(), horizon), &mut |f| progress((i as f64 + f) * span))?;
            sigma += m.sigma / members.len() as f64;
            fitted.push(Member { kind: *kind, periods: periods.clone(), state: m.state });
        }
        Ok(Model { kind: ModelKind::Combination, state: State::Combination { members: fitted }, sigma, empirical: vec![] })
    }

    /// This model's recipe fitted again on another history (with `spec` for a single kind, each member's own
    /// seasons for a combination), keeping the calibrated interval widths.
    pub fn refit(&self, series: &[f64], spec: &FitSpec) -> Result<Model> {
        let mut m = match &self.state {
            State::Combination { members } => {
                let recipe: Vec<(ModelKind, Vec<usize>)> = members.iter().map(|m| (m.kind, m.periods.clone())).collect();
                Model::fit_combination(&recipe, series, spec.horizon, &mut |_| true)?
            }
            _ => Model::fit_spec(self.kind, series, spec, &mut |_| true)?,
        };
        m.empirical = self.empirical.clone();
        Ok(m)
    }
}

impl Forecaster for Model {
    fn forecast(&self, h: usize) -> Forecast {
        let mean = self.state.point(h);
        let factors = self.state.variance_factors(h);
        let mut f = Forecast {
            lo80: Vec::with_capacity(h),
            hi80: Vec::with_capacity(h),
            lo95: Vec::with_capacity(h),
            hi95: Vec::with_capacity(h),
            mean,
        };
        for (k, (m, v)) in f.mean.iter().zip(&factors).enumerate() {
            let sd = self.sigma * v.max(0.0).sqrt();
            let (w80, w95) = match self.empirical.get(k) {
                Some(&[e80, e95]) => (e80, e95.max(e80)),
                None => (Z80 * sd, Z95 * sd),
            };
            f.lo80.push(m - w80);
            f.hi80.push(m + w80);
            f.lo95.push(m - w95);
            f.hi95.push(m + w95);
        }
        f
    }
}

fn check_finite(series: &[f64]) -> Result<()> {
    if series.is_empty() {
        return Err(ForecastError::Empty);
    }
    if series.iter().any(|v| !v.is_finite()) {
        return Err(ForecastError::NonFinite);
    }
    Ok(())
}

/// Fills non-finite runs by linear interpolation between their finite neighbours; leading and
/// trailing runs take the nearest finite value.
pub fn fill_gaps(series: &[f64]) -> Result<Vec<f64>> {
    if series.is_empty() {
        return Err(ForecastError::Empty);
    }
    let Some(first) = series.iter().position(|v| v.is_finite()) else {
        return Err(ForecastError::AllMissing);
    };
    let mut out = series.to_vec();
    let first_value = out[first];
    out[..first].iter_mut().for_each(|v| *v = first_value);
    let mut prev = first;
    for i in first + 1..out.len() {
        if !out[i].is_finite() {
            continue;
        }
        if i > prev + 1 {
            let (a, b) = (out[prev], out[i]);
            let span = (i - prev) as f64;
            for (j, v) in out[prev + 1..i].iter_mut().enumerate() {
                *v = a + (b - a) * (j + 1) as f64 / span;
            }
        }
        prev = i;
    }
    let last_value = out[prev];
    out[prev + 1..].iter_mut().for_each(|v| *v = last_value);
    Ok(out)
}

/// Steps per day for a grid interval in seconds (24 for hourly data), at least 2. Non-finite or
/// non-positive intervals have no meaningful day and give 1 (non-seasonal).
pub fn period_from_interval(interval_seconds: f64) -> usize {
    if !(interval_seconds.is_finite() && interval_seconds > 0.0) {
        return 1;
    }
    let steps = (86_400.0 / interval_seconds).round();
    if steps >= 2.0 { steps.min(usize::MAX as f64 / 4.0) as usize } else { 2 }
}

/// The day and the week in steps of `interval_seconds` (each only when it spans at least 2 steps).
pub fn candidate_periods(interval_seconds: f64) -> Vec<usize> {
    if !(interval_seconds.is_finite() && interval_seconds > 0.0) {
        return vec![];
    }
    [86_400.0, 7.0 * 86_400.0]
        .iter()
        .map(|s| (s / interval_seconds).round())
        .filter(|&steps| (2.0..=1e7).contains(&steps))
        .map(|steps| steps as usize)
        .collect()
}

/// Autocorrelation a season must show (on the series minus its moving average over that season) to be used.
const SEASON_ACF: f64 = 0.3;
/// A longer season must correlate this much better at its own lag than at the shorter season's lag: a pure
/// daily cycle correlates at one week as well as at one day and needs no weekly season.
const LONGER_SEASON_GAIN: f64 = 0.05;

/// The candidate periods (ascending) that `y` shows a cycle at, judged on its last `3 × period` or more
/// values; empty for a series without a cycle.
pub fn detect_periods(y: &[f64], candidates: &[usize]) -> Vec<usize> {
    let mut found: Vec<usize> = Vec::new();
    let mut sorted = candidates.to_vec();
    sorted.sort_unstable();
    for &p in &sorted {
        if p < 2 || y.len() < 3 * p {
            continue;
        }
        let detrended = detrend(y, p);
        let r = acf(&detrended, p);
        let shorter_best = found.iter().map(|&q| acf(&detrended, q)).fold(f64::NEG_INFINITY, f64::max);
        if r >= SEASON_ACF && (found.is_empty() || r >= shorter_best + LONGER_SEASON_GAIN) {
            found.push(p);
        }
    }
    found
}

/// `y` minus its centred moving average over `p` steps (where the window fits): what is left is the cycle.
fn detrend(y: &[f64], p: usize) -> Vec<f64> {
    let mut prefix = Vec::with_capacity(y.len() + 1);
    prefix.push(0.0);
    for v in y {
        prefix.push(prefix[prefix.len() - 1] + v);
    }
    let half = p / 2;
    (half..y.len().saturating_sub(p - half)).map(|t| y[t] - (prefix[t - half + p] - prefix[t - half]) / p as f64).collect()
}

/// Sample autocorrelation at `lag` (0 when undefined).
fn acf(x: &[f64], lag: usize) -> f64 {
    if x.len() <= lag + 1 {
        return 0.0;
    }
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    let var: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    if var <= 0.0 {
        return 0.0;
    }
    x.windows(lag + 1).map(|w| (w[0] - mean) * (w[lag] - mean)).sum::<f64>() / var
}

/// `period` if the series holds at least three full periods, else 1 (a seasonal shape estimated
/// from fewer cycles is mostly noise).
pub fn effective_period(period: usize, len: usize) -> usize {
    if period >= 2 && len / 3 >= period { period } else { 1 }
}

#[cfg(test)]
mod tests;
