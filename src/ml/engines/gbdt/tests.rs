use super::rng::Rng;
use super::*;

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f32 {
    (lo + (hi - lo) * rng.next_f64()) as f32
}

fn normal(rng: &mut Rng) -> f64 {
    let u1 = rng.next_f64().max(1e-12);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `n` rows of `cols` uniform features in [-1, 1] (row-major) and labels from `label`.
fn dataset(seed: u64, n: usize, cols: usize, label: impl Fn(&[f32], &mut Rng) -> f32) -> (Matrix, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let mut rows = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f32> = (0..cols).map(|_| uniform(&mut rng, -1.0, 1.0)).collect();
        y.push(label(&row, &mut rng));
        rows.push(row);
    }
    (Matrix::from_rows(&rows).unwrap(), y)
}

fn xor_label(r: &[f32], _: &mut Rng) -> f32 {
    if (r[0] > 0.0) == (r[1] > 0.0) { 1.0 } else { 0.0 }
}

fn binary_params() -> Params {
    Params { objective: Objective::Binary, num_rounds: 100, learning_rate: 0.1, threads: 2, ..Params::default() }
}

fn fit(p: &Params, x: &Matrix, y: &[f32]) -> TrainOutcome {
    train(p, x, y, None, None, &mut NoMonitor).unwrap()
}

fn accuracy(m: &Model, x: &Matrix, y: &[f32]) -> f64 {
    let p = m.predict_matrix(x);
    p.iter().zip(y).filter(|&(&p, &y)| (p > 0.5) == (y > 0.5)).count() as f64 / y.len() as f64
}

#[test]
fn learns_xor() {
    let (x, y) = dataset(1, 3000, 5, xor_label);
    let (xt, yt) = dataset(2, 1000, 5, xor_label);
    let out = fit(&binary_params(), &x, &y);
    let acc = accuracy(&out.model, &xt, &yt);
    assert!(acc > 0.9, "held-out accuracy {acc}");
    assert_eq!(out.model.n_trees(), 100);
    assert_eq!(out.model.objective(), Objective::Binary);
    let imp = out.model.feature_importance_gain();
    assert!(imp[0] > imp[2] * 5.0 && imp[1] > imp[3] * 5.0, "{imp:?}");
    assert_eq!(out.model.feature_importance_split().len(), 5);
}

#[test]
fn regression_beats_mean() {
    let label = |r: &[f32], rng: &mut Rng| ((r[0] as f64 * 3.0).sin() + (r[1] as f64 * 2.0).powi(2) + 0.1 * normal(rng)) as f32;
    let (x, y) = dataset(3, 4000, 4, label);
    let (xt, yt) = dataset(4, 1000, 4, label);
    let p = Params { num_rounds: 200, learning_rate: 0.1, threads: 2, ..Params::default() };
    let m = fit(&p, &x, &y).model;
    let pred = m.predict_matrix(&xt);
    let mean = yt.iter().map(|&v| v as f64).sum::<f64>() / yt.len() as f64;
    let sse: f64 = pred.iter().zip(&yt).map(|(p, &y)| (p - y as f64).powi(2)).sum();
    let sst: f64 = yt.iter().map(|&y| (y as f64 - mean).powi(2)).sum();
    let r2 = 1.0 - sse / sst;
    assert!(r2 > 0.9, "R² {r2}");
}

#[test]
fn missing_values_learn_a_direction() {
    // The label is "x0 is missing"; x0's numbers carry no signal, so only the NaN routing can explain y.
    let mut rng = Rng::new(5);
    let n = 2000;
    let mut rows = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let missing = rng.next_f64() < 0.4;
        let x0 = if missing { f32::NAN } else { uniform(&mut rng, -1.0, 1.0) };
        rows.push(vec![x0, uniform(&mut rng, -1.0, 1.0)]);
        y.push(if missing { 1.0 } else { 0.0 });
    }
    let x = Matrix::from_rows(&rows).unwrap();
    let m = fit(&Params { num_rounds: 50, ..binary_params() }, &x, &y).model;
    assert!(m.predict(&[f32::NAN, 0.0]) > 0.9);
    for v in [-0.9, 0.0, 0.7, 5.0] {
        assert!(m.predict(&[v, 0.0]) < 0.1, "x0 = {v}");
    }
    assert!(accuracy(&m, &x, &y) > 0.99);
    // A short row reads as missing features rather than panicking.
    assert!(m.predict(&[]) > 0.9);
}

