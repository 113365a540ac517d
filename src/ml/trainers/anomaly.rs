//! "Is current behaviour abnormal?": an ensemble of isolation forest, robust per-sensor z-scores, a robust
//! Mahalanobis distance and PCA T² + Q, fitted on healthy rows only (each run judged from its own normal start
//! when the data says runs start normal), each calibrated to [0, 1] on held-out healthy rows,
//! with a threshold set by `contamination`. Evaluated against real anomaly labels when the data has them,
//! else against a clearly named proxy — never against labels derived from the same features.
use super::confirm::Confirm;
use crate::data::{DEFAULT_TRAILING_HOURS, Split, Table};
use crate::ml::engines::detectors::{
    Detector, DetectorKind, Ensemble, EnsembleConfig, PcaConfig, Rows, Trailing, threshold_for_contamination,
};
use crate::ml::error::MlError;
use crate::ml::recent::Recent;
use crate::ml::report::{DataSummary, Headline, Report, SplitSummary, Stopwatch, sample_indices};
use crate::ml::shared::context::{LeaderRow, TrainContext};
use crate::ml::shared::features::{FeatureSpec, Stat, features_for_rows};
use crate::ml::shared::metrics;
use crate::ml::shared::params::{ModelType, TrainParams};
use crate::ml::shared::split::plan_split;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;

