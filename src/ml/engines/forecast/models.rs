//! Fitting of every candidate model: the simple rules (three baselines and two robust medians) and the
//! exponential-smoothing models.

use super::ets::EtsState;
use super::{ForecastError, Result, effective_period, report};
use serde::{Deserialize, Serialize};

/// Periods of history the smoothing models fit on: older data rarely helps a sensor forecast and
/// bounds fit time on long series.
const FIT_PERIODS: usize = 60;
/// Minimum fit window for short periods (and non-seasonal data).
const MIN_FIT_WINDOW: usize = 1000;
/// The fewest readings a median level is taken over (a one-step horizon would make it naive).
const MEDIAN_MIN_WINDOW: usize = 3;
/// Cycles a seasonal median looks back over at most: a week of days, and enough weeks to outvote a holiday.
const SEASONAL_MEDIAN_CYCLES: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelKind {
    Naive,
    SeasonalNaive,
    Drift,
    HoltWinters,
    StlEts,
    /// Several seasons (daily and weekly) removed one after another, damped ETS on what is left.
    Mstl,
    /// The mean of the backtest's top three, chosen unless the best alone beats it by more than the noise
    /// (combining forecasts averages their errors away; a standard remedy for the winner's luck).
    Combination,
    /// The median of the last horizon's readings, held flat. Under absolute error the best constant forecast is
    /// the median, and one horizon of readings outvotes the spikes a single last reading (naive) carries.
    MedianLevel,
    /// Per phase of the season, the median of the same phase over the last few cycles: seasonal naive that one
    /// unusual day cannot throw off.
    SeasonalMedian,
}

/// What a fit needs besides the kind and the history: the seasonal periods in steps (ascending; the first is
/// the one single-season models use) and the horizon the smoothing parameters are judged on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FitSpec {
    pub periods: Vec<usize>,
    pub horizon: usize,
}

impl FitSpec {
    pub fn new(periods: Vec<usize>, horizon: usize) -> Self {
        FitSpec { periods, horizon }
    }

    /// The period single-season models use (1 = none).
    pub fn first(&self) -> usize {
        self.periods.first().copied().unwrap_or(1)
    }
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Naive => "naive",
            ModelKind::SeasonalNaive => "seasonal_naive",
            ModelKind::Drift => "drift",
            ModelKind::HoltWinters => "holt_winters",
            ModelKind::StlEts => "stl_ets",
            ModelKind::Mstl => "mstl_ets",
            ModelKind::Combination => "combination",
            ModelKind::MedianLevel => "median_level",
            ModelKind::SeasonalMedian => "seasonal_median",
        }
    }

    /// A rule with nothing fitted (naive, seasonal naive, drift, the medians), as opposed to a smoothing model.
    pub fn is_simple_rule(self) -> bool {
        matches!(self, ModelKind::Naive | ModelKind::SeasonalNaive | ModelKind::Drift | ModelKind::MedianLevel | ModelKind::SeasonalMedian)
    }

    /// Candidates worth trying for period `m`, simplest first (ties go to the simpler model).
    pub fn candidates(m: usize) -> Vec<ModelKind> {
        if m > 1 {
            vec![ModelKind::Naive, ModelKind::SeasonalNaive, ModelKind::Drift, ModelKind::HoltWinters, ModelKind::StlEts]
        } else {
            // Without a season, seasonal naive is naive and STL+ETS is Holt–Winters.
            vec![ModelKind::Naive, ModelKind::Drift, ModelKind::HoltWinters]
        }
    }
}

/// Fitted state of one model (never the history itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum State {
    Naive {
        last: f64,
    },
    SeasonalNaive {
        last_season: Vec<f64>,
    },
    /// `n` = length of the history the slope came from (widens intervals for short histories).
    Drift {
        last: f64,
        slope: f64,
        n: usize,
    },
    HoltWinters(EtsState),
    /// Seasonal offsets (first = first forecast step) plus damped ETS on the deseasonalised series.
    StlEts {
        seasonal: Vec<f64>,
        ets: EtsState,
    },
    /// One offset vector per season (each starting at the first forecast step) plus damped ETS.
    Mstl {
        seasonals: Vec<Vec<f64>>,
        ets: EtsState,
    },
    /// Equal-weight mean of the members' forecasts; each member keeps its kind and seasons for refits.
    Combination {
        members: Vec<Member>,
    },
}

/// One model inside a [`State::Combination`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub kind: ModelKind,
    pub periods: Vec<usize>,
    pub state: State,
}

/// The element-wise mean of equally long vectors.
fn mean_of(rows: impl Iterator<Item = Vec<f64>>, h: usize) -> Vec<f64> {
    let mut sum = vec![0.0; h];
    let mut n = 0usize;
    for r in rows {
        for (s, v) in sum.iter_mut().zip(r) {
            *s += v;
        }
        n += 1;
    }
    sum.into_iter().map(|s| s / n.max(1) as f64).collect()
}