#[test]
fn nan_at_prediction_on_a_feature_never_missing_in_training() {
    let (x, y) = dataset(6, 1000, 3, xor_label);
    let m = fit(&Params { num_rounds: 10, ..binary_params() }, &x, &y).model;
    let p = m.predict(&[f32::NAN, f32::NAN, f32::NAN]);
    assert!(p.is_finite() && (0.0..=1.0).contains(&p));
}

#[test]
fn early_stopping_truncates_to_best_round() {
    let noisy = |r: &[f32], rng: &mut Rng| if r[0] as f64 + 0.8 * normal(rng) > 0.0 { 1.0 } else { 0.0 };
    let (x, y) = dataset(7, 1500, 10, noisy);
    let (xv, yv) = dataset(8, 500, 10, noisy);
    let p = Params { num_rounds: 400, learning_rate: 0.3, min_data_in_leaf: 5, early_stopping_rounds: 15, ..binary_params() };
    let out = train(&p, &x, &y, None, Some((&xv, &yv)), &mut NoMonitor).unwrap();
    assert!(out.rounds_trained < 400, "never stopped");
    assert_eq!(out.rounds_trained, out.best_round + 15);
    assert_eq!(out.model.n_trees(), out.best_round);
    assert!(!out.stopped_by_monitor);
}

#[test]
fn monitor_stop_ends_within_one_round() {
    let (x, y) = dataset(9, 500, 3, xor_label);
    let mut seen = Vec::new();
    let mut monitor = |info: &RoundInfo| {
        seen.push(info.round);
        if info.round == 5 { Control::Stop } else { Control::Continue }
    };
    let out = train(&binary_params(), &x, &y, None, None, &mut monitor).unwrap();
    assert!(out.stopped_by_monitor);
    assert_eq!(out.rounds_trained, 5);
    assert_eq!(out.model.n_trees(), 5);
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
}

#[test]
fn round_info_reports_losses() {
    let (x, y) = dataset(10, 800, 3, xor_label);
    let (xv, yv) = dataset(11, 300, 3, xor_label);
    let mut infos = Vec::new();
    let mut monitor = |i: &RoundInfo| {
        infos.push(i.clone());
        Control::Continue
    };
    let p = Params { num_rounds: 30, ..binary_params() };
    train(&p, &x, &y, None, Some((&xv, &yv)), &mut monitor).unwrap();
    assert_eq!(infos.len(), 30);
    assert!(infos.iter().all(|i| i.total == 30 && i.valid_loss.is_some() && i.best_round <= i.round));
    assert!(infos[29].valid_loss < infos[0].valid_loss);
}

