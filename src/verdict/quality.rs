//! A trained model's test results in plant language, with a grade: useful (act on it), limited (a hint, not
//! a reason to stop a machine) or not useful (ignore it). Reads the report as JSON, field by field, so a
//! report with more or fewer fields (older versions, reworked trainers) still grades; a field that is
//! missing makes the grade "limited" at best, never an error.
//!
//! The thresholds are the README's ("Verdict rules and model grades"); change both together.
use super::words;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Failure classifier: useful when it catches at least this share of failures ...
pub const CLASSIFIER_USEFUL_RECALL: f64 = 0.6;
/// ... and at least this share of its alarms are real.
pub const CLASSIFIER_USEFUL_PRECISION: f64 = 0.5;
/// Limited: below useful but catching at least this share of failures ...
pub const CLASSIFIER_LIMITED_RECALL: f64 = 0.3;
/// ... with at least this share of real alarms (at most 4 in 5 false).
pub const CLASSIFIER_LIMITED_PRECISION: f64 = 0.2;
/// RUL: useful when its error in the critical range is at most this share of that range's width ...
pub const RUL_USEFUL_CRITICAL_SHARE: f64 = 0.5;
/// ... limited when it is at most the width itself (beyond, it cannot tell "today" from "in two days").
pub const RUL_LIMITED_CRITICAL_SHARE: f64 = 1.0;
/// Anomaly detector with labelled test data: useful at this recall and precision ...
pub const ANOMALY_USEFUL_RECALL: f64 = 0.5;
pub const ANOMALY_USEFUL_PRECISION: f64 = 0.5;
/// ... limited from this recall.
pub const ANOMALY_LIMITED_RECALL: f64 = 0.2;
/// Forecast: useful when it beats the seasonal pattern on at least this share of its sensors.
pub const FORECAST_USEFUL_SHARE: f64 = 0.5;

/// Ordered: a better grade compares greater.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    NotUseful,
    Limited,
    Useful,
}

impl Grade {
    pub fn label(self) -> &'static str {
        match self {
            Grade::NotUseful => "not useful",
            Grade::Limited => "limited",
            Grade::Useful => "useful",
        }
    }
}

/// What the page shows for a model instead of raw metrics (those stay behind "details").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub grade: Grade,
    /// One to three sentences in plant language.
    pub sentences: Vec<String>,
    /// Why the grade is what it is, naming the threshold missed or met.
    pub why: String,
    /// The model beats its baseline on the test rows.
    pub beats_baseline: bool,
    /// Show "(better)": it beats its baseline *and* is good enough to act on.
    pub show_better: bool,
    /// For the verdict: the RUL model's error (hours) in the critical range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_error_h: Option<f64>,
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_f64().filter(|x| x.is_finite())
}

fn pct(x: f64) -> String {
    format!("{} %", (x * 100.0).round())
}

fn hours(x: f64) -> String {
    format!("{} h", x.round())
}

/// Grades a report (`model_type` as the report names it: classification, regression, anomaly, timeseries).
pub fn grade(model_type: &str, report: &Value) -> Quality {
    let improvement = num(report, &["headline", "improvement"]);
    let beats_baseline = improvement.is_some_and(|i| i > 0.0);
    let mut q = match model_type {
        "classification" => classifier(report),
        "regression" => rul(report),
        "anomaly" => anomaly(report),
        "timeseries" => forecast(report),
        other => Quality {
            grade: Grade::Limited,
            sentences: vec![format!("no plain-language reading for {other} models yet")],
            why: "unknown model type".into(),
            beats_baseline: false,
            show_better: false,
            critical_error_h: None,
        },
    };
    if !beats_baseline && q.grade == Grade::Useful {
        q.grade = Grade::Limited;
        q.why = format!("{}; but it does not beat its baseline on the test rows", q.why);
    }
    q.beats_baseline = beats_baseline;
    q.show_better = beats_baseline && q.grade == Grade::Useful;
    q
}

fn quality(grade: Grade, sentences: Vec<String>, why: String) -> Quality {
    Quality { grade, sentences, why, beats_baseline: false, show_better: false, critical_error_h: None }
}

fn missing(what: &str) -> Quality {
    quality(Grade::Limited, vec![format!("the report lacks {what}: retrain to grade this model")], format!("no {what} in the report"))
}

