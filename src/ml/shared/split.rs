//! Train/validation/test splits that do not leak the future or a life into the sets that judge a model.
//!
//! Decision order (the first that applies):
//! 1. **given**: the data's own split (`table.given_split`) is used as is; `Healthy` rows go to `healthy`.
//!    A missing test set is carved from training first (the *last* ~20 % of training lives when lives are
//!    known, else the last ~20 % of training rows), then a missing validation set (a seeded ~20 % of the
//!    remaining training lives, else the last ~20 % of remaining training rows). Row carves drop `gap_rows`
//!    rows in front of the carved block. The method reads e.g. `given+val_by_life` or
//!    `given+test_chronological+val_chronological`.
//! 2. **stratified**, only when the data's description asks for it: a seeded random split per label class
//!    (positive = label >= 0.5; missing labels form their own class), test fraction default 0.2, validation
//!    fraction default 0.2 of the remainder. The hint's seed overrides the caller's.
//! 3. **by_life** when lives are known and there are at least 3 (unless the description asks for
//!    chronological): lives are shuffled with the seed and dealt ~70/15/15, each set getting >= 1 life.
//! 4. **chronological** otherwise: rows in table order ~70/15/15, with `gap_rows` rows dropped before
//!    validation and before test so no rolling window of one set reaches into the previous one.
//!
//! Fractions from the description's hint apply to every method the same way: `test_fraction` of the whole,
//! then `val_fraction` of what is left. Index vectors are sorted ascending and disjoint; with by-life
//! splitting no life is in two of train/val/test. A set that would be empty is an error, never a silent
//! degenerate split.

use super::lengths::{LengthMismatch, check_len};
use crate::data::{Split, SplitMethod, Table};
use crate::util::rng::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use thiserror::Error;

