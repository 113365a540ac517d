use super::metrics::coverage;
use super::*;
use std::time::Instant;

/// Tiny seeded Gaussian generator (splitmix64 + Box–Muller) for synthetic series.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        (crate::util::rng::splitmix64(&mut self.0) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn seasonal_series(n: usize, seed: u64) -> Vec<f64> {
    let mut noise = Noise(seed);
    (0..n)
        .map(|t| {
            let phase = std::f64::consts::TAU * (t % 24) as f64 / 24.0;
            50.0 + 0.02 * t as f64 + 10.0 * phase.sin() + 3.0 * (2.0 * phase).cos() + noise.normal()
        })
        .collect()
}

fn random_walk(n: usize, seed: u64) -> Vec<f64> {
    let mut noise = Noise(seed);
    let mut x = 100.0;
    (0..n)
        .map(|_| {
            x += noise.normal();
            x
        })
        .collect()
}

fn ok(_: f64) -> bool {
    true
}

#[test]
fn fill_gaps_interpolates_and_edge_fills() {
    let nan = f64::NAN;
    assert_eq!(fill_gaps(&[nan, 1.0, nan, nan, 4.0, nan]).unwrap(), vec![1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
    assert_eq!(fill_gaps(&[f64::INFINITY, 2.0]).unwrap(), vec![2.0, 2.0]);
    assert_eq!(fill_gaps(&[nan, nan]), Err(ForecastError::AllMissing));
    assert_eq!(fill_gaps(&[]), Err(ForecastError::Empty));
}

#[test]
fn periods() {
    assert_eq!(period_from_interval(3600.0), 24);
    assert_eq!(period_from_interval(600.0), 144);
    assert_eq!(period_from_interval(86_400.0 * 3.0), 2);
    assert_eq!(period_from_interval(0.0), 1);
    assert_eq!(period_from_interval(f64::NAN), 1);
    assert_eq!(effective_period(24, 71), 1);
    assert_eq!(effective_period(24, 72), 24);
}

#[test]
fn smoothing_models_beat_seasonal_naive_with_honest_intervals() {
    let y = seasonal_series(24 * 80, 1);
    let naive = backtest(&y, 24, 24, 20, |t| Model::fit(ModelKind::SeasonalNaive, t, 24, &mut ok), &mut ok).unwrap();
    for kind in [ModelKind::HoltWinters, ModelKind::StlEts] {
        let s = backtest(&y, 24, 24, 20, |t| Model::fit(kind, t, 24, &mut ok), &mut ok).unwrap();
        let mase = s.mase.unwrap();
        assert!(mase < 1.0, "{kind:?}: {s:?}");
        assert!(s.mae < naive.mae, "{kind:?}: {s:?} vs {naive:?}");
        assert!((0.85..=1.0).contains(&s.coverage95), "{kind:?}: {s:?}");
        assert_eq!(s.origins, 20);
    }
}

#[test]
fn chosen_model_covers_held_out_data() {
    let y = seasonal_series(24 * 80, 2);
    let train = &y[..24 * 60];
    let chosen = select_and_fit(train, 24, 24, 10, &mut ok).unwrap();
    assert!(matches!(chosen.model.kind, ModelKind::HoltWinters | ModelKind::StlEts), "{:?}", chosen.leaderboard);
    // naive, seasonal naive, drift, median level, seasonal median, damped ETS, Holt–Winters, decomposition + ETS.
    assert_eq!(chosen.leaderboard.len(), 8);
    assert_eq!(chosen.model.empirical.len(), 24);
    // One origin: 24 strongly correlated errors, so only a sanity bound.
    let f = chosen.model.forecast(24);
    let first_day = &y[24 * 60..24 * 61];
    assert!(coverage(first_day, &f.lo95, &f.hi95) >= 0.7);
    assert!(coverage(first_day, &f.lo80, &f.hi80) <= coverage(first_day, &f.lo95, &f.hi95));
    // The real check: refit at each of 20 held-out days with the chosen kind and its empirical
    // widths, as the trainer will, and count how often the truth falls inside.
    let mut inside = 0;
    for day in 0..20 {
        let o = 24 * (60 + day);
        let mut m = Model::fit(chosen.model.kind, &y[..o], 24, &mut ok).unwrap();
        m.empirical = chosen.model.empirical.clone();
        let f = m.forecast(24);
        inside += y[o..o + 24].iter().zip(f.lo95.iter().zip(&f.hi95)).filter(|(a, (l, h))| l <= a && a <= h).count();
    }
    let rolling = inside as f64 / 480.0;
    assert!((0.85..=1.0).contains(&rolling), "rolling coverage95 {rolling}");
}

#[test]
fn random_walk_forecasts_stay_sane() {
    let y = random_walk(3000, 3);
    let chosen = select_and_fit(&y, 24, 48, 10, &mut ok).unwrap();
    let last = y[y.len() - 1];
    let f = chosen.model.forecast(48);
    for k in 0..48 {
        let bound = 6.0 * ((k + 1) as f64).sqrt() + 1.0;
        assert!((f.mean[k] - last).abs() < bound, "step {k}: {} vs last {last} ({:?})", f.mean[k], chosen.model.kind);
        assert!(f.lo95[k] <= f.lo80[k] && f.lo80[k] <= f.mean[k] && f.mean[k] <= f.hi80[k] && f.hi80[k] <= f.hi95[k]);
        assert!(f.hi95[k] - f.lo95[k] < 8.0 * 1.96 * ((k + 1) as f64).sqrt());
    }
}

#[test]
fn constant_series_gives_zero_width_naive() {
    let mut y = vec![7.5; 500];
    y[10] = f64::NAN;
    let chosen = select_and_fit(&y, 24, 12, 5, &mut ok).unwrap();
    assert_eq!(chosen.model.kind, ModelKind::Naive);
    let f = chosen.model.forecast(12);
    assert!(f.mean.iter().chain(&f.lo95).chain(&f.hi95).all(|v| *v == 7.5));
    // Backtesting a constant series must not divide by zero either.
    let s = backtest(&vec![3.0; 200], 24, 12, 5, |t| Model::fit(ModelKind::HoltWinters, t, 24, &mut ok), &mut ok).unwrap();
    assert_eq!(s.mase, None);
    assert!(s.mae.is_finite() && s.smape.is_finite());
}

/// A ramp with a gap across the first of two origins, forecast by naive. Each origin's history is filled on its
/// own, so naive carries the last reading before the gap (186), not the interpolation towards the reading after
/// it (191, which is the future); and only readings are scored, not the straight line drawn across the gap.
/// Filling the whole series first and scoring every grid point would give (1 + … + 24) / 24 = 12.5 at both origins.
#[test]
fn backtests_score_readings_only_and_never_fill_gaps_from_the_future() {
    let mut y: Vec<f64> = (0..240).map(|t| t as f64).collect();
    y[187..202].iter_mut().for_each(|v| *v = f64::NAN);
    let s = backtest(&y, 24, 24, 2, |t| Model::fit(ModelKind::Naive, t, 1, &mut ok), &mut ok).unwrap();
    // Origin 192: readings 202..=215 against 186; origin 216: readings 216..=239 against 215.
    let expected = ((202..216).map(|t| t - 186).sum::<i32>() + (216..240).map(|t| t - 215).sum::<i32>()) as f64 / 38.0;
    assert!((s.mae - expected).abs() < 1e-9, "MAE {} vs {expected}", s.mae);
    assert!((s.mase.unwrap() - expected / 24.0).abs() < 1e-9, "the scale pairs readings a season apart: {:?}", s.mase);
    // Origins before the first reading have nothing to forecast from: only the last one is scored.
    let late: Vec<f64> = (0..240).map(|t| if t >= 200 { t as f64 } else { f64::NAN }).collect();
    let s = backtest(&late, 24, 24, 3, |t| Model::fit(ModelKind::Naive, t, 1, &mut ok), &mut ok).unwrap();
    assert_eq!(s.mae, 12.5);
    assert!(s.coverage80.is_finite());
    // Selection works on gappy series as well, and the model it fits forecasts finite values.
    let chosen = select_and_fit(&y, 24, 24, 2, &mut ok).unwrap();
    assert!(chosen.model.forecast(24).mean.iter().all(|v| v.is_finite()));
}

#[test]
fn short_and_bad_inputs() {
    let chosen = select_and_fit(&[1.0, 2.0, 1.5, 3.0], 24, 6, 3, &mut ok).unwrap();
    assert_eq!(chosen.model.kind, ModelKind::Naive);
    assert!(chosen.leaderboard.is_empty());
    assert_eq!(chosen.model.forecast(6).mean.len(), 6);
    assert_eq!(select_and_fit(&[], 24, 6, 3, &mut ok).err(), Some(ForecastError::Empty));
    assert_eq!(select_and_fit(&[f64::NAN], 24, 6, 3, &mut ok).err(), Some(ForecastError::AllMissing));
    assert!(matches!(select_and_fit(&[1.0, 2.0], 24, 0, 3, &mut ok), Err(ForecastError::InvalidParameter(_))));
    assert_eq!(Model::fit(ModelKind::Naive, &[1.0, f64::NAN], 1, &mut ok).err(), Some(ForecastError::NonFinite));
    assert!(matches!(
        backtest(&[1.0; 5], 1, 3, 2, |t| Model::fit(ModelKind::Naive, t, 1, &mut ok), &mut ok),
        Err(ForecastError::TooShort { .. })
    ));
    // Moderately short: seasonal models degrade to non-seasonal instead of failing.
    let y = seasonal_series(60, 4);
    let chosen = select_and_fit(&y, 24, 6, 3, &mut ok).unwrap();
    assert_eq!(chosen.period, 1);
    assert!(chosen.model.forecast(6).mean.iter().all(|v| v.is_finite()));
}

#[test]
fn serde_round_trip_keeps_forecasts() {
    let y = seasonal_series(24 * 30, 5);
    let chosen = select_and_fit(&y, 24, 24, 6, &mut ok).unwrap();
    let json = serde_json::to_string(&chosen.model).unwrap();
    assert!(json.len() < 4000, "model is {} bytes", json.len());
    let back: Model = serde_json::from_str(&json).unwrap();
    let (a, b) = (chosen.model.forecast(24), back.forecast(24));
    for (x, y) in a.mean.iter().zip(&b.mean).chain(a.hi95.iter().zip(&b.hi95)) {
        assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0));
    }
}

