//! Univariate forecasting of each sensor on a regular grid, `h` steps ahead: baselines, additive
//! damped Holt–Winters and a seasonal-decomposition + damped ETS model, chosen per series by a
//! rolling-origin backtest.
//!
//! Fitted models keep only what forecasting needs (levels, trends, one season of offsets,
//! residual scales), so they serialise to a few hundred bytes per sensor.
//!
//! ## Prediction intervals
//! Each model stores σ, the sd of its in-sample one-step residuals, and forecasts step `k` with
//! the model's analytic variance factor `v_k` (e.g. `k` for naive, `1 + Σ c_j²` for ETS):
//! half-width `z·σ·√v_k` with z = 1.2816 (80 %) / 1.96 (95 %). When the model was chosen by
//! [`select_and_fit`] with at least [`MIN_ORIGINS_FOR_EMPIRICAL`] backtest origins, it also stores
//! the 80 %/95 % quantiles of |error| per horizon step from that backtest, and each half-width is
//! the larger of the analytic and the empirical one: analytic widths assume the model is right,
//! empirical ones catch it when it is not; taking the larger errs towards honest coverage.
//!
//! Self-contained: depends only on `std`, `serde` and `thiserror`.

mod backtest;
mod ets;
mod metrics;
mod models;

pub use backtest::{BacktestScore, backtest, select_and_fit};
pub use metrics::{mae, mape_skipping_near_zero};
pub use models::{ModelKind, State};

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
        check_finite(series)?;
        let (state, sigma) = models::fit_state(kind, series, period, progress)?;
        Ok(Model { kind, state, sigma: if sigma.is_finite() { sigma } else { 0.0 }, empirical: vec![] })
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
            let [e80, e95] = self.empirical.get(k).copied().unwrap_or([0.0, 0.0]);
            let w80 = (Z80 * sd).max(e80);
            let w95 = (Z95 * sd).max(e95).max(w80);
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

/// `period` if the series holds at least three full periods, else 1 (a seasonal shape estimated
/// from fewer cycles is mostly noise).
pub fn effective_period(period: usize, len: usize) -> usize {
    if period >= 2 && len / 3 >= period { period } else { 1 }
}

#[cfg(test)]
mod tests;