fn classifier(r: &Value) -> Quality {
    let m = &r["metrics"];
    let (Some(recall), Some(precision)) = (num(m, &["recall"]), num(m, &["precision"])) else { return missing("recall and precision") };
    let horizon = r["params"]["horizon_hours"].as_f64().filter(|h| h.is_finite() && *h > 0.0);
    let ahead = horizon.map_or(String::new(), |h| format!(" at least {} ahead", hours(h)));
    let mut sentences = vec![format!("catches {} of failures{ahead}", pct(recall))];
    let tp = num(m, &["confusion", "tp"]);
    let fp = num(m, &["confusion", "fp"]);
    let alarms = match (tp, fp) {
        (Some(tp), Some(fp)) if tp + fp > 0.0 => Some(fp / (tp + fp)),
        _ => (precision > 0.0).then_some(1.0 - precision),
    };
    if let Some(false_share) = alarms {
        let (n, d) = words::fraction(false_share);
        sentences.push(match (n, d) {
            (0, _) => "almost no alarm is false".into(),
            (n, d) if n == d => "almost every alarm is false".into(),
            (1, d) => format!("1 in {d} alarms is false"),
            (n, d) => format!("{n} in {d} alarms are false"),
        });
    }
    let (grade, why) = if recall >= CLASSIFIER_USEFUL_RECALL && precision >= CLASSIFIER_USEFUL_PRECISION {
        (Grade::Useful, format!("recall ≥ {} and precision ≥ {}", pct(CLASSIFIER_USEFUL_RECALL), pct(CLASSIFIER_USEFUL_PRECISION)))
    } else if recall >= CLASSIFIER_LIMITED_RECALL && precision >= CLASSIFIER_LIMITED_PRECISION {
        (
            Grade::Limited,
            format!(
                "recall {} / precision {}: below the {} / {} needed to act on it alone",
                pct(recall),
                pct(precision),
                pct(CLASSIFIER_USEFUL_RECALL),
                pct(CLASSIFIER_USEFUL_PRECISION)
            ),
        )
    } else {
        (
            Grade::NotUseful,
            format!(
                "recall {} / precision {}: below the {} / {} of a limited model",
                pct(recall),
                pct(precision),
                pct(CLASSIFIER_LIMITED_RECALL),
                pct(CLASSIFIER_LIMITED_PRECISION)
            ),
        )
    };
    quality(grade, sentences, why)
}

fn rul(r: &Value) -> Quality {
    let m = &r["metrics"];
    let Some(mae) = num(m, &["mae"]) else { return missing("the RUL error (MAE)") };
    let mut sentences = vec![format!("RUL is typically off by ±{}", hours(mae))];
    let critical = num(m, &["mae_critical"]);
    let limit = num(m, &["critical_limit_hours"]).filter(|l| *l > 0.0);
    let (grade, why) = match (critical, limit) {
        (Some(c), Some(l)) => {
            sentences.push(format!("below {} it is off by ±{}", words::span(l * 3600.0), hours(c)));
            if c <= RUL_USEFUL_CRITICAL_SHARE * l {
                (Grade::Useful, format!("error near failure ±{} ≤ half the {} window", hours(c), hours(l)))
            } else if c <= RUL_LIMITED_CRITICAL_SHARE * l {
                (Grade::Limited, format!("error near failure ±{} is more than half the {} window", hours(c), hours(l)))
            } else {
                (Grade::NotUseful, format!("error near failure ±{} is wider than the {} window itself", hours(c), hours(l)))
            }
        }
        _ => (Grade::Limited, "no error figure for the critical range in the report".into()),
    };
    let mut q = quality(grade, sentences, why);
    q.critical_error_h = critical;
    q
}

fn anomaly(r: &Value) -> Quality {
    let m = &r["metrics"];
    let (Some(recall), Some(precision)) = (num(m, &["recall"]), num(m, &["precision"])) else {
        // No labels: only the alarm rate on healthy rows is known.
        let rate = num(m, &["healthy_alarm_rate"]);
        let mut sentences = vec!["cannot be checked against real anomalies: the data has none labelled".to_string()];
        if let Some(rate) = rate {
            sentences.push(format!("alarms on {} of healthy readings", pct(rate)));
        }
        return quality(Grade::Limited, sentences, "untested: no labelled anomalies".into());
    };
    let (n, d) = words::fraction(1.0 - precision);
    let caught =
        if recall <= 0.0 { "flags none of the abnormal periods".to_string() } else { format!("flags {} of abnormal periods", pct(recall)) };
    let false_flags = match (n, d) {
        (0, _) => "almost no flag is false".to_string(),
        (n, d) if n == d => "almost every flag is false".to_string(),
        (1, d) => format!("1 in {d} flags is false"),
        (n, d) => format!("{n} in {d} flags are false"),
    };
    let sentences = vec![caught, false_flags];
    let (grade, why) = if recall >= ANOMALY_USEFUL_RECALL && precision >= ANOMALY_USEFUL_PRECISION {
        (Grade::Useful, format!("recall ≥ {} and precision ≥ {}", pct(ANOMALY_USEFUL_RECALL), pct(ANOMALY_USEFUL_PRECISION)))
    } else if recall >= ANOMALY_LIMITED_RECALL {
        (
            Grade::Limited,
            format!(
                "recall {} / precision {}: below the useful {} / {}",
                pct(recall),
                pct(precision),
                pct(ANOMALY_USEFUL_RECALL),
                pct(ANOMALY_USEFUL_PRECISION)
            ),
        )
    } else {
        (
            Grade::NotUseful,
            format!("recall {} is below {}: it misses almost every abnormal period", pct(recall), pct(ANOMALY_LIMITED_RECALL)),
        )
    };
    quality(grade, sentences, why)
}