#[test]
fn cancel_is_prompt() {
    let y = seasonal_series(50_000, 6);
    let started = Instant::now();
    let mut calls = 0;
    let r = select_and_fit(&y, 24, 24, 10, &mut |_| {
        calls += 1;
        calls < 5
    });
    assert_eq!(r.err(), Some(ForecastError::Cancelled));
    assert!(started.elapsed().as_millis() < 200, "{:?}", started.elapsed());
}

#[test]
fn fifty_thousand_points_fit_fast() {
    let y = seasonal_series(50_000, 7);
    let started = Instant::now();
    let chosen = select_and_fit(&y, 24, 24, 10, &mut ok).unwrap();
    let elapsed = started.elapsed();
    eprintln!("select_and_fit on 50k points: {elapsed:?}, chose {:?}", chosen.model.kind);
    let limit = if cfg!(debug_assertions) { 20.0 } else { 1.0 };
    assert!(elapsed.as_secs_f64() < limit, "{elapsed:?}");
    assert!(chosen.model.forecast(24).mean.iter().all(|v| v.is_finite()));
}

/// Hourly: a daily cycle, and on weekends (days 5 and 6 of each week) a level 8 lower when `weekly`.
fn daily_weekly(n: usize, weekly: bool, seed: u64) -> Vec<f64> {
    let mut noise = Noise(seed);
    (0..n)
        .map(|t| {
            let phase = std::f64::consts::TAU * (t % 24) as f64 / 24.0;
            let weekend = weekly && (t / 24) % 7 >= 5;
            20.0 + 5.0 * phase.sin() - if weekend { 8.0 } else { 0.0 } + noise.normal()
        })
        .collect()
}

