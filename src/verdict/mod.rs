//! From metrics to decisions: each trained model's test results graded in plant language ([`quality`]),
//! and one verdict per machine from its models' answers, each weighed by that grade ([`rules`]). Pure
//! functions over JSON and small structs: no I/O, so every rule is unit-tested and the API, the page, the
//! alerts and MQTT all show the same words.
pub mod quality;
pub mod rules;
pub mod words;

pub use quality::{Grade, Quality, grade};
pub use rules::{AnomalyInput, ClassifierInput, Inputs, RulInput, Severity, State, Verdict, decide};

use serde_json::Value;
use std::collections::HashMap;

/// The verdict's inputs from a predictions answer (`POST /api/ml/predict`'s `predictions` object) and the
/// live models' graded reports (by model type name). Answers that are missing or failed are left out.
pub fn inputs_from(predictions: &Value, reports: &HashMap<String, Value>, qualities: &HashMap<String, Quality>) -> Inputs {
    let answer = |t: &str| predictions.get(t).and_then(|p| p.get("answer")).filter(|a| a.is_object());
    let grade_of = |t: &str| qualities.get(t).map(|q| q.grade);
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).filter(|x| x.is_finite());
    let classifier = answer("classification").and_then(|a| {
        Some(ClassifierInput {
            probability: num(a, "failure_probability")?,
            threshold: num(a, "threshold").unwrap_or(0.5),
            grade: grade_of("classification"),
            horizon_h: reports.get("classification").and_then(|r| r["params"]["horizon_hours"].as_f64()),
        })
    });
    let rul = answer("regression").and_then(|a| {
        Some(RulInput {
            hours: num(a, "rul_hours")?,
            at_cap: a.get("at_cap").and_then(Value::as_bool).unwrap_or(false),
            grade: grade_of("regression"),
        })
    });
    let anomaly = answer("anomaly")
        .and_then(|a| Some(AnomalyInput { is_anomaly: a.get("is_anomaly").and_then(Value::as_bool)?, grade: grade_of("anomaly") }));
    Inputs { classifier, rul, anomaly, has_models: !reports.is_empty(), drivers: drivers(predictions, reports), ..Default::default() }
}

/// Sensors driving the answers: the anomaly model's top sensors when it flags, else the most important
/// features of the classifier (then the RUL model), as sensor names, most important first.
fn drivers(predictions: &Value, reports: &HashMap<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    let anomaly = &predictions["anomaly"]["answer"];
    if anomaly["is_anomaly"].as_bool() == Some(true)
        && let Some(top) = anomaly["top_sensors"].as_array()
    {
        for pair in top {
            if let Some(name) = pair.get(0).and_then(Value::as_str) {
                add(name);
            }
        }
    }
    for t in ["classification", "regression"] {
        if let Some(imp) = reports.get(t).and_then(|r| r["feature_importance"].as_array()) {
            for pair in imp {
                if let Some(name) = pair.get(0).and_then(Value::as_str) {
                    add(words::feature_sensor(name));
                }
            }
        }
    }
    out.truncate(3);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_from_the_demo_predictions() {
        let predictions = json!({
            "classification": { "available": true, "answer": { "failure_probability": 0.97, "threshold": 0.4, "health": "critical" } },
            "regression": { "available": true, "answer": { "rul_hours": 41.0, "at_cap": false, "urgency": "high" } },
            "anomaly": { "available": true, "answer": { "is_anomaly": false, "anomaly_score": 0.9, "top_sensors": [["flow_m3_h", 0.5]] } },
            "timeseries": { "available": false }
        });
        let mut reports = HashMap::new();
        reports.insert("classification".to_string(), json!({ "params": { "horizon_hours": 48.0 }, "feature_importance": [["overall_rms_mm_s__max_72", 0.4], ["bearing_temp_C__mean_24", 0.2], ["overall_rms_mm_s__std_24", 0.1]] }));
        let mut q = HashMap::new();
        q.insert("classification".to_string(), grade("classification", &json!({})));
        let i = inputs_from(&predictions, &reports, &q);
        assert_eq!(i.classifier.as_ref().map(|c| c.probability), Some(0.97));
        assert_eq!(i.classifier.as_ref().and_then(|c| c.grade), Some(Grade::Limited));
        assert_eq!(i.rul.as_ref().map(|r| r.hours), Some(41.0));
        assert_eq!(i.anomaly.as_ref().map(|a| a.is_anomaly), Some(false));
        // The anomaly's own top sensors do not drive a verdict it does not flag.
        assert_eq!(i.drivers, vec!["overall_rms_mm_s", "bearing_temp_C"]);
        assert!(i.has_models);
    }
}
