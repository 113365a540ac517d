//! "What will the sensors read tomorrow?": every sensor on a regular grid, `forecast_hours` ahead, with 80 %
//! and 95 % intervals. Per sensor the daily and weekly seasons the autocorrelation shows are detected, and a
//! rolling-origin backtest with the real horizon on the tail of the *training* period chooses among naive,
//! seasonal naive at the day and the week, drift, the median level, the seasonal median at the day and the
//! week, damped ETS, Holt–Winters, decomposition + ETS and MSTL (several seasons), or the mean of the top
//! three; the held-out final days (never seen by the choice, and the only origins scored) give the reported
//! metrics, beside the best of the simple rules (naive, daily and weekly seasonal naive) on the same origins.
//! Every score counts only grid points a reading fell on; the straight lines drawn across gaps are for fitting.
//!
//! The grid is never stretched over a long silence: the series starts after the last gap longer than two
//! weeks (or four horizons) between readings. The time limit ends each sensor's search with the best model so far.
//!
//! This is the forecaster everywhere inside `ml/` ([`crate::ml::model::Payload::Forecast`], the `forecast`
//! engine); the API, the config, MQTT and the files on disk call its model type `timeseries`
//! ([`ModelType::Timeseries`]), and that name stays theirs.
use crate::data::Table;
use crate::ml::engines::forecast::{self, BacktestScore, Candidate, FitSpec, Forecaster, SelectOptions};
use crate::ml::error::MlError;
use crate::ml::recent::Recent;
use crate::ml::report::{DataSummary, Headline, Report, SplitSummary, Stopwatch};
use crate::ml::shared::context::{LeaderRow, TrainContext};
use crate::ml::shared::params::{ModelType, TrainParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Test origins (one per forecast horizon, back to back at the end of the data).
const TEST_ORIGINS: usize = 14;
/// Origins of the selection backtest inside the training period.
const SELECT_ORIGINS: usize = 14;
/// Origins the chosen model's intervals are calibrated on, inside the training period.
const CALIBRATION_ORIGINS: usize = 42;
/// At most this many seasons of history are fitted: older behaviour rarely helps tomorrow's forecast.
const MAX_SEASONS: usize = 56;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SensorForecaster {
    pub sensor: String,
    pub model: forecast::Model,
    /// Seasonal period the model was fitted with (1 when the history was too short for a season).
    pub period: usize,
    /// Every season the model was fitted with (MSTL has several); empty in bundles from before seasons were
    /// detected, which refit with `period`.
    #[serde(default)]
    pub periods: Vec<usize>,
    /// The machine's unit for the sensor (`[units]`), empty when not given.
    pub unit: String,
    /// Forecasts and bands never go below this: 0 for a sensor whose history never went below zero (power,
    /// current, flow), so an interval does not promise a negative kW.
    pub floor: Option<f64>,
}

impl SensorForecaster {
    fn spec(&self, horizon: usize) -> FitSpec {
        let periods = if self.periods.is_empty() { vec![self.period] } else { self.periods.clone() };
        FitSpec::new(periods, horizon)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForecastModel {
    pub interval_s: f64,
    pub period: usize,
    pub horizon: usize,
    pub sensors: Vec<SensorForecaster>,
    /// The last timestamp the models were fitted to: forecasts from the stored state start after it.
    pub fitted_until: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SensorForecast {
    pub sensor: String,
    /// The machine's unit for the sensor, empty when not given.
    pub unit: String,
    pub model: String,
    pub timestamps: Vec<String>,
    pub mean: Vec<f64>,
    pub lo80: Vec<f64>,
    pub hi80: Vec<f64>,
    pub lo95: Vec<f64>,
    pub hi95: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForecastAnswer {
    pub horizon_hours: f64,
    pub interval_s: f64,
    pub start: String,
    pub sensors: Vec<SensorForecast>,
}

/// One sensor's values on the regular grid, NaN where no reading fell: fits fill the gaps
/// ([`forecast::fill_gaps`]), scores skip them.
fn grid_series(table: &Table, values: &[f64], rows: std::ops::Range<usize>, step: f64) -> Vec<f64> {
    let t0 = table.timestamps[rows.start];
    let last = table.timestamps[rows.end - 1];
    let n = ((last - t0) / step).round() as usize + 1;
    let mut grid = vec![f64::NAN; n];
    for r in rows {
        let k = ((table.timestamps[r] - t0) / step).round() as usize;
        if k < n {
            grid[k] = values[r];
        }
    }
    grid
}

/// The rows forming one continuous timeline: the whole table when time increases across it (a machine's
/// lives one after another), else the last life (independent runs cannot be stitched together). A life may
/// begin in the grid step the previous one ended in (steps are time-ordered within a life, so equal times
/// only meet at a boundary); the later row then takes that point.
fn timeline(table: &Table) -> std::ops::Range<usize> {
    let monotonic = table.timestamps.windows(2).all(|w| w[1] >= w[0]);
    if monotonic {
        return 0..table.n_rows();
    }
    table.life_ranges().pop().map_or(0..table.n_rows(), |(_, r)| r)
}

/// Grid steps of silence after which the series restarts rather than bridging the gap with a straight line.
fn gap_limit(period: usize, h: usize) -> usize {
    // Two weeks: a machine stopped over a holiday is still one series; runs a month apart are not.
    (14 * period).max(4 * h).max(2)
}

/// The rows after the last silence longer than `limit` steps: interpolating across days of nothing (runs a
/// month apart) invents data and blows the grid up to millions of points.
fn after_last_gap(table: &Table, rows: std::ops::Range<usize>, step: f64, limit: usize) -> std::ops::Range<usize> {
    let ts = &table.timestamps[rows.clone()];
    let cut = ts.windows(2).rposition(|w| w[1] - w[0] > limit as f64 * step).map_or(0, |i| i + 1);
    rows.start + cut..rows.end
}

/// Points of the grid kept for training and testing: the newest seasons, and room for every origin.
fn keep_points(period: usize, h: usize) -> usize {
    (period.max(h) * MAX_SEASONS).max(h * (TEST_ORIGINS + CALIBRATION_ORIGINS + 6))
}

/// One sensor on the grid, as training sees it: only the newest `keep` points, NaN where no reading fell.
fn sensor_grid(table: &Table, values: &[f64], rows: std::ops::Range<usize>, step: f64, keep: usize) -> Vec<f64> {
    let mut g = grid_series(table, values, rows, step);
    if g.len() > keep {
        g.drain(..g.len() - keep);
    }
    g
}

/// The final points held out from a grid of `n`: whole horizons, up to [`TEST_ORIGINS`] of them.
fn held_out_points(n: usize, h: usize) -> usize {
    h * TEST_ORIGINS.min(n / (h * 4)).max(1)
}

/// Keeps the items whose flag is set.
fn retain_flagged<T>(items: &mut Vec<T>, keep: &[bool]) {
    let mut flags = keep.iter();
    items.retain(|_| flags.next().copied().unwrap_or(true));
}

/// Grid points refused outright: a series this long at this interval is not what the grid was meant for.
const MAX_GRID: usize = 5_000_000;

fn steps_for(hours: f64, interval_s: f64) -> usize {
    ((hours * 3600.0 / interval_s).round() as usize).max(1)
}

pub fn train(table: &Table, params: &TrainParams, ctx: &TrainContext) -> Result<(ForecastModel, Report), MlError> {
    let mut sw = Stopwatch::start();
    let step = table.interval_s.max(1e-3);
    let h = steps_for(params.forecast_hours, step);
    let period = forecast::period_from_interval(step);
    let candidate_periods = forecast::candidate_periods(step);
    let all_rows = timeline(table);
    let rows = after_last_gap(table, all_rows.clone(), step, gap_limit(period, h));
    let mut warnings = Vec::new();
    if all_rows.len() < table.n_rows() {
        warnings.push(format!(
            "the machine's {} runs overlap in time, so they cannot form one timeline: the forecaster learns from the latest run only ({} of {} rows); live readings continue that run",
            table.n_lives(),
            all_rows.len(),
            table.n_rows()
        ));
    }
    if rows.start > all_rows.start {
        warnings.push(format!(
            "readings stop for more than {} steps before row {}: the forecaster uses the {} rows after that gap rather than bridging it",
            gap_limit(period, h),
            rows.start,
            rows.len()
        ));
    }
    if rows.len() < 2 {
        return Err(MlError::NotEnoughData(format!("{} readings after the last long gap: too few to forecast", rows.len())));
    }
    let span_steps = (table.timestamps[rows.end - 1] - table.timestamps[rows.start]) / step;
    if span_steps > MAX_GRID as f64 {
        return Err(MlError::NotEnoughData(format!(
            "{} rows span {span_steps:.0} steps of {step} s: the grid would be too large; aggregate the data to a coarser interval",
            rows.len()
        )));
    }
    let mut sensors: Vec<&crate::data::Sensor> = table.sensors.iter().filter(|s| !params.exclude_sensors.contains(&s.name)).collect();
    if sensors.is_empty() {
        return Err(MlError::NotEnoughData("every sensor is excluded".into()));
    }
    let mut report = Report::new(ModelType::Timeseries, &table.machine_id);
    report.target = format!("every sensor {} h ahead ({h} steps of {step} s), 80 % and 95 % intervals", params.forecast_hours);
    ctx.stage("resample", 0.0, 0.05, format!("{} sensors on a {step} s grid", sensors.len()));
    // What was read, NaN on the grid points no reading fell on (backtests score only readings).
    let mut series: Vec<Vec<f64>> =
        sensors.iter().map(|s| sensor_grid(table, &s.values, rows.clone(), step, keep_points(period, h))).collect();
    let n = series.first().map_or(0, Vec::len);
    let test_len = held_out_points(n, h);
    if n < test_len + 3 * h.max(2) {
        // Four horizons is the least that leaves history to fit and one held-out horizon to test.
        let fits_hours = (n / 4) as f64 * step / 3600.0;
        // A shorter horizon is advice only when one of at least an hour (the smallest allowed) would fit.
        let advice = if fits_hours >= 1.0 {
            format!("set forecast_hours to {fits_hours:.2} or less, or give more history")
        } else {
            "give more history".to_string()
        };
        return Err(MlError::NotEnoughData(format!(
            "{n} points on the {step} s grid: too short to forecast {h} steps ({} h) and test it; need at least {} points — {advice}",
            params.forecast_hours,
            test_len + 3 * h.max(2)
        )));
    }
    let train_len = n - test_len;
    // A sensor silent before the held-out days (first read in them, or not at all) has no history to choose or
    // fit a model on; the others still train.
    let read_before_test: Vec<bool> = series.iter().map(|y| y[..train_len].iter().any(|v| v.is_finite())).collect();
    for (s, _) in sensors.iter().zip(&read_before_test).filter(|(_, read)| !**read) {
        warnings.push(format!("{}: no reading before the held-out days (the last {test_len} points), so it is not forecast", s.name));
    }
    retain_flagged(&mut sensors, &read_before_test);
    retain_flagged(&mut series, &read_before_test);
    if sensors.is_empty() {
        return Err(MlError::NotEnoughData(format!("no sensor has a reading before the held-out days (the last {test_len} points)")));
    }
    // The same with the gaps filled, for fitting and for the report's plots.
    let filled = series.iter().map(|y| forecast::fill_gaps(y)).collect::<Result<Vec<_>, _>>()?;
    // Only origins inside the held-out tail: earlier ones lie in the span the selection backtest chose on.
    let test_origins = test_len / h;
    sw.lap("resample");
    ctx.checkpoint()?;

    ctx.stage(
        "select",
        0.05,
        0.95,
        format!("backtesting up to 11 candidates per sensor on the last {} training points", SELECT_ORIGINS * h),
    );
    let mut fitted = Vec::new();
    let mut per_sensor = Vec::new();
    let mut board: Vec<LeaderRow> = Vec::new();
    for (i, ((s, y), y_filled)) in sensors.iter().zip(&series).zip(&filled).enumerate() {
        let (lo, hi) = (i as f64 / sensors.len() as f64, (i + 1) as f64 / sensors.len() as f64);
        let mut progress = |f: f64| {
            ctx.progress(lo + (hi - lo) * f, || format!("{}: {:.0} %", s.name, f * 100.0));
            ctx.checkpoint().is_ok()
        };
        let seasons = forecast::detect_periods(&forecast::fill_gaps(&y[..train_len])?, &candidate_periods);
        let out_of_time = || ctx.out_of_time();
        let opts = SelectOptions {
            baseline_periods: candidate_periods.clone(),
            seasons: seasons.clone(),
            scale_period: period,
            h,
            n_origins: SELECT_ORIGINS,
            calibration_origins: CALIBRATION_ORIGINS,
            out_of_time: &out_of_time,
        };
        let selected = forecast::select_with(&y[..train_len], &opts, &mut progress).map_err(|e| cancel_or(e, ctx))?;
        if selected.timed_out {
            warnings.push(format!("{}: the time limit ended the model search early; the best model tried so far is used", s.name));
        }
        let eff_period = selected.period;
        let spec = FitSpec::new(selected.periods.clone(), h);
        let make = |hist: &[f64]| selected.model.refit(hist, &spec);
        let test =
            forecast::backtest(y, period, h, test_origins, make, &mut |_| ctx.checkpoint().is_ok()).map_err(|e| cancel_or(e, ctx))?;
        if !test.mae.is_finite() {
            warnings.push(format!(
                "{}: no reading in the {test_len} held-out points, so its forecasts could not be tested and are left out of the metrics",
                s.name
            ));
        }
        // The simple rules on the same origins; the headline compares with the best of them, never the weakest.
        let mut baselines = Vec::new();
        for cand in Candidate::baselines(&candidate_periods, train_len) {
            let bspec = cand.spec(h);
            let make = |hist: &[f64]| forecast::Model::fit_spec(cand.kind, hist, &bspec, &mut |_| true);
            let score =
                forecast::backtest(y, period, h, test_origins, make, &mut |_| ctx.checkpoint().is_ok()).map_err(|e| cancel_or(e, ctx))?;
            baselines.push((cand.name(), score));
        }
        let Some((best_name, naive)) = baselines.iter().min_by(|a, b| a.1.mae.total_cmp(&b.1.mae)).cloned() else {
            return Err(MlError::NotEnoughData("no baseline could be scored".into()));
        };
        let baseline_json: serde_json::Map<String, serde_json::Value> = baselines.iter().map(|(n, b)| (n.clone(), json!(b))).collect();
        let mape = test_mape(y, train_len, &spec, &selected.model);
        for (name, score) in &selected.leaderboard {
            board.push(LeaderRow {
                model: format!("{}: {name}", s.name),
                metric: "backtest MAE (training tail)".into(),
                validation_score: score.mae,
                chosen: *name == selected.chosen,
                fit_seconds: 0.0,
                detail: format!("MASE {}", score.mase.map_or("n/a".into(), |m| format!("{m:.3}"))),
            });
        }
        // The deployed model is refitted on everything, keeping the backtest's calibrated widths for intervals.
        let deployed = selected.model.refit(y_filled, &spec)?;
        per_sensor
            .push(json!({ "sensor": s.name, "unit": s.unit, "model": selected.chosen, "seasons": seasons, "periods": selected.periods,
            "test": test, "best_baseline": best_name, "baselines": baseline_json, "mape": mape }));
        fitted.push((s.name.clone(), deployed, test, naive, mape, eff_period, selected.periods.clone()));
        ctx.checkpoint()?;
    }
    sw.lap("select");

    ctx.stage("evaluate", 0.95, 1.0, "held-out final days");
    let mean = |f: &dyn Fn(&BacktestScore) -> Option<f64>, which: usize| {
        let v: Vec<f64> = fitted.iter().filter_map(|x| f(if which == 0 { &x.2 } else { &x.3 })).filter(|v| v.is_finite()).collect();
        if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
    };
    let mase = mean(&|b| b.mase, 0);
    let mase_naive = mean(&|b| b.mase, 1);
    let mapes: Vec<f64> = fitted.iter().filter_map(|x| x.4.map(|m| m.0)).collect();
    let skipped: usize = fitted.iter().filter_map(|x| x.4.map(|m| m.1)).sum();
    report.metrics = json!({
        "mae": mean(&|b| Some(b.mae), 0), "smape": mean(&|b| Some(b.smape), 0), "mase": mase,
        "mape": if mapes.is_empty() { None } else { Some(mapes.iter().sum::<f64>() / mapes.len() as f64) },
        "mape_note": format!("MAPE skips actual values within 1e-6 × the series scale of zero ({skipped} points skipped)"),
        "coverage80": mean(&|b| Some(b.coverage80), 0), "coverage95": mean(&|b| Some(b.coverage95), 0),
        "test_origins": test_origins, "horizon_steps": h, "period": period, "candidate_periods": candidate_periods, "per_sensor": per_sensor,
    });
    let baseline_name = "best of naive / daily / weekly seasonal naive (per sensor, same origins)";
    report.baseline = json!({ "name": baseline_name, "mae": mean(&|b| Some(b.mae), 1), "smape": mean(&|b| Some(b.smape), 1), "mase": mase_naive,
        "coverage80": mean(&|b| Some(b.coverage80), 1), "coverage95": mean(&|b| Some(b.coverage95), 1) });
    report.headline = Headline::new("mase", mase, mase_naive, baseline_name, false);
    report.warnings.extend(warnings);
    report.leaderboard = board;
    report.samples = forecast_samples(table, &sensors, &filled, train_len, h, step, &fitted, rows.end);
    report.split = SplitSummary {
        method: "chronological (rolling origin)".into(),
        train_rows: train_len,
        test_rows: test_len,
        notes: vec![format!(
            "models chosen by a {SELECT_ORIGINS}-origin backtest on the training period; metrics from {} origins on the last {test_len} points",
            test_len / h
        )],
        ..Default::default()
    };
    report.data = DataSummary {
        rows: table.n_rows(),
        sensors: table.sensors.len(),
        sensors_used: sensors.iter().map(|s| s.name.clone()).collect(),
        interval_s: step,
        lives: table.n_lives(),
        grid: table.grid.clone(),
        ..Default::default()
    };
    sw.lap("evaluate");
    report.timings = sw.laps.clone();
    report.train_seconds = sw.total();
    let fitted_until = table.timestamps[rows.end - 1];
    let model = ForecastModel {
        interval_s: step,
        period,
        horizon: h,
        sensors: fitted
            .into_iter()
            .map(|(sensor, model, _, _, _, period, periods)| {
                let (unit, floor) =
                    table.sensor(&sensor).map(|s| (s.unit.clone(), physical_floor(&s.values[rows.clone()]))).unwrap_or_default();
                SensorForecaster { sensor, model, period, periods, unit, floor }
            })
            .collect(),
        fitted_until,
    };
    Ok((model, report))
}

/// A new forecaster and the live one on the new one's held-out days that the live one never saw: each sensor's
/// recipe (kind and seasons) refitted before every such origin, as predictions refit it on recent history, and
/// scored by MASE on the same scale for both. Returns the two mean MASEs over the sensors both forecast, and
/// the held-out grid points. With every held-out day unseen, the new model's figure is its report's headline.
pub fn compare_held_out(new: &ForecastModel, live: &ForecastModel, table: &Table) -> Result<(f64, f64, usize), String> {
    let (step, h) = (new.interval_s, new.horizon);
    if (live.interval_s - step).abs() > step * 1e-6 || live.horizon != h {
        return Err(format!("the live model forecasts {} steps of {} s, this one {h} of {step} s", live.horizon, live.interval_s));
    }
    let rows = after_last_gap(table, timeline(table), step, gap_limit(new.period, h));
    if rows.len() < 2 {
        return Err("too few readings to hold out".into());
    }
    let t_end = table.timestamps[rows.end - 1];
    let (mut mase_new, mut mase_live, mut points) = (Vec::new(), Vec::new(), 0);
    for sf in &new.sensors {
        let (Some(lf), Some(sensor)) = (live.sensors.iter().find(|l| l.sensor == sf.sensor), table.sensor(&sf.sensor)) else {
            continue;
        };
        let y = sensor_grid(table, &sensor.values, rows.clone(), step, keep_points(new.period, h));
        if !y.iter().any(|v| v.is_finite()) {
            continue;
        }
        let n = y.len();
        let held_out = held_out_points(n, h);
        // Origins whose first forecast point comes after everything the live model was fitted on (the newest first).
        let unseen = (0..held_out / h)
            .take_while(|j| {
                let origin = n - (j + 1) * h;
                t_end - (n - 1 - origin) as f64 * step > live.fitted_until + step / 2.0
            })
            .count();
        if unseen == 0 {
            return Err(format!("none of the {} held-out days is newer than the data the live model was fitted on", held_out / h));
        }
        let score = |m: &SensorForecaster| {
            let spec = m.spec(h);
            forecast::backtest(&y, new.period, h, unseen, |hist| m.model.refit(hist, &spec), &mut |_| true).map_err(|e| e.to_string())
        };
        let (a, b) = (score(sf)?, score(lf)?);
        if let (Some(a), Some(b)) = (a.mase, b.mase) {
            mase_new.push(a);
            mase_live.push(b);
            points += unseen * h;
        }
    }
    if mase_new.is_empty() {
        return Err("no sensor both models forecast could be scored".into());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Ok((mean(&mase_new), mean(&mase_live), points / mase_new.len()))
}

/// 0 when the readings never went below zero (a physical quantity that cannot), else none.
fn physical_floor(values: &[f64]) -> Option<f64> {
    let mut finite = values.iter().filter(|v| v.is_finite()).peekable();
    finite.peek()?;
    finite.all(|v| *v >= 0.0).then_some(0.0)
}

/// Sensor, deployed model, test score, best baseline's test score, test MAPE, period, every season.
type Fitted = (String, forecast::Model, BacktestScore, BacktestScore, Option<(f64, usize)>, usize, Vec<usize>);

fn cancel_or(e: forecast::ForecastError, ctx: &TrainContext) -> MlError {
    if ctx.is_cancelled() { MlError::Cancelled } else { MlError::Forecast(e) }
}

/// MAPE over the test origins on readings only, skipping near-zero actuals (a sensor that reads 0 has no
/// percentage error).
fn test_mape(y: &[f64], train_len: usize, spec: &FitSpec, chosen: &forecast::Model) -> Option<(f64, usize)> {
    let h = spec.horizon.max(1);
    let scale = y.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-12);
    let (mut actual, mut pred) = (Vec::new(), Vec::new());
    let mut origin = train_len;
    while origin + h <= y.len() {
        let m = chosen.refit(&forecast::fill_gaps(&y[..origin]).ok()?, spec).ok()?;
        actual.extend_from_slice(&y[origin..origin + h]);
        pred.extend(m.forecast(h).mean);
        origin += h;
    }
    forecast::mape_skipping_near_zero(&actual, &pred, scale * 1e-6)
}

/// Forecast vs held-out truth at the first test origin, for up to four sensors, with intervals.
#[allow(clippy::too_many_arguments)]
fn forecast_samples(
    table: &Table,
    sensors: &[&crate::data::Sensor],
    series: &[Vec<f64>],
    train_len: usize,
    h: usize,
    step: f64,
    fitted: &[Fitted],
    end_row: usize,
) -> serde_json::Value {
    let n = series.first().map_or(0, Vec::len);
    let t_end = table.timestamps[end_row - 1];
    let t_origin = t_end - (n - train_len) as f64 * step;
    let history = (h * 2).min(train_len);
    let mut out = Vec::new();
    for ((s, y), f) in sensors.iter().zip(series).zip(fitted).take(4) {
        let Ok(m) = f.1.refit(&y[..train_len], &FitSpec::new(f.6.clone(), h)) else {
            continue;
        };
        let fc = m.forecast(h);
        out.push(json!({
            "sensor": s.name, "unit": s.unit, "model": f.1.kind.name(),
            "history": { "start": crate::util::time::format_timestamp(t_origin - history as f64 * step), "values": &y[train_len - history..train_len] },
            "forecast": { "start": crate::util::time::format_timestamp(t_origin), "step_s": step, "mean": fc.mean, "lo80": fc.lo80, "hi80": fc.hi80, "lo95": fc.lo95, "hi95": fc.hi95 },
            "truth": &y[train_len..(train_len + h).min(y.len())],
        }));
    }
    json!({ "forecast_vs_truth": out })
}

impl ForecastModel {
    /// Rows of recent history a prediction refits on (two weeks of seasons, at least 3 periods and 4 horizons).
    pub fn history_rows(&self) -> usize {
        let longest = self.sensors.iter().flat_map(|s| s.periods.iter().copied()).max().unwrap_or(1);
        (self.period * 14).max(self.period * 3).max(self.horizon * 4).max(longest * 4)
    }

    pub fn describe(&self) -> String {
        let kinds: Vec<String> = self.sensors.iter().map(|s| format!("{}={}", s.sensor, s.model.kind.name())).collect();
        format!(
            "forecaster: {} sensors, {} steps of {} s, period {}: {}",
            self.sensors.len(),
            self.horizon,
            self.interval_s,
            self.period,
            kinds.join(", ")
        )
    }

    /// Forecasts from the given history: the stored state when the history ends where training ended, else
    /// each sensor's chosen kind refitted on the history (its backtest error quantiles kept for the intervals).
    pub fn predict(&self, recent: &Recent) -> Result<ForecastAnswer, MlError> {
        let last = recent.last_timestamp().ok_or_else(|| MlError::Readings("no readings given".into()))?;
        let same_end = (last - self.fitted_until).abs() < self.interval_s / 2.0;
        let mut out = Vec::new();
        for sf in &self.sensors {
            let model = if same_end {
                sf.model.clone()
            } else {
                let values = recent
                    .sensors
                    .get(&sf.sensor)
                    .ok_or_else(|| MlError::Readings(format!("sensor {:?} is missing from the readings", sf.sensor)))?;
                let y = resample(&recent.timestamps, values, self.interval_s)?;
                if y.len() < self.period.max(2) * 2 {
                    return Err(MlError::Readings(format!(
                        "{} readings on the {} s grid; the forecaster needs at least {}",
                        y.len(),
                        self.interval_s,
                        self.period.max(2) * 2
                    )));
                }
                sf.model.refit(&y, &sf.spec(self.horizon))?
            };
            let f = model.forecast(self.horizon);
            let timestamps = (1..=self.horizon).map(|k| crate::util::time::format_timestamp(last + k as f64 * self.interval_s)).collect();
            let decimals = recent.sensors.get(&sf.sensor).and_then(|v| recorded_decimals(v));
            let clamp = |v: Vec<f64>| -> Vec<f64> {
                v.into_iter()
                    .map(|x| match sf.floor {
                        Some(floor) => x.max(floor),
                        None => x,
                    })
                    .map(|x| match decimals {
                        // One decimal more than the readings have: finer digits are noise of the arithmetic.
                        Some(d) => round_to(x, d + 1),
                        None => x,
                    })
                    .collect()
            };
            out.push(SensorForecast {
                sensor: sf.sensor.clone(),
                unit: sf.unit.clone(),
                model: sf.model.kind.name().into(),
                timestamps,
                mean: clamp(f.mean),
                lo80: clamp(f.lo80),
                hi80: clamp(f.hi80),
                lo95: clamp(f.lo95),
                hi95: clamp(f.hi95),
            });
        }
        Ok(ForecastAnswer {
            horizon_hours: self.horizon as f64 * self.interval_s / 3600.0,
            interval_s: self.interval_s,
            start: crate::util::time::format_timestamp(last + self.interval_s),
            sensors: out,
        })
    }
}

/// How many decimals the readings are recorded with (0 to 6), judged on the latest 500; None when they are
/// finer than that (raw floats) or there are none.
fn recorded_decimals(values: &[f64]) -> Option<i32> {
    let tail: Vec<f64> = values[values.len().saturating_sub(500)..].iter().copied().filter(|v| v.is_finite()).collect();
    if tail.is_empty() {
        return None;
    }
    (0..=6).find(|&d| {
        let scale = 10f64.powi(d);
        tail.iter().all(|v| {
            let x = v * scale;
            (x - x.round()).abs() <= 1e-9 * x.abs().max(1.0)
        })
    })
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let r = (x * scale).round() / scale;
    if r.is_finite() { r } else { x }
}

fn resample(timestamps: &[f64], values: &[f64], step: f64) -> Result<Vec<f64>, MlError> {
    if timestamps.len() != values.len() || timestamps.is_empty() {
        return Err(MlError::Readings("timestamps and values differ in length".into()));
    }
    let t0 = timestamps[0];
    let n = ((timestamps[timestamps.len() - 1] - t0) / step).round().max(0.0) as usize + 1;
    if n > 1_000_000 {
        return Err(MlError::Readings("the readings span too long a time for their interval".into()));
    }
    let mut grid = vec![f64::NAN; n];
    for (t, v) in timestamps.iter().zip(values) {
        let k = ((t - t0) / step).round();
        if k >= 0.0 && (k as usize) < n {
            grid[k as usize] = *v;
        }
    }
    Ok(forecast::fill_gaps(&grid)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Layout, MachineMeta, Sensor, SplitHint};
    use crate::ml::engines::forecast::ModelKind;
    use std::time::Duration;

    /// Hourly readings with a daily cycle: `first` hours, a silence of `gap_days`, then `second` hours.
    fn two_runs(first: usize, gap_days: f64, second: usize) -> Table {
        let mut timestamps: Vec<f64> = (0..first).map(|i| i as f64 * 3600.0).collect();
        let restart = first as f64 * 3600.0 + gap_days * 86_400.0;
        timestamps.extend((0..second).map(|i| restart + i as f64 * 3600.0));
        let values = timestamps.iter().map(|t| 20.0 + 5.0 * (std::f64::consts::TAU * t / 86_400.0).sin()).collect();
        Table {
            machine_id: "m".into(),
            meta: MachineMeta::default(),
            layout: Layout::Described,
            sources: vec![],
            life: vec![0; timestamps.len()],
            timestamps,
            lives_known: false,
            given_split: None,
            sensors: vec![Sensor { name: "temp".into(), unit: "°C".into(), values }],
            label: None,
            rul: None,
            anomaly: None,
            interval_s: 3600.0,
            split_hint: SplitHint::default(),
            rul_cap_hint: None,
            grid: None,
        }
    }

    fn ctx(limit: Duration) -> TrainContext {
        TrainContext::detached(limit, 1)
    }

    #[test]
    fn runs_a_month_apart_are_not_bridged() {
        let table = two_runs(24 * 30, 30.0, 24 * 40);
        let (_, report) = train(&table, &TrainParams::default(), &ctx(Duration::from_secs(60))).unwrap();
        assert!(report.warnings.iter().any(|w| w.contains("960 rows after that gap")), "{:?}", report.warnings);
        assert_eq!(report.split.train_rows + report.split.test_rows, 24 * 40);
    }

    /// Twenty days hold out five: the score and its baselines use those five origins, none of the fifteen
    /// training days the model was chosen on (the backtest would reach back 14 origins if asked).
    #[test]
    fn the_test_score_uses_only_held_out_origins() {
        let table = two_runs(24 * 20, 0.0, 0);
        let (_, report) = train(&table, &TrainParams::default(), &ctx(Duration::from_secs(60))).unwrap();
        assert_eq!(report.split.test_rows, 5 * 24);
        assert_eq!(report.metrics["test_origins"], 5);
        let sensor = &report.metrics["per_sensor"][0];
        assert_eq!(sensor["test"]["origins"], 5, "{sensor}");
        for (name, baseline) in sensor["baselines"].as_object().unwrap() {
            assert_eq!(baseline["origins"], 5, "{name}");
        }
    }

    /// A sensor that went quiet before the held-out days has nothing to be scored on: its test score is left
    /// out (not a perfect 0, which an empty comparison would give) and the report says why.
    #[test]
    fn a_sensor_silent_in_the_held_out_days_is_left_out_of_the_scores() {
        let mut table = two_runs(24 * 30, 0.0, 0);
        let n = table.n_rows();
        let values = (0..n).map(|i| if i + 24 * 8 < n { 50.0 + (i % 24) as f64 } else { f64::NAN }).collect();
        table.sensors.push(Sensor { name: "flow".into(), unit: "l/min".into(), values });
        let (model, report) = train(&table, &TrainParams::default(), &ctx(Duration::from_secs(60))).unwrap();
        assert_eq!(model.sensors.len(), 2);
        let flow = &report.metrics["per_sensor"][1];
        assert_eq!(flow["sensor"], "flow");
        assert!(flow["test"]["mae"].is_null() && flow["test"]["mase"].is_null(), "{flow}");
        assert!(report.warnings.iter().any(|w| w.starts_with("flow: no reading in the")), "{:?}", report.warnings);
        let temp_mase = report.metrics["per_sensor"][0]["test"]["mase"].as_f64().unwrap();
        assert_eq!(report.metrics["mase"].as_f64(), Some(temp_mase), "only temp is scored");
    }

    /// A sensor first read in the held-out days cannot be fitted or tested: it is left out with a warning and
    /// the others train as usual.
    #[test]
    fn a_sensor_first_read_in_the_held_out_days_is_not_forecast() {
        let mut table = two_runs(24 * 30, 0.0, 0);
        let n = table.n_rows();
        let values = (0..n).map(|i| if i + 24 * 3 >= n { 50.0 + (i % 24) as f64 } else { f64::NAN }).collect();
        table.sensors.push(Sensor { name: "flow".into(), unit: "l/min".into(), values });
        let (model, report) = train(&table, &TrainParams::default(), &ctx(Duration::from_secs(60))).unwrap();
        assert_eq!(model.sensors.iter().map(|s| s.sensor.as_str()).collect::<Vec<_>>(), ["temp"]);
        assert!(report.warnings.iter().any(|w| w.starts_with("flow: no reading before the held-out days")), "{:?}", report.warnings);
        assert_eq!(report.data.sensors_used, ["temp"]);
        // A sensor never read in the kept window is left out the same way.
        table.sensors[1].values.iter_mut().for_each(|v| *v = f64::NAN);
        let (model, report) = train(&table, &TrainParams::default(), &ctx(Duration::from_secs(60))).unwrap();
        assert_eq!(model.sensors.len(), 1);
        assert!(report.warnings.iter().any(|w| w.starts_with("flow: no reading before")), "{:?}", report.warnings);
        table.sensors.remove(0);
        let err = train(&table, &TrainParams::default(), &ctx(Duration::from_secs(60))).unwrap_err().to_string();
        assert!(err.contains("no sensor has a reading before the held-out days"), "{err}");
    }

    #[test]
    fn a_horizon_longer_than_the_data_names_the_one_that_fits() {
        let table = two_runs(24 * 10, 0.0, 0);
        let params = TrainParams { forecast_hours: 24.0 * 7.0, ..TrainParams::default() };
        let err = train(&table, &params, &ctx(Duration::from_secs(60))).unwrap_err().to_string();
        assert!(err.contains("set forecast_hours to 60.00 or less"), "{err}");
    }

    #[test]
    fn the_time_limit_is_obeyed() {
        let table = two_runs(24 * 60, 0.0, 0);
        let t0 = std::time::Instant::now();
        let (model, report) = train(&table, &TrainParams::default(), &ctx(Duration::ZERO)).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert!(report.warnings.iter().any(|w| w.contains("time limit")), "{:?}", report.warnings);
        assert_eq!(model.sensors[0].model.kind, ModelKind::Naive);
    }

    #[test]
    fn readings_decimals_are_found_and_forecasts_carry_one_more() {
        assert_eq!(recorded_decimals(&[41.2, 40.0, 39.9, f64::NAN]), Some(1));
        assert_eq!(recorded_decimals(&[1234.56, 0.01]), Some(2));
        assert_eq!(recorded_decimals(&[3.0, 400.0]), Some(0));
        assert_eq!(recorded_decimals(&[std::f64::consts::PI]), None, "raw floats stay unrounded");
        assert_eq!(recorded_decimals(&[]), None);
        assert_eq!(round_to(41.23456, 2), 41.23);

        let mut table = two_runs(24 * 20, 0.0, 0);
        for (i, v) in table.sensors[0].values.iter_mut().enumerate() {
            // A little irregular noise, so the intervals have width; then one decimal, as a logger writes.
            let noise = ((i * 7919) % 97) as f64 / 97.0 - 0.5;
            *v = ((*v + noise) * 10.0).round() / 10.0;
        }
        let (model, _) = train(&table, &TrainParams::default(), &ctx(Duration::from_secs(60))).unwrap();
        let recent = Recent {
            timestamps: table.timestamps.clone(),
            sensors: [("temp".to_string(), table.sensors[0].values.clone())].into_iter().collect(),
            time_in_life_h: None,
        };
        let answer = model.predict(&recent).unwrap();
        let f = &answer.sensors[0];
        for x in f.mean.iter().chain(&f.lo80).chain(&f.hi95) {
            assert!(((x * 100.0).round() - x * 100.0).abs() < 1e-6, "{x} has more than 2 decimals");
        }
        let all: Vec<f64> = [&f.mean, &f.lo80, &f.hi80, &f.lo95, &f.hi95].into_iter().flatten().copied().collect();
        assert!(all.iter().any(|x| ((x * 10.0).round() - x * 10.0).abs() > 1e-6), "rounded to 2 decimals, not to the readings' 1: {all:?}");
    }
}