#[test]
fn seasons_are_detected_from_the_autocorrelation() {
    let cands = candidate_periods(3600.0);
    assert_eq!(cands, vec![24, 168]);
    assert_eq!(candidate_periods(300.0), vec![288, 2016]);
    assert_eq!(detect_periods(&daily_weekly(24 * 7 * 8, false, 1), &cands), vec![24]);
    assert_eq!(detect_periods(&daily_weekly(24 * 7 * 8, true, 2), &cands), vec![24, 168]);
    assert_eq!(detect_periods(&random_walk(24 * 7 * 8, 3), &cands), Vec::<usize>::new());
    let mut noise = Noise(4);
    let white: Vec<f64> = (0..24 * 7 * 8).map(|_| noise.normal()).collect();
    assert!(detect_periods(&white, &cands).is_empty());
    // Too short for three weeks: only the day can be judged.
    assert_eq!(detect_periods(&daily_weekly(24 * 14, true, 5), &cands), vec![24]);
}

#[test]
fn mstl_beats_a_single_season_on_daily_and_weekly_cycles() {
    let y = daily_weekly(24 * 7 * 10, true, 6);
    let fit = |kind: ModelKind, periods: Vec<usize>| {
        let spec = FitSpec::new(periods, 24);
        backtest(&y, 24, 24, 14, |t| Model::fit_spec(kind, t, &spec, &mut ok), &mut ok).unwrap()
    };
    let mstl = fit(ModelKind::Mstl, vec![24, 168]);
    let stl = fit(ModelKind::StlEts, vec![24]);
    let daily = fit(ModelKind::SeasonalNaive, vec![24]);
    assert!(mstl.mae < 0.8 * stl.mae && mstl.mae < 0.8 * daily.mae, "mstl {mstl:?} stl {stl:?} daily {daily:?}");
}