impl State {
    pub fn point(&self, h: usize) -> Vec<f64> {
        match self {
            State::Naive { last } => vec![*last; h],
            State::SeasonalNaive { last_season } => {
                (0..h).map(|k| last_season.get(k % last_season.len().max(1)).copied().unwrap_or(0.0)).collect()
            }
            State::Drift { last, slope, .. } => (1..=h).map(|k| last + slope * k as f64).collect(),
            State::HoltWinters(ets) => ets.point(h),
            State::StlEts { seasonal, ets } => ets
                .point(h)
                .into_iter()
                .enumerate()
                .map(|(k, v)| v + if seasonal.is_empty() { 0.0 } else { seasonal[k % seasonal.len()] })
                .collect(),
            State::Mstl { seasonals, ets } => ets
                .point(h)
                .into_iter()
                .enumerate()
                .map(|(k, v)| v + seasonals.iter().filter(|s| !s.is_empty()).map(|s| s[k % s.len()]).sum::<f64>())
                .collect(),
            State::Combination { members } => mean_of(members.iter().map(|m| m.state.point(h)), h),
        }
    }

    /// Var(step-k error)/σ² for k = 1..=h (textbook formulas for each model).
    pub fn variance_factors(&self, h: usize) -> Vec<f64> {
        match self {
            State::Naive { .. } => (1..=h).map(|k| k as f64).collect(),
            State::SeasonalNaive { last_season } => {
                let m = last_season.len().max(1);
                (1..=h).map(|k| ((k - 1) / m + 1) as f64).collect()
            }
            State::Drift { n, .. } => {
                let t = (*n).saturating_sub(1).max(1) as f64;
                (1..=h).map(|k| k as f64 * (1.0 + k as f64 / t)).collect()
            }
            State::HoltWinters(ets) | State::StlEts { ets, .. } | State::Mstl { ets, .. } => ets.variance_factors(h),
            // The analytic fallback only (combinations are chosen with enough origins for empirical widths).
            State::Combination { members } => mean_of(members.iter().map(|m| m.state.variance_factors(h)), h),
        }
    }
}

/// Fits `kind` on `y` (finite, non-empty). Returns the state and the one-step residual sd.
/// A seasonal model given too little history for its period degrades to its non-seasonal form
/// rather than failing, so rolling-origin backtests can start early.
pub fn fit_state(kind: ModelKind, y: &[f64], spec: &FitSpec, progress: &mut dyn FnMut(f64) -> bool) -> Result<(State, f64)> {
    let n = y.len();
    let Some(&last) = y.last() else {
        return Err(ForecastError::Empty);
    };
    report(progress, 0.0)?;
    let m = effective_period(spec.first(), n);
    let h = spec.horizon.max(1);
    let out = match kind {
        ModelKind::Naive => (State::Naive { last }, naive_sigma(y)),
        ModelKind::SeasonalNaive if m > 1 => {
            let last_season = y[n - m..].to_vec();
            (State::SeasonalNaive { last_season }, seasonal_sigma(y, m))
        }
        ModelKind::SeasonalNaive => (State::Naive { last }, naive_sigma(y)),
        ModelKind::MedianLevel => {
            let w = h.max(MEDIAN_MIN_WINDOW).min(n);
            (State::Naive { last: median(&mut y[n - w..].to_vec()) }, naive_sigma(y))
        }
        ModelKind::SeasonalMedian if m > 1 => {
            let cycles = (n / m).min(SEASONAL_MEDIAN_CYCLES);
            let last_season: Vec<f64> =
                (0..m).map(|phase| median(&mut (1..=cycles).map(|c| y[n - c * m + phase]).collect::<Vec<f64>>())).collect();
            (State::SeasonalNaive { last_season }, seasonal_sigma(y, m))
        }
        ModelKind::SeasonalMedian => return fit_state(ModelKind::MedianLevel, y, spec, progress),
        ModelKind::Drift => {
            let slope = if n > 1 { (last - y[0]) / (n - 1) as f64 } else { 0.0 };
            (State::Drift { last, slope, n }, rms(lag_diffs(y, 1, slope)))
        }
        ModelKind::HoltWinters => {
            let w = fit_window(y, m);
            let m_fit = if w.len() >= 2 * m + 2 { m } else { 1 };
            let (ets, sigma) = EtsState::fit_for_horizon(w, m_fit, h, progress)?;
            (State::HoltWinters(ets), sigma)
        }
        ModelKind::StlEts => fit_stl_ets(fit_window(y, m), m, h, progress)?,
        ModelKind::Mstl => fit_mstl(y, &spec.periods, h, progress)?,
        ModelKind::Combination => {
            return Err(ForecastError::InvalidParameter("a combination is fitted from its members (Model::refit)".into()));
        }
    };
    report(progress, 1.0)?;
    Ok(out)
}

