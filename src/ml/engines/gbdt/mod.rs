//! Histogram gradient-boosted decision trees, in the manner of LightGBM's core, small enough to read and
//! fast enough to train on a Raspberry Pi.
//!
//! Features are quantile-binned once (NaN gets its own bin), trees grow leaf-wise (best gain first) with
//! histogram subtraction, and every split learns where missing values go. Trained trees keep raw-value
//! thresholds, so a [`Model`] predicts from plain `f32` rows and serialises to a few hundred KB at most.
//! Results depend only on the data, the parameters and `seed`, never on `threads`.

mod binning;
mod codec;
mod learner;
mod model;
mod par;
mod pool;
mod rng;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use binning::Binned;
use learner::{GradPair, GrowConfig, GrownTree, HistWorkers, Learner, leaf_of_binned, process_task};
pub use model::{Model, Tree};
use model::{ModelRepr, sigmoid};
use pool::ShutdownOnDrop;
use rng::{Rng, sample_sorted};

const PURPOSE_BAGGING: u64 = 2;
const PURPOSE_FEATURES: u64 = 3;
const PURPOSE_GOSS: u64 = 4;

#[derive(Debug, Error)]
pub enum GbdtError {
    #[error("matrix of {n_rows} x {n_cols} needs {expected} values, got {got}")]
    MatrixShape { n_rows: usize, n_cols: usize, expected: usize, got: usize },
    #[error("row {row} has {got} values, expected {expected}")]
    RaggedRows { row: usize, expected: usize, got: usize },
    #[error("{what} has no rows")]
    NoRows { what: &'static str },
    #[error("training matrix has no features")]
    NoFeatures,
    #[error("{rows} rows is more than this library indexes")]
    TooManyRows { rows: usize },
    #[error("{what} has {got} entries for {expected} rows")]
    LengthMismatch { what: &'static str, expected: usize, got: usize },
    #[error("{what} at row {row} is {value}, not a finite number")]
    NonFinite { what: &'static str, row: usize, value: f32 },
    #[error("label at row {row} is {value}; binary labels must be 0 or 1")]
    NotBinary { row: usize, value: f32 },
    #[error("weight at row {row} is {value}; weights must be >= 0")]
    NegativeWeight { row: usize, value: f32 },
    #[error("weights sum to zero")]
    ZeroWeights,
    #[error("feature {col} is infinite at row {row}; use NaN for missing values")]
    InfiniteFeature { col: usize, row: usize },
    #[error("validation set has {got} features, training has {expected}")]
    FeatureCountMismatch { expected: usize, got: usize },
    #[error("parameter {name}: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("a training worker thread panicked")]
    WorkerPanicked,
}

/// Column-major dense f32 matrix; NaN means missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub n_rows: usize,
    pub n_cols: usize,
    /// `data[col * n_rows + row]`
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(n_rows: usize, n_cols: usize, data: Vec<f32>) -> Result<Self, GbdtError> {
        let expected =
            n_rows.checked_mul(n_cols).ok_or(GbdtError::MatrixShape { n_rows, n_cols, expected: usize::MAX, got: data.len() })?;
        if data.len() != expected {
            return Err(GbdtError::MatrixShape { n_rows, n_cols, expected, got: data.len() });
        }
        Ok(Matrix { n_rows, n_cols, data })
    }

    /// From row-major rows, all of one length.
    pub fn from_rows(rows: &[Vec<f32>]) -> Result<Self, GbdtError> {
        let n_rows = rows.len();
        let n_cols = rows.first().map_or(0, Vec::len);
        if let Some((row, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != n_cols) {
            return Err(GbdtError::RaggedRows { row, expected: n_cols, got: r.len() });
        }
        let mut data = vec![0.0; n_rows * n_cols];
        for (r, row) in rows.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                data[c * n_rows + r] = v;
            }
        }
        Ok(Matrix { n_rows, n_cols, data })
    }

    /// Column `c`; empty when out of range (the fields are public, so the shape is not guaranteed).
    pub fn column(&self, c: usize) -> &[f32] {
        let start = c.saturating_mul(self.n_rows);
        self.data.get(start..start.saturating_add(self.n_rows)).unwrap_or(&[])
    }

    /// The value at (`row`, `col`), NaN when out of range.
    pub fn value(&self, row: usize, col: usize) -> f32 {
        if row >= self.n_rows {
            return f32::NAN;
        }
        self.data.get(col.saturating_mul(self.n_rows).saturating_add(row)).copied().unwrap_or(f32::NAN)
    }

    pub fn row(&self, row: usize) -> Vec<f32> {
        (0..self.n_cols).map(|c| self.value(row, c)).collect()
    }

    fn check_shape(&self) -> Result<(), GbdtError> {
        let expected = self.n_rows.saturating_mul(self.n_cols);
        if self.data.len() != expected {
            return Err(GbdtError::MatrixShape { n_rows: self.n_rows, n_cols: self.n_cols, expected, got: self.data.len() });
        }
        Ok(())
    }
}

/// Gradient-based one-side sampling (LightGBM's GOSS): each tree sees the `top_rate` share of rows with
/// the largest |gradient × hessian| and a random `other_rate` share of the rest, the latter weighted up so
/// the sums stay unbiased. On large training sets it cuts a tree's work to a third with little loss, since
/// rows the model already fits carry little gradient.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Goss {
    pub top_rate: f64,
    pub other_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Objective {
    /// Logistic loss on 0/1 labels; predictions are probabilities.
    Binary,
    /// Squared error.
    Regression,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    pub objective: Objective,
    pub num_rounds: usize,
    pub learning_rate: f64,
    pub num_leaves: usize,
    /// 0 = unlimited.
    pub max_depth: usize,
    pub min_data_in_leaf: usize,
    pub min_sum_hessian: f64,
    pub lambda_l2: f64,
    /// A split must reduce the loss by more than this.
    pub min_gain_to_split: f64,
    /// Share of (non-constant) features each tree may split on.
    pub feature_fraction: f64,
    /// Share of rows each tree is fitted on; 1.0 = no bagging.
    pub bagging_fraction: f64,
    /// Gradient-based one-side sampling instead of bagging (then `bagging_fraction` must be 1.0).
    pub goss: Option<Goss>,
    /// Numeric bins per feature, at most 255 (NaN has a bin of its own).
    pub max_bins: usize,
    /// Stop after this many rounds without a better validation loss; 0 = off.
    pub early_stopping_rounds: usize,
    pub seed: u64,
    pub threads: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            objective: Objective::Regression,
            num_rounds: 300,
            learning_rate: 0.05,
            num_leaves: 31,
            max_depth: 0,
            min_data_in_leaf: 20,
            min_sum_hessian: 1e-3,
            lambda_l2: 1.0,
            min_gain_to_split: 0.0,
            feature_fraction: 1.0,
            bagging_fraction: 1.0,
            goss: None,
            max_bins: 255,
            early_stopping_rounds: 0,
            seed: 0,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

impl Params {
    pub fn validate(&self) -> Result<(), GbdtError> {
        let bad = |name: &'static str, reason: &str| Err(GbdtError::InvalidParam { name, reason: reason.to_string() });
        let fraction_ok = |v: f64| v > 0.0 && v <= 1.0;
        if self.num_rounds == 0 {
            return bad("num_rounds", "must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", "must be a positive number");
        }
        if !(2..=1 << 20).contains(&self.num_leaves) {
            return bad("num_leaves", "must be between 2 and 1048576");
        }
        if !(self.min_sum_hessian.is_finite() && self.min_sum_hessian >= 0.0) {
            return bad("min_sum_hessian", "must be >= 0");
        }
        if !(self.lambda_l2.is_finite() && self.lambda_l2 >= 0.0) {
            return bad("lambda_l2", "must be >= 0");
        }
        if !(self.min_gain_to_split.is_finite() && self.min_gain_to_split >= 0.0) {
            return bad("min_gain_to_split", "must be >= 0");
        }
        if !fraction_ok(self.feature_fraction) {
            return bad("feature_fraction", "must be in (0, 1]");
        }
        if !fraction_ok(self.bagging_fraction) {
            return bad("bagging_fraction", "must be in (0, 1]");
        }
        if let Some(g) = &self.goss {
            if !(g.top_rate > 0.0 && g.other_rate > 0.0 && g.top_rate + g.other_rate < 1.0) {
                return bad("goss", "top_rate and other_rate must be > 0 and sum to less than 1");
            }
            if self.bagging_fraction < 1.0 {
                return bad("goss", "replaces bagging: set bagging_fraction to 1.0");
            }
        }
        if !(2..=255).contains(&self.max_bins) {
            return bad("max_bins", "must be between 2 and 255");
        }
        if self.threads == 0 {
            return bad("threads", "must be at least 1");
        }
        if u32::try_from(self.min_data_in_leaf).is_err() {
            return bad("min_data_in_leaf", "too large");
        }
        Ok(())
    }

    fn grow_config(&self) -> GrowConfig {
        GrowConfig {
            num_leaves: self.num_leaves,
            max_depth: self.max_depth,
            // An empty child is never a split, whatever the setting.
            min_data_in_leaf: (self.min_data_in_leaf as u32).max(1),
            min_sum_hessian: self.min_sum_hessian,
            lambda_l2: self.lambda_l2,
            min_gain_to_split: self.min_gain_to_split,
            threads: self.threads,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Progress after a round. Rounds count from 1; `best_round` is the round with the lowest validation
/// loss so far (the latest round when there is no validation set).
#[derive(Debug, Clone, PartialEq)]
pub struct RoundInfo {
    pub round: usize,
    pub total: usize,
    /// Mean logloss (Binary) or squared error (Regression) on the validation set. The training loss is not
    /// computed: nothing reads it, and over every training row it cost 4 % of the time.
    pub valid_loss: Option<f64>,
    pub best_round: usize,
}

/// Called after every round; returning [`Control::Stop`] ends training there.
pub trait Monitor {
    fn on_round(&mut self, info: &RoundInfo) -> Control;
}

impl<F: FnMut(&RoundInfo) -> Control> Monitor for F {
    fn on_round(&mut self, info: &RoundInfo) -> Control {
        self(info)
    }
}

/// A monitor that never stops training.
#[cfg(test)]
pub struct NoMonitor;

#[cfg(test)]
impl Monitor for NoMonitor {
    fn on_round(&mut self, _: &RoundInfo) -> Control {
        Control::Continue
    }
}

#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Truncated to `best_round` trees when early stopping on a validation set is on (also when the
    /// monitor stopped training); otherwise every trained round.
    pub model: Model,
    #[cfg_attr(not(test), expect(dead_code, reason = "the trainers watch their own monitor and keep the model as it comes"))]
    pub stopped_by_monitor: bool,
    #[cfg_attr(not(test), expect(dead_code, reason = "the trainers watch their own monitor and keep the model as it comes"))]
    pub best_round: usize,
    pub rounds_trained: usize,
}

/// Training rows as bins, built once and shared by every candidate trained on the same rows: binning is the
/// data's shape, not a training choice, as long as the candidates keep the same `max_bins`.
pub struct Dataset {
    binned: Binned,
    max_bins: usize,
    /// The source column of each binned feature, when this is a selection of another dataset's columns
    /// ([`Dataset::select`]); trees, importance and validation rows always speak in source columns.
    source: Option<Source>,
}

#[derive(Clone)]
struct Source {
    columns: Vec<usize>,
    n_cols: usize,
}

impl Dataset {
    /// Bins a whole matrix (infinite values refused; NaN is missing). The trainers bin by rows; the engine's
    /// tests train on matrices, and check that both give the same bins.
    #[cfg(test)]
    pub fn from_matrix(x: &Matrix, params: &Params) -> Result<Self, GbdtError> {
        params.validate()?;
        x.check_shape()?;
        Ok(Dataset { binned: Binned::build(x, params.max_bins, params.seed, params.threads)?, max_bins: params.max_bins, source: None })
    }

    /// Bins `n_rows` rows as their features are computed, `chunk_rows` at a time, never holding the f32 matrix
    /// of them all: `rows` returns the features of the rows at the given positions (ascending, in
    /// `0..n_rows`). The bins are the ones [`Dataset::from_matrix`] would choose for the whole matrix.
    pub fn by_rows<E: From<GbdtError>>(
        n_rows: usize,
        params: &Params,
        chunk_rows: usize,
        rows: &mut dyn FnMut(&[usize]) -> Result<Matrix, E>,
    ) -> Result<Self, E> {
        params.validate()?;
        let binned = Binned::build_by_rows(n_rows, params.max_bins, params.seed, params.threads, chunk_rows, rows)?;
        Ok(Dataset { binned, max_bins: params.max_bins, source: None })
    }

    /// The same rows with only `columns` (source column indices, ascending, each < `n_cols()`): a model
    /// trained on it splits on those columns only and predicts from full-width rows like any other.
    pub fn select(&self, columns: &[usize]) -> Result<Dataset, GbdtError> {
        let n = self.binned.features.len();
        if columns.is_empty() {
            return Err(GbdtError::NoFeatures);
        }
        if columns.windows(2).any(|w| w[0] >= w[1]) || columns.iter().any(|&c| c >= n) {
            return Err(GbdtError::InvalidParam { name: "columns", reason: format!("must be ascending and below {n}") });
        }
        let to_source = |c: usize| self.source.as_ref().map_or(c, |s| s.columns[c]);
        Ok(Dataset {
            binned: self.binned.select(columns),
            max_bins: self.max_bins,
            source: Some(Source { columns: columns.iter().map(|&c| to_source(c)).collect(), n_cols: self.n_cols() }),
        })
    }

    pub fn n_rows(&self) -> usize {
        self.binned.n_rows
    }

    /// Columns of the rows it was built from (what a model trained on it expects).
    pub fn n_cols(&self) -> usize {
        self.source.as_ref().map_or(self.binned.features.len(), |s| s.n_cols)
    }

    fn source_column(&self, f: usize) -> usize {
        self.source.as_ref().map_or(f, |s| s.columns[f])
    }
}

/// Trains a boosted ensemble. `weights` scale each row's loss (e.g. class weights); `valid` drives
/// early stopping and `RoundInfo::valid_loss`.
#[cfg(test)]
pub fn train(
    params: &Params,
    x: &Matrix,
    y: &[f32],
    weights: Option<&[f32]>,
    valid: Option<(&Matrix, &[f32])>,
    monitor: &mut dyn Monitor,
) -> Result<TrainOutcome, GbdtError> {
    params.validate()?;
    check_training_data(params.objective, x.n_rows, x.n_cols, y, weights)?;
    train_on(params, &Dataset::from_matrix(x, params)?, y, weights, valid, monitor)
}

/// [`train`] on rows already binned.
pub fn train_on(
    params: &Params,
    data: &Dataset,
    y: &[f32],
    weights: Option<&[f32]>,
    valid: Option<(&Matrix, &[f32])>,
    monitor: &mut dyn Monitor,
) -> Result<TrainOutcome, GbdtError> {
    params.validate()?;
    if params.max_bins != data.max_bins {
        return Err(GbdtError::InvalidParam {
            name: "max_bins",
            reason: format!("{} differs from the {} the data was binned with", params.max_bins, data.max_bins),
        });
    }
    check_training_data(params.objective, data.n_rows(), data.n_cols(), y, weights)?;
    if let Some((vx, vy)) = valid {
        check_validation_data(params.objective, data.n_cols(), vx, vy)?;
    }
    if params.threads <= 1 {
        return Booster::new(params, data, y, weights, valid, None).run(monitor);
    }
    let workers = HistWorkers::new();
    let cfg = params.grow_config();
    let binned = &data.binned;
    std::thread::scope(|s| {
        let (w, c) = (&workers, &cfg);
        for _ in 1..params.threads {
            s.spawn(move || w.worker_loop(&|t| process_task(binned, c, t)));
        }
        let _stop = ShutdownOnDrop(&workers);
        Booster::new(params, data, y, weights, valid, Some(&workers)).run(monitor)
    })
}

fn check_training_data(objective: Objective, n_rows: usize, n_cols: usize, y: &[f32], weights: Option<&[f32]>) -> Result<(), GbdtError> {
    if n_rows == 0 {
        return Err(GbdtError::NoRows { what: "training set" });
    }
    if n_cols == 0 {
        return Err(GbdtError::NoFeatures);
    }
    if u32::try_from(n_rows).is_err() {
        return Err(GbdtError::TooManyRows { rows: n_rows });
    }
    check_labels(objective, "label", n_rows, y)?;
    if let Some(w) = weights {
        check_weights(n_rows, w)?;
    }
    Ok(())
}

fn check_validation_data(objective: Objective, n_cols: usize, vx: &Matrix, vy: &[f32]) -> Result<(), GbdtError> {
    vx.check_shape()?;
    if vx.n_rows == 0 {
        return Err(GbdtError::NoRows { what: "validation set" });
    }
    if vx.n_cols != n_cols {
        return Err(GbdtError::FeatureCountMismatch { expected: n_cols, got: vx.n_cols });
    }
    check_labels(objective, "validation label", vx.n_rows, vy)
}

fn check_labels(objective: Objective, what: &'static str, n: usize, y: &[f32]) -> Result<(), GbdtError> {
    if y.len() != n {
        return Err(GbdtError::LengthMismatch { what, expected: n, got: y.len() });
    }
    for (row, &value) in y.iter().enumerate() {
        if !value.is_finite() {
            return Err(GbdtError::NonFinite { what, row, value });
        }
        if objective == Objective::Binary && value != 0.0 && value != 1.0 {
            return Err(GbdtError::NotBinary { row, value });
        }
    }
    Ok(())
}

fn check_weights(n: usize, w: &[f32]) -> Result<(), GbdtError> {
    if w.len() != n {
        return Err(GbdtError::LengthMismatch { what: "weights", expected: n, got: w.len() });
    }
    for (row, &value) in w.iter().enumerate() {
        if !value.is_finite() {
            return Err(GbdtError::NonFinite { what: "weight", row, value });
        }
        if value < 0.0 {
            return Err(GbdtError::NegativeWeight { row, value });
        }
    }
    if w.iter().map(|&v| v as f64).sum::<f64>() <= 0.0 {
        return Err(GbdtError::ZeroWeights);
    }
    Ok(())
}

/// Loss and gradients of one objective, with optional row weights.
struct Loss<'a> {
    objective: Objective,
    y: &'a [f32],
    weights: Option<&'a [f32]>,
}

impl Loss<'_> {
    fn weight(&self, r: usize) -> f64 {
        self.weights.map_or(1.0, |w| w[r] as f64)
    }

    /// Log-odds of the weighted base rate, or the weighted mean: the best constant before any tree.
    fn init_score(&self) -> f64 {
        let (mut sw, mut swy) = (0.0, 0.0);
        for (r, &y) in self.y.iter().enumerate() {
            let w = self.weight(r);
            sw += w;
            swy += w * y as f64;
        }
        let mean = if sw > 0.0 { swy / sw } else { 0.0 };
        match self.objective {
            Objective::Binary => {
                let p = mean.clamp(1e-15, 1.0 - 1e-15);
                (p / (1.0 - p)).ln()
            }
            Objective::Regression => mean,
        }
    }

    fn gradients(&self, scores: &[f64], out: &mut [GradPair], threads: usize) {
        par::for_row_chunks(out, threads, &|first, out| self.gradients_from(first, scores, out));
    }

    fn gradients_from(&self, first: usize, scores: &[f64], out: &mut [GradPair]) {
        for (r, (o, &s)) in out.iter_mut().zip(&scores[first..]).enumerate().map(|(i, x)| (first + i, x)) {
            let w = self.weight(r);
            let y = self.y[r] as f64;
            let (g, h) = match self.objective {
                Objective::Binary => {
                    let p = sigmoid(s);
                    // A floor keeps the Newton step finite on rows the model is already sure about.
                    (p - y, (p * (1.0 - p)).max(1e-16))
                }
                Objective::Regression => (s - y, 1.0),
            };
            *o = GradPair { g: (g * w) as f32, h: (h * w) as f32 };
        }
    }

    fn mean_loss(&self, scores: &[f64]) -> f64 {
        let (mut sw, mut sl) = (0.0, 0.0);
        for (r, &s) in scores.iter().enumerate() {
            let w = self.weight(r);
            sw += w;
            sl += w * point_loss(self.objective, self.y[r] as f64, s);
        }
        if sw > 0.0 { sl / sw } else { 0.0 }
    }
}

/// Rounds fitted on every row before GOSS starts (LightGBM's choice): early gradients are all large, so
/// ranking them says little until the first trees have fitted the bulk of the signal.
fn goss_warmup(learning_rate: f64) -> usize {
    (1.0 / learning_rate).ceil().min(1e6) as usize
}

fn point_loss(objective: Objective, y: f64, s: f64) -> f64 {
    match objective {
        // log(1 + e^s) - y·s, written to stay finite for large |s|.
        Objective::Binary => s.max(0.0) + (-s.abs()).exp().ln_1p() - y * s,
        Objective::Regression => (s - y) * (s - y),
    }
}

struct Validation<'a> {
    x: &'a Matrix,
    loss: Loss<'a>,
    scores: Vec<f64>,
}

/// Everything that changes from round to round.
struct Booster<'a> {
    params: &'a Params,
    dataset: &'a Dataset,
    data: &'a Binned,
    loss: Loss<'a>,
    valid: Option<Validation<'a>>,
    learner: Learner<'a>,
    cfg: GrowConfig,
    init_score: f32,
    scores: Vec<f64>,
    grads: Vec<GradPair>,
    trees: Vec<Tree>,
    /// (feature, gain) of every split, per tree, for importance over the kept trees only.
    splits: Vec<Vec<(usize, f64)>>,
    /// Features that can be split at all; feature sampling draws from these.
    usable: Vec<usize>,
}