#[test]
fn damped_trend_stays_bounded_over_48_steps() {
    // A random walk that ends on a steep run: a trend fitted on one-step error extrapolates that run.
    let mut y = random_walk(2000, 7);
    let last = y[y.len() - 1];
    y.extend((1..=30).map(|k| last + 3.0 * k as f64));
    let (lo, hi) = y.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    let range = hi - lo;
    for kind in [ModelKind::HoltWinters, ModelKind::StlEts] {
        let m = Model::fit_spec(kind, &y, &FitSpec::new(vec![], 48), &mut ok).unwrap();
        let f = m.forecast(48);
        let end = y[y.len() - 1];
        for v in &f.mean {
            assert!((v - end).abs() < 0.5 * range, "{kind:?} ran away: {:?}", f.mean);
        }
        // The last run's slope carried on would climb 3 × 48 = 144 over the horizon; damped, well under half.
        assert!((f.mean[47] - end).abs() < 72.0, "{kind:?}: {:?}", f.mean);
    }
}

#[test]
fn calibrated_intervals_cover_near_nominal_on_held_out_days() {
    let y = seasonal_series(24 * 120, 8);
    let train_len = 24 * 80;
    let opts = SelectOptions {
        baseline_periods: vec![24],
        seasons: vec![24],
        scale_period: 24,
        h: 24,
        n_origins: 14,
        calibration_origins: 42,
        out_of_time: &|| false,
    };
    let chosen = select_with(&y[..train_len], &opts, &mut ok).unwrap();
    let (mut in80, mut in95, mut n) = (0, 0, 0);
    for day in 0..40 {
        let o = train_len + 24 * day;
        let mut m = Model::fit_spec(chosen.model.kind, &y[..o], &FitSpec::new(chosen.periods.clone(), 24), &mut ok).unwrap();
        m.empirical = chosen.model.empirical.clone();
        let f = m.forecast(24);
        for (k, a) in y[o..o + 24].iter().enumerate() {
            in80 += usize::from(f.lo80[k] <= *a && *a <= f.hi80[k]);
            in95 += usize::from(f.lo95[k] <= *a && *a <= f.hi95[k]);
            n += 1;
        }
    }
    let (c80, c95) = (in80 as f64 / n as f64, in95 as f64 / n as f64);
    assert!((c80 - 0.80).abs() <= 0.06 && (c95 - 0.95).abs() <= 0.04, "coverage {c80:.3} / {c95:.3}");
}

#[test]
fn the_time_limit_ends_the_search_with_the_best_so_far() {
    let y = daily_weekly(24 * 7 * 6, true, 9);
    let opts = SelectOptions {
        baseline_periods: vec![24, 168],
        seasons: vec![24, 168],
        scale_period: 24,
        h: 24,
        n_origins: 10,
        calibration_origins: 10,
        out_of_time: &|| true,
    };
    let t0 = Instant::now();
    let chosen = select_with(&y, &opts, &mut ok).unwrap();
    assert!(chosen.timed_out);
    assert_eq!(chosen.leaderboard.len(), 1, "{:?}", chosen.leaderboard);
    assert_eq!(chosen.model.kind, ModelKind::Naive);
    assert!(t0.elapsed().as_secs_f64() < 1.0);
    let full = select_with(&y, &SelectOptions { out_of_time: &|| false, ..opts }, &mut ok).unwrap();
    assert!(!full.timed_out && full.leaderboard.len() >= 6, "{:?}", full.leaderboard);
}