/// Rms of the one-step change: the rules that repeat the last value (or a level) err by about that.
fn naive_sigma(y: &[f64]) -> f64 {
    rms(lag_diffs(y, 1, 0.0))
}

/// Rms of the change over one season, on the recent fit window: the seasonal rules err by about that.
fn seasonal_sigma(y: &[f64], m: usize) -> f64 {
    rms(lag_diffs(&y[y.len().saturating_sub(FIT_PERIODS * m)..], m, 0.0))
}

fn fit_window(y: &[f64], m: usize) -> &[f64] {
    let w = (FIT_PERIODS * m).max(MIN_FIT_WINDOW).min(y.len());
    &y[y.len() - w..]
}

/// Seasonal shape = per-phase median of the series minus its centred moving average (robust to
/// outliers and gaps filled by interpolation); damped ETS then models what is left.
fn fit_stl_ets(y: &[f64], m: usize, h: usize, progress: &mut dyn FnMut(f64) -> bool) -> Result<(State, f64)> {
    if m <= 1 || y.len() < 3 * m {
        let (ets, sigma) = EtsState::fit_for_horizon(y, 1, h, progress)?;
        return Ok((State::StlEts { seasonal: vec![], ets }, sigma));
    }
    let mut seasonal = seasonal_shape(y, m);
    let deseasonalised: Vec<f64> = y.iter().enumerate().map(|(t, v)| v - seasonal[t % m]).collect();
    let (ets, sigma) = EtsState::fit_for_horizon(&deseasonalised, 1, h, progress)?;
    seasonal.rotate_left(y.len() % m);
    Ok((State::StlEts { seasonal, ets }, sigma))
}

/// Per-phase median of the series minus its centred moving average over one period, centred on zero.
fn seasonal_shape(y: &[f64], m: usize) -> Vec<f64> {
    let trend = centred_moving_average(y, m);
    let mut per_phase: Vec<Vec<f64>> = vec![Vec::new(); m];
    for (t, tr) in trend.iter().enumerate() {
        if let Some(tr) = tr {
            per_phase[t % m].push(y[t] - tr);
        }
    }
    let mut seasonal: Vec<f64> = per_phase.iter_mut().map(|v| median(v)).collect();
    let avg = seasonal.iter().sum::<f64>() / m as f64;
    seasonal.iter_mut().for_each(|s| *s -= avg);
    seasonal
}

/// Decomposition passes: the second re-estimates each season with the others' latest shapes removed.
const MSTL_PASSES: usize = 2;

/// MSTL-style: each season (shortest first) is estimated on the series with the other seasons removed, twice;
/// damped ETS fitted on the horizon then models the remainder. Seasons the history holds fewer than three
/// cycles of are left out.
fn fit_mstl(y: &[f64], periods: &[usize], h: usize, progress: &mut dyn FnMut(f64) -> bool) -> Result<(State, f64)> {
    let longest = periods.iter().copied().filter(|&p| p >= 2 && y.len() >= 3 * p).max().unwrap_or(1);
    let shortest = periods.iter().copied().filter(|&p| p >= 2).min().unwrap_or(1);
    let w = (FIT_PERIODS * shortest).max(4 * longest).max(MIN_FIT_WINDOW).min(y.len());
    let y = &y[y.len() - w..];
    let ps: Vec<usize> = periods.iter().copied().filter(|&p| p >= 2 && y.len() >= 3 * p).collect();
    let mut seasonals: Vec<Vec<f64>> = ps.iter().map(|&p| vec![0.0; p]).collect();
    for _ in 0..MSTL_PASSES {
        for i in 0..ps.len() {
            let partial: Vec<f64> = y
                .iter()
                .enumerate()
                .map(|(t, v)| v - seasonals.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s[t % s.len()]).sum::<f64>())
                .collect();
            seasonals[i] = seasonal_shape(&partial, ps[i]);
        }
    }
    let deseasonalised: Vec<f64> = y.iter().enumerate().map(|(t, v)| v - seasonals.iter().map(|s| s[t % s.len()]).sum::<f64>()).collect();
    let (ets, sigma) = EtsState::fit_for_horizon(&deseasonalised, 1, h, progress)?;
    for s in &mut seasonals {
        let len = s.len();
        s.rotate_left(y.len() % len);
    }
    Ok((State::Mstl { seasonals, ets }, sigma))
}

