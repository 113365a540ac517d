//! Downloads for spreadsheets and reports: a model's results as JSON or CSV, a prediction as CSV. (The fleet
//! view's CSV is in [`super::fleet`]; charts are exported by the page itself.)
use super::params::{VersionQuery, graded_report, machine, model_type, model_version};
use super::{ApiError, AppState, Path, Query};
use crate::ml::ModelType;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One CSV field: always quoted; a text starting with a formula character is defused for spreadsheets.
pub(super) fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    };
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() { format!("'{s}") } else { s };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A CSV table: the header, then one line per row.
pub(super) fn csv_table(header: &[&str], rows: &[Vec<Value>]) -> String {
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        out.push_str(&r.iter().map(csv_field).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// A download: the content type and the file name the browser saves it under.
pub(super) fn attachment(name: &str, content_type: &'static str, body: String) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

pub(super) fn csv_response(name: &str, body: String) -> Response {
    attachment(name, "text/csv; charset=utf-8", body)
}

/// The report of a model version (the live one unless asked) with its grade, and that version.
fn results(state: &AppState, id: &str, t: &str, version: Option<u32>) -> Result<(ModelType, u32, Value), ApiError> {
    machine(id)?;
    let t = model_type(t)?;
    let version = model_version(state, id, t, version)?.version;
    Ok((t, version, graded_report(state, id, t, Some(version))?))
}

#[utoipa::path(get, path = "/api/ml/models/{machine_id}/{model_type}/results.json", params(("machine_id" = String, Path), ("model_type" = String, Path), VersionQuery), responses((status = 200, description = "the model's report (metrics, baselines, grade, split, leaderboard) as a JSON file"), (status = 404)))]
pub async fn results_json(
    State(state): State<AppState>,
    Path((id, t)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, ApiError> {
    let (t, version, report) = results(&state, &id, &t, q.version)?;
    let doc = json!({ "machine_id": id, "model_type": t, "version": version, "report": report });
    let body = serde_json::to_string_pretty(&doc).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(attachment(&format!("{id}-{t}-v{version}-results.json"), "application/json", body))
}

#[utoipa::path(get, path = "/api/ml/models/{machine_id}/{model_type}/results.csv", params(("machine_id" = String, Path), ("model_type" = String, Path), VersionQuery), responses((status = 200, description = "the model's report as `section,name,value` rows (the plots' samples left out)"), (status = 404)))]
pub async fn results_csv(
    State(state): State<AppState>,
    Path((id, t)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, ApiError> {
    let (t, version, report) = results(&state, &id, &t, q.version)?;
    Ok(csv_response(&format!("{id}-{t}-v{version}-results.csv"), csv_table(&["section", "name", "value"], &report_rows(&report))))
}

/// The report's scalars as rows: the section (top-level key) and the dotted path below it. The plots'
/// samples are left out: they are drawing data, not results.
fn report_rows(report: &Value) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    if let Value::Object(top) = report {
        for (section, v) in top.iter().filter(|(k, _)| k.as_str() != "samples") {
            let mut leaves = Vec::new();
            flatten("", v, &mut leaves);
            rows.extend(leaves.into_iter().map(|(name, value)| vec![json!(section), json!(name), value]));
        }
    }
    rows
}

fn flatten(path: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| flatten(&join(k), x, out)),
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            a.iter().enumerate().for_each(|(i, x)| flatten(&join(&i.to_string()), x, out));
        }
        other => out.push((path.to_string(), other.clone())),
    }
}

/// A prediction (the JSON of `POST /api/ml/predict/{machine_id}`) as long-format rows — one value per row,
/// so every model fits one table: `model_type, version, sensor, timestamp, quantity, value`. Forecasts give a
/// row per sensor, step and quantity (mean and the 80 / 95 % bounds); a list of (sensor, share) pairs gives a
/// row per sensor; the verdict comes first.
pub fn prediction_csv(p: &Value) -> String {
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut row = |t: &str, version: &Value, sensor: &str, ts: &Value, quantity: &str, value: Value| {
        rows.push(vec![json!(t), version.clone(), json!(sensor), ts.clone(), json!(quantity), value]);
    };
    if let Value::Object(v) = &p["verdict"] {
        for (k, x) in v.iter().filter(|(_, x)| !x.is_object() && !x.is_array()) {
            row("verdict", &Value::Null, "", &Value::Null, k, x.clone());
        }
    }
    for t in ModelType::ALL {
        let entry = &p["predictions"][t.as_str()];
        let version = &entry["version"];
        if let Some(e) = entry.get("error").or_else(|| entry.get("message")) {
            row(t.as_str(), version, "", &Value::Null, "error", e.clone());
            continue;
        }
        let Value::Object(answer) = &entry["answer"] else { continue };
        for (k, x) in answer {
            match x {
                Value::Array(items) if k == "sensors" => {
                    for s in items {
                        let sensor = s["sensor"].as_str().unwrap_or_default();
                        let stamps = s["timestamps"].as_array().cloned().unwrap_or_default();
                        for q in ["mean", "lo80", "hi80", "lo95", "hi95"] {
                            for (i, v) in s[q].as_array().into_iter().flatten().enumerate() {
                                row(t.as_str(), version, sensor, stamps.get(i).unwrap_or(&Value::Null), q, v.clone());
                            }
                        }
                    }
                }
                Value::Array(items) if items.iter().all(|i| i.as_array().is_some_and(|p| p.len() == 2 && p[0].is_string())) => {
                    for pair in items {
                        row(t.as_str(), version, pair[0].as_str().unwrap_or_default(), &Value::Null, k, pair[1].clone());
                    }
                }
                other => row(t.as_str(), version, "", &Value::Null, k, other.clone()),
            }
        }
    }
    csv_table(&["model_type", "version", "sensor", "timestamp", "quantity", "value"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field(&json!("a \"b\"")), "\"a \"\"b\"\"\"");
        assert_eq!(csv_field(&json!("=SUM(A1)")), "\"'=SUM(A1)\"");
        assert_eq!(csv_field(&json!(-1.5)), "\"-1.5\"");
        assert_eq!(csv_field(&Value::Null), "\"\"");
    }

    #[test]
    fn a_report_becomes_section_name_value_rows_without_the_plot_samples() {
        let report = json!({ "metrics": { "f1": 0.8, "per_class": [{ "recall": 0.5 }] }, "warnings": ["w1", "w2"],
            "samples": { "trace": [[1, 2]] }, "headline": { "metric": "f1" } });
        let text = csv_table(&["section", "name", "value"], &report_rows(&report));
        assert!(text.starts_with("section,name,value\n"));
        assert!(text.contains("\"metrics\",\"f1\",\"0.8\""), "{text}");
        assert!(text.contains("\"metrics\",\"per_class.0.recall\",\"0.5\""), "{text}");
        assert!(text.contains("\"warnings\",\"\",\"w1; w2\""), "{text}");
        assert!(!text.contains("trace"), "{text}");
    }

    #[test]
    fn a_prediction_becomes_one_value_per_row() {
        let p = json!({ "verdict": { "severity": "plan", "sentence": "Plan maintenance", "drivers": ["a"] },
            "predictions": {
                "classification": { "available": true, "version": 2, "answer": { "failure_probability": 0.9, "will_fail": true } },
                "regression": { "available": false, "message": "no regression model" },
                "anomaly": { "available": true, "version": 1, "answer": { "anomaly_score": 0.5, "top_sensors": [["temp", 0.7], ["flow", 0.3]] } },
                "timeseries": { "available": true, "version": 3, "answer": { "horizon_hours": 2.0, "sensors": [
                    { "sensor": "temp", "timestamps": ["t1", "t2"], "mean": [1.0, 2.0], "lo80": [0.5, 1.5], "hi80": [1.5, 2.5], "lo95": [0.0, 1.0], "hi95": [2.0, 3.0] }] } } } });
        let text = prediction_csv(&p);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "model_type,version,sensor,timestamp,quantity,value");
        assert!(lines.contains(&"\"verdict\",\"\",\"\",\"\",\"severity\",\"plan\""), "{text}");
        assert!(lines.contains(&"\"classification\",\"2\",\"\",\"\",\"failure_probability\",\"0.9\""), "{text}");
        assert!(lines.contains(&"\"regression\",\"\",\"\",\"\",\"error\",\"no regression model\""), "{text}");
        assert!(lines.contains(&"\"anomaly\",\"1\",\"flow\",\"\",\"top_sensors\",\"0.3\""), "{text}");
        assert!(lines.contains(&"\"timeseries\",\"3\",\"temp\",\"t2\",\"hi95\",\"3.0\""), "{text}");
        // 2 verdict scalars, 2 classification, 1 regression, 1 + 2 anomaly, 1 + 2 × 5 timeseries.
        assert_eq!(lines.len() - 1, 2 + 2 + 1 + 3 + 11, "{text}");
    }
}