impl<'a> Booster<'a> {
    fn new(
        params: &'a Params,
        dataset: &'a Dataset,
        y: &'a [f32],
        weights: Option<&'a [f32]>,
        valid: Option<(&'a Matrix, &'a [f32])>,
        workers: Option<&'a HistWorkers>,
    ) -> Self {
        let data = &dataset.binned;
        let loss = Loss { objective: params.objective, y, weights };
        // Stored as f32, so training starts from exactly what the saved model adds.
        let init_score = loss.init_score() as f32;
        let valid = valid.map(|(x, vy)| Validation {
            x,
            loss: Loss { objective: params.objective, y: vy, weights: None },
            scores: vec![init_score as f64; x.n_rows],
        });
        let usable = (0..data.features.len()).filter(|&f| data.splittable[f]).collect();
        Booster {
            params,
            dataset,
            data,
            loss,
            valid,
            learner: Learner::new(data, params.grow_config(), workers),
            cfg: params.grow_config(),
            init_score,
            scores: vec![init_score as f64; data.n_rows],
            grads: vec![GradPair::default(); data.n_rows],
            trees: Vec::new(),
            splits: Vec::new(),
            usable,
        }
    }

    fn run(&mut self, monitor: &mut dyn Monitor) -> Result<TrainOutcome, GbdtError> {
        let total = self.params.num_rounds;
        let early_stopping = self.valid.is_some() && self.params.early_stopping_rounds > 0;
        let mut best = (0usize, f64::INFINITY);
        let mut stopped_by_monitor = false;
        for round in 1..=total {
            self.boost_round(round)?;
            let valid_loss = self.valid.as_ref().map(|v| v.loss.mean_loss(&v.scores));
            match valid_loss {
                Some(l) if l < best.1 => best = (round, l),
                Some(_) => {}
                None => best.0 = round,
            }
            let info = RoundInfo { round, total, valid_loss, best_round: best.0 };
            if monitor.on_round(&info) == Control::Stop {
                stopped_by_monitor = true;
                break;
            }
            if early_stopping && round - best.0 >= self.params.early_stopping_rounds {
                break;
            }
        }
        let rounds_trained = self.trees.len();
        let keep = if early_stopping { best.0.max(1) } else { rounds_trained };
        Ok(TrainOutcome { model: self.finish(keep)?, stopped_by_monitor, best_round: best.0, rounds_trained })
    }

