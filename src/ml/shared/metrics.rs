//! Evaluation metrics for the predictive-maintenance trainers: failure
//! classification, remaining-useful-life (RUL) regression and anomaly
//! detection, plus the baselines every model has to beat.
//!
//! Conventions shared by every function here, chosen so that a number can
//! never look better than the model deserves and so nothing panics on odd
//! data coming off a machine:
//!
//! * Labels: `true` = positive (failure / anomaly). Scores: higher = more
//!   positive. Nothing here ever "flips" a score whose AUC is below 0.5; a
//!   reversed model is reported as the bad model it is.
//! * A NaN score means the model produced no usable output for that row.
//!   Deployed, such a row never raises an alarm (`NaN >= t` is false), so
//!   every metric treats it exactly that way: it is predicted negative at any
//!   threshold, ranks below every real score (including `-inf`) for ROC AUC,
//!   and is never reached as a cut point for average precision. A positive
//!   with a NaN score is therefore a miss, never silently dropped.
//! * Ratios that would be 0/0 (e.g. precision when nothing is flagged) are
//!   reported as 0.0, the pessimistic value, rather than NaN: NaN does not
//!   survive a JSON round trip and would poison model comparison.
//! * Metrics that are genuinely undefined on the data (AUC with one class,
//!   R² with constant targets, anything on an empty set) are `None` instead.
//! * Functions returning `Option` return `None` when paired slices differ in
//!   length: that is a caller bug, and a silent truncation would hide it.

use serde::{Deserialize, Serialize};

/// Binary confusion matrix.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    /// `fn` is a keyword; the serialized name stays the conventional one.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Confusion {
    /// Counts with the rule `score >= threshold` → predicted positive.
    ///
    /// A NaN score is predicted negative (see module docs). Rows beyond the
    /// shorter of the two slices are ignored because this constructor cannot
    /// report an error; `n()` tells the caller how many rows were counted.
    pub fn at_threshold(y: &[bool], scores: &[f64], threshold: f64) -> Self {
        let mut c = Confusion::default();
        for (&label, &s) in y.iter().zip(scores) {
            c.add(label, s >= threshold);
        }
        c
    }

    /// Counts from hard predictions; same truncation rule as `at_threshold`.
    pub fn from_predictions(y: &[bool], predicted: &[bool]) -> Self {
        let mut c = Confusion::default();
        for (&label, &p) in y.iter().zip(predicted) {
            c.add(label, p);
        }
        c
    }

    fn add(&mut self, label: bool, predicted: bool) {
        match (label, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }

    /// Number of rows counted.
    pub fn n(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// tp / (tp + fp); 0.0 when nothing was flagged.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn); 0.0 when there are no positives.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// 2·tp / (2·tp + fp + fn); 0.0 when there are neither positives nor
    /// flags. Computed from the counts rather than from precision and recall
    /// so that `best_f1_threshold` and `at_threshold(..).f1()` agree to the bit.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// (tp + tn) / n; 0.0 on an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.n())
    }

    /// tn / (tn + fp); 0.0 when there are no negatives.
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
}

/// num / den with the module's 0/0 → 0.0 convention.
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

/// One group of rows sharing the same score.
struct ScoreGroup {
    score: f64,
    pos: u64,
    neg: u64,
}

/// Rows grouped by equal score, highest score first, plus the NaN rows kept
/// aside. Grouping is what makes every ranking metric independent of the
/// input order of tied rows.
struct Ranked {
    groups: Vec<ScoreGroup>,
    nan_pos: u64,
    nan_neg: u64,
    pos: u64,
    neg: u64,
}

fn rank(y: &[bool], scores: &[f64]) -> Option<Ranked> {
    if y.len() != scores.len() {
        return None;
    }
    let mut nan_pos = 0;
    let mut nan_neg = 0;
    let mut rows: Vec<(f64, bool)> = Vec::with_capacity(y.len());
    for (&label, &s) in y.iter().zip(scores) {
        if s.is_nan() {
            if label { nan_pos += 1 } else { nan_neg += 1 }
        } else {
            rows.push((s, label));
        }
    }
    // total_cmp never fails; it separates -0.0 from 0.0 but keeps them
    // adjacent, and the `==` grouping below merges them as `>=` would.
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));

    let mut groups: Vec<ScoreGroup> = Vec::new();
    for (s, label) in rows {
        let start_new = match groups.last() {
            Some(g) => g.score != s,
            None => true,
        };
        if start_new {
            groups.push(ScoreGroup { score: s, pos: 0, neg: 0 });
        }
        if let Some(g) = groups.last_mut() {
            if label { g.pos += 1 } else { g.neg += 1 }
        }
    }
    let pos = nan_pos + groups.iter().map(|g| g.pos).sum::<u64>();
    let neg = nan_neg + groups.iter().map(|g| g.neg).sum::<u64>();
    Some(Ranked { groups, nan_pos, nan_neg, pos, neg })
}