const MAX_FIT_ROWS: usize = 20_000;
const MAX_HOLDOUT_ROWS: usize = 10_000;
/// Anomalies show within minutes to hours; a longer window mostly averages them away.
const MAX_ANOMALY_WINDOW: usize = 60;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnomalyModel {
    pub spec: FeatureSpec,
    pub ensemble: Ensemble,
    pub contamination: f64,
    /// When runs start normal: the features' mean over the latest run's normal start. Every row is scored
    /// relative to its own run's start in training; live rows relative to this one.
    pub reference: Option<Vec<f64>>,
    /// How many recent readings confirm an alarm; the threshold is calibrated on confirmed scores.
    pub confirm: Confirm,
    /// Runs whose own held-out healthy rows alarm too often at the pooled threshold, with the higher threshold
    /// calibrated on those rows (by run number). A run's threshold is never below the pooled one.
    pub run_thresholds: Vec<(u32, f64)>,
    /// The threshold live readings are judged by: the latest run's.
    pub live_threshold: f64,
    /// `[anomaly] reference = "trailing"`: every reading judged against the readings just before it, with a
    /// threshold of its own; the ensemble above is then not what answers.
    pub trailing: Option<Trailing>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnomalyAnswer {
    pub anomaly_score: f64,
    pub threshold: f64,
    pub is_anomaly: bool,
    /// Sensors driving the score, largest share first (shares sum to 1 over all sensors).
    pub top_sensors: Vec<(String, f64)>,
    pub detectors: Vec<(String, f64)>,
}

/// One row's anomaly score, for benchmarks that score alarms row by row.
#[derive(Clone, Debug, PartialEq)]
pub struct RowScore {
    /// Seconds since the epoch.
    pub timestamp: f64,
    pub run: u32,
    pub score: f64,
    /// The threshold of the row's run (see [`AnomalyModel::run_thresholds`]).
    pub threshold: f64,
    pub alarm: bool,
    /// The data's own anomaly label, when it has one.
    pub label: Option<f64>,
}

/// Which rows are healthy, held out, and scored, and what the scores are judged against.
struct Plan {
    fit: Vec<usize>,
    holdout: Vec<usize>,
    test: Vec<usize>,
    fit_rule: String,
    summary: SplitSummary,
}

/// Rows known or assumed healthy among `rows`: label 0, else the first half of each life (wear has not set in),
/// else all of them (stated in the report).
fn healthy_rows(table: &Table, rows: &[usize]) -> (Vec<usize>, &'static str) {
    if let Some(label) = &table.label {
        return (rows.iter().copied().filter(|&r| label[r] < 0.5).collect(), "rows labelled 0 (no failure)");
    }
    if table.rul.is_some() && table.lives_known {
        let ranges = table.life_ranges();
        let mut start_of = std::collections::HashMap::new();
        for (life, r) in &ranges {
            start_of.insert(*life, r.clone());
        }
        let early = rows
            .iter()
            .copied()
            .filter(|&r| start_of.get(&table.life[r]).is_some_and(|lr| r < lr.start + (lr.end - lr.start) / 2))
            .collect();
        return (early, "the first half of each training life");
    }
    (rows.to_vec(), "all training rows (no labels or lives: assumed mostly healthy)")
}

/// Splits a list of healthy rows into fit (first 75 %) and calibration (last 25 %) parts.
fn fit_and_holdout(rows: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let cut = rows.len() * 3 / 4;
    (rows[..cut].to_vec(), rows[cut..].to_vec())
}

/// Healthy rows the data itself vouches for: a healthy reference split, and the first N rows of each life.
fn vouched_healthy(table: &Table) -> (Vec<usize>, Vec<usize>, Vec<String>) {
    let split = table.given_split.as_deref().unwrap_or_default();
    let reference: Vec<usize> = (0..split.len()).filter(|&i| split[i] == Split::Healthy).collect();
    let mut heads = Vec::new();
    let mut notes = Vec::new();
    if !reference.is_empty() {
        notes.push(format!("{} rows of healthy reference data", reference.len()));
    }
    if let Some(n) = table.split_hint.healthy_head_rows {
        for (_, r) in table.life_ranges() {
            if split.get(r.start) != Some(&Split::Healthy) {
                heads.extend(r.start..(r.start + n).min(r.end));
            }
        }
        notes.push(format!(
            "the first {n} rows of each run are normal by the data's description ({} rows); they are fitted on and never scored",
            heads.len()
        ));
    }
    (reference, heads, notes)
}

fn plan(table: &Table, params: &TrainParams, gap: usize) -> Result<Plan, MlError> {
    let (reference, heads, notes) = vouched_healthy(table);
    if !reference.is_empty() || !heads.is_empty() {
        let (mut fit, mut holdout) = fit_and_holdout(&reference);
        // Heads are split per life so every run contributes to both fitting and calibration.
        let mut by_life: std::collections::BTreeMap<u32, Vec<usize>> = std::collections::BTreeMap::new();
        for &r in &heads {
            by_life.entry(table.life[r]).or_default().push(r);
        }
        for rows in by_life.values() {
            let (f, h) = fit_and_holdout(rows);
            fit.extend(f);
            holdout.extend(h);
        }
        let split = table.given_split.as_deref().unwrap_or_default();
        let head_set: std::collections::HashSet<usize> = heads.iter().copied().collect();
        let test: Vec<usize> =
            (0..table.n_rows()).filter(|i| split.get(*i).is_none_or(|s| *s == Split::Test) && !head_set.contains(i)).collect();
        fit.sort_unstable();
        holdout.sort_unstable();
        let summary = SplitSummary {
            method: "healthy rows the data vouches for + the rest as test".into(),
            train_rows: fit.len(),
            val_rows: holdout.len(),
            test_rows: test.len(),
            healthy_rows: reference.len() + heads.len(),
            notes,
            ..Default::default()
        };
        return Ok(Plan { fit, holdout, test, fit_rule: "the data's healthy rows".into(), summary });
    }
    let p = plan_split(table, params.seed, gap, None)?;
    let (fit, rule) = healthy_rows(table, &p.train);
    let (mut holdout, _) = healthy_rows(table, &p.val);
    let mut fit = fit;
    let mut notes = p.notes.clone();
    if holdout.len() < 50 {
        let cut = fit.len() * 3 / 4;
        holdout = fit.split_off(cut);
        notes.push("too few healthy validation rows: calibrated on the last 25 % of the healthy training rows".into());
    }
    let summary = SplitSummary {
        method: p.method.clone(),
        train_rows: fit.len(),
        val_rows: holdout.len(),
        test_rows: p.test.len(),
        healthy_rows: p.healthy.len(),
        train_lives: p.train_lives,
        val_lives: p.val_lives,
        test_lives: p.test_lives,
        notes,
    };
    Ok(Plan { fit, holdout, test: p.test, fit_rule: rule.into(), summary })
}

/// Ground truth for the test rows: the data's anomaly column, else a named proxy; rows the proxy cannot judge are dropped.
pub(crate) fn truth(table: &Table, params: &TrainParams, rows: &[usize]) -> Option<(Vec<usize>, Vec<bool>, String)> {
    if let Some(a) = &table.anomaly {
        let keep: Vec<usize> = rows.iter().copied().filter(|&r| a[r].is_finite()).collect();
        let y = keep.iter().map(|&r| a[r] >= 0.5).collect();
        return Some((keep, y, "the data's anomaly labels".into()));
    }
    if let (Some(rul), true) = (&table.rul, table.lives_known) {
        let h = params.horizon_hours;
        let ranges: std::collections::HashMap<u32, std::ops::Range<usize>> = table.life_ranges().into_iter().collect();
        let mut keep = Vec::new();
        let mut y = Vec::new();
        for &r in rows {
            let early = ranges.get(&table.life[r]).is_some_and(|lr| r < lr.start + (lr.end - lr.start) / 2);
            if rul[r] <= h {
                keep.push(r);
                y.push(true);
            } else if early {
                keep.push(r);
                y.push(false);
            }
        }
        return Some((
            keep,
            y,
            format!(
                "proxy: the last {h} h before failure (positive) vs the first half of each life (negative); rows between are not scored"
            ),
        ));
    }
    if let Some(l) = &table.label {
        let keep: Vec<usize> = rows.iter().copied().filter(|&r| l[r].is_finite()).collect();
        let y = keep.iter().map(|&r| l[r] >= 0.5).collect();
        return Some((keep, y, "proxy: the failure label".into()));
    }
    None
}

/// Anomaly features: each reading plus its mean and spread over one short window — enough context
/// to see drift and noise bursts, few enough columns for the distance detectors.
fn anomaly_spec(table: &Table, params: &TrainParams, fit_rows: &[usize]) -> (FeatureSpec, Vec<String>) {
    let (mut spec, dropped) = FeatureSpec::for_table(table, &params.exclude_sensors, fit_rows, false);
    if let Some(&w) = spec.windows.iter().min() {
        let w = w.min(MAX_ANOMALY_WINDOW);
        spec.windows = vec![w];
        spec.window_seconds = vec![w as f64 * spec.interval_s];
    }
    spec.stats = vec![Stat::Mean, Stat::Std];
    spec.raw = true;
    spec.time_in_life = false;
    (spec, dropped)
}

fn rows_matrix(spec: &FeatureSpec, table: &Table, rows: &[usize]) -> Result<Rows, MlError> {
    let m = features_for_rows(spec, table, rows)?;
    let data: Vec<f64> = m.data.iter().map(|v| f64::from(*v)).collect();
    Ok(Rows::from_column_major(m.n_rows, m.n_cols, &data)?)
}

/// Each run's normal start, as the mean of its features there. Runs of one machine recorded weeks apart sit
/// in different operating regimes (another flow, another vibration level); measured from its own start,
/// each run's healthy rows look alike, so one detector fits them all and a change *within* a run shows.
struct RunStarts {
    offsets: HashMap<u32, Vec<f64>>,
}

impl RunStarts {
    fn fit(spec: &FeatureSpec, table: &Table, head: usize) -> Result<RunStarts, MlError> {
        let mut offsets = HashMap::new();
        for (life, r) in table.life_ranges() {
            let rows: Vec<usize> = (r.start..(r.start + head).min(r.end)).collect();
            if rows.is_empty() {
                continue;
            }
            offsets.insert(life, column_means(&rows_matrix(spec, table, &rows)?));
        }
        Ok(RunStarts { offsets })
    }

    /// The rows' features, each relative to its own run's start.
    fn matrix(&self, spec: &FeatureSpec, table: &Table, rows: &[usize]) -> Result<Rows, MlError> {
        let mut m = rows_matrix(spec, table, rows)?;
        let p = m.n_cols;
        for (values, &r) in m.data.chunks_exact_mut(p.max(1)).zip(rows) {
            if let Some(offset) = self.offsets.get(&table.life[r]) {
                subtract(values, offset);
            }
        }
        Ok(m)
    }

    /// The start of the run the table ends with: live rows continue it.
    fn latest(&self, table: &Table) -> Option<Vec<f64>> {
        table.life.last().and_then(|l| self.offsets.get(l)).cloned()
    }
}

/// The rows' features, each from its own run's start when there are run starts.
fn run_matrix(spec: &FeatureSpec, table: &Table, rows: &[usize], starts: Option<&RunStarts>) -> Result<Rows, MlError> {
    match starts {
        Some(s) => s.matrix(spec, table, rows),
        None => rows_matrix(spec, table, rows),
    }
}

fn subtract(values: &mut [f64], offset: &[f64]) {
    for (v, o) in values.iter_mut().zip(offset) {
        *v -= o;
    }
}

/// Mean of each column over its finite values (NaN for a column with none).
fn column_means(m: &Rows) -> Vec<f64> {
    column_moments(m).into_iter().map(|(mean, _)| mean).collect()
}

/// Mean and sample standard deviation of each column over its finite values (NaN where there are too few).
fn column_moments(m: &Rows) -> Vec<(f64, f64)> {
    let p = m.n_cols;
    let mut acc = vec![(0.0, 0.0, 0usize); p];
    for row in m.data.chunks_exact(p.max(1)) {
        for (a, v) in acc.iter_mut().zip(row).filter(|(_, v)| v.is_finite()) {
            // Welford: stable for readings far from zero with a small spread.
            a.2 += 1;
            let d = v - a.0;
            a.0 += d / a.2 as f64;
            a.1 += d * (v - a.0);
        }
    }
    acc.into_iter()
        .map(|(mean, m2, n)| match n {
            0 => (f64::NAN, f64::NAN),
            1 => (mean, f64::NAN),
            _ => (mean, (m2 / (n - 1) as f64).sqrt()),
        })
        .collect()
}

/// How far apart two sets of rows sit: the median over features of |mean_a − mean_b| in units of b's spread
/// (its standard deviation, floored at 1 % of its mean level so a near-constant feature cannot dominate).
fn regime_distance(a: &Rows, b: &Rows) -> f64 {
    let ma = column_means(a);
    let mut d: Vec<f64> = ma
        .iter()
        .zip(column_moments(b))
        .filter(|(x, (mean, sd))| x.is_finite() && mean.is_finite() && sd.is_finite())
        .map(|(x, (mean, sd))| (x - mean).abs() / sd.max(0.01 * mean.abs()).max(1e-12))
        .collect();
    if d.is_empty() {
        return 0.0;
    }
    d.sort_by(f64::total_cmp);
    d[d.len() / 2]
}

/// A healthy reference further than this (median, in standard deviations of the runs' normal starts) was
/// recorded in another operating regime.
const OTHER_REGIME: f64 = 3.0;

fn thin(rows: &[usize], max: usize) -> Vec<usize> {
    sample_indices(rows.len(), max).into_iter().map(|i| rows[i]).collect()
}

/// Isolation forest, robust z, robust Mahalanobis and PCA T² + Q: the classic process-monitoring pair sees
/// both a level the healthy rows never reached and a broken correlation between sensors.
fn ensemble_config(params: &TrainParams) -> EnsembleConfig {
    let mut config = EnsembleConfig { contamination: params.contamination, ..EnsembleConfig::default() };
    config.detectors.push((DetectorKind::PcaT2Q(PcaConfig::default()), 1.0));
    config
}

/// How far the healthy reference sits from the runs' normal starts ([`regime_distance`]), when there are both.
fn reference_distance(spec: &FeatureSpec, table: &Table) -> Result<Option<f64>, MlError> {
    let (reference, heads, _) = vouched_healthy(table);
    if reference.is_empty() || heads.is_empty() {
        return Ok(None);
    }
    let (a, b) = (rows_matrix(spec, table, &thin(&reference, 5_000))?, rows_matrix(spec, table, &thin(&heads, 5_000))?);
    Ok(Some(regime_distance(&a, &b)))
}

pub fn train(table: &Table, params: &TrainParams, ctx: &TrainContext) -> Result<(AnomalyModel, Report), MlError> {
    let mut sw = Stopwatch::start();
    ctx.stage("split", 0.0, 0.05, "choosing healthy rows");
    let all: Vec<usize> = (0..table.n_rows()).collect();
    let (probe, _) = anomaly_spec(table, params, &all);
    let mut plan = plan(table, params, probe.min_rows())?;
    if plan.fit.len() < 20 || plan.holdout.is_empty() {
        return Err(MlError::NotEnoughData(format!(
            "only {} healthy rows to fit on and {} to calibrate on; the anomaly detector needs at least 20 and 1",
            plan.fit.len(),
            plan.holdout.len()
        )));
    }
    let (spec, dropped) = anomaly_spec(table, params, &plan.fit);
    if spec.sensors.is_empty() {
        return Err(MlError::NotEnoughData("every sensor is constant or excluded on the healthy rows".into()));
    }
    let confirm = Confirm::from_params(params.alarm_k_of_n);
    let mut report = Report::new(ModelType::Anomaly, &table.machine_id);
    report.target = format!(
        "abnormal behaviour relative to {}; threshold lets {:.1} % of held-out healthy rows alarm{}",
        plan.fit_rule,
        params.contamination * 100.0,
        if confirm.is_single() { String::new() } else { format!(", an alarm needing {}", confirm.describe()) }
    );
    sw.lap("split");
    ctx.checkpoint()?;

    ctx.stage("features", 0.05, 0.2, format!("{} features from {} sensors", spec.n_features(), spec.sensors.len()));
    let starts = match table.split_hint.healthy_head_rows {
        Some(head) => Some(RunStarts::fit(&spec, table, head)?),
        None => None,
    };
    if let Some(starts) = &starts {
        plan.summary.notes.push(format!(
            "each run is scored relative to its own normal start ({} runs): runs recorded in different operating regimes share one detector",
            starts.offsets.len()
        ));
        if let Some(distance) = reference_distance(&spec, table)?
            && distance > OTHER_REGIME
        {
            let split = table.given_split.as_deref().unwrap_or_default();
            let is_reference = |r: &usize| split.get(*r) == Some(&Split::Healthy);
            plan.fit.retain(|r| !is_reference(r));
            plan.holdout.retain(|r| !is_reference(r));
            plan.summary.train_rows = plan.fit.len();
            plan.summary.val_rows = plan.holdout.len();
            report.warnings.push(format!(
                "the healthy reference was recorded in another operating regime than the runs (median distance {distance:.1} standard deviations of their normal starts): not used; the detector learns from the runs' own normal starts"
            ));
            if plan.fit.len() < 20 || plan.holdout.is_empty() {
                return Err(MlError::NotEnoughData(format!(
                    "the healthy reference is from another operating regime (median distance {distance:.1} standard deviations) and the runs' normal starts give only {} rows to fit on and {} to calibrate on (at least 20 and 1): record a reference in the runs' regime, or give longer normal starts",
                    plan.fit.len(),
                    plan.holdout.len()
                )));
            }
        }
    }
    let matrix = |rows: &[usize]| run_matrix(&spec, table, rows, starts.as_ref());
    let fit = matrix(&thin(&plan.fit, MAX_FIT_ROWS))?;
    let holdout = matrix(&thin(&plan.holdout, MAX_HOLDOUT_ROWS))?;
    sw.lap("features");
    ctx.checkpoint()?;

    let config = ensemble_config(params);
    ctx.stage(
        "fit",
        0.2,
        0.8,
        format!("{} detectors on {} healthy rows, calibrated on {}", config.detectors.len(), fit.n_rows, holdout.n_rows),
    );
    let mut progress = |f: f64| {
        ctx.progress(f, || format!("detectors {:.0} %", f * 100.0));
        ctx.checkpoint().is_ok()
    };
    let ensemble = Ensemble::fit(&fit, &holdout, &config, &mut progress)
        .map_err(|e| if ctx.is_cancelled() { MlError::Cancelled } else { MlError::Detector(e) })?;
    sw.lap("fit");
    ctx.checkpoint()?;

    ctx.stage("evaluate", 0.8, 1.0, "scoring test rows");
    let reference = starts.as_ref().and_then(|s| s.latest(table));
    let pooled = ensemble.threshold;
    let mut model = AnomalyModel {
        spec,
        ensemble,
        contamination: params.contamination,
        reference,
        confirm,
        run_thresholds: Vec::new(),
        live_threshold: pooled,
        trailing: None,
    };
    let holdout_scores = confirmed_scores(&model, table, &plan.holdout, starts.as_ref(), ctx)?;
    if !confirm.is_single() {
        // The ensemble's threshold was set on single readings; confirmed scores are lower on healthy rows
        // (a spike needs company), so the share that alarms is calibrated again on them.
        model.ensemble.threshold = threshold_for_contamination(&holdout_scores, params.contamination).map_err(MlError::Detector)?;
        model.live_threshold = model.ensemble.threshold;
        plan.summary.notes.push(format!(
            "an alarm needs {}: the threshold is calibrated on confirmed scores of the held-out healthy rows",
            confirm.describe()
        ));
    }
    if starts.is_some() {
        model.run_thresholds = run_thresholds(table, &plan.holdout, &holdout_scores, model.ensemble.threshold, params.contamination);
        let latest = table.life_ranges().last().map(|(run, _)| *run);
        model.live_threshold = latest.map_or(model.ensemble.threshold, |run| model.threshold_of(run));
        if !model.run_thresholds.is_empty() {
            plan.summary.notes.push(format!(
                "{} of {} runs alarm more often on their own held-out healthy rows than the target at the pooled threshold: each of those gets the higher threshold calibrated on its rows (never a lower one)",
                model.run_thresholds.len(),
                table.n_lives()
            ));
        }
    }
    let chosen_hours = match table.split_hint.trailing_reference_hours {
        Some(hours) => Some(hours),
        None => wandering_share(table, &model, starts.as_ref(), ctx)?.map(|share| {
            report.warnings.push(format!(
                "fitted on the healthy start, the detector alarmed on {:.0} % of the readings after it (target {:.0} %): this series' normal range moves beyond its start, so each reading is judged against the {DEFAULT_TRAILING_HOURS} h before it instead; [anomaly] reference = \"healthy\" keeps the start",
                share * 100.0,
                params.contamination * 100.0
            ));
            DEFAULT_TRAILING_HOURS
        }),
    };
    if let Some(hours) = chosen_hours {
        let trailing = Trailing::for_interval(table.interval_s, hours);
        model.trailing = Some(trailing);
        let spans_h = trailing.window as f64 * table.interval_s / 3600.0;
        if (spans_h - hours).abs() > 0.05 * hours {
            report.warnings.push(format!(
                "the trailing reference spans {} readings ({spans_h:.2} h) rather than {hours} h: a window holds between {} and {} readings",
                trailing.window,
                crate::ml::engines::detectors::TRAILING_MIN_WINDOW,
                crate::ml::engines::detectors::TRAILING_MAX_WINDOW
            ));
        }
        report.target = format!(
            "a reading unlike the {} readings before it ({spans_h:.2} h): its distance from their median, in MADs, over {} and over the {:.0} % quantile of their own distances",
            trailing.window,
            trailing.floor,
            trailing.quantile * 100.0
        );
        plan.summary.notes.push(
            "the reference trails each reading: no healthy stretch is assumed to hold the series' whole normal range, and a level held for a window becomes normal".into(),
        );
        if !model.confirm.is_single() {
            report.warnings.push(format!(
                "an alarm needing {} is not applied with a trailing reference: each reading alarms on its own",
                model.confirm.describe()
            ));
        }
        evaluate_trailing(table, params, &model, &plan, &mut report)?;
        report.leaderboard.push(LeaderRow {
            model: "trailing robust distance".into(),
            metric: format!("window {} readings", trailing.window),
            validation_score: f64::NAN,
            chosen: true,
            fit_seconds: 0.0,
            detail: "answers; the ensemble below is fitted but not used".into(),
        });
    } else {
        evaluate(table, params, ctx, &model, &plan, &holdout_scores, starts.as_ref(), &mut report)?;
    }
    for m in &model.ensemble.members {
        report.leaderboard.push(LeaderRow {
            model: m.detector.name().into(),
            metric: "calibrated on held-out healthy rows".into(),
            validation_score: f64::NAN,
            chosen: true,
            fit_seconds: 0.0,
            detail: format!("weight {}", m.weight),
        });
    }
    report.split = plan.summary;
    report.data = DataSummary {
        rows: table.n_rows(),
        sensors: table.sensors.len(),
        sensors_used: model.spec.sensors.clone(),
        sensors_dropped: dropped.clone(),
        interval_s: table.interval_s,
        lives: table.n_lives(),
        features: model.spec.n_features(),
        feature_windows_rows: model.spec.windows.clone(),
        grid: table.grid.clone(),
        time_in_life: false,
        profile: None,
        last_time: None,
    };
    report.warnings.extend(dropped.iter().map(|s| format!("sensor {s} is constant on the healthy rows and was dropped")));
    sw.lap("evaluate");
    report.timings = sw.laps.clone();
    report.train_seconds = sw.total();
    Ok((model, report))
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    table: &Table,
    params: &TrainParams,
    ctx: &TrainContext,
    model: &AnomalyModel,
    plan: &Plan,
    holdout_confirmed: &[f64],
    starts: Option<&RunStarts>,
    report: &mut Report,
) -> Result<(), MlError> {
    let threshold = model.ensemble.threshold;
    // Scores moved by their run's threshold, so that one cut (the pooled threshold) is every run's alarm.
    let judged = |rows: &[usize], scores: Vec<f64>| -> Vec<f64> {
        rows.iter().zip(scores).map(|(&r, s)| s - model.threshold_of(table.life[r]) + threshold).collect()
    };
    let holdout_scores = judged(&plan.holdout, holdout_confirmed.to_vec());
    let healthy_alarm_rate = holdout_scores.iter().filter(|s| **s > threshold).count() as f64 / holdout_scores.len().max(1) as f64;
    let by_run = alarm_rate_by_run(table, &plan.holdout, &holdout_scores, threshold);
    if let Some((run, rate)) = by_run.iter().max_by(|a, b| a.1.total_cmp(&b.1))
        && by_run.len() > 1
        && *rate > 3.0 * params.contamination
    {
        report.warnings.push(format!(
            "run {run} alarms on {:.1} % of its held-out healthy rows ({:.1} % over all runs, target {:.1} %): its normal behaviour differs from the others'",
            rate * 100.0,
            healthy_alarm_rate * 100.0,
            params.contamination * 100.0
        ));
    }
    let by_run_json: serde_json::Map<String, serde_json::Value> = by_run.iter().map(|(run, rate)| (run.to_string(), json!(rate))).collect();
    report.test_rows = plan.test.clone();
    let Some((rows, y, truth_name)) = truth(table, params, &plan.test) else {
        report.headline = Headline::new("healthy_alarm_rate", healthy_alarm_rate, params.contamination, "target contamination", false);
        report.metrics = json!({ "healthy_alarm_rate": healthy_alarm_rate, "healthy_alarm_rate_by_run": by_run_json, "threshold": threshold, "alarm_confirm": model.confirm.describe(), "truth": "none: the data has no anomaly labels, RUL or failure label" });
        report
            .warnings
            .push("no ground truth or proxy for anomalies: only the false-alarm rate on held-out healthy rows is reported".into());
        return Ok(());
    };
    if rows.is_empty() {
        return Err(MlError::NotEnoughData("no test rows to evaluate the anomaly detector on".into()));
    }
    let scores = judged(&rows, confirmed_scores(model, table, &rows, starts, ctx)?);
    // The ensemble flags score > threshold; metrics use >= on a nudged threshold to match exactly.
    let cut = f64::from_bits(threshold.to_bits() + 1);
    let m = metrics::classification_metrics(&y, &scores, cut);
    let flag_rate = scores.iter().filter(|s| **s > threshold).count() as f64 / scores.len() as f64;
    let (bp, br, bf) = metrics::random_detector_baseline(&y, flag_rate);
    // The headline is threshold-free: a random detector's PR AUC is the prevalence. F1 at the contamination
    // threshold is reported beside it, with the random detector at the same alarm rate.
    let prevalence = m.positives as f64 / (m.n.max(1)) as f64;
    report.headline = Headline::new("pr_auc", m.pr_auc.unwrap_or(f64::NAN), prevalence, "random detector (prevalence)", true);
    report.metrics = json!({ "precision": m.precision, "recall": m.recall, "f1": m.f1, "roc_auc": m.roc_auc, "pr_auc": m.pr_auc,
        "accuracy": m.accuracy, "threshold": threshold, "alarm_rate": flag_rate, "healthy_alarm_rate": healthy_alarm_rate, "healthy_alarm_rate_by_run": by_run_json, "alarm_confirm": model.confirm.describe(), "truth": truth_name, "n": m.n, "positives": m.positives });
    report.baseline = json!({ "name": "random detector at the same alarm rate", "precision": bp, "recall": br, "f1": bf, "roc_auc": 0.5, "pr_auc": prevalence });
    report.confusion = Some(m.confusion);
    report.samples = score_samples(&scores, &y, threshold);
    Ok(())
}

/// A healthy start under this share of its series may not hold the series' normal range ...
const SHORT_HEAD_SHARE: f64 = 0.25;
/// ... and when the detector fitted on it alarms on more than this share of the readings after it (ten times
/// the default contamination: anomalies are rare by definition), it did not.
const WANDERING_ALARM_SHARE: f64 = 0.10;

/// One series (a single run) whose healthy start is a small part of it and whose later readings the detector
/// fitted on that start alarms on far more often than anomalies occur: the share of them that alarms, when so.
fn wandering_share(table: &Table, model: &AnomalyModel, starts: Option<&RunStarts>, ctx: &TrainContext) -> Result<Option<f64>, MlError> {
    let n = table.n_rows();
    let Some(head) = table.split_hint.healthy_head_rows else { return Ok(None) };
    if table.split_hint.healthy_reference_only || table.n_lives() != 1 || head as f64 > SHORT_HEAD_SHARE * n as f64 {
        return Ok(None);
    }
    let rest = thin(&(head..n).collect::<Vec<_>>(), MAX_HOLDOUT_ROWS);
    let scores = confirmed_scores(model, table, &rest, starts, ctx)?;
    let threshold = model.threshold_of(table.life[head.min(n.saturating_sub(1))]);
    let share = scores.iter().filter(|s| **s > threshold).count() as f64 / scores.len().max(1) as f64;
    Ok((share > WANDERING_ALARM_SHARE).then_some(share))
}

/// The report of a trailing-reference model: every row scored as it answers, each against its own threshold
/// (scores given as the margin over it, so one cut at 0 is every row's alarm).
fn evaluate_trailing(table: &Table, params: &TrainParams, model: &AnomalyModel, plan: &Plan, report: &mut Report) -> Result<(), MlError> {
    let all = model.score_table(table)?;
    let margin = |rows: &[usize]| -> Vec<f64> { rows.iter().map(|&r| all.get(r).map_or(f64::NAN, |s| s.score - s.threshold)).collect() };
    let holdout = margin(&plan.holdout);
    let healthy_alarm_rate = holdout.iter().filter(|m| **m > 0.0).count() as f64 / holdout.len().max(1) as f64;
    report.test_rows = plan.test.clone();
    let Some((rows, y, truth_name)) = truth(table, params, &plan.test) else {
        report.headline = Headline::new("healthy_alarm_rate", healthy_alarm_rate, params.contamination, "target contamination", false);
        report.metrics =
            json!({ "healthy_alarm_rate": healthy_alarm_rate, "truth": "none: the data has no anomaly labels, RUL or failure label" });
        report.warnings.push("no ground truth or proxy for anomalies: only the alarm rate on held-out healthy rows is reported".into());
        return Ok(());
    };
    if rows.is_empty() {
        return Err(MlError::NotEnoughData("no test rows to evaluate the anomaly detector on".into()));
    }
    let scores = margin(&rows);
    // An alarm is a margin over 0; metrics flag scores >= the cut, so the cut is the smallest number above 0.
    let m = metrics::classification_metrics(&y, &scores, f64::from_bits(1));
    let flag_rate = scores.iter().filter(|s| **s > 0.0).count() as f64 / scores.len() as f64;
    let (bp, br, bf) = metrics::random_detector_baseline(&y, flag_rate);
    let prevalence = m.positives as f64 / (m.n.max(1)) as f64;
    report.headline = Headline::new("pr_auc", m.pr_auc.unwrap_or(f64::NAN), prevalence, "random detector (prevalence)", true);
    report.metrics = json!({ "precision": m.precision, "recall": m.recall, "f1": m.f1, "roc_auc": m.roc_auc, "pr_auc": m.pr_auc,
        "accuracy": m.accuracy, "alarm_rate": flag_rate, "healthy_alarm_rate": healthy_alarm_rate, "truth": truth_name, "n": m.n, "positives": m.positives });
    report.baseline = json!({ "name": "random detector at the same alarm rate", "precision": bp, "recall": br, "f1": bf, "roc_auc": 0.5, "pr_auc": prevalence });
    report.confusion = Some(m.confusion);
    // The page's histogram wants scores in [0, 1]: each as half its ratio to its threshold (the cut at 0.5).
    let ratios: Vec<f64> = rows.iter().map(|&r| all.get(r).map_or(f64::NAN, |s| 0.5 * s.score / s.threshold.max(1e-12))).collect();
    report.samples = score_samples(&ratios, &y, 0.5);
    Ok(())
}

/// Runs whose held-out healthy rows alarm more than `contamination` at the pooled threshold, each with the
/// threshold its own rows call for. A run needs enough held-out rows for its quantile to mean something.
fn run_thresholds(table: &Table, holdout: &[usize], scores: &[f64], pooled: f64, contamination: f64) -> Vec<(u32, f64)> {
    const MIN_RUN_ROWS: usize = 50;
    let mut by_run: std::collections::BTreeMap<u32, Vec<f64>> = std::collections::BTreeMap::new();
    for (&r, &s) in holdout.iter().zip(scores) {
        by_run.entry(table.life[r]).or_default().push(s);
    }
    if by_run.len() < 2 {
        return Vec::new();
    }
    by_run
        .into_iter()
        .filter(|(_, s)| s.len() >= MIN_RUN_ROWS)
        .filter_map(|(run, s)| threshold_for_contamination(&s, contamination).ok().map(|t| (run, t)))
        .filter(|(_, t)| *t > pooled)
        .collect()
}

/// The share of each run's rows whose score is over the threshold, by run (life) number.
fn alarm_rate_by_run(table: &Table, rows: &[usize], scores: &[f64], threshold: f64) -> Vec<(u32, f64)> {
    let mut counts: std::collections::BTreeMap<u32, (usize, usize)> = std::collections::BTreeMap::new();
    for (&r, s) in rows.iter().zip(scores) {
        let c = counts.entry(table.life[r]).or_default();
        c.0 += usize::from(*s > threshold);
        c.1 += 1;
    }
    counts.into_iter().map(|(run, (alarms, n))| (run, alarms as f64 / n.max(1) as f64)).collect()
}

fn score_rows(
    model: &AnomalyModel,
    table: &Table,
    rows: &[usize],
    starts: Option<&RunStarts>,
    ctx: &TrainContext,
) -> Result<Vec<f64>, MlError> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(4096) {
        ctx.checkpoint()?;
        let m = run_matrix(&model.spec, table, chunk, starts)?;
        out.extend(m.iter().map(|r| model.ensemble.score(r).score));
    }
    Ok(out)
}

