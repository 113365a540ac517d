//! Additive exponential smoothing with damped trend (error-correction form) and the small
//! Nelder–Mead optimiser that fits its smoothing parameters by one-step SSE.
//!
//! Recursion for observation y_t with m seasonal phases (m = 1: no season):
//!   ŷ = l + φb + s[t mod m];  e = y - ŷ
//!   l ← l + φb + αe;  b ← φb + βe;  s[t mod m] ← s[t mod m] + γe
//! which is Holt–Winters with β* = β/α; this form gives closed-form forecast variances.

use super::{ForecastError, Result, report};
use serde::{Deserialize, Serialize};

/// Objective evaluations between progress calls.
const EVALS_PER_REPORT: usize = 25;
const MAX_EVALS: usize = 300;

/// Fitted ETS state: everything forecasting needs, nothing of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtsState {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub phi: f64,
    pub level: f64,
    pub trend: f64,
    /// Seasonal offsets, `seasonal[0]` belonging to the first forecast step; empty = none.
    pub seasonal: Vec<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Params {
    alpha: f64,
    beta: f64,
    gamma: f64,
    phi: f64,
}

#[derive(Debug, Clone)]
struct Init {
    level: f64,
    trend: f64,
    seasonal: Vec<f64>,
}

impl EtsState {
    /// Fits α, β, φ (and γ when `m > 1`) on `y`; returns the final state and the residual sd
    /// (after an `m`-step burn-in, where the heuristic initial state still dominates).
    pub fn fit(y: &[f64], m: usize, progress: &mut dyn FnMut(f64) -> bool) -> Result<(EtsState, f64)> {
        Self::fit_for_horizon(y, m, 1, progress)
    }

    /// As [`EtsState::fit`], but the parameters minimise the squared error of forecasts 1..=`horizon` steps
    /// ahead from origins spread over `y`: a trend fitted on one-step error follows every wiggle, lands on its
    /// bounds and extrapolates far off over a day; judged over the real horizon it stays modest.
    pub fn fit_for_horizon(y: &[f64], m: usize, horizon: usize, progress: &mut dyn FnMut(f64) -> bool) -> Result<(EtsState, f64)> {
        let m = m.max(1);
        let horizon = horizon.max(1);
        let need = if m > 1 { 2 * m + 2 } else { 4 };
        if y.len() < need {
            return Err(ForecastError::TooShort { got: y.len(), need });
        }
        let init = initial_state(y, m);
        let seasonal = m > 1;
        let dim = if seasonal { 4 } else { 3 };
        let mut evals = 0usize;
        let mut cancelled = false;
        let mut objective = |theta: &[f64]| -> f64 {
            evals += 1;
            if evals.is_multiple_of(EVALS_PER_REPORT) && !cancelled {
                cancelled = !progress((evals as f64 / MAX_EVALS as f64).min(0.99));
            }
            if cancelled {
                return 0.0; // collapses the simplex so the optimiser ends at once
            }
            let p = decode(theta, seasonal);
            run(y, m, &init, p, horizon, None).0
        };
        let start = [0.0, -1.0, -1.5, 1.0];
        let best = nelder_mead(&mut objective, &start[..dim], MAX_EVALS);
        if cancelled {
            return Err(ForecastError::Cancelled);
        }
        let params = decode(&best, seasonal);
        let mut state = EtsState { alpha: 0.0, beta: 0.0, gamma: 0.0, phi: 1.0, level: 0.0, trend: 0.0, seasonal: vec![] };
        let (_, sigma) = run(y, m, &init, params, horizon, Some(&mut state));
        report(progress, 1.0)?;
        Ok((state, sigma))
    }

    pub fn point(&self, h: usize) -> Vec<f64> {
        damp_sums(self.phi, h)
            .into_iter()
            .enumerate()
            .map(|(k, damp_sum)| {
                let s = if self.seasonal.is_empty() { 0.0 } else { self.seasonal[k % self.seasonal.len()] };
                self.level + damp_sum * self.trend + s
            })
            .collect()
    }