/// Area under the ROC curve: the probability that a random positive scores
/// higher than a random negative, ties counting one half (Mann–Whitney U).
///
/// Exact: the count is accumulated in integer half-units and divided once.
/// `None` when either class is absent (or lengths differ). NaN scores rank
/// below everything. Never inverted: a perfectly reversed model scores 0.0.
pub fn roc_auc(y: &[bool], scores: &[f64]) -> Option<f64> {
    let r = rank(y, scores)?;
    if r.pos == 0 || r.neg == 0 {
        return None;
    }
    // Walk from the lowest score up. Each positive beats every negative
    // strictly below it (2 half-units) and ties with those in its own group
    // (1 half-unit).
    let mut twice_u: u128 = u128::from(r.nan_pos) * u128::from(r.nan_neg);
    let mut neg_below: u128 = u128::from(r.nan_neg);
    for g in r.groups.iter().rev() {
        twice_u += u128::from(g.pos) * (2 * neg_below + u128::from(g.neg));
        neg_below += u128::from(g.neg);
    }
    let pairs = 2 * u128::from(r.pos) * u128::from(r.neg);
    Some(twice_u as f64 / pairs as f64)
}

/// Average precision, scikit-learn's definition:
/// AP = Σ (Rₖ − Rₖ₋₁) · Pₖ over the distinct score thresholds, highest first,
/// with no interpolation (so it is not the optimistic trapezoidal PR AUC).
///
/// Rows with equal scores form one cut point, so the result does not depend
/// on the order of tied rows. NaN-scored rows are never flagged, so NaN
/// positives cap the reachable recall below 1.
///
/// `None` when either class is absent (or lengths differ): without positives
/// it is undefined, and without negatives every scorer gets 1.0, which says
/// nothing about the model. A constant scorer gets the prevalence.
pub fn pr_auc(y: &[bool], scores: &[f64]) -> Option<f64> {
    let r = rank(y, scores)?;
    if r.pos == 0 || r.neg == 0 {
        return None;
    }
    let mut tp: u64 = 0;
    let mut fp: u64 = 0;
    let mut ap = 0.0;
    for g in &r.groups {
        tp += g.pos;
        fp += g.neg;
        if g.pos > 0 {
            let precision = tp as f64 / (tp + fp) as f64;
            ap += (g.pos as f64 / r.pos as f64) * precision;
        }
    }
    Some(ap)
}

/// Threshold maximising F1, with that F1: `(threshold, f1)`.
///
/// **Call on validation data only.** Tuning the threshold on the test set
/// and then reporting test F1 at it is optimistic by construction; the
/// tuned threshold must be frozen and passed to `classification_metrics` on
/// the test split.
///
/// Scans every distinct score as a cut point after one sort (O(n log n)).
/// The returned threshold is the midpoint between the chosen score and the
/// next lower distinct score, so unseen scores falling in the gap are treated
/// by the margin rather than glued to one edge; when the midpoint is not
/// representable strictly inside the gap (adjacent floats, `-inf`), or the
/// chosen score is the lowest, the score itself is used. Either way
/// `Confusion::at_threshold(y, scores, t).f1()` equals the returned F1
/// exactly. Among equal F1 values the highest threshold wins: fewer false
/// alarms for the same F1. F1 values are compared exactly (integer
/// cross-multiplication), so float rounding cannot decide a tie.
///
/// `None` when there are no positives (F1 is 0 at every threshold, there is
/// nothing to tune), no non-NaN scores, or lengths differ.
pub fn best_f1_threshold(y: &[bool], scores: &[f64]) -> Option<(f64, f64)> {
    let r = rank(y, scores)?;
    if r.pos == 0 {
        return None;
    }
    // Best so far: (group index, 2·tp, 2·tp + fp + fn).
    let mut best: Option<(usize, u128, u128)> = None;
    let mut tp: u64 = 0;
    let mut fp: u64 = 0;
    for (i, g) in r.groups.iter().enumerate() {
        tp += g.pos;
        fp += g.neg;
        let num = 2 * u128::from(tp);
        let den = num + u128::from(fp) + u128::from(r.pos - tp);
        let better = match best {
            // num/den > bnum/bden ⇔ num·bden > bnum·den (all denominators > 0
            // because pos > 0). Strict: ties keep the earlier, higher cut.
            Some((_, bnum, bden)) => num * bden > bnum * den,
            None => true,
        };
        if better {
            best = Some((i, num, den));
        }
    }
    let (i, _, _) = best?;
    let hi = r.groups.get(i)?.score;
    let threshold = match r.groups.get(i + 1) {
        Some(next) => {
            let lo = next.score;
            // Halving each term first avoids overflow to inf for huge scores.
            let mid = hi / 2.0 + lo / 2.0;
            if mid > lo && mid <= hi { mid } else { hi }
        }
        None => hi,
    };
    let f1 = Confusion::at_threshold(y, scores, threshold).f1();
    Some((threshold, f1))
}