/// 70/15/15 of the whole, written as "test of the whole, then val of the rest".
const DEFAULT_TEST: f64 = 0.15;
const DEFAULT_VAL_OF_REST: f64 = 0.15 / 0.85;
const STRATIFIED_TEST: f64 = 0.2;
const STRATIFIED_VAL_OF_REST: f64 = 0.2;
/// Share of the given training data carved off when the data's split lacks a set.
const CARVE_FRACTION: f64 = 0.2;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum SplitError {
    #[error("cannot split an empty table")]
    EmptyTable,
    #[error("{what} has {got} entries but the table has {expected} rows")]
    LengthMismatch { what: String, expected: usize, got: usize },
    #[error("too few rows to split: {n_rows} rows, {detail}")]
    TooFewRows { n_rows: usize, detail: String },
    #[error("the {set} set would be empty: {reason}")]
    EmptySet { set: &'static str, reason: String },
    #[error("a stratified split needs a label, and none was given")]
    NoLabel,
    #[error("invalid split fraction {name} = {value}: it must be strictly between 0 and 1")]
    BadFraction { name: &'static str, value: f64 },
}

/// Where every row goes; saved with the models so evaluation can be reproduced and audited.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SplitPlan {
    /// "given" (+ carves), "stratified", "by_life" or "chronological".
    pub method: String,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    /// Reference rows known to be normal (only from a given split).
    pub healthy: Vec<usize>,
    /// Rows actually dropped in front of each chronologically carved set (0 when none were).
    pub gap_rows: usize,
    pub seed: u64,
    pub train_lives: usize,
    pub val_lives: usize,
    pub test_lives: usize,
    /// What was decided and why, for the training report.
    pub notes: Vec<String>,
}

pub fn plan_split(table: &Table, seed: u64, gap_rows: usize, needs_label: Option<&[f64]>) -> Result<SplitPlan, SplitError> {
    let n = table.n_rows();
    if n == 0 {
        return Err(SplitError::EmptyTable);
    }
    check_len("life", n, table.life.len())?;
    let hint = &table.split_hint;
    let mut plan = if let Some(given) = &table.given_split {
        check_len("given split", n, given.len())?;
        given_plan(table, given, seed, gap_rows)?
    } else if hint.method == SplitMethod::Stratified {
        let label = needs_label.or(table.label.as_deref()).ok_or(SplitError::NoLabel)?;
        check_len("label", n, label.len())?;
        let (test_f, val_f) = fractions(hint.test_fraction, hint.val_fraction, STRATIFIED_TEST, STRATIFIED_VAL_OF_REST)?;
        stratified_plan(table, label, hint.seed.unwrap_or(seed), test_f, val_f)?
    } else {
        let (test_f, val_f) = fractions(hint.test_fraction, hint.val_fraction, DEFAULT_TEST, DEFAULT_VAL_OF_REST)?;
        let n_lives = table.n_lives();
        let by_life = table.lives_known && n_lives >= 3 && hint.method != SplitMethod::Chronological;
        if by_life {
            by_life_plan(table, seed, test_f, val_f)?
        } else {
            let mut plan = chronological_plan(table, seed, gap_rows, test_f, val_f)?;
            if hint.method == SplitMethod::ByLife {
                plan.notes.push(format!(
                    "split by life was asked for but {}; split chronologically instead",
                    if table.lives_known { format!("there are only {n_lives} lives") } else { "lives are unknown".into() }
                ));
            }
            plan
        }
    };
    finish(table, &mut plan);
    Ok(plan)
}

// ---------------------------------------------------------------------------------------------------------
// The four methods

fn given_plan(table: &Table, given: &[Split], seed: u64, gap_rows: usize) -> Result<SplitPlan, SplitError> {
    let rows_of = |want: Split| -> Vec<usize> { (0..given.len()).filter(|&i| given[i] == want).collect() };
    let mut plan = empty_plan("given", seed);
    plan.train = rows_of(Split::Train);
    plan.val = rows_of(Split::Val);
    plan.test = rows_of(Split::Test);
    plan.healthy = rows_of(Split::Healthy);
    if plan.train.is_empty() {
        return Err(SplitError::EmptySet { set: "train", reason: "the data's own split has no training rows".into() });
    }
    let mut rng = Rng::new(seed);
    if plan.test.is_empty() {
        let carved = carve(table, &plan.train, "test", CarvePick::LastLives, gap_rows, &mut rng)?;
        apply_carve(&mut plan, carved, Target::Test);
    }
    if plan.val.is_empty() {
        let carved = carve(table, &plan.train, "validation", CarvePick::RandomLives, gap_rows, &mut rng)?;
        apply_carve(&mut plan, carved, Target::Val);
    }
    Ok(plan)
}

fn stratified_plan(table: &Table, label: &[f64], seed: u64, test_f: f64, val_f: f64) -> Result<SplitPlan, SplitError> {
    let mut plan = empty_plan("stratified", seed);
    let mut rng = Rng::new(seed);
    for class in label_classes(label) {
        let mut rows = class;
        rng.shuffle(&mut rows);
        let n_test = (rows.len() as f64 * test_f).round() as usize;
        let n_val = ((rows.len() - n_test) as f64 * val_f).round() as usize;
        plan.test.extend_from_slice(&rows[..n_test]);
        plan.val.extend_from_slice(&rows[n_test..n_test + n_val]);
        plan.train.extend_from_slice(&rows[n_test + n_val..]);
    }
    require_non_empty(&plan, table.n_rows(), "rows")?;
    plan.notes.push(format!(
        "stratified by label as the data's description asks (seed {seed}): positive rate train {}, val {}, test {}",
        positive_percent(label, &plan.train),
        positive_percent(label, &plan.val),
        positive_percent(label, &plan.test)
    ));
    if table.lives_known && table.n_lives() > 1 {
        plan.notes.push("rows are treated as independent: rows of one life may land in different sets".into());
    }
    Ok(plan)
}

fn by_life_plan(table: &Table, seed: u64, test_f: f64, val_f: f64) -> Result<SplitPlan, SplitError> {
    let mut lives = lives_in_order(table, &(0..table.n_rows()).collect::<Vec<_>>());
    let n_lives = lives.len();
    let (n_test, n_val) = three_way_counts(n_lives, test_f, val_f).ok_or_else(|| SplitError::TooFewRows {
        n_rows: table.n_rows(),
        detail: format!("{n_lives} lives, a split by life needs at least 3"),
    })?;
    Rng::new(seed).shuffle(&mut lives);
    let test_set: HashSet<u32> = lives[..n_test].iter().copied().collect();
    let val_set: HashSet<u32> = lives[n_test..n_test + n_val].iter().copied().collect();
    let mut plan = empty_plan("by_life", seed);
    for (i, life) in table.life.iter().enumerate() {
        let set = if test_set.contains(life) {
            &mut plan.test
        } else if val_set.contains(life) {
            &mut plan.val
        } else {
            &mut plan.train
        };
        set.push(i);
    }
    plan.notes.push(format!(
        "split by life (seed {seed}): {} train, {n_val} validation, {n_test} test of {n_lives} lives; lives never share \
         windows, so no gap rows are needed",
        n_lives - n_test - n_val
    ));
    Ok(plan)
}

fn chronological_plan(table: &Table, seed: u64, gap: usize, test_f: f64, val_f: f64) -> Result<SplitPlan, SplitError> {
    let n = table.n_rows();
    let too_few = || SplitError::TooFewRows {
        n_rows: n,
        detail: format!("a chronological split with {gap} gap rows needs at least {}", 3 + 2 * gap),
    };
    let usable = n.checked_sub(2 * gap).ok_or_else(too_few)?;
    let (n_test, n_val) = three_way_counts(usable, test_f, val_f).ok_or_else(too_few)?;
    let n_train = usable - n_test - n_val;
    let val_start = n_train + gap;
    let test_start = val_start + n_val + gap;
    let mut plan = empty_plan("chronological", seed);
    plan.train = (0..n_train).collect();
    plan.val = (val_start..val_start + n_val).collect();
    plan.test = (test_start..n).collect();
    plan.gap_rows = gap;
    plan.notes.push(format!(
        "chronological split: first {n_train} rows train, next {n_val} validation, last {n_test} test, with {gap} rows \
         dropped before validation and before test"
    ));
    Ok(plan)
}

// ---------------------------------------------------------------------------------------------------------
// Carving a missing set out of the given training rows

#[derive(Clone, Copy)]
enum CarvePick {
    /// The test set should look like the future: the last lives.
    LastLives,
    /// Validation only needs to be representative: random lives.
    RandomLives,
}

#[derive(Clone, Copy)]
enum Target {
    Val,
    Test,
}

struct Carved {
    keep: Vec<usize>,
    carved: Vec<usize>,
    by_life: bool,
    gap: usize,
    note: String,
}

/// Splits `train` into what stays and what goes to the missing set: by lives when lives are known and there
/// are at least two, else the last rows with `gap` rows dropped in between.
fn carve(table: &Table, train: &[usize], what: &str, pick: CarvePick, gap: usize, rng: &mut Rng) -> Result<Carved, SplitError> {
    let lives = lives_in_order(table, train);
    if table.lives_known && lives.len() >= 2 {
        return Ok(carve_lives(table, train, lives, what, pick, rng));
    }
    let mut carved = carve_rows(train, what, gap)?;
    if table.lives_known {
        carved.note.push_str(&format!(" (only {} training life, so it is shared)", lives.len()));
    }
    Ok(carved)
}

fn carve_lives(table: &Table, train: &[usize], mut lives: Vec<u32>, what: &str, pick: CarvePick, rng: &mut Rng) -> Carved {
    let n_lives = lives.len();
    let n_carve = ((n_lives as f64 * CARVE_FRACTION).round() as usize).clamp(1, n_lives - 1);
    let chosen: HashSet<u32> = match pick {
        CarvePick::LastLives => lives[n_lives - n_carve..].iter().copied().collect(),
        CarvePick::RandomLives => {
            rng.shuffle(&mut lives);
            lives[..n_carve].iter().copied().collect()
        }
    };
    let (carved, keep) = train.iter().partition(|&&i| chosen.contains(&table.life[i]));
    let which = match pick {
        CarvePick::LastLives => "the last",
        CarvePick::RandomLives => "a random",
    };
    Carved { keep, carved, by_life: true, gap: 0, note: format!("{what} carved from {which} {n_carve} of {n_lives} training lives") }
}

fn carve_rows(train: &[usize], what: &str, gap: usize) -> Result<Carved, SplitError> {
    let n = train.len();
    let n_carve = ((n as f64 * CARVE_FRACTION).round() as usize).max(1);
    let n_keep = n.checked_sub(n_carve + gap).filter(|&k| k > 0).ok_or_else(|| SplitError::TooFewRows {
        n_rows: n,
        detail: format!("the given training rows cannot spare a {what} set of {n_carve} rows plus {gap} gap rows"),
    })?;
    Ok(Carved {
        keep: train[..n_keep].to_vec(),
        carved: train[n - n_carve..].to_vec(),
        by_life: false,
        gap,
        note: format!("{what} is the last {n_carve} of {n} training rows, with {gap} rows dropped before it"),
    })
}

fn apply_carve(plan: &mut SplitPlan, c: Carved, target: Target) {
    plan.train = c.keep;
    let (set, tag) = match target {
        Target::Val => (&mut plan.val, "val"),
        Target::Test => (&mut plan.test, "test"),
    };
    *set = c.carved;
    plan.method.push_str(&format!("+{tag}_{}", if c.by_life { "by_life" } else { "chronological" }));
    plan.gap_rows = plan.gap_rows.max(c.gap);
    plan.notes.push(c.note);
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

fn empty_plan(method: &str, seed: u64) -> SplitPlan {
    SplitPlan {
        method: method.to_string(),
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
        healthy: Vec::new(),
        gap_rows: 0,
        seed,
        train_lives: 0,
        val_lives: 0,
        test_lives: 0,
        notes: Vec::new(),
    }
}

impl From<LengthMismatch> for SplitError {
    fn from(LengthMismatch { what, expected, got }: LengthMismatch) -> Self {
        SplitError::LengthMismatch { what, expected, got }
    }
}

/// Hint fractions override the method's defaults; a description file can hold anything.
fn fractions(test: Option<f64>, val: Option<f64>, default_test: f64, default_val: f64) -> Result<(f64, f64), SplitError> {
    let check = |name: &'static str, v: f64| {
        if v > 0.0 && v < 1.0 { Ok(v) } else { Err(SplitError::BadFraction { name, value: v }) }
    };
    Ok((check("test_fraction", test.unwrap_or(default_test))?, check("val_fraction", val.unwrap_or(default_val))?))
}

/// Test and validation counts out of `n` units with at least one unit in each of the three sets, or None
/// when `n < 3`.
fn three_way_counts(n: usize, test_f: f64, val_f: f64) -> Option<(usize, usize)> {
    if n < 3 {
        return None;
    }
    let n_test = ((n as f64 * test_f).round() as usize).clamp(1, n - 2);
    let n_val = (((n - n_test) as f64 * val_f).round() as usize).clamp(1, n - n_test - 1);
    Some((n_test, n_val))
}

/// Row indices per label class: negatives, positives, then missing labels.
fn label_classes(label: &[f64]) -> [Vec<usize>; 3] {
    let mut classes: [Vec<usize>; 3] = Default::default();
    for (i, &y) in label.iter().enumerate() {
        let class = if y.is_nan() { 2 } else { usize::from(y >= 0.5) };
        classes[class].push(i);
    }
    classes
}

/// The share of positive labels among `rows`, as the percentage a split note shows (the metrics' positive
/// rate is the same share as a number, over booleans).
fn positive_percent(label: &[f64], rows: &[usize]) -> String {
    let pos = rows.iter().filter(|&&i| label[i] >= 0.5).count();
    format!("{:.2} %", 100.0 * pos as f64 / rows.len().max(1) as f64)
}

fn require_non_empty(plan: &SplitPlan, n_rows: usize, unit: &str) -> Result<(), SplitError> {
    for (set, rows) in [("train", &plan.train), ("validation", &plan.val), ("test", &plan.test)] {
        if rows.is_empty() {
            return Err(SplitError::EmptySet { set, reason: format!("only {n_rows} {unit} to split") });
        }
    }
    Ok(())
}

/// Distinct lives of `rows`, in order of first appearance.
fn lives_in_order(table: &Table, rows: &[usize]) -> Vec<u32> {
    let mut seen = HashSet::new();
    rows.iter().map(|&i| table.life[i]).filter(|l| seen.insert(*l)).collect()
}

fn count_lives(table: &Table, rows: &[usize]) -> usize {
    rows.iter().map(|&i| table.life[i]).collect::<HashSet<_>>().len()
}

/// Sorts the sets, counts lives, and says so when a life ended up in two sets (only possible with a given
/// split, a stratified split, or a chronological split of known lives).
fn finish(table: &Table, plan: &mut SplitPlan) {
    for set in [&mut plan.train, &mut plan.val, &mut plan.test, &mut plan.healthy] {
        set.sort_unstable();
    }
    plan.train_lives = count_lives(table, &plan.train);
    plan.val_lives = count_lives(table, &plan.val);
    plan.test_lives = count_lives(table, &plan.test);
    if table.lives_known && plan.method != "stratified" {
        let shared = shared_lives(table, plan);
        if shared > 0 {
            plan.notes.push(format!("{shared} lives have rows in more than one of train/validation/test"));
        }
    }
}

fn shared_lives(table: &Table, plan: &SplitPlan) -> usize {
    let sets: Vec<HashSet<u32>> =
        [&plan.train, &plan.val, &plan.test].iter().map(|rows| rows.iter().map(|&i| table.life[i]).collect()).collect();
    let all: HashSet<u32> = sets.iter().flatten().copied().collect();
    all.iter().filter(|l| sets.iter().filter(|s| s.contains(l)).count() > 1).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Layout, MachineMeta, SplitHint};

    fn table(lives: &[usize], lives_known: bool) -> Table {
        let n: usize = lives.iter().sum();
        let life: Vec<u32> = lives.iter().enumerate().flat_map(|(id, &len)| std::iter::repeat_n(id as u32, len)).collect();
        Table {
            machine_id: "m".into(),
            meta: MachineMeta::default(),
            layout: Layout::Described,
            sources: vec![],
            timestamps: (0..n).map(|i| i as f64 * 60.0).collect(),
            life,
            lives_known,
            given_split: None,
            sensors: vec![],
            label: None,
            rul: None,
            anomaly: None,
            interval_s: 60.0,
            split_hint: SplitHint::default(),
            rul_cap_hint: None,
            grid: None,
        }
    }

    /// The invariants every plan must hold.
    fn assert_sound(t: &Table, p: &SplitPlan) {
        let mut seen = vec![false; t.n_rows()];
        for set in [&p.train, &p.val, &p.test, &p.healthy] {
            assert!(set.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
            for &i in set.iter() {
                assert!(!seen[i], "row {i} in two sets");
                seen[i] = true;
            }
        }
        assert!(!p.train.is_empty() && !p.val.is_empty() && !p.test.is_empty());
    }

    fn lives_of(t: &Table, rows: &[usize]) -> HashSet<u32> {
        rows.iter().map(|&i| t.life[i]).collect()
    }

    #[test]
    fn by_life_never_shares_a_life_and_is_seeded() {
        let t = table(&[50; 20], true);
        let p = plan_split(&t, 7, 10, None).unwrap();
        assert_sound(&t, &p);
        assert_eq!(p.method, "by_life");
        assert_eq!((p.train_lives, p.val_lives, p.test_lives), (14, 3, 3));
        let (a, b, c) = (lives_of(&t, &p.train), lives_of(&t, &p.val), lives_of(&t, &p.test));
        assert!(a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c));
        assert_eq!(p.train.len() + p.val.len() + p.test.len(), t.n_rows());
        let again = plan_split(&t, 7, 10, None).unwrap();
        assert_eq!((again.train, again.test), (p.train.clone(), p.test.clone()));
        assert_ne!(plan_split(&t, 8, 10, None).unwrap().test, p.test);
        // Three lives: one each.
        let t = table(&[10, 10, 10], true);
        let p = plan_split(&t, 1, 0, None).unwrap();
        assert_eq!((p.train_lives, p.val_lives, p.test_lives), (1, 1, 1));
    }

    #[test]
    fn given_split_is_respected() {
        let mut t = table(&[10, 10, 10, 10], true);
        let given: Vec<Split> = (0..40)
            .map(|i| match i / 10 {
                0 => Split::Healthy,
                1 => Split::Train,
                2 => Split::Val,
                _ => Split::Test,
            })
            .collect();
        t.given_split = Some(given);
        let p = plan_split(&t, 1, 5, None).unwrap();
        assert_sound(&t, &p);
        assert_eq!(p.method, "given");
        assert_eq!(p.healthy, (0..10).collect::<Vec<_>>());
        assert_eq!(p.train, (10..20).collect::<Vec<_>>());
        assert_eq!(p.val, (20..30).collect::<Vec<_>>());
        assert_eq!(p.test, (30..40).collect::<Vec<_>>());
    }

    #[test]
    fn missing_val_is_carved_from_training_lives() {
        let mut t = table(&[20; 100], true);
        t.given_split = Some((0..2000).map(|i| if i < 1600 { Split::Train } else { Split::Test }).collect());
        let p = plan_split(&t, 3, 5, None).unwrap();
        assert_sound(&t, &p);
        assert_eq!(p.method, "given+val_by_life");
        assert_eq!((p.train_lives, p.val_lives, p.test_lives), (64, 16, 20));
        assert!(lives_of(&t, &p.train).is_disjoint(&lives_of(&t, &p.val)));
        assert_eq!(p.test, (1600..2000).collect::<Vec<_>>());
        assert!(p.notes.iter().any(|n| n.contains("16 of 80 training lives")), "{:?}", p.notes);
    }

    #[test]
    fn missing_val_and_test_without_lives_are_the_last_rows_with_gaps() {
        let mut t = table(&[1000], false);
        t.given_split = Some(vec![Split::Train; 1000]);
        let p = plan_split(&t, 3, 10, None).unwrap();
        assert_sound(&t, &p);
        assert_eq!(p.method, "given+test_chronological+val_chronological");
        assert_eq!(p.test, (800..1000).collect::<Vec<_>>());
        // 790 rows left: val is the last 158, 10 rows dropped before it.
        assert_eq!(p.val, (632..790).collect::<Vec<_>>());
        assert_eq!(p.train, (0..622).collect::<Vec<_>>());
        assert_eq!(p.gap_rows, 10);
    }

    #[test]
    fn chronological_split_drops_gap_rows() {
        let t = table(&[1000], false);
        let p = plan_split(&t, 1, 24, None).unwrap();
        assert_sound(&t, &p);
        assert_eq!(p.method, "chronological");
        let last_train = *p.train.last().unwrap();
        let last_val = *p.val.last().unwrap();
        assert_eq!(p.val[0] - last_train - 1, 24);
        assert_eq!(p.test[0] - last_val - 1, 24);
        assert_eq!(*p.test.last().unwrap(), 999);
        assert_eq!(p.train.len() + p.val.len() + p.test.len(), 1000 - 48);
        assert!(p.train.len() > 650 && p.val.len() > 130 && p.test.len() > 130);
        // Known lives but only two: chronological, and the report says a life is shared.
        let t = table(&[500, 500], true);
        let p = plan_split(&t, 1, 0, None).unwrap();
        assert_eq!(p.method, "chronological");
        assert!(p.notes.iter().any(|n| n.contains("more than one")), "{:?}", p.notes);
    }

    #[test]
    fn stratified_keeps_the_positive_rate_and_is_deterministic() {
        let mut t = table(&[10_000], false);
        let mut rng = Rng::new(5);
        t.label = Some((0..10_000).map(|_| if rng.uniform() < 0.034 { 1.0 } else { 0.0 }).collect());
        t.split_hint = SplitHint { method: SplitMethod::Stratified, ..SplitHint::default() };
        let p = plan_split(&t, 42, 100, None).unwrap();
        assert_sound(&t, &p);
        assert_eq!(p.method, "stratified");
        let label = t.label.as_deref().unwrap();
        let rate = |rows: &[usize]| rows.iter().filter(|&&i| label[i] >= 0.5).count() as f64 / rows.len() as f64;
        let overall = rate(&(0..10_000).collect::<Vec<_>>());
        for set in [&p.train, &p.val, &p.test] {
            assert!((rate(set) - overall).abs() < 0.01);
        }
        assert_eq!(p.test.len(), 2000);
        assert_eq!(p.val.len(), 1600);
        let again = plan_split(&t, 42, 100, None).unwrap();
        assert_eq!((&again.train, &again.val, &again.test), (&p.train, &p.val, &p.test));
        assert_ne!(plan_split(&t, 43, 100, None).unwrap().test, p.test);
        // The hint's seed wins over the caller's.
        t.split_hint.seed = Some(9);
        let a = plan_split(&t, 1, 0, None).unwrap();
        let b = plan_split(&t, 2, 0, None).unwrap();
        assert_eq!((a.seed, &a.test), (9, &b.test));
        // An explicit label wins over the table's, and a missing one is an error.
        let other: Vec<f64> = (0..10_000).map(|i| f64::from(i % 10 == 0)).collect();
        let p = plan_split(&t, 1, 0, Some(&other)).unwrap();
        assert!((p.test.iter().filter(|&&i| other[i] >= 0.5).count() as f64 / 2000.0 - 0.1).abs() < 1e-9);
        t.label = None;
        assert_eq!(plan_split(&t, 1, 0, None).unwrap_err(), SplitError::NoLabel);
    }

    #[test]
    fn few_rows_error_clearly() {
        let t = table(&[2], false);
        let err = plan_split(&t, 1, 0, None).unwrap_err();
        assert!(matches!(err, SplitError::TooFewRows { n_rows: 2, .. }));
        assert!(err.to_string().contains("needs at least 3"), "{err}");
        let t = table(&[20], false);
        assert!(matches!(plan_split(&t, 1, 10, None), Err(SplitError::TooFewRows { .. })));
        assert!(plan_split(&t, 1, 8, None).is_ok());
        assert_eq!(plan_split(&table(&[], false), 1, 0, None).unwrap_err(), SplitError::EmptyTable);
        let mut t = table(&[10], false);
        t.given_split = Some(vec![Split::Test; 10]);
        assert!(matches!(plan_split(&t, 1, 0, None), Err(SplitError::EmptySet { set: "train", .. })));
        t.given_split = Some(vec![Split::Train; 9]);
        assert!(matches!(plan_split(&t, 1, 0, None), Err(SplitError::LengthMismatch { .. })));
        t.given_split = Some((0..10).map(|i| if i < 1 { Split::Train } else { Split::Test }).collect());
        assert!(matches!(plan_split(&t, 1, 0, None), Err(SplitError::TooFewRows { .. })));
        let mut t = table(&[100], false);
        t.split_hint.test_fraction = Some(1.5);
        assert!(matches!(plan_split(&t, 1, 0, None), Err(SplitError::BadFraction { .. })));
    }

    #[test]
    fn plan_serialises() {
        let t = table(&[30; 5], true);
        let p = plan_split(&t, 1, 0, None).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        let back: SplitPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back.train, p.train);
    }
}