#[test]
fn thread_count_does_not_change_the_model() {
    let (x, y) = dataset(12, 3000, 40, xor_label);
    let base = Params { num_rounds: 20, feature_fraction: 0.7, bagging_fraction: 0.8, seed: 42, ..binary_params() };
    let one = fit(&Params { threads: 1, ..base.clone() }, &x, &y).model;
    let two = fit(&Params { threads: 2, ..base.clone() }, &x, &y).model;
    let three = fit(&Params { threads: 3, ..base }, &x, &y).model;
    assert_eq!(one.to_bytes(), two.to_bytes());
    assert_eq!(one.to_bytes(), three.to_bytes());
    let (p1, p2) = (one.predict_matrix(&x), two.predict_matrix(&x));
    assert!(p1.iter().zip(&p2).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// Past 65,536 rows the per-row passes (gradients, out-of-bag and validation scores) run split across the
/// threads too; the model and the validation losses the monitor sees stay those of one thread.
#[test]
fn thread_count_does_not_change_the_model_on_many_rows() {
    let (x, y) = dataset(14, 70_000, 4, xor_label);
    let (xv, yv) = dataset(15, 70_000, 4, xor_label);
    let base = Params { num_rounds: 8, bagging_fraction: 0.8, seed: 7, ..binary_params() };
    let run = |threads: usize| {
        let mut losses = Vec::new();
        let mut monitor = |i: &RoundInfo| {
            losses.push(i.valid_loss);
            Control::Continue
        };
        let p = Params { threads, ..base.clone() };
        let model = train(&p, &x, &y, None, Some((&xv, &yv)), &mut monitor).unwrap().model;
        (model.to_bytes(), losses)
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn seed_changes_sampling_but_is_reproducible() {
    let (x, y) = dataset(13, 1000, 10, xor_label);
    let p = Params { num_rounds: 10, feature_fraction: 0.5, bagging_fraction: 0.5, seed: 1, ..binary_params() };
    let a = fit(&p, &x, &y).model.to_bytes();
    let b = fit(&p, &x, &y).model.to_bytes();
    let c = fit(&Params { seed: 2, ..p }, &x, &y).model.to_bytes();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn serde_round_trips_give_identical_predictions() {
    let (x, y) = dataset(14, 1000, 6, xor_label);
    let m = fit(&Params { num_rounds: 30, ..binary_params() }, &x, &y).model;
    let json = serde_json::to_string(&m).unwrap();
    let from_json: Model = serde_json::from_str(&json).unwrap();
    let from_bytes = Model::from_bytes(&m.to_bytes()).unwrap();
    let p = m.predict_matrix(&x);
    for other in [&from_json, &from_bytes] {
        let q = other.predict_matrix(&x);
        assert!(p.iter().zip(&q).all(|(a, b)| a.to_bits() == b.to_bits()));
        let close = |a: &f64, b: &f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
        assert!(other.feature_importance_gain().iter().zip(&m.feature_importance_gain()).all(|(a, b)| close(a, b)));
    }
    assert!(m.to_bytes().len() * 2 < json.len());
}

#[test]
fn corrupt_models_are_rejected() {
    let (x, y) = dataset(15, 300, 2, xor_label);
    let m = fit(&Params { num_rounds: 3, ..binary_params() }, &x, &y).model;
    let bytes = m.to_bytes();
    assert!(Model::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(Model::from_bytes(b"nope").is_err());
    // Every truncation is an error, never a panic.
    for cut in 0..bytes.len() {
        assert!(Model::from_bytes(&bytes[..cut]).is_err());
    }
    let mut json: serde_json::Value = serde_json::to_value(&m).unwrap();
    json["trees"][0]["left"][0] = serde_json::json!(0);
    assert!(serde_json::from_value::<Model>(json).is_err(), "a cycle must not deserialise");
}

#[test]
fn class_weights_shift_probabilities() {
    let noisy = |r: &[f32], rng: &mut Rng| if r[0] as f64 + normal(rng) > 0.8 { 1.0 } else { 0.0 };
    let (x, y) = dataset(16, 2000, 3, noisy);
    let p = Params { num_rounds: 40, ..binary_params() };
    let plain = fit(&p, &x, &y).model;
    let w: Vec<f32> = y.iter().map(|&v| if v > 0.5 { 5.0 } else { 1.0 }).collect();
    let weighted = train(&p, &x, &y, Some(&w), None, &mut NoMonitor).unwrap().model;
    let mean = |m: &Model| m.predict_matrix(&x).iter().sum::<f64>() / x.n_rows as f64;
    assert!(mean(&weighted) > mean(&plain) + 0.15, "{} vs {}", mean(&weighted), mean(&plain));
}

#[test]
fn constant_features_are_never_split() {
    let (mut x, y) = dataset(17, 1000, 3, xor_label);
    for v in &mut x.data[2 * 1000..] {
        *v = 7.0;
    }
    let m = fit(&Params { num_rounds: 20, ..binary_params() }, &x, &y).model;
    assert_eq!(m.feature_importance_split()[2], 0);
    assert!(m.trees().iter().all(|t| t.split_feature.iter().all(|&f| f != 2)));
}

#[test]
fn depth_and_leaf_limits_hold() {
    let (x, y) = dataset(18, 2000, 4, xor_label);
    let m = fit(&Params { num_rounds: 5, num_leaves: 63, max_depth: 3, min_data_in_leaf: 1, ..binary_params() }, &x, &y).model;
    assert!(m.trees().iter().all(|t| t.n_leaves() <= 8));
    let m = fit(&Params { num_rounds: 5, num_leaves: 5, ..binary_params() }, &x, &y).model;
    assert!(m.trees().iter().all(|t| t.n_leaves() <= 5));
}

#[test]
fn bad_inputs_are_errors() {
    let (x, y) = dataset(19, 100, 2, xor_label);
    let p = Params { num_rounds: 2, ..binary_params() };
    let run = |p: &Params, x: &Matrix, y: &[f32], w: Option<&[f32]>| train(p, x, y, w, None, &mut NoMonitor);
    assert!(matches!(run(&p, &x, &y[..99], None), Err(GbdtError::LengthMismatch { .. })));
    let mut bad_y = y.clone();
    bad_y[3] = f32::NAN;
    assert!(matches!(run(&p, &x, &bad_y, None), Err(GbdtError::NonFinite { .. })));
    bad_y[3] = 2.0;
    assert!(matches!(run(&p, &x, &bad_y, None), Err(GbdtError::NotBinary { .. })));
    assert!(run(&Params { objective: Objective::Regression, ..p.clone() }, &x, &bad_y, None).is_ok());
    let mut w = vec![1.0; 100];
    w[0] = f32::INFINITY;
    assert!(matches!(run(&p, &x, &y, Some(&w)), Err(GbdtError::NonFinite { .. })));
    w[0] = -1.0;
    assert!(matches!(run(&p, &x, &y, Some(&w)), Err(GbdtError::NegativeWeight { .. })));
    assert!(matches!(run(&p, &x, &y, Some(&[0.0; 100])), Err(GbdtError::ZeroWeights)));
    assert!(matches!(run(&p, &x, &y, Some(&[1.0; 3])), Err(GbdtError::LengthMismatch { .. })));
    let empty = Matrix::new(0, 2, vec![]).unwrap();
    assert!(matches!(run(&p, &empty, &[], None), Err(GbdtError::NoRows { .. })));
    assert!(matches!(run(&Params { num_rounds: 0, ..p.clone() }, &x, &y, None), Err(GbdtError::InvalidParam { .. })));
    for bad in [
        Params { learning_rate: 0.0, ..p.clone() },
        Params { num_leaves: 1, ..p.clone() },
        Params { max_bins: 256, ..p.clone() },
        Params { feature_fraction: 0.0, ..p.clone() },
        Params { bagging_fraction: 1.5, ..p.clone() },
        Params { threads: 0, ..p.clone() },
        Params { lambda_l2: f64::NAN, ..p.clone() },
    ] {
        assert!(matches!(run(&bad, &x, &y, None), Err(GbdtError::InvalidParam { .. })), "{bad:?}");
    }
    let mut inf_x = x.clone();
    inf_x.data[5] = f32::INFINITY;
    assert!(matches!(run(&p, &inf_x, &y, None), Err(GbdtError::InfiniteFeature { .. })));
    let mut short = x.clone();
    short.data.pop();
    assert!(matches!(run(&p, &short, &y, None), Err(GbdtError::MatrixShape { .. })));
    let (xv, yv) = dataset(20, 10, 3, xor_label);
    let r = train(&p, &x, &y, None, Some((&xv, &yv)), &mut NoMonitor);
    assert!(matches!(r, Err(GbdtError::FeatureCountMismatch { .. })));
    assert!(Matrix::new(2, 2, vec![0.0; 3]).is_err());
    assert!(Matrix::from_rows(&[vec![1.0, 2.0], vec![1.0]]).is_err());
}

#[test]
fn matrix_layout_is_column_major() {
    let m = Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]]).unwrap();
    assert_eq!(m.column(0), &[1.0, 3.0, 5.0]);
    assert_eq!(m.column(1), &[2.0, 4.0, 6.0]);
    assert!(m.column(2).is_empty());
    assert_eq!(m.row(1), vec![3.0, 4.0]);
    assert!(m.value(9, 0).is_nan());
}

#[test]
fn all_missing_or_tiny_data_still_trains() {
    let x = Matrix::new(3, 1, vec![f32::NAN; 3]).unwrap();
    let out = train(&Params { num_rounds: 3, ..Params::default() }, &x, &[1.0, 2.0, 3.0], None, None, &mut NoMonitor).unwrap();
    assert!((out.model.predict(&[f32::NAN]) - 2.0).abs() < 1e-6);
}

/// `cargo test --release -- --ignored --nocapture timing` prints the benchmark figures.
#[test]
#[ignore]
fn timing_50k_rows_100_features() {
    let (n, cols) = (50_000, 100);
    let label = |r: &[f32], rng: &mut Rng| {
        let s = r[0] as f64 * r[1] as f64 * 4.0 + (r[2] as f64 * 3.0).sin() + r[3] as f64 - r[4] as f64 * r[5] as f64 + 0.5 * normal(rng);
        if s > 0.0 { 1.0 } else { 0.0 }
    };
    let (x, y) = dataset(21, n, cols, label);
    let p = Params { objective: Objective::Binary, num_rounds: 300, num_leaves: 31, threads: 2, ..Params::default() };
    let t0 = std::time::Instant::now();
    let out = fit(&p, &x, &y);
    let secs = t0.elapsed().as_secs_f64();
    let json = serde_json::to_string(&out.model).unwrap();
    let bytes = out.model.to_bytes();
    let t1 = std::time::Instant::now();
    let preds = out.model.predict_matrix(&x);
    let pred_secs = t1.elapsed().as_secs_f64();
    println!(
        "TIMING train {n}x{cols}, 300 rounds, 31 leaves, 2 threads: {secs:.2}s; predict {n} rows: {pred_secs:.3}s; \
         json {} KB, bytes {} KB; train acc {:.3}",
        json.len() / 1024,
        bytes.len() / 1024,
        preds.iter().zip(&y).filter(|&(&p, &y)| (p > 0.5) == (y > 0.5)).count() as f64 / n as f64,
    );
    let p1 = Params { threads: 1, ..p };
    let t0 = std::time::Instant::now();
    let one = fit(&p1, &x, &y);
    println!("TIMING same with 1 thread: {:.2}s", t0.elapsed().as_secs_f64());
    assert_eq!(one.model.to_bytes(), bytes);
}

/// The rows of `x` at `at`, as the trainers' feature closure returns them.
fn rows_of(x: &Matrix, at: &[usize]) -> Matrix {
    Matrix::from_rows(&at.iter().map(|&r| x.row(r)).collect::<Vec<_>>()).unwrap()
}

/// Binning as features are computed, a chunk at a time, gives the bins of the whole matrix (past the
/// sampling threshold too, where the bins come from sampled rows) and so the same model.
#[test]
fn binning_by_rows_matches_the_whole_matrix() {
    let (mut x, y) = dataset(21, 130_000, 5, xor_label);
    // Missing values and a column of few distinct values.
    for r in (0..x.n_rows).step_by(7) {
        x.data[r] = f32::NAN;
    }
    for r in 0..x.n_rows {
        x.data[4 * x.n_rows + r] = (r % 3) as f32;
    }
    let params = Params { num_rounds: 20, ..binary_params() };
    let whole = Dataset::from_matrix(&x, &params).unwrap();
    let mut calls = 0;
    let chunked = Dataset::by_rows(x.n_rows, &params, 10_000, &mut |at: &[usize]| -> Result<Matrix, GbdtError> {
        calls += 1;
        Ok(rows_of(&x, at))
    })
    .unwrap();
    // One call for the sample, then 13 chunks.
    assert_eq!(calls, 14);
    assert!(whole.binned.bins == chunked.binned.bins, "bins differ");
    for (a, b) in whole.binned.features.iter().zip(&chunked.binned.features) {
        assert_eq!((&a.bounds, a.n_numeric), (&b.bounds, b.n_numeric));
    }
    assert_eq!(whole.binned.splittable, chunked.binned.splittable);
    let a = train_on(&params, &whole, &y, None, None, &mut NoMonitor).unwrap().model;
    let b = train_on(&params, &chunked, &y, None, None, &mut NoMonitor).unwrap().model;
    let probe = rows_of(&x, &(0..2_000).collect::<Vec<_>>());
    assert_eq!(a.predict_matrix(&probe), b.predict_matrix(&probe));
    // Up to 100,000 rows the sample is every row, binned as it is: one call.
    let (small, _) = dataset(22, 5_000, 3, xor_label);
    let mut calls = 0;
    let once = Dataset::by_rows(small.n_rows, &params, 1_000, &mut |at: &[usize]| -> Result<Matrix, GbdtError> {
        calls += 1;
        Ok(rows_of(&small, at))
    })
    .unwrap();
    assert_eq!(calls, 1);
    assert!(once.binned.bins == Dataset::from_matrix(&small, &params).unwrap().binned.bins);
    // A chunk of the wrong shape, an infinity, and other bins than the data's are refused.
    let short = Dataset::by_rows(100_001, &params, 50_000, &mut |at: &[usize]| -> Result<Matrix, GbdtError> { Ok(rows_of(&x, &at[1..])) });
    assert!(matches!(short, Err(GbdtError::MatrixShape { .. })));
    let mut inf = rows_of(&x, &(0..100).collect::<Vec<_>>());
    inf.data[3 * 100 + 42] = f32::INFINITY;
    let refused = Dataset::by_rows(100, &params, 50, &mut |at: &[usize]| -> Result<Matrix, GbdtError> { Ok(rows_of(&inf, at)) });
    assert!(matches!(refused, Err(GbdtError::InfiniteFeature { col: 3, row: 42 })), "{:?}", refused.err());
    let other = Params { max_bins: 16, ..params.clone() };
    assert!(matches!(train_on(&other, &whole, &y, None, None, &mut NoMonitor), Err(GbdtError::InvalidParam { name: "max_bins", .. })));
}

/// Columns of `x` as a matrix of their own.
fn columns_of(x: &Matrix, cols: &[usize]) -> Matrix {
    Matrix::from_rows(&(0..x.n_rows).map(|r| cols.iter().map(|&c| x.value(r, c)).collect()).collect::<Vec<_>>()).unwrap()
}

/// A selection of a dataset's columns trains the model the selected columns alone would train, but that model
/// speaks in the source's columns: it predicts from full-width rows, validates on them, and its importance
/// has a slot for every source column. A selection of a selection still points at the source.
#[test]
fn a_column_selection_trains_on_those_columns_and_predicts_from_full_rows() {
    let (mut x, y) = dataset(31, 4_000, 9, |r, _| r[2] * 2.0 + r[7] - r[5]);
    for r in (0..x.n_rows).step_by(5) {
        x.data[7 * x.n_rows + r] = f32::NAN;
    }
    let (vx, vy) = dataset(32, 500, 9, |r, _| r[2] * 2.0 + r[7] - r[5]);
    let params = Params { num_rounds: 30, learning_rate: 0.2, threads: 2, early_stopping_rounds: 5, ..Params::default() };
    let cols = [1, 2, 5, 6, 7];
    let full = Dataset::from_matrix(&x, &params).unwrap();
    let chosen = full.select(&cols).unwrap();
    assert_eq!((chosen.n_cols(), chosen.n_rows()), (9, 4_000));
    let a = train_on(&params, &chosen, &y, None, Some((&vx, &vy)), &mut NoMonitor).unwrap();
    let b = train_on(
        &params,
        &Dataset::from_matrix(&columns_of(&x, &cols), &params).unwrap(),
        &y,
        None,
        Some((&columns_of(&vx, &cols), &vy)),
        &mut NoMonitor,
    )
    .unwrap();
    assert_eq!(a.best_round, b.best_round);
    assert_eq!(a.model.predict_matrix(&vx), b.model.predict_matrix(&columns_of(&vx, &cols)));
    let gain = a.model.feature_importance_gain();
    assert_eq!(gain.len(), 9);
    assert!(gain.iter().enumerate().all(|(c, &g)| cols.contains(&c) || g == 0.0), "{gain:?}");
    assert!(gain[2] > 0.0 && gain[5] > 0.0 && gain[7] > 0.0, "{gain:?}");
    // A selection of the selection: positions 1 and 3 of [1, 2, 5, 6, 7] are source columns 2 and 6.
    let again = chosen.select(&[1, 3]).unwrap();
    let c = train_on(&params, &again, &y, None, None, &mut NoMonitor).unwrap().model;
    let gain = c.feature_importance_gain();
    assert!(gain[2] > 0.0 && gain.iter().enumerate().all(|(i, &g)| i == 2 || i == 6 || g == 0.0), "{gain:?}");
    // Validation rows must be as wide as the source; bad selections are refused.
    assert!(matches!(
        train_on(&params, &chosen, &y, None, Some((&columns_of(&vx, &cols), &vy)), &mut NoMonitor),
        Err(GbdtError::FeatureCountMismatch { expected: 9, got: 5 })
    ));
    assert!(matches!(full.select(&[]), Err(GbdtError::NoFeatures)));
    assert!(full.select(&[3, 2]).is_err() && full.select(&[2, 2]).is_err() && full.select(&[9]).is_err());
}

#[test]
fn goss_keeps_the_largest_gradients_and_weights_up_a_sample_of_the_rest() {
    let (x, y) = dataset(21, 20_000, 3, xor_label);
    let params = Params { goss: Some(Goss { top_rate: 0.2, other_rate: 0.1 }), ..binary_params() };
    let data = Dataset::from_matrix(&x, &params).unwrap();
    let mut b = Booster::new(&params, &data, &y, None, None, None);
    // Gradients 1..=n in a scrambled order, so the top 20 % are not simply the last rows.
    let n = y.len();
    for (r, p) in b.grads.iter_mut().enumerate() {
        let v = ((r * 7919) % n + 1) as f32;
        *p = GradPair { g: -v, h: 1.0 };
    }
    let before = b.grads.clone();
    let rows = b.goss_sample(Goss { top_rate: 0.2, other_rate: 0.1 }, 30);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "rows must stay sorted");
    let cut = 0.8 * n as f32;
    let top: Vec<u32> = (0..n as u32).filter(|&r| before[r as usize].g.abs() > cut).collect();
    assert!(top.iter().all(|r| rows.binary_search(r).is_ok()), "a top-gradient row was left out");
    assert!(top.iter().all(|&r| b.grads[r as usize].g == before[r as usize].g), "top rows are not reweighted");
    let others: Vec<u32> = rows.iter().copied().filter(|&r| before[r as usize].g.abs() <= cut).collect();
    let share = others.len() as f64 / n as f64;
    assert!((share - 0.1).abs() < 0.01, "{share} of all rows sampled from the rest, want 0.1");
    assert!(others.iter().all(|&r| b.grads[r as usize].g == before[r as usize].g * 8.0 && b.grads[r as usize].h == 8.0));
    // Weighted up, the sample's sums estimate the whole set's.
    let sum = |rs: &mut dyn Iterator<Item = f64>| rs.sum::<f64>();
    let want = sum(&mut before.iter().map(|p| p.g as f64));
    let got = sum(&mut rows.iter().map(|&r| b.grads[r as usize].g as f64));
    assert!((got / want - 1.0).abs() < 0.03, "sampled gradient sum {got} vs {want}");
    let hess = sum(&mut rows.iter().map(|&r| b.grads[r as usize].h as f64));
    assert!((hess / n as f64 - 1.0).abs() < 0.05, "sampled hessian sum {hess} vs {n}");
}

#[test]
fn goss_trains_about_as_well_and_stays_reproducible() {
    let label = |r: &[f32], rng: &mut Rng| ((r[0] as f64 * 3.0).sin() + (r[1] as f64 * 2.0).powi(2) + 0.1 * normal(rng)) as f32;
    let (x, y) = dataset(22, 20_000, 4, label);
    let (xt, yt) = dataset(23, 2000, 4, label);
    let base = Params { num_rounds: 150, learning_rate: 0.1, threads: 2, seed: 3, ..Params::default() };
    let goss = Params { goss: Some(Goss { top_rate: 0.2, other_rate: 0.1 }), ..base.clone() };
    let mse = |m: &Model| m.predict_matrix(&xt).iter().zip(&yt).map(|(p, &y)| (p - y as f64).powi(2)).sum::<f64>() / yt.len() as f64;
    let (full, sampled) = (fit(&base, &x, &y).model, fit(&goss, &x, &y).model);
    assert!(mse(&sampled) < 1.15 * mse(&full), "GOSS test MSE {} vs {} on every row", mse(&sampled), mse(&full));
    assert_ne!(full.to_bytes(), sampled.to_bytes(), "GOSS changed nothing");
    let one = fit(&Params { threads: 1, ..goss.clone() }, &x, &y).model;
    assert_eq!(one.to_bytes(), sampled.to_bytes(), "the thread count changed a GOSS model");
}

#[test]
fn goss_settings_are_checked() {
    let (x, y) = dataset(24, 200, 3, xor_label);
    for (goss, bagging) in [
        (Goss { top_rate: 0.0, other_rate: 0.1 }, 1.0),
        (Goss { top_rate: 0.6, other_rate: 0.5 }, 1.0),
        (Goss { top_rate: 0.2, other_rate: 0.1 }, 0.8),
    ] {
        let p = Params { goss: Some(goss), bagging_fraction: bagging, ..binary_params() };
        let err = train(&p, &x, &y, None, None, &mut NoMonitor).err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.starts_with("parameter goss")), "{goss:?} with bagging {bagging}: {err:?}");
    }
}