/// Everything reported for a classifier at a fixed threshold.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ClassificationMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub accuracy: f64,
    /// `None` when the evaluated rows hold only one class.
    pub roc_auc: Option<f64>,
    /// Average precision; `None` when the evaluated rows hold only one class.
    pub pr_auc: Option<f64>,
    pub confusion: Confusion,
    pub threshold: f64,
    /// Number of positive labels among the evaluated rows.
    pub positives: u64,
    /// Number of rows evaluated.
    pub n: u64,
}

/// Metrics at `threshold` (`score >= threshold` → positive).
///
/// If `y` and `scores` differ in length only the common prefix is evaluated,
/// for every field alike, so the numbers stay mutually consistent; `n` then
/// differs from `y.len()`, which callers should check.
pub fn classification_metrics(y: &[bool], scores: &[f64], threshold: f64) -> ClassificationMetrics {
    let len = y.len().min(scores.len());
    let (y, scores) = (&y[..len], &scores[..len]);
    let confusion = Confusion::at_threshold(y, scores, threshold);
    ClassificationMetrics {
        precision: confusion.precision(),
        recall: confusion.recall(),
        f1: confusion.f1(),
        accuracy: confusion.accuracy(),
        roc_auc: roc_auc(y, scores),
        pr_auc: pr_auc(y, scores),
        confusion,
        threshold,
        positives: y.iter().filter(|&&b| b).count() as u64,
        n: len as u64,
    }
}

/// The prior (majority-class) predictor fitted on `y_train`, scored on
/// `y_test`: every row gets the train positive rate as its score, so the
/// ranking metrics are those of a constant scorer (ROC AUC 0.5, average
/// precision = test prevalence), and the hard label is the train majority via
/// the usual 0.5 threshold (a 50/50 train split therefore predicts positive).
/// An empty `y_train` carries no information and is taken as rate 0.0.
///
/// With rare failures this predicts "never fails", so its F1 is 0 while its
/// accuracy looks excellent — the reason accuracy alone is never enough. Pair
/// it with `always_positive_baseline` for a non-trivial F1 floor.
pub fn prior_baseline(y_train: &[bool], y_test: &[bool]) -> ClassificationMetrics {
    let rate = positive_rate(y_train);
    let scores = vec![rate; y_test.len()];
    classification_metrics(y_test, &scores, 0.5)
}

/// The "flag everything" detector: recall 1, precision = prevalence.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct AlwaysPositiveBaseline {
    /// 2π / (1 + π) for test prevalence π; 0.0 when there are no positives.
    pub always_positive_f1: f64,
    /// Test prevalence π (0.0 on an empty set).
    pub prevalence: f64,
}

/// F1 of predicting positive for every row of `y_test`: the F1 floor a model
/// must beat when the majority baseline's F1 is 0.
pub fn always_positive_baseline(y_test: &[bool]) -> AlwaysPositiveBaseline {
    let c = Confusion::from_predictions(y_test, &vec![true; y_test.len()]);
    AlwaysPositiveBaseline { always_positive_f1: c.f1(), prevalence: positive_rate(y_test) }
}

fn positive_rate(y: &[bool]) -> f64 {
    ratio(y.iter().filter(|&&b| b).count() as u64, y.len() as u64)
}

/// Expected `(precision, recall, f1)` of a detector that flags a random
/// fraction `rate` of rows, independent of the labels: precision equals the
/// prevalence, recall equals `rate`, and F1 is their harmonic mean. (The
/// precision is the ratio of expectations, the usual reference value.)
///
/// `rate` is clamped to [0, 1]; NaN is taken as 0. When nothing is flagged
/// (`rate` 0) precision follows the 0/0 → 0 convention; with no positives
/// (or empty `y`) all three are 0.
pub fn random_detector_baseline(y: &[bool], rate: f64) -> (f64, f64, f64) {
    let rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
    let prevalence = positive_rate(y);
    let precision = if rate > 0.0 { prevalence } else { 0.0 };
    let recall = if prevalence > 0.0 { rate } else { 0.0 };
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    (precision, recall, f1)
}