/// Scores as alarms are judged: each row's confirmed score (see [`Confirm`]) from its own raw score and those
/// of the readings before it in its run; the raw scores when every reading counts on its own.
fn confirmed_scores(
    model: &AnomalyModel,
    table: &Table,
    rows: &[usize],
    starts: Option<&RunStarts>,
    ctx: &TrainContext,
) -> Result<Vec<f64>, MlError> {
    if model.confirm.is_single() {
        return score_rows(model, table, rows, starts, ctx);
    }
    let run_start: HashMap<u32, usize> = table.life_ranges().into_iter().map(|(life, r)| (life, r.start)).collect();
    let window = |r: usize| model.confirm.window(r, run_start.get(&table.life[r]).copied().unwrap_or(r));
    let mut needed: Vec<usize> = rows.iter().flat_map(|&r| window(r)).collect();
    needed.sort_unstable();
    needed.dedup();
    let raw = score_rows(model, table, &needed, starts, ctx)?;
    let at: HashMap<usize, f64> = needed.into_iter().zip(raw).collect();
    Ok(rows
        .iter()
        .map(|&r| {
            let scores: Vec<f64> = window(r).filter_map(|i| at.get(&i).copied()).collect();
            model.confirm.score(&scores)
        })
        .collect())
}

fn score_samples(scores: &[f64], y: &[bool], threshold: f64) -> serde_json::Value {
    let mut pos = [0u32; 20];
    let mut neg = [0u32; 20];
    for (s, t) in scores.iter().zip(y) {
        let bin = ((s.clamp(0.0, 1.0) * 20.0) as usize).min(19);
        if *t { pos[bin] += 1 } else { neg[bin] += 1 }
    }
    let idx = sample_indices(scores.len(), 300);
    json!({ "score_histogram": { "bins": 20, "positive": pos, "negative": neg, "threshold": threshold },
            "score_trace": idx.iter().map(|&i| [scores[i], f64::from(u8::from(y[i]))]).collect::<Vec<_>>() })
}