    fn boost_round(&mut self, round: usize) -> Result<(), GbdtError> {
        self.loss.gradients(&self.scores, &mut self.grads, self.params.threads);
        let bag = match self.params.goss {
            Some(goss) if round > goss_warmup(self.params.learning_rate) => Some(self.goss_sample(goss, round)),
            _ => self.bag(round),
        };
        let features = self.sample_features(round);
        let grown = self.learner.grow(&self.grads, bag.as_deref(), &features)?;
        // Rounded to f32 before use so training scores match what the stored model will predict.
        let values: Vec<f32> = grown.leaf_stats.iter().map(|s| (self.cfg.leaf_output(s) * self.params.learning_rate) as f32).collect();
        self.update_train_scores(&grown, &values, bag.is_some());
        let tree = self.to_tree(&grown, values);
        if let Some(v) = &mut self.valid {
            let x = v.x;
            par::for_row_chunks(&mut v.scores, self.params.threads, &|first, scores| {
                for (i, s) in scores.iter_mut().enumerate() {
                    *s += tree.predict_in(x, first + i);
                }
            });
        }
        self.splits.push(grown.nodes.iter().map(|n| (self.dataset.source_column(n.feature), n.gain)).collect());
        self.trees.push(tree);
        Ok(())
    }

    /// Sorted row indices drawn independently with probability `bagging_fraction`; `None` = every row.
    fn bag(&self, round: usize) -> Option<Vec<u32>> {
        if self.params.bagging_fraction >= 1.0 {
            return None;
        }
        let mut rng = Rng::derived(self.params.seed, PURPOSE_BAGGING, round as u64);
        let f = self.params.bagging_fraction;
        Some((0..self.data.n_rows as u32).filter(|_| rng.next_f64() < f).collect())
    }

