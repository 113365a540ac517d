//! The pipeline classification and RUL regression share: split without leaks, causal features, GBDT
//! candidates trained with early stopping on validation, one chosen on validation, test kept for the report.
use crate::data::{Layout, SplitMethod, Table};
use crate::ml::engines::gbdt::{self, Control, Dataset, Matrix, Objective, RoundInfo};
use crate::ml::error::MlError;
use crate::ml::report::{DataSummary, SplitSummary, Stopwatch};
use crate::ml::shared::context::{LeaderRow, TrainContext};
use crate::ml::shared::features::{FeatureMatrix, FeatureSpec, features_for_rows};
use crate::ml::shared::params::{Quality, TrainParams, bounds};
use crate::ml::shared::split::{SplitPlan, plan_split};
use std::time::Instant;

pub struct Prepared {
    pub spec: FeatureSpec,
    pub dropped: Vec<String>,
    pub plan: SplitPlan,
    pub train: Part<Dataset>,
    pub val: Part<Matrix>,
    pub test: Held,
}

/// Test rows and their targets. Their features are computed a chunk at a time when the chosen model scores
/// them ([`Prepared::score_test`]), never held at once: at a million rows the matrix was 97 MB.
pub struct Held {
    pub rows: Vec<usize>,
    pub y: Vec<f32>,
}

/// Test rows featurised and scored together: small beside the training matrix, large enough that each
/// chunk's window warm-up (the longest window, per life it touches) is a small share.
const SCORE_CHUNK_ROWS: usize = 32_768;

impl Prepared {
    /// The model's score for every test row, in order.
    pub fn score_test(&self, table: &Table, model: &gbdt::Model) -> Result<Vec<f64>, MlError> {
        let mut scores = Vec::with_capacity(self.test.rows.len());
        for chunk in self.test.rows.chunks(SCORE_CHUNK_ROWS) {
            let FeatureMatrix { n_rows, n_cols, data } = features_for_rows(&self.spec, table, chunk)?;
            scores.extend(model.predict_matrix(&Matrix::new(n_rows, n_cols, data)?));
        }
        Ok(scores)
    }
}

/// Rows of one split that have a target, with their features: binned as they are computed for training (the
/// f32 matrix of a million rows × 161 features is 640 MB, its bins a quarter of that), as numbers for
/// validation, which the candidates predict.
pub struct Part<X> {
    pub rows: Vec<usize>,
    pub x: X,
    pub y: Vec<f32>,
}

/// Time since the life started is only a legitimate input when the data itself says where lives start
/// (a unit/cycle column or one file per run), because a prediction request for such a machine carries it too.
/// Lives found from RUL resets (the legacy layout) are not: in service nobody knows them, so it stays off.
pub fn time_in_life_allowed(table: &Table) -> bool {
    table.lives_known && table.layout == Layout::Described
}

/// I.i.d. rows (a stratified protocol such as AI4I's) have no history: neighbours are other products,
/// so rolling windows would only add noise. Raw readings only.
fn rows_are_independent(table: &Table) -> bool {
    table.given_split.is_none() && table.split_hint.method == SplitMethod::Stratified
}