/// Centred moving average over one full period (2×m for even m, so it stays centred); `None`
/// where the window does not fit.
fn centred_moving_average(y: &[f64], m: usize) -> Vec<Option<f64>> {
    let n = y.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0);
    for v in y {
        prefix.push(prefix[prefix.len() - 1] + v);
    }
    let window = |a: usize, b: usize| (prefix[b] - prefix[a]) / (b - a) as f64;
    let half = m / 2;
    (0..n)
        .map(|t| {
            if t < half || t + half >= n {
                return None;
            }
            Some(if m % 2 == 1 {
                window(t - half, t + half + 1)
            } else {
                // Average of the two m-windows around t = the 2×m centred MA.
                0.5 * (window(t - half, t + half) + window(t - half + 1, t + half + 1))
            })
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { 0.5 * (v[mid - 1] + v[mid]) }
}

fn lag_diffs(y: &[f64], lag: usize, centre: f64) -> impl Iterator<Item = f64> + '_ {
    y.windows(lag + 1).map(move |w| w[lag] - w[0] - centre)
}

fn rms(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v * v, n + 1));
    if n == 0 { 0.0 } else { (sum / n as f64).sqrt() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_forecast_as_defined() {
        let y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let (s, _) = fit_state(ModelKind::Naive, &y, &FitSpec::new(vec![1], 1), &mut |_| true).unwrap();
        assert_eq!(s.point(2), vec![9.0, 9.0]);
        let (s, sigma) = fit_state(ModelKind::Drift, &y, &FitSpec::new(vec![1], 1), &mut |_| true).unwrap();
        assert_eq!(s.point(2), vec![10.0, 11.0]);
        assert!(sigma < 1e-12);
        let (s, _) = fit_state(ModelKind::SeasonalNaive, &y, &FitSpec::new(vec![3], 1), &mut |_| true).unwrap();
        assert_eq!(s.point(4), vec![7.0, 8.0, 9.0, 7.0]);
        assert_eq!(s.variance_factors(4), vec![1.0, 1.0, 1.0, 2.0]);
    }

    /// Spikes move naive and seasonal naive; the medians keep the level and the cycle they interrupt.
    #[test]
    fn the_medians_ignore_spikes_that_throw_the_naive_rules_off() {
        let cycle = [10.0, 20.0, 30.0];
        let mut y: Vec<f64> = (0..30).map(|t| cycle[t % 3]).collect();
        let n = y.len();
        // The last reading and one phase of the last cycle are spikes.
        y[n - 1] = 500.0;
        y[n - 2] = -400.0;
        let fit = |kind, periods: Vec<usize>, h| fit_state(kind, &y, &FitSpec::new(periods, h), &mut |_| true).unwrap().0;
        assert_eq!(fit(ModelKind::Naive, vec![], 6).point(1), vec![500.0]);
        assert_eq!(fit(ModelKind::MedianLevel, vec![], 5).point(2), vec![20.0, 20.0], "median of 20, 30, 10, -400, 500");
        assert_eq!(fit(ModelKind::MedianLevel, vec![], 1).point(1), vec![10.0], "at least three readings: 10, -400, 500");
        assert_eq!(fit(ModelKind::SeasonalNaive, vec![3], 3).point(3), vec![10.0, -400.0, 500.0]);
        let seasonal = fit(ModelKind::SeasonalMedian, vec![3], 3);
        assert_eq!(seasonal.point(4), vec![10.0, 20.0, 30.0, 10.0]);
        // Fewer than three cycles of history: the level, as seasonal naive falls back to naive.
        let short = fit_state(ModelKind::SeasonalMedian, &y[..8], &FitSpec::new(vec![3], 3), &mut |_| true).unwrap().0;
        assert_eq!(short, fit_state(ModelKind::MedianLevel, &y[..8], &FitSpec::new(vec![3], 3), &mut |_| true).unwrap().0);
        assert!(ModelKind::MedianLevel.is_simple_rule() && ModelKind::SeasonalMedian.is_simple_rule());
    }

    #[test]
    fn stl_recovers_seasonal_shape() {
        let m = 24;
        let y: Vec<f64> = (0..m * 20).map(|t| 0.01 * t as f64 + (t % m) as f64).collect();
        let (s, _) = fit_state(ModelKind::StlEts, &y, &FitSpec::new(vec![m], 1), &mut |_| true).unwrap();
        let f = s.point(m);
        // Next step is phase 0 (lowest) and the last is phase 23 (highest).
        assert!(f[m - 1] - f[0] > 20.0, "{f:?}");
    }

    #[test]
    fn moving_average_is_centred() {
        let y: Vec<f64> = (0..10).map(|t| t as f64).collect();
        let ma = centred_moving_average(&y, 4);
        assert_eq!(ma[1], None);
        assert_eq!(ma[4], Some(4.0));
        let ma3 = centred_moving_average(&y, 3);
        assert_eq!(ma3[1], Some(1.0));
        assert_eq!(ma3[9], None);
    }
}