/// RUL regression quality.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct RegressionMetrics {
    pub rmse: f64,
    pub mae: f64,
    /// 1 − SS_res/SS_tot; `None` when the actuals are constant (SS_tot = 0)
    /// or fewer than two rows remain, where R² is undefined.
    pub r2: Option<f64>,
    /// mean(pred − actual): positive = predicting more life than remains
    /// (late, the dangerous direction).
    pub bias: f64,
    /// PHM08 scoring function, summed (not averaged, as in the challenge):
    /// d = pred − actual; d < 0 → e^(−d/13) − 1, d ≥ 0 → e^(d/10) − 1.
    /// Late predictions are penalised harder because they mean a missed
    /// failure. Lower is better; 0 is perfect. Sums grow with n, so compare
    /// only on the same rows.
    pub nasa_score: f64,
    /// MAE over rows with actual ≤ `critical_limit`, i.e. close to failure,
    /// where RUL accuracy actually matters. `None` when no row qualifies.
    pub mae_critical: Option<f64>,
    /// Rows used.
    pub n: u64,
    /// Rows skipped because the actual or the prediction was NaN.
    pub skipped: u64,
}

/// Regression metrics over the pairs `(actual[i], pred[i])`.
///
/// Pairs with a NaN on either side are skipped and counted in `skipped`;
/// infinite values are kept, so a diverged model shows up as `inf` rather
/// than disappearing. `None` when the lengths differ or no pair survives,
/// because RMSE/MAE of nothing would otherwise read as a perfect 0.
pub fn regression_metrics(actual: &[f64], pred: &[f64], critical_limit: f64) -> Option<RegressionMetrics> {
    if actual.len() != pred.len() {
        return None;
    }
    let pairs: Vec<(f64, f64)> = actual.iter().zip(pred).filter(|(a, p)| !a.is_nan() && !p.is_nan()).map(|(&a, &p)| (a, p)).collect();
    let skipped = (actual.len() - pairs.len()) as u64;
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;

    let mut sq = 0.0;
    let mut abs = 0.0;
    let mut signed = 0.0;
    let mut nasa = 0.0;
    let mut crit_abs = 0.0;
    let mut crit_n: u64 = 0;
    let mut actual_sum = 0.0;
    for &(a, p) in &pairs {
        let d = p - a;
        sq += d * d;
        abs += d.abs();
        signed += d;
        nasa += if d < 0.0 { (-d / 13.0).exp() - 1.0 } else { (d / 10.0).exp() - 1.0 };
        if a <= critical_limit {
            crit_abs += d.abs();
            crit_n += 1;
        }
        actual_sum += a;
    }

    // Two-pass SS_tot: the one-pass formula cancels catastrophically when
    // RUL values are large and close together.
    let mean_actual = actual_sum / n;
    let ss_tot: f64 = pairs.iter().map(|&(a, _)| (a - mean_actual) * (a - mean_actual)).sum();
    let r2 = if pairs.len() >= 2 && ss_tot > 0.0 && ss_tot.is_finite() { Some(1.0 - sq / ss_tot) } else { None };

    Some(RegressionMetrics {
        rmse: (sq / n).sqrt(),
        mae: abs / n,
        r2,
        bias: signed / n,
        nasa_score: nasa,
        mae_critical: if crit_n > 0 { Some(crit_abs / crit_n as f64) } else { None },
        n: pairs.len() as u64,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    /// The ranking convention spelled out independently of `rank`: NaN below
    /// everything, otherwise numeric order.
    fn score_order(a: f64, b: f64) -> Ordering {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn labels(v: &[u8]) -> Vec<bool> {
        v.iter().map(|&x| x == 1).collect()
    }

    /// Small deterministic generator so tests need no `rand`.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    /// O(n²) pairwise AUC, the definition itself.
    fn brute_auc(y: &[bool], s: &[f64]) -> f64 {
        let mut num = 0.0;
        let mut den = 0.0;
        for (i, &yi) in y.iter().enumerate() {
            if !yi {
                continue;
            }
            for (j, &yj) in y.iter().enumerate() {
                if yj {
                    continue;
                }
                den += 1.0;
                num += match score_order(s[i], s[j]) {
                    Ordering::Greater => 1.0,
                    Ordering::Equal => 0.5,
                    Ordering::Less => 0.0,
                };
            }
        }
        num / den
    }

    // ---------- Confusion ----------

    #[test]
    fn confusion_counts_and_ratios() {
        let y = labels(&[1, 1, 0, 0, 1, 0]);
        let s = [0.9, 0.5, 0.5, 0.1, 0.2, 0.7];
        let c = Confusion::at_threshold(&y, &s, 0.5);
        // >= threshold is positive: rows 0,1,2,5 flagged.
        assert_eq!(c, Confusion { tp: 2, fp: 2, tn: 1, fn_: 1 });
        assert!(close(c.precision(), 0.5));
        assert!(close(c.recall(), 2.0 / 3.0));
        assert!(close(c.f1(), 4.0 / 7.0));
        assert!(close(c.accuracy(), 0.5));
        assert!(close(c.specificity(), 1.0 / 3.0));
        assert_eq!(c.n(), 6);
    }

    #[test]
    fn confusion_zero_over_zero_is_zero() {
        let c = Confusion::default();
        assert_eq!(c.precision(), 0.0);
        assert_eq!(c.recall(), 0.0);
        assert_eq!(c.f1(), 0.0);
        assert_eq!(c.accuracy(), 0.0);
        assert_eq!(c.specificity(), 0.0);
        // Nothing flagged: precision 0, not NaN.
        let c = Confusion::at_threshold(&[true, false], &[0.1, 0.2], 0.9);
        assert_eq!(c.precision(), 0.0);
        assert_eq!(c.f1(), 0.0);
    }

    #[test]
    fn confusion_nan_score_is_negative_and_mismatch_truncates() {
        let c = Confusion::at_threshold(&[true, false], &[f64::NAN, f64::NAN], f64::NEG_INFINITY);
        assert_eq!(c, Confusion { tp: 0, fp: 0, tn: 1, fn_: 1 });
        let c = Confusion::at_threshold(&[true, true, true], &[1.0], 0.5);
        assert_eq!(c.n(), 1);
    }

    #[test]
    fn confusion_serializes_fn_key() {
        let c = Confusion { tp: 1, fp: 2, tn: 3, fn_: 4 };
        let json = serde_json::to_string(&c).unwrap_or_default();
        assert_eq!(json, r#"{"tp":1,"fp":2,"tn":3,"fn":4}"#);
        let back: Confusion = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, c);
    }

    // ---------- ROC AUC ----------

    #[test]
    fn auc_known_values() {
        let y = labels(&[0, 0, 1, 1]);
        assert_eq!(roc_auc(&y, &[0.1, 0.2, 0.8, 0.9]), Some(1.0));
        // Reversed model is reported as 0, never flipped to 1.
        assert_eq!(roc_auc(&y, &[0.9, 0.8, 0.2, 0.1]), Some(0.0));
        assert_eq!(roc_auc(&y, &[0.3, 0.3, 0.3, 0.3]), Some(0.5));
        // sklearn docs example.
        assert_eq!(roc_auc(&y, &[0.1, 0.4, 0.35, 0.8]), Some(0.75));
    }

    #[test]
    fn auc_partial_ties_by_hand() {
        // pos {0.5, 0.5, 0.9}, neg {0.5, 0.1}.
        // 0.9 beats both (2); each 0.5 pos: ties 0.5 (0.5) + beats 0.1 (1) = 1.5.
        // U = 2 + 1.5 + 1.5 = 5 over 6 pairs.
        let y = labels(&[1, 1, 1, 0, 0]);
        let s = [0.5, 0.5, 0.9, 0.5, 0.1];
        let auc = roc_auc(&y, &s).unwrap_or(f64::NAN);
        assert!(close(auc, 5.0 / 6.0));
        // Input order of tied rows must not matter.
        let y2 = labels(&[0, 1, 0, 1, 1]);
        let s2 = [0.5, 0.5, 0.1, 0.9, 0.5];
        assert_eq!(roc_auc(&y2, &s2), Some(auc));
    }

    #[test]
    fn auc_matches_pairwise_definition() {
        let mut g = Lcg(7);
        for _ in 0..50 {
            let n = 1 + (g.next() % 40) as usize;
            let y: Vec<bool> = (0..n).map(|_| g.next().is_multiple_of(3)).collect();
            // Few distinct values → many ties; occasional NaN and infinities.
            let s: Vec<f64> = (0..n)
                .map(|_| match g.next() % 12 {
                    0 => f64::NAN,
                    1 => f64::NEG_INFINITY,
                    2 => f64::INFINITY,
                    k => k as f64 / 4.0,
                })
                .collect();
            match roc_auc(&y, &s) {
                Some(a) => assert!(close(a, brute_auc(&y, &s)), "{y:?} {s:?}"),
                None => assert!(y.iter().all(|&b| b) || y.iter().all(|&b| !b)),
            }
        }
    }

    #[test]
    fn auc_degenerate() {
        assert_eq!(roc_auc(&[], &[]), None);
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&[false, false], &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&[true, false], &[0.1]), None);
        // NaN positive ranks below the negative: the model missed it.
        assert_eq!(roc_auc(&[true, false], &[f64::NAN, 0.0]), Some(0.0));
        assert_eq!(roc_auc(&[true, false], &[f64::NAN, f64::NAN]), Some(0.5));
        assert_eq!(roc_auc(&[true, false], &[f64::NEG_INFINITY, f64::NAN]), Some(1.0));
    }

    // ---------- Average precision ----------

    #[test]
    fn ap_known_values() {
        let y = labels(&[0, 0, 1, 1]);
        let ap = pr_auc(&y, &[0.1, 0.4, 0.35, 0.8]).unwrap_or(f64::NAN);
        assert!(close(ap, 5.0 / 6.0), "{ap}"); // sklearn: 0.8333…
        assert_eq!(pr_auc(&y, &[0.1, 0.2, 0.8, 0.9]), Some(1.0));
        // Reversed: recall 0.5 at precision 1/3, recall 1 at precision 1/2.
        let ap = pr_auc(&y, &[0.9, 0.8, 0.2, 0.1]).unwrap_or(f64::NAN);
        assert!(close(ap, 0.5 * (1.0 / 3.0) + 0.5 * 0.5));
    }

    #[test]
    fn ap_constant_scores_give_prevalence() {
        let y = labels(&[1, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
        let ap = pr_auc(&y, &[0.3; 10]).unwrap_or(f64::NAN);
        assert!(close(ap, 0.2));
    }

    #[test]
    fn ap_ties_are_grouped() {
        // One cut at 0.5: tp 2, fp 1 → precision 2/3 for the full recall
        // step. Row-by-row processing would give 1.0 or 0.5·1 + 0.5·2/3
        // depending on input order.
        let a = pr_auc(&labels(&[1, 1, 0, 0]), &[0.5, 0.5, 0.5, 0.1]);
        let b = pr_auc(&labels(&[0, 1, 1, 0]), &[0.5, 0.5, 0.5, 0.1]);
        assert!(close(a.unwrap_or(f64::NAN), 2.0 / 3.0));
        assert_eq!(a, b);
    }

    #[test]
    fn ap_degenerate_and_nan() {
        assert_eq!(pr_auc(&[], &[]), None);
        assert_eq!(pr_auc(&[false, false], &[0.1, 0.2]), None);
        assert_eq!(pr_auc(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(pr_auc(&[true], &[0.1, 0.2]), None);
        // NaN positive is never reached: recall tops out at 0.5.
        let ap = pr_auc(&labels(&[1, 1, 0]), &[0.9, f64::NAN, 0.1]).unwrap_or(f64::NAN);
        assert!(close(ap, 0.5));
    }

    // ---------- Threshold tuning ----------

    fn brute_best_f1(y: &[bool], s: &[f64]) -> f64 {
        let mut cands: Vec<f64> = s.iter().copied().filter(|x| !x.is_nan()).collect();
        cands.push(f64::INFINITY);
        cands.iter().map(|&t| Confusion::at_threshold(y, s, t).f1()).fold(0.0, f64::max)
    }

    #[test]
    fn best_f1_reproduces_via_at_threshold() {
        let y = labels(&[0, 0, 1, 1, 0, 1, 0, 1]);
        let s = [0.1, 0.4, 0.35, 0.8, 0.7, 0.7, 0.2, 0.9];
        let (t, f1) = best_f1_threshold(&y, &s).unwrap_or((f64::NAN, f64::NAN));
        assert_eq!(Confusion::at_threshold(&y, &s, t).f1(), f1);
        assert!(close(f1, brute_best_f1(&y, &s)));
    }

    #[test]
    fn best_f1_matches_exhaustive_search() {
        let mut g = Lcg(42);
        for _ in 0..200 {
            let n = 1 + (g.next() % 30) as usize;
            let y: Vec<bool> = (0..n).map(|_| g.next().is_multiple_of(4)).collect();
            let s: Vec<f64> = (0..n).map(|_| if g.next().is_multiple_of(15) { f64::NAN } else { (g.next() % 10) as f64 / 10.0 }).collect();
            match best_f1_threshold(&y, &s) {
                Some((t, f1)) => {
                    assert_eq!(Confusion::at_threshold(&y, &s, t).f1(), f1, "{y:?} {s:?}");
                    assert!(close(f1, brute_best_f1(&y, &s)), "{y:?} {s:?}");
                }
                None => assert!(!y.iter().any(|&b| b) || s.iter().all(|x| x.is_nan())),
            }
        }
    }

    #[test]
    fn best_f1_midpoint_and_tie_break_high() {
        // Perfect separation: cut between 0.4 and 0.6.
        let y = labels(&[0, 0, 1, 1]);
        assert_eq!(best_f1_threshold(&y, &[0.2, 0.4, 0.6, 0.8]), Some((0.5, 1.0)));
        // Cut at 0.9 (tp1 fp0 fn1) and at 0.1 (tp2 fp2 fn0) both give F1 2/3:
        // the higher threshold wins.
        let y = labels(&[1, 0, 0, 1]);
        let (t, f1) = best_f1_threshold(&y, &[0.9, 0.5, 0.5, 0.1]).unwrap_or((f64::NAN, 0.0));
        assert!(close(f1, 2.0 / 3.0));
        assert_eq!(t, 0.7);
        // Lowest score chosen → the score itself, so everything is flagged.
        let y = labels(&[1, 1]);
        assert_eq!(best_f1_threshold(&y, &[0.3, 0.6]), Some((0.3, 1.0)));
    }

    #[test]
    fn best_f1_threshold_stays_inside_gap_for_adjacent_floats() {
        let lo = 1.0_f64;
        let hi = f64::from_bits(lo.to_bits() + 1);
        let y = labels(&[0, 1]);
        let (t, f1) = best_f1_threshold(&y, &[lo, hi]).unwrap_or((f64::NAN, 0.0));
        assert_eq!(t, hi);
        assert_eq!(f1, 1.0);
        let (t, _) = best_f1_threshold(&y, &[f64::NEG_INFINITY, 0.0]).unwrap_or((f64::NAN, 0.0));
        assert_eq!(t, 0.0);
        let (t, _) = best_f1_threshold(&y, &[f64::MAX, f64::INFINITY]).unwrap_or((f64::NAN, 0.0));
        assert_eq!(Confusion::at_threshold(&y, &[f64::MAX, f64::INFINITY], t).f1(), 1.0);
    }

    #[test]
    fn best_f1_degenerate() {
        assert_eq!(best_f1_threshold(&[], &[]), None);
        assert_eq!(best_f1_threshold(&[false, false], &[0.1, 0.2]), None);
        assert_eq!(best_f1_threshold(&[true, false], &[f64::NAN, f64::NAN]), None);
        assert_eq!(best_f1_threshold(&[true, false], &[0.1]), None);
        // All-equal scores: the only cut flags everything.
        let y = labels(&[1, 0, 0, 0]);
        let (t, f1) = best_f1_threshold(&y, &[0.5; 4]).unwrap_or((f64::NAN, 0.0));
        assert_eq!(t, 0.5);
        assert!(close(f1, 2.0 / 5.0));
    }

    // ---------- Classification summary and baselines ----------

    #[test]
    fn classification_metrics_fields() {
        let y = labels(&[0, 0, 1, 1]);
        let m = classification_metrics(&y, &[0.1, 0.4, 0.35, 0.8], 0.5);
        assert_eq!(m.confusion, Confusion { tp: 1, fp: 0, tn: 2, fn_: 1 });
        assert_eq!(m.precision, 1.0);
        assert_eq!(m.recall, 0.5);
        assert!(close(m.f1, 2.0 / 3.0));
        assert_eq!(m.accuracy, 0.75);
        assert_eq!(m.roc_auc, Some(0.75));
        assert!(close(m.pr_auc.unwrap_or(f64::NAN), 5.0 / 6.0));
        assert_eq!((m.threshold, m.positives, m.n), (0.5, 2, 4));
        let json = serde_json::to_string(&m).unwrap_or_default();
        let back: Option<ClassificationMetrics> = serde_json::from_str(&json).ok();
        assert_eq!(back, Some(m));
    }

    #[test]
    fn classification_metrics_degenerate() {
        let m = classification_metrics(&[], &[], 0.5);
        assert_eq!((m.n, m.positives, m.f1, m.accuracy), (0, 0, 0.0, 0.0));
        assert_eq!((m.roc_auc, m.pr_auc), (None, None));
        // Mismatch: common prefix for every field.
        let m = classification_metrics(&[true, false, true], &[0.9, 0.1], 0.5);
        assert_eq!((m.n, m.positives), (2, 1));
        assert_eq!(m.roc_auc, Some(1.0));
    }

    #[test]
    fn prior_baseline_rare_failures() {
        let y_train = labels(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let y_test = labels(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        let m = prior_baseline(&y_train, &y_test);
        assert_eq!(m.roc_auc, Some(0.5));
        assert!(close(m.pr_auc.unwrap_or(f64::NAN), 0.2));
        // Majority = negative: accuracy looks good, F1 is 0.
        assert_eq!(m.confusion, Confusion { tp: 0, fp: 0, tn: 8, fn_: 2 });
        assert_eq!(m.f1, 0.0);
        assert!(close(m.accuracy, 0.8));
        let ap = always_positive_baseline(&y_test);
        assert!(close(ap.prevalence, 0.2));
        assert!(close(ap.always_positive_f1, 2.0 * 0.2 / 1.2));
    }

    #[test]
    fn prior_baseline_majority_positive_and_degenerate() {
        let m = prior_baseline(&labels(&[1, 1, 0]), &labels(&[1, 0]));
        assert_eq!(m.confusion, Confusion { tp: 1, fp: 1, tn: 0, fn_: 0 });
        let m = prior_baseline(&[], &labels(&[1, 0]));
        assert_eq!(m.confusion, Confusion { tp: 0, fp: 0, tn: 1, fn_: 1 });
        let m = prior_baseline(&labels(&[1]), &[]);
        assert_eq!(m.n, 0);
        let ap = always_positive_baseline(&[false, false]);
        assert_eq!((ap.always_positive_f1, ap.prevalence), (0.0, 0.0));
        let ap = always_positive_baseline(&[]);
        assert_eq!((ap.always_positive_f1, ap.prevalence), (0.0, 0.0));
    }

    #[test]
    fn random_detector_values() {
        let y = labels(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let (p, r, f) = random_detector_baseline(&y, 0.3);
        assert!(close(p, 0.1) && close(r, 0.3) && close(f, 2.0 * 0.1 * 0.3 / 0.4));
        assert_eq!(random_detector_baseline(&y, 0.0), (0.0, 0.0, 0.0));
        assert_eq!(random_detector_baseline(&y, f64::NAN), (0.0, 0.0, 0.0));
        let (_, r, _) = random_detector_baseline(&y, 7.0);
        assert_eq!(r, 1.0);
        assert_eq!(random_detector_baseline(&[], 0.5), (0.0, 0.0, 0.0));
        assert_eq!(random_detector_baseline(&[false; 4], 0.5), (0.0, 0.0, 0.0));
    }

    // ---------- Regression ----------

    #[test]
    fn regression_known_values() {
        let actual = [10.0, 20.0, 30.0, 40.0];
        let pred = [12.0, 18.0, 30.0, 44.0];
        let m = regression_metrics(&actual, &pred, 20.0);
        let Some(m) = m else { panic!("expected metrics") };
        // d = [2, -2, 0, 4]
        assert!(close(m.rmse, (24.0_f64 / 4.0).sqrt()));
        assert!(close(m.mae, 2.0));
        assert!(close(m.bias, 1.0));
        // SS_res 24, SS_tot 500.
        assert!(close(m.r2.unwrap_or(f64::NAN), 1.0 - 24.0 / 500.0));
        // Critical rows: actual 10 and 20 → |d| 2 and 2.
        assert_eq!(m.mae_critical, Some(2.0));
        let nasa = (0.2_f64.exp() - 1.0) + ((2.0_f64 / 13.0).exp() - 1.0) + 0.0 + (0.4_f64.exp() - 1.0);
        assert!(close(m.nasa_score, nasa));
        assert_eq!((m.n, m.skipped), (4, 0));
    }

    #[test]
    fn regression_perfect() {
        let a = [5.0, 6.0, 7.0];
        let m = regression_metrics(&a, &a, 0.0);
        assert_eq!(m.map(|m| (m.rmse, m.mae, m.bias, m.nasa_score, m.r2)), Some((0.0, 0.0, 0.0, 0.0, Some(1.0))));
        assert_eq!(m.and_then(|m| m.mae_critical), None);
    }

    #[test]
    fn nasa_score_penalises_late_more() {
        let late = regression_metrics(&[50.0], &[60.0], 0.0).map(|m| m.nasa_score);
        let early = regression_metrics(&[50.0], &[40.0], 0.0).map(|m| m.nasa_score);
        let (Some(late), Some(early)) = (late, early) else { panic!("expected metrics") };
        assert!(close(late, 1.0_f64.exp() - 1.0));
        assert!(close(early, (10.0_f64 / 13.0).exp() - 1.0));
        assert!(late > early);
    }

    #[test]
    fn regression_degenerate() {
        assert_eq!(regression_metrics(&[], &[], 10.0), None);
        assert_eq!(regression_metrics(&[1.0], &[1.0, 2.0], 10.0), None);
        assert_eq!(regression_metrics(&[f64::NAN], &[1.0], 10.0), None);
        let m = regression_metrics(&[1.0, f64::NAN, 3.0, 4.0], &[1.0, 2.0, f64::NAN, 5.0], 10.0);
        assert_eq!(m.map(|m| (m.n, m.skipped)), Some((2, 2)));
        // Constant actuals: R² undefined; single row likewise.
        assert_eq!(regression_metrics(&[3.0, 3.0], &[1.0, 2.0], 0.0).map(|m| m.r2), Some(None));
        assert_eq!(regression_metrics(&[3.0], &[1.0], 0.0).map(|m| m.r2), Some(None));
        // A diverged prediction stays visible.
        let m = regression_metrics(&[1.0, 2.0], &[f64::INFINITY, 2.0], 0.0);
        assert_eq!(m.map(|m| m.rmse), Some(f64::INFINITY));
    }
}