pub fn prepare(
    table: &Table,
    params: &TrainParams,
    ctx: &TrainContext,
    target: &[f64],
    stratify: bool,
    sw: &mut Stopwatch,
) -> Result<Prepared, MlError> {
    ctx.stage("split", 0.0, 0.05, "splitting by life / time without leaks");
    let all_rows: Vec<usize> = (0..table.n_rows()).collect();
    let til = time_in_life_allowed(table);
    let (probe, _) = FeatureSpec::for_table(table, &params.exclude_sensors, &all_rows, til);
    let independent = rows_are_independent(table);
    let gap = if independent { 0 } else { probe.min_rows() };
    let mut plan = plan_split(table, params.seed, gap, stratify.then_some(target))?;
    for note in &plan.notes {
        ctx.log(note.clone());
    }
    let (mut spec, dropped) = FeatureSpec::for_table(table, &params.exclude_sensors, &plan.train, til);
    if independent {
        spec.windows.clear();
        spec.window_seconds.clear();
        spec.raw = true;
    }
    if spec.sensors.is_empty() {
        return Err(MlError::NotEnoughData("every sensor is constant or excluded on the training rows: nothing to learn from".into()));
    }
    sw.lap("split");
    ctx.checkpoint()?;
    ctx.stage("features", 0.05, 0.2, format!("{} features from {} sensors", spec.n_features(), spec.sensors.len()));
    let labelled = |rows: &[usize]| rows.iter().copied().filter(|&r| target[r].is_finite()).collect::<Vec<_>>();
    let (train_rows, val_rows) = (labelled(&plan.train), labelled(&plan.val));
    let cap = row_cap(params, spec.n_features());
    let (train_rows, val_rows) = match thinning(train_rows.len(), &cap) {
        None => (train_rows, val_rows),
        Some(stride) => {
            let note = format!(
                "training and validation rows thinned evenly across lives to 1 in {stride} ({} of {} training rows): {}; test rows are all kept",
                train_rows.len().div_ceil(stride),
                train_rows.len(),
                cap.why
            );
            ctx.log(note.clone());
            plan.notes.push(note);
            (every(&train_rows, stride), every(&val_rows, stride))
        }
    };
    if let Some(g) = row_sampling(train_rows.len()) {
        let note = format!(
            "{} training rows: after the first rounds each tree is fitted on the {:.0} % of rows with the largest gradients and a random {:.0} % of the rest, weighted up (gradient-based one-side sampling)",
            train_rows.len(),
            100.0 * g.top_rate,
            100.0 * g.other_rate
        );
        ctx.log(note.clone());
        plan.notes.push(note);
    }
    let train = binned_part(&spec, table, train_rows, target, &binning(params, ctx), ctx)?;
    ctx.progress(0.5, || "training features ready".into());
    ctx.checkpoint()?;
    let val = part(&spec, table, val_rows, target)?;
    let test_rows = labelled(&plan.test);
    let test = Held { y: test_rows.iter().map(|&r| target[r] as f32).collect(), rows: test_rows };
    sw.lap("features");
    for (name, rows) in [("training", &train.rows), ("validation", &val.rows), ("test", &test.rows)] {
        if rows.is_empty() {
            return Err(MlError::NotEnoughData(format!("the {name} split has no rows with a target; the machine needs more data")));
        }
    }
    Ok(Prepared { spec, dropped, plan, train, val, test })
}

/// Seconds one tree model spends per training row and feature, measured on this 2-core machine (BENCHMARKS §2:
/// 1,000,000 rows × 161 features, classification 109 s); a Pi 4 is about twice as slow, hence the margin.
const SECONDS_PER_ROW_FEATURE: f64 = 6.8e-7;
/// Share of the time limit the fit on all rows may take by that estimate: candidates, validation and the
/// margin for slower hardware take the rest.
const TIME_SHARE_FOR_ROWS: f64 = 0.25;

/// How many training rows a model may fit on, and which setting says so.
struct RowCap {
    rows: usize,
    why: String,
}

fn row_cap(params: &TrainParams, n_features: usize) -> RowCap {
    let by_time = (params.time_limit_s * TIME_SHARE_FOR_ROWS / (SECONDS_PER_ROW_FEATURE * n_features.max(1) as f64)) as usize;
    if by_time < params.max_train_rows {
        // Never below the fewest rows max_train_rows accepts: fewer cannot hold both classes and a validation split.
        let rows = by_time.max(bounds::MAX_TRAIN_ROWS.0);
        RowCap { rows, why: format!("the time limit of {} s allows about {rows} rows", params.time_limit_s) }
    } else {
        RowCap { rows: params.max_train_rows, why: format!("max_train_rows = {}", params.max_train_rows) }
    }
}

/// Every `stride`-th row when there are more than the cap: rows are ordered by life and time, so an even
/// stride keeps every life and the same share of rows near each failure.
fn thinning(rows: usize, cap: &RowCap) -> Option<usize> {
    (rows > cap.rows).then(|| rows.div_ceil(cap.rows))
}

fn every(rows: &[usize], stride: usize) -> Vec<usize> {
    rows.iter().copied().step_by(stride.max(1)).collect()
}

fn part(spec: &FeatureSpec, table: &Table, rows: Vec<usize>, target: &[f64]) -> Result<Part<Matrix>, MlError> {
    let x = features_of(spec, table, &rows)?;
    let y = rows.iter().map(|&r| target[r] as f32).collect();
    Ok(Part { x, rows, y })
}

