//! Forecast accuracy metrics. Pairs where either value is non-finite are skipped; an empty
//! comparison scores 0 (nothing was wrong), never NaN.

/// Mean absolute error.
pub fn mae(actual: &[f64], pred: &[f64]) -> f64 {
    mean(pairs(actual, pred).map(|(a, p)| (a - p).abs()))
}

/// Symmetric MAPE in percent (0..=200); a pair with |a| + |p| = 0 counts as a perfect 0.
pub fn smape(actual: &[f64], pred: &[f64]) -> f64 {
    mean(pairs(actual, pred).map(|(a, p)| {
        let denom = a.abs() + p.abs();
        if denom > 0.0 { 200.0 * (a - p).abs() / denom } else { 0.0 }
    }))
}

/// MAPE in percent over pairs with |actual| >= eps, plus how many pairs were skipped as near zero.
/// `None` when every pair was skipped: MAPE is meaningless around zero and the caller should say so.
pub fn mape_skipping_near_zero(actual: &[f64], pred: &[f64], eps: f64) -> Option<(f64, usize)> {
    let mut skipped = 0;
    let mut sum = 0.0;
    let mut n = 0usize;
    for (a, p) in pairs(actual, pred) {
        if a.abs() < eps.abs() || a == 0.0 {
            skipped += 1;
        } else {
            sum += 100.0 * ((a - p) / a).abs();
            n += 1;
        }
    }
    (n > 0).then(|| (sum / n as f64, skipped))
}

/// In-sample MAE of the seasonal-naive forecast `y[t-period]` (lag 1 when the series is shorter
/// than two periods). `None` with fewer than two values.
pub fn seasonal_naive_mae(train: &[f64], period: usize) -> Option<f64> {
    let lag = if period >= 1 && train.len() >= period.saturating_mul(2) { period } else { 1 };
    if train.len() <= lag {
        return None;
    }
    Some(mean(train.windows(lag + 1).map(|w| (w[lag] - w[0]).abs()).filter(|e| e.is_finite())))
}

/// Share of actual values inside [lo, hi], over the points where all three are finite.
pub fn coverage(actual: &[f64], lo: &[f64], hi: &[f64]) -> f64 {
    mean(
        actual
            .iter()
            .zip(lo)
            .zip(hi)
            .filter(|((a, l), u)| a.is_finite() && l.is_finite() && u.is_finite())
            .map(|((a, l), u)| if *l <= *a && *a <= *u { 1.0 } else { 0.0 }),
    )
}

fn pairs<'a>(actual: &'a [f64], pred: &'a [f64]) -> impl Iterator<Item = (f64, f64)> + 'a {
    actual.iter().zip(pred).map(|(a, p)| (*a, *p)).filter(|(a, p)| a.is_finite() && p.is_finite())
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_basics() {
        assert_eq!(mae(&[1.0, 2.0], &[2.0, 2.0]), 0.5);
        assert_eq!(mae(&[], &[]), 0.0);
        assert_eq!(smape(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
        assert!((smape(&[1.0], &[3.0]) - 100.0).abs() < 1e-12);
        assert_eq!(mape_skipping_near_zero(&[0.0, 2.0], &[1.0, 1.0], 1e-9), Some((50.0, 1)));
        assert_eq!(mape_skipping_near_zero(&[0.0], &[1.0], 1e-9), None);
        // Too short for the seasonal lag: falls back to lag 1.
        assert_eq!(seasonal_naive_mae(&[0.0, 2.0, 4.0], 24), Some(2.0));
        assert_eq!(coverage(&[1.0, 5.0], &[0.0, 0.0], &[2.0, 2.0]), 0.5);
        assert_eq!(mae(&[f64::NAN, 1.0], &[0.0, 1.0]), 0.0);
    }
}