    /// Sorted rows of this round's GOSS sample; the gradients of the randomly kept rows are scaled up in
    /// place (they are recomputed every round).
    fn goss_sample(&mut self, goss: Goss, round: usize) -> Vec<u32> {
        let n = self.grads.len();
        if n == 0 {
            return Vec::new();
        }
        let weight = |p: &GradPair| (p.g * p.h).abs();
        let top = ((n as f64 * goss.top_rate).ceil() as usize).clamp(1, n);
        let mut keys: Vec<f32> = self.grads.iter().map(weight).collect();
        let (_, &mut cut, _) = keys.select_nth_unstable_by(top - 1, |a, b| b.total_cmp(a));
        let keep_other = goss.other_rate / (1.0 - goss.top_rate);
        let scale = (1.0 / keep_other) as f32;
        let mut rng = Rng::derived(self.params.seed, PURPOSE_GOSS, round as u64);
        let mut rows = Vec::with_capacity(((goss.top_rate + goss.other_rate) * n as f64) as usize + 1);
        for (r, p) in self.grads.iter_mut().enumerate() {
            // Ties at the cut all count as top rows: a few more than `top`, never a biased draw among them.
            if weight(p) >= cut {
                rows.push(r as u32);
            } else if rng.next_f64() < keep_other {
                p.g *= scale;
                p.h *= scale;
                rows.push(r as u32);
            }
        }
        rows
    }