fn features_of(spec: &FeatureSpec, table: &Table, rows: &[usize]) -> Result<Matrix, MlError> {
    let FeatureMatrix { n_rows, n_cols, data } = features_for_rows(spec, table, rows)?;
    Ok(Matrix::new(n_rows, n_cols, data)?)
}

/// The binning every candidate shares: the candidates' seed, threads and bin count.
fn binning(params: &TrainParams, ctx: &TrainContext) -> gbdt::Params {
    gbdt::Params { seed: params.seed, threads: ctx.threads(), ..gbdt::Params::default() }
}

/// The training rows binned a chunk at a time, with a cancel check and progress between chunks (a million
/// rows take seconds).
fn binned_part(
    spec: &FeatureSpec,
    table: &Table,
    rows: Vec<usize>,
    target: &[f64],
    binning: &gbdt::Params,
    ctx: &TrainContext,
) -> Result<Part<Dataset>, MlError> {
    let mut done = 0usize;
    let x = Dataset::by_rows(rows.len(), binning, SCORE_CHUNK_ROWS, &mut |at: &[usize]| -> Result<Matrix, MlError> {
        ctx.checkpoint()?;
        let chunk: Vec<usize> = at.iter().map(|&i| rows[i]).collect();
        let x = features_of(spec, table, &chunk)?;
        done += at.len();
        // The bins' sample (up to 100,000 rows) is computed first, then every chunk: `done` runs past the rows.
        ctx.progress(0.45 * (done as f64 / rows.len().max(1) as f64).min(1.0), || "binning the training rows' features".into());
        Ok(x)
    })?;
    let y = rows.iter().map(|&r| target[r] as f32).collect();
    Ok(Part { x, rows, y })
}

pub fn split_summary(p: &Prepared) -> SplitSummary {
    SplitSummary {
        method: p.plan.method.clone(),
        train_rows: p.train.rows.len(),
        val_rows: p.val.rows.len(),
        test_rows: p.test.rows.len(),
        healthy_rows: p.plan.healthy.len(),
        train_lives: p.plan.train_lives,
        val_lives: p.plan.val_lives,
        test_lives: p.plan.test_lives,
        notes: p.plan.notes.clone(),
    }
}

pub fn data_summary(table: &Table, p: &Prepared) -> DataSummary {
    DataSummary {
        rows: table.n_rows(),
        sensors: table.sensors.len(),
        sensors_used: p.spec.sensors.clone(),
        sensors_dropped: p.dropped.clone(),
        interval_s: table.interval_s,
        lives: table.n_lives(),
        features: p.spec.n_features(),
        feature_windows_rows: p.spec.windows.clone(),
        grid: table.grid.clone(),
        time_in_life: p.spec.time_in_life,
        profile: None,
        last_time: None,
    }
}

/// Training rows from which trees sample rows by gradient instead of bagging. Below it the sample would
/// be too small to rank gradients well (the shared benchmark sets are all below it); above it a tree's
/// work drops to about a third.
const GOSS_MIN_ROWS: usize = 100_000;

/// The row sampling of every candidate on `train_rows` rows; `None` = bagging as each candidate says.
pub fn row_sampling(train_rows: usize) -> Option<gbdt::Goss> {
    (train_rows >= GOSS_MIN_ROWS).then_some(gbdt::Goss { top_rate: 0.2, other_rate: 0.1 })
}

/// One GBDT configuration tried on validation.
pub struct Candidate {
    pub name: &'static str,
    pub params: gbdt::Params,
    /// Classification only: train with the rare class weighted up.
    pub class_weighted: bool,
}