impl AnomalyModel {
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.ensemble.members.iter().map(|m| m.detector.name()).collect();
        format!(
            "anomaly ensemble ({}) on {} features, threshold {:.4}, contamination {}, alarm on {}",
            names.join(" + "),
            self.spec.n_features(),
            self.ensemble.threshold,
            self.contamination,
            self.confirm.describe()
        )
    }

    /// Every row's score, as in evaluation: with run starts, each run is judged from its own start (when the
    /// table's description says runs start normal), else from the latest run's.
    pub fn score_table(&self, table: &Table) -> Result<Vec<RowScore>, MlError> {
        if let Some(trailing) = &self.trailing {
            return self.score_trailing(table, trailing);
        }
        let starts = match (table.split_hint.healthy_head_rows, &self.reference) {
            (Some(head), Some(_)) => Some(RunStarts::fit(&self.spec, table, head)?),
            _ => None,
        };
        let mut out = Vec::with_capacity(table.n_rows());
        let all: Vec<usize> = (0..table.n_rows()).collect();
        for chunk in all.chunks(4096) {
            let mut m = run_matrix(&self.spec, table, chunk, starts.as_ref())?;
            if let (None, Some(offset)) = (&starts, &self.reference) {
                let p = m.n_cols;
                for values in m.data.chunks_exact_mut(p.max(1)) {
                    subtract(values, offset);
                }
            }
            for (row, &r) in m.iter().zip(chunk) {
                let score = self.ensemble.score(row).score;
                let threshold = self.threshold_of(table.life[r]);
                out.push(RowScore {
                    timestamp: table.timestamps[r],
                    run: table.life[r],
                    score,
                    threshold,
                    alarm: score > threshold,
                    label: table.anomaly.as_ref().map(|a| a[r]),
                });
            }
        }
        if !self.confirm.is_single() {
            // Rows are in table order; a run's rows are consecutive.
            let raw: Vec<f64> = out.iter().map(|r| r.score).collect();
            for (run, range) in table.life_ranges() {
                for i in range.clone() {
                    let score = self.confirm.score(&raw[self.confirm.window(i, range.start)]);
                    out[i].score = score;
                    out[i].alarm = score > out[i].threshold;
                    debug_assert_eq!(out[i].run, run);
                }
            }
        }
        Ok(out)
    }

    /// Every row against the readings before it in its run.
    fn score_trailing(&self, table: &Table, trailing: &Trailing) -> Result<Vec<RowScore>, MlError> {
        let columns: Vec<&[f64]> = self
            .spec
            .sensors
            .iter()
            .map(|name| {
                table
                    .sensor(name)
                    .map(|s| s.values.as_slice())
                    .ok_or_else(|| MlError::Readings(format!("sensor {name:?} is missing from the data")))
            })
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(table.n_rows());
        for (run, range) in table.life_ranges() {
            let run_columns: Vec<&[f64]> = columns.iter().map(|c| &c[range.clone()]).collect();
            for (r, s) in range.zip(trailing.score_run(&run_columns)) {
                out.push(RowScore {
                    timestamp: table.timestamps[r],
                    run,
                    score: s.score,
                    threshold: s.threshold,
                    alarm: s.alarm(),
                    label: table.anomaly.as_ref().map(|a| a[r]),
                });
            }
        }
        Ok(out)
    }

    /// The threshold rows of `run` are judged by: the run's own when its healthy rows needed a higher one.
    pub fn threshold_of(&self, run: u32) -> f64 {
        self.run_thresholds.iter().find(|(r, _)| *r == run).map_or(self.ensemble.threshold, |(_, t)| *t)
    }

    /// The raw ensemble score of the reading `back` readings before the last.
    fn raw_at(&self, recent: &Recent, back: usize) -> Result<crate::ml::engines::detectors::EnsembleScore, MlError> {
        let mut row: Vec<f64> = recent.features_back(&self.spec, back)?.into_iter().map(f64::from).collect();
        if let Some(offset) = &self.reference {
            subtract(&mut row, offset);
        }
        Ok(self.ensemble.score(&row))
    }

    pub fn predict(&self, recent: &Recent) -> Result<AnomalyAnswer, MlError> {
        if let Some(trailing) = &self.trailing {
            return self.predict_trailing(recent, trailing);
        }
        let mut s = self.raw_at(recent, 0)?;
        if !self.confirm.is_single() {
            // The readings before the last, as far as the given history reaches (oldest first).
            let available = recent.timestamps.len().saturating_sub(self.spec.min_rows()).min(self.confirm.lookback());
            let mut window = Vec::with_capacity(available + 1);
            for back in (1..=available).rev() {
                window.push(self.raw_at(recent, back)?.score);
            }
            window.push(s.score);
            s.score = self.confirm.score(&window);
        }
        let names = self.spec.names();
        let mut per_sensor: Vec<(String, f64)> = self
            .spec
            .sensors
            .iter()
            .map(|sensor| {
                let prefix = format!("{sensor}__");
                let share: f64 =
                    names.iter().zip(&s.contributions).filter(|(n, _)| *n == sensor || n.starts_with(&prefix)).map(|(_, c)| c).sum();
                (sensor.clone(), share)
            })
            .collect();
        per_sensor.sort_by(|a, b| b.1.total_cmp(&a.1));
        per_sensor.truncate(5);
        Ok(AnomalyAnswer {
            anomaly_score: s.score,
            threshold: self.live_threshold,
            is_anomaly: s.score > self.live_threshold,
            top_sensors: per_sensor,
            detectors: s.per_detector,
        })
    }
}