    fn sample_features(&self, round: usize) -> Vec<usize> {
        let n = self.usable.len();
        if self.params.feature_fraction >= 1.0 || n == 0 {
            return self.usable.clone();
        }
        let k = ((n as f64 * self.params.feature_fraction).ceil() as usize).clamp(1, n);
        let mut rng = Rng::derived(self.params.seed, PURPOSE_FEATURES, round as u64);
        sample_sorted(&mut rng, n, k).into_iter().map(|i| self.usable[i]).collect()
    }

    /// In-bag rows are already grouped by leaf; out-of-bag rows walk the tree on their bins.
    fn update_train_scores(&mut self, grown: &GrownTree, values: &[f32], bagged: bool) {
        let mut in_bag = if bagged { vec![false; self.data.n_rows] } else { Vec::new() };
        for (rows, &v) in grown.leaf_rows.iter().zip(values) {
            for &r in &self.learner.indices[rows.clone()] {
                self.scores[r as usize] += v as f64;
                if bagged {
                    in_bag[r as usize] = true;
                }
            }
        }
        if bagged {
            let data = self.data;
            par::for_row_chunks(&mut self.scores, self.params.threads, &|first, scores| {
                for (i, s) in scores.iter_mut().enumerate().filter(|(i, _)| !in_bag[first + i]) {
                    let leaf = leaf_of_binned(&grown.nodes, data, first + i);
                    *s += values.get(leaf).copied().unwrap_or(0.0) as f64;
                }
            });
        }
    }

    fn to_tree(&self, grown: &GrownTree, leaf_value: Vec<f32>) -> Tree {
        let n = &grown.nodes;
        Tree {
            split_feature: n.iter().map(|n| self.dataset.source_column(n.feature) as u32).collect(),
            threshold: n.iter().map(|n| self.data.features[n.feature].threshold(n.bin)).collect(),
            default_left: n.iter().map(|n| n.default_left).collect(),
            left: n.iter().map(|n| n.left).collect(),
            right: n.iter().map(|n| n.right).collect(),
            leaf_value,
        }
    }

    fn finish(&mut self, keep: usize) -> Result<Model, GbdtError> {
        let n_features = self.dataset.n_cols();
        let keep = keep.min(self.trees.len());
        let mut importance_gain = vec![0.0; n_features];
        let mut importance_split = vec![0u32; n_features];
        for &(f, g) in self.splits[..keep].iter().flatten() {
            importance_gain[f] += g;
            importance_split[f] += 1;
        }
        let mut trees = std::mem::take(&mut self.trees);
        trees.truncate(keep);
        Model::try_from(ModelRepr {
            objective: self.params.objective,
            n_features,
            init_score: self.init_score,
            trees,
            importance_gain,
            importance_split,
        })
    }
}