pub fn candidates(objective: Objective, quality: Quality, seed: u64, threads: usize, train_rows: usize) -> Vec<Candidate> {
    let rounds = match quality {
        Quality::Fast => 150,
        Quality::Standard => 500,
        Quality::Best => 1500,
    };
    let base = gbdt::Params { objective, seed, threads, num_rounds: rounds, early_stopping_rounds: 100, ..gbdt::Params::default() };
    let weighted = objective == Objective::Binary;
    let wide = gbdt::Params {
        learning_rate: 0.05,
        num_leaves: 31,
        min_data_in_leaf: 20,
        feature_fraction: 0.8,
        bagging_fraction: 0.8,
        ..base.clone()
    };
    let mut out = vec![
        Candidate { name: "gbdt-31-leaves", params: wide.clone(), class_weighted: weighted },
        Candidate {
            name: "gbdt-7-leaves",
            params: gbdt::Params {
                learning_rate: 0.08,
                num_leaves: 7,
                min_data_in_leaf: 40,
                feature_fraction: 0.6,
                bagging_fraction: 0.8,
                lambda_l2: 5.0,
                ..base.clone()
            },
            class_weighted: weighted,
        },
    ];
    if weighted {
        out.insert(1, Candidate { name: "gbdt-31-leaves-unweighted", params: wide, class_weighted: false });
    }
    if quality == Quality::Best {
        out.push(Candidate {
            name: "gbdt-63-leaves",
            params: gbdt::Params {
                learning_rate: 0.03,
                num_leaves: 63,
                min_data_in_leaf: 10,
                feature_fraction: 0.7,
                bagging_fraction: 0.7,
                ..base
            },
            class_weighted: weighted,
        });
    }
    if let Some(goss) = row_sampling(train_rows) {
        for c in &mut out {
            c.params.goss = Some(goss);
            c.params.bagging_fraction = 1.0;
        }
    }
    out
}

/// Above this many features the candidates train on the columns a quick screening fit used: the rolling
/// windows give every sensor 16 columns, most of which add nothing a tree needs, and a tree's cost grows with
/// the columns it scans.
const SCREEN_MIN_FEATURES: usize = 64;
/// Share of the screening fit's total split gain the kept columns carry. 0.99 and 0.95 were tried on
/// C-MAPSS FD001's validation lives: 0.95 kept fewer columns and validated better (RMSE 8.17 against 8.99;
/// 9.07 with every column), so the dropped columns were mostly noise the trees had been fitting.
const SCREEN_GAIN_SHARE: f64 = 0.95;
/// Rounds of the screening fit, each tree on a quarter of the rows: on FD001's validation lives 30 rounds did
/// as well as 40, 20 worse, and half the rows no better than a quarter.
const SCREEN_ROUNDS: usize = 30;
/// Never keep fewer columns than this (or all of them, if there are fewer).
const SCREEN_MIN_KEPT: usize = 24;

/// Narrows the training columns to those a short boosted fit on the training rows (validation and test
/// untouched) found useful, and says so in the log and the timings.
pub fn screen_features(p: &mut Prepared, objective: Objective, seed: u64, ctx: &TrainContext, sw: &mut Stopwatch) -> Result<(), MlError> {
    let n = p.train.x.n_cols();
    if n <= SCREEN_MIN_FEATURES {
        return Ok(());
    }
    let params = gbdt::Params {
        objective,
        seed,
        threads: ctx.threads(),
        num_rounds: SCREEN_ROUNDS,
        learning_rate: 0.1,
        num_leaves: 15,
        min_data_in_leaf: 20,
        bagging_fraction: 0.25,
        ..gbdt::Params::default()
    };
    let mut cancelled = false;
    let mut monitor = |_: &RoundInfo| {
        cancelled = ctx.checkpoint().is_err();
        if cancelled { Control::Stop } else { Control::Continue }
    };
    let out = gbdt::train_on(&params, &p.train.x, &p.train.y, None, None, &mut monitor)?;
    if cancelled {
        return Err(MlError::Cancelled);
    }
    let keep = useful_columns(&out.model.feature_importance_gain(), SCREEN_GAIN_SHARE, SCREEN_MIN_KEPT);
    if keep.len() < n {
        p.train.x = p.train.x.select(&keep)?;
        ctx.log(format!(
            "{} of {n} feature columns carry {:.0} % of a screening fit's gain (or are the {SCREEN_MIN_KEPT} best); the candidates train on those",
            keep.len(),
            SCREEN_GAIN_SHARE * 100.0
        ));
    }
    sw.lap("screen");
    Ok(())
}