impl AnomalyModel {
    fn predict_trailing(&self, recent: &Recent, trailing: &Trailing) -> Result<AnomalyAnswer, MlError> {
        let columns = recent.columns_for(&self.spec.sensors)?;
        let refs: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
        let s = trailing.score_last(&refs).ok_or_else(|| MlError::Readings("no readings given".into()))?;
        let distances = trailing.sensor_scores(&refs, recent.timestamps.len().saturating_sub(1));
        let total: f64 = distances.iter().sum();
        let mut per_sensor: Vec<(String, f64)> =
            self.spec.sensors.iter().zip(&distances).map(|(n, d)| (n.clone(), if total > 0.0 { d / total } else { 0.0 })).collect();
        per_sensor.sort_by(|a, b| b.1.total_cmp(&a.1));
        per_sensor.truncate(5);
        Ok(AnomalyAnswer {
            anomaly_score: s.score,
            threshold: s.threshold,
            is_anomaly: s.alarm(),
            top_sensors: per_sensor,
            detectors: vec![("trailing".into(), s.score)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(values: &[[f64; 2]]) -> Rows {
        Rows::new(values.len(), 2, values.iter().flatten().copied().collect()).unwrap()
    }

    #[test]
    fn moments_skip_missing_values_and_distance_is_in_spreads_of_the_second_set() {
        let b = rows(&[[10.0, f64::NAN], [12.0, 1.0], [14.0, 3.0]]);
        let m = column_moments(&b);
        assert_eq!(m[0], (12.0, 2.0));
        assert_eq!(m[1], (2.0, 2f64.sqrt()));
        // Column 0 sits 3 spreads away, column 1 none: of the two, the upper median (index 1) is taken.
        let a = rows(&[[18.0, 2.0], [18.0, 2.0]]);
        assert_eq!(regime_distance(&a, &b), 3.0);
        assert_eq!(regime_distance(&b, &b), 0.0);
        // A constant feature gets 1 % of its level as its spread, not zero.
        let flat = rows(&[[100.0, 5.0], [100.0, 5.0]]);
        let moved = rows(&[[103.0, 5.0], [103.0, 5.0]]);
        assert!((regime_distance(&moved, &flat) - 3.0).abs() < 1e-9, "{}", regime_distance(&moved, &flat));
    }
}