fn forecast(r: &Value) -> Quality {
    let Some(per) = r["metrics"]["per_sensor"].as_array().filter(|a| !a.is_empty()) else {
        return missing("per-sensor forecast results");
    };
    let judged: Vec<bool> = per.iter().filter_map(|s| Some(num(s, &["test", "mae"])? < num(s, &["seasonal_naive", "mae"])?)).collect();
    if judged.is_empty() {
        return missing("per-sensor errors beside the seasonal pattern");
    }
    let wins = judged.iter().filter(|w| **w).count();
    let sentences = vec![format!("forecast beats yesterday's pattern on {wins} of {} sensors", judged.len())];
    let share = wins as f64 / judged.len() as f64;
    let (grade, why) = if share >= FORECAST_USEFUL_SHARE {
        (Grade::Useful, format!("better than the seasonal pattern on at least {} of sensors", pct(FORECAST_USEFUL_SHARE)))
    } else if wins > 0 {
        (Grade::Limited, format!("better than the seasonal pattern on fewer than {} of sensors", pct(FORECAST_USEFUL_SHARE)))
    } else {
        (Grade::NotUseful, "never better than repeating the seasonal pattern".into())
    };
    quality(grade, sentences, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(headline_improvement: f64, metrics: Value) -> Value {
        json!({ "headline": { "improvement": headline_improvement }, "metrics": metrics, "params": { "horizon_hours": 48.0 } })
    }

    #[test]
    fn demo_classifier_with_many_false_alarms_is_limited_and_shows_no_better() {
        let r = report(
            0.3,
            json!({ "recall": 0.85, "precision": 386.0 / 1213.0, "confusion": { "tp": 386, "fp": 827, "tn": 5000, "fn": 68 } }),
        );
        let q = grade("classification", &r);
        assert_eq!(q.grade, Grade::Limited);
        assert_eq!(q.sentences, vec!["catches 85 % of failures at least 48 h ahead", "2 in 3 alarms are false"]);
        assert!(q.beats_baseline && !q.show_better);
    }

    #[test]
    fn good_classifier_is_useful_and_better() {
        let r = report(0.5, json!({ "recall": 0.85, "precision": 0.5, "confusion": { "tp": 50, "fp": 50 } }));
        let q = grade("classification", &r);
        assert_eq!(q.grade, Grade::Useful);
        assert_eq!(q.sentences[1], "1 in 2 alarms is false");
        assert!(q.show_better);
    }

    #[test]
    fn useful_numbers_that_lose_to_the_baseline_are_limited() {
        let r = report(-0.1, json!({ "recall": 0.9, "precision": 0.9 }));
        let q = grade("classification", &r);
        assert_eq!(q.grade, Grade::Limited);
        assert!(!q.show_better);
    }

    #[test]
    fn rul_wider_than_its_window_is_not_useful() {
        let r = report(0.4, json!({ "mae": 58.0, "mae_critical": 102.0, "critical_limit_hours": 51.0 }));
        let q = grade("regression", &r);
        assert_eq!(q.grade, Grade::NotUseful);
        assert_eq!(q.sentences, vec!["RUL is typically off by ±58 h", "below 51 h it is off by ±102 h"]);
        assert_eq!(q.critical_error_h, Some(102.0));
        let good = grade("regression", &report(0.4, json!({ "mae": 30.0, "mae_critical": 20.0, "critical_limit_hours": 51.0 })));
        assert_eq!(good.grade, Grade::Useful);
        let mid = grade("regression", &report(0.4, json!({ "mae": 30.0, "mae_critical": 41.0, "critical_limit_hours": 51.0 })));
        assert_eq!(mid.grade, Grade::Limited);
    }

    #[test]
    fn anomaly_with_tiny_recall_is_not_useful_and_unlabelled_is_limited() {
        let q = grade("anomaly", &report(0.2, json!({ "recall": 0.06, "precision": 0.7 })));
        assert_eq!(q.grade, Grade::NotUseful);
        let none = grade("anomaly", &report(0.2, json!({ "recall": 0.0, "precision": 0.0 })));
        assert_eq!(none.sentences, vec!["flags none of the abnormal periods", "almost every flag is false"]);
        let u = grade("anomaly", &report(0.2, json!({ "healthy_alarm_rate": 0.02 })));
        assert_eq!(u.grade, Grade::Limited);
        assert!(u.sentences[1].contains("2 %"));
    }

    #[test]
    fn forecast_counts_sensors_beating_the_seasonal_pattern() {
        let per: Vec<Value> = (0..9)
            .map(|i| json!({ "sensor": format!("s{i}"), "test": { "mae": if i < 6 { 1.0 } else { 3.0 } }, "seasonal_naive": { "mae": 2.0 } }))
            .collect();
        let q = grade("timeseries", &report(0.1, json!({ "per_sensor": per })));
        assert_eq!(q.sentences, vec!["forecast beats yesterday's pattern on 6 of 9 sensors"]);
        assert_eq!(q.grade, Grade::Useful);
    }

    #[test]
    fn missing_or_extra_fields_never_fail() {
        let q = grade("classification", &json!({ "metrics": { "something_new": 1 } }));
        assert_eq!(q.grade, Grade::Limited);
        let q = grade("regression", &json!({}));
        assert_eq!(q.grade, Grade::Limited);
        assert!(!q.show_better);
    }
}