    /// Var(step k error) / σ² for k = 1..=h: 1 + Σ_{j<k} c_j², c_j = α + βφ_j + γ·[m | j].
    pub fn variance_factors(&self, h: usize) -> Vec<f64> {
        let m = self.seasonal.len();
        let mut out = Vec::with_capacity(h);
        let mut acc = 1.0;
        let mut phi_j = 0.0;
        let mut phi_pow = 1.0;
        for k in 1..=h {
            out.push(acc);
            let j = k;
            phi_pow *= self.phi;
            phi_j += phi_pow;
            let seasonal_hit = m > 1 && j % m == 0;
            let c = self.alpha + self.beta * phi_j + if seasonal_hit { self.gamma } else { 0.0 };
            acc += c * c;
        }
        out
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Unconstrained θ → admissible parameters: 0 < β < α < 1, 0 < γ < 1 - α, 0.8 ≤ φ ≤ 0.98
/// (a damped trend never extrapolates a slope forever — vital for sensor data).
fn decode(theta: &[f64], seasonal: bool) -> Params {
    let t = |i: usize| theta.get(i).copied().unwrap_or(0.0);
    let alpha = 0.001 + 0.998 * sigmoid(t(0));
    let beta = alpha * 0.999 * sigmoid(t(1));
    let phi = 0.8 + 0.18 * sigmoid(t(2 + seasonal as usize));
    let gamma = if seasonal { (1.0 - alpha) * 0.999 * sigmoid(t(2)) } else { 0.0 };
    Params { alpha, beta, gamma, phi }
}

/// Period means give level/trend; the average within-period deviation gives the seasonal shape.
fn initial_state(y: &[f64], m: usize) -> Init {
    if m <= 1 {
        let k = (y.len() - 1).min(10);
        let trend = (y[k] - y[0]) / k.max(1) as f64;
        return Init { level: y[0] - trend, trend, seasonal: vec![] };
    }
    let periods = (y.len() / m).clamp(2, 4);
    let means: Vec<f64> = (0..periods).map(|j| y[j * m..(j + 1) * m].iter().sum::<f64>() / m as f64).collect();
    let trend = (means[periods - 1] - means[0]) / ((periods - 1) * m) as f64;
    let mut seasonal = vec![0.0; m];
    for (j, mean) in means.iter().enumerate() {
        for (i, s) in seasonal.iter_mut().enumerate() {
            let centre_offset = i as f64 - (m as f64 - 1.0) / 2.0;
            *s += (y[j * m + i] - mean - centre_offset * trend) / periods as f64;
        }
    }
    let avg = seasonal.iter().sum::<f64>() / m as f64;
    seasonal.iter_mut().for_each(|s| *s -= avg);
    Init { level: means[0] - trend * (m as f64 + 1.0) / 2.0, trend, seasonal }
}

/// Multi-step forecast errors evaluated per objective call, at most: origins are thinned to fit.
const MULTI_STEP_BUDGET: usize = 20_000;

/// Runs the recursion; returns (objective, residual sd after burn-in) and optionally the final state.
/// The objective is the one-step SSE for `horizon` 1, else the mean squared error of the forecasts 1..=horizon
/// steps ahead from evenly spaced origins. A diverging run reports `f64::MAX` so the optimiser steers away.
fn run(y: &[f64], m: usize, init: &Init, p: Params, horizon: usize, out: Option<&mut EtsState>) -> (f64, f64) {
    let mut level = init.level;
    let mut trend = init.trend;
    let mut seasonal = init.seasonal.clone();
    let burn_in = if m > 1 { m } else { 2 };
    let (mut sse, mut sse_after, mut n_after) = (0.0, 0.0, 0usize);
    let stride = (y.len().saturating_mul(horizon) / MULTI_STEP_BUDGET).max(1);
    let (mut multi_sse, mut multi_n) = (0.0, 0usize);
    // The same for every origin.
    let damp_sums = if horizon > 1 { damp_sums(p.phi, horizon) } else { Vec::new() };
    // The seasonal offsets laid out over a season plus a horizon (zeros without a season), so that every
    // origin's forecasts read one contiguous stretch: no `% m` in the innermost loop.
    let unrolled_len = if horizon > 1 { horizon + m - 1 } else { 0 };
    let mut unrolled: Vec<f64> = (0..unrolled_len).map(|i| if m > 1 { seasonal[i % m] } else { 0.0 }).collect();
    for (t, &obs) in y.iter().enumerate() {
        let s = if m > 1 { seasonal[t % m] } else { 0.0 };
        let e = obs - (level + p.phi * trend + s);
        level += p.phi * trend + p.alpha * e;
        trend = p.phi * trend + p.beta * e;
        if m > 1 {
            let j = t % m;
            seasonal[j] += p.gamma * e;
            for copy in unrolled.iter_mut().skip(j).step_by(m) {
                *copy = seasonal[j];
            }
        }
        sse += e * e;
        if t >= burn_in {
            sse_after += e * e;
            n_after += 1;
        }
        if horizon > 1 && t >= burn_in && t % stride == 0 {
            let future = &y[t + 1..=t + horizon.min(y.len() - 1 - t)];
            multi_n += future.len();
            let phase = if m > 1 { (t + 1) % m } else { 0 };
            multi_sse += squared_errors(future, &damp_sums[..future.len()], &unrolled[phase..phase + future.len()], level, trend);
        }
    }
    if !sse.is_finite() || !multi_sse.is_finite() {
        return (f64::MAX, f64::MAX);
    }
    let n_params = if m > 1 { 4 } else { 3 };
    let sigma = (sse_after / (n_after.saturating_sub(n_params)).max(1) as f64).sqrt();
    if let Some(state) = out {
        let n = y.len();
        if m > 1 {
            seasonal.rotate_left(n % m);
        }
        *state = EtsState { alpha: p.alpha, beta: p.beta, gamma: p.gamma, phi: p.phi, level, trend, seasonal };
    }
    let objective = if multi_n > 0 { multi_sse / multi_n as f64 } else { sse };
    (objective, sigma)
}

/// φ + φ² + … + φ^k for k = 1..=h: how much of the trend the forecast k steps ahead carries.
fn damp_sums(phi: f64, h: usize) -> Vec<f64> {
    let (mut phi_k, mut sum) = (1.0, 0.0);
    (0..h)
        .map(|_| {
            phi_k *= phi;
            sum += phi_k;
            sum
        })
        .collect()
}

/// Σ (obs − (level + damp·trend + season))² over one origin's forecasts, in four independent sums: one running
/// sum is a chain of dependent additions, and this loop is nearly all of the forecaster's training time.
fn squared_errors(obs: &[f64], damp: &[f64], season: &[f64], level: f64, trend: f64) -> f64 {
    let mut lanes = [0.0; 4];
    for ((o, d), s) in obs.chunks_exact(4).zip(damp.chunks_exact(4)).zip(season.chunks_exact(4)) {
        for l in 0..4 {
            let e = o[l] - (level + d[l] * trend + s[l]);
            lanes[l] += e * e;
        }
    }
    let tail = obs.len() / 4 * 4;
    for (l, i) in (tail..obs.len()).enumerate() {
        let e = obs[i] - (level + damp[i] * trend + season[i]);
        lanes[l] += e * e;
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// Minimises `f` from `start` with at most `max_evals` evaluations (standard coefficients).
pub fn nelder_mead(f: &mut dyn FnMut(&[f64]) -> f64, start: &[f64], max_evals: usize) -> Vec<f64> {
    let n = start.len();
    let mut simplex: Vec<Vec<f64>> = vec![start.to_vec()];
    for i in 0..n {
        let mut v = start.to_vec();
        v[i] += 1.0;
        simplex.push(v);
    }
    let mut values: Vec<f64> = simplex.iter().map(|v| f(v)).collect();
    let mut evals = n + 1;
    while evals < max_evals {
        let mut order: Vec<usize> = (0..=n).collect();
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        simplex = order.iter().map(|&i| simplex[i].clone()).collect();
        values = order.iter().map(|&i| values[i]).collect();
        if (values[n] - values[0]).abs() <= 1e-10 * (values[0].abs() + 1e-12) {
            break;
        }
        let centroid: Vec<f64> = (0..n).map(|d| simplex[..n].iter().map(|v| v[d]).sum::<f64>() / n as f64).collect();
        let along = |t: f64| -> Vec<f64> { centroid.iter().zip(&simplex[n]).map(|(c, w)| c + t * (w - c)).collect() };
        let reflected = along(-1.0);
        let fr = f(&reflected);
        evals += 1;
        if fr < values[0] {
            let expanded = along(-2.0);
            let fe = f(&expanded);
            evals += 1;
            (simplex[n], values[n]) = if fe < fr { (expanded, fe) } else { (reflected, fr) };
        } else if fr < values[n - 1] {
            (simplex[n], values[n]) = (reflected, fr);
        } else {
            let contracted = if fr < values[n] { along(-0.5) } else { along(0.5) };
            let fc = f(&contracted);
            evals += 1;
            if fc < values[n].min(fr) {
                (simplex[n], values[n]) = (contracted, fc);
            } else {
                for i in 1..=n {
                    simplex[i] = simplex[0].iter().zip(&simplex[i]).map(|(b, v)| b + 0.5 * (v - b)).collect();
                    values[i] = f(&simplex[i]);
                    evals += 1;
                }
            }
        }
    }
    let best = (0..values.len()).min_by(|&a, &b| values[a].total_cmp(&values[b])).unwrap_or(0);
    simplex.swap_remove(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nelder_mead_finds_quadratic_minimum() {
        let mut f = |x: &[f64]| (x[0] - 1.0).powi(2) + 3.0 * (x[1] + 2.0).powi(2);
        let x = nelder_mead(&mut f, &[0.0, 0.0], 400);
        assert!((x[0] - 1.0).abs() < 1e-3 && (x[1] + 2.0).abs() < 1e-3, "{x:?}");
    }

    #[test]
    fn linear_trend_is_followed() {
        let y: Vec<f64> = (0..200).map(|t| 5.0 + 0.5 * t as f64).collect();
        let (state, sigma) = EtsState::fit(&y, 1, &mut |_| true).unwrap();
        let f = state.point(5);
        assert!((f[0] - 105.0).abs() < 0.6, "{f:?}");
        assert!(sigma < 0.1);
        let v = state.variance_factors(3);
        assert_eq!(v[0], 1.0);
        assert!(v[1] > 1.0 && v[2] > v[1]);
    }

    /// The multi-step objective as first written (every origin, `% m` per step): the fast loop must agree.
    #[test]
    fn the_multi_step_objective_matches_a_plain_loop() {
        let y: Vec<f64> = (0..300).map(|t| 10.0 + 0.02 * t as f64 + (t as f64 * 0.9).sin() * 3.0 + (t % 7) as f64).collect();
        for (m, horizon) in [(1, 5), (7, 5), (7, 17), (12, 12)] {
            let init = initial_state(&y, m);
            let p = Params { alpha: 0.3, beta: 0.05, gamma: if m > 1 { 0.2 } else { 0.0 }, phi: 0.9 };
            let (fast, _) = run(&y, m, &init, p, horizon, None);
            let (mut level, mut trend, mut seasonal) = (init.level, init.trend, init.seasonal.clone());
            let burn_in = if m > 1 { m } else { 2 };
            let (mut sum, mut n) = (0.0, 0usize);
            for (t, &obs) in y.iter().enumerate() {
                let s = if m > 1 { seasonal[t % m] } else { 0.0 };
                let e = obs - (level + p.phi * trend + s);
                level += p.phi * trend + p.alpha * e;
                trend = p.phi * trend + p.beta * e;
                if m > 1 {
                    seasonal[t % m] += p.gamma * e;
                }
                if t >= burn_in {
                    let (mut damp, mut phi_k) = (0.0, 1.0);
                    for k in 1..=horizon.min(y.len() - 1 - t) {
                        phi_k *= p.phi;
                        damp += phi_k;
                        let s = if m > 1 { seasonal[(t + k) % m] } else { 0.0 };
                        sum += (y[t + k] - (level + damp * trend + s)).powi(2);
                        n += 1;
                    }
                }
            }
            let plain = sum / n as f64;
            assert!((fast - plain).abs() <= 1e-12 * plain, "m {m} h {horizon}: {fast} vs {plain}");
        }
    }

    #[test]
    fn too_short_and_cancel() {
        assert!(matches!(EtsState::fit(&[1.0, 2.0], 1, &mut |_| true), Err(ForecastError::TooShort { .. })));
        let y: Vec<f64> = (0..500).map(|t| (t as f64 * 0.3).sin()).collect();
        assert!(matches!(EtsState::fit(&y, 24, &mut |_| false), Err(ForecastError::Cancelled)));
    }
}