/// The fewest columns, by gain, whose gain reaches `share` of the total, at least `min_kept` (ascending). A
/// screening fit that split nothing (too few rows for its leaves, say) ranks nothing: every column stays.
fn useful_columns(gain: &[f64], share: f64, min_kept: usize) -> Vec<usize> {
    let total: f64 = gain.iter().filter(|g| g.is_finite()).sum();
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return (0..gain.len()).collect();
    }
    let mut order: Vec<usize> = (0..gain.len()).collect();
    order.sort_by(|&a, &b| gain[b].total_cmp(&gain[a]).then(a.cmp(&b)));
    let mut acc = 0.0;
    let mut kept = 0;
    for &c in &order {
        if kept >= min_kept && acc >= share * total {
            break;
        }
        acc += gain[c];
        kept += 1;
    }
    let mut keep = order[..kept].to_vec();
    keep.sort_unstable();
    keep
}

pub struct Fitted {
    pub name: &'static str,
    pub model: gbdt::Model,
    pub seconds: f64,
}

/// Trains one candidate with progress and cancel at every round. Time running out keeps what is trained.
pub fn fit_candidate(
    c: &Candidate,
    p: &Prepared,
    weights: Option<&[f32]>,
    ctx: &TrainContext,
    lo: f64,
    hi: f64,
) -> Result<Fitted, MlError> {
    let t0 = Instant::now();
    let mut cancelled = false;
    let mut monitor = |info: &RoundInfo| {
        if ctx.checkpoint().is_err() {
            cancelled = true;
            return Control::Stop;
        }
        let within = info.round as f64 / info.total.max(1) as f64;
        ctx.progress(lo + (hi - lo) * within, || format!("{} round {}/{} (best {})", c.name, info.round, info.total, info.best_round));
        if ctx.out_of_time() { Control::Stop } else { Control::Continue }
    };
    let out = gbdt::train_on(&c.params, &p.train.x, &p.train.y, weights, Some((&p.val.x, &p.val.y)), &mut monitor)?;
    if cancelled {
        return Err(MlError::Cancelled);
    }
    if ctx.out_of_time() {
        ctx.log(format!("{}: time limit reached after {} rounds; keeping the best so far", c.name, out.rounds_trained));
    }
    Ok(Fitted { name: c.name, model: out.model, seconds: t0.elapsed().as_secs_f64() })
}

pub fn leader(name: &str, metric: &str, score: f64, f: &Fitted, chosen: bool) -> LeaderRow {
    LeaderRow {
        model: name.into(),
        metric: metric.into(),
        validation_score: score,
        chosen,
        fit_seconds: f.seconds,
        detail: format!("{} trees", f.model.n_trees()),
    }
}

/// The leaderboard as reported: every candidate, the chosen one marked.
pub fn with_chosen(board: Vec<LeaderRow>, chosen: &str) -> Vec<LeaderRow> {
    board.into_iter().map(|r| LeaderRow { chosen: r.model == chosen, ..r }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screening_keeps_the_columns_that_carry_the_gain_and_never_too_few() {
        let gain = [0.0, 50.0, 1.0, 30.0, 0.5, 15.0, 3.5, 0.0];
        // 50 + 30 + 15 = 95 of 100.
        assert_eq!(useful_columns(&gain, 0.95, 1), vec![1, 3, 5]);
        assert_eq!(useful_columns(&gain, 0.99, 1), vec![1, 2, 3, 5, 6]);
        assert_eq!(useful_columns(&gain, 0.95, 4), vec![1, 3, 5, 6]);
        // Ties go to the lower column; asking for more than there are keeps them all.
        assert_eq!(useful_columns(&[1.0, 1.0, 1.0], 0.5, 1), vec![0, 1]);
        assert_eq!(useful_columns(&gain, 0.95, 20), (0..8).collect::<Vec<_>>());
        assert_eq!(useful_columns(&[0.0; 4], 0.95, 2), vec![0, 1, 2, 3]);
    }

    #[test]
    fn large_training_sets_sample_by_gradient_and_small_ones_keep_bagging() {
        for objective in [Objective::Binary, Objective::Regression] {
            let small = candidates(objective, Quality::Standard, 1, 2, GOSS_MIN_ROWS - 1);
            assert!(small.iter().all(|c| c.params.goss.is_none() && c.params.bagging_fraction < 1.0));
            let large = candidates(objective, Quality::Best, 1, 2, GOSS_MIN_ROWS);
            for c in &large {
                assert_eq!(c.params.goss, row_sampling(GOSS_MIN_ROWS), "{}", c.name);
                assert!(c.params.validate().is_ok(), "{}: {:?}", c.name, c.params.validate());
            }
        }
    }
}
