//! `<base>/bridge/request/<name>` → the same handler as the REST API. A request is translated into an HTTP
//! call (method, path, body) and sent through the in-process router with the daemon's own token, so MQTT
//! and HTTP cannot disagree on validation, limits or answers. The broker's ACL is what authorises it.
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

pub const NAMES: &[&str] = &["train", "cancel", "jobs", "models", "predict", "health_check"];

/// Answers bigger than this are refused rather than published (the outbox limit is larger).
const MAX_ANSWER: usize = 15 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Option<Vec<u8>>,
}

/// A request that never reached the router: what was wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

fn refuse(message: impl Into<String>) -> Refused {
    Refused { code: "bad_request", message: message.into() }
}

/// Splits a payload into its `transaction` (echoed back whatever its type) and the rest of the object.
/// An empty payload is `{}`: `health_check` and `jobs` need nothing.
pub fn parse_payload(payload: &[u8]) -> (Option<Value>, Result<Map<String, Value>, Refused>) {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return (None, Ok(Map::new()));
    }
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            return (
                None,
                Err(refuse(format!(
                    "the payload is not JSON ({e}); send an object such as {{\"machine_id\": \"...\", \"transaction\": \"1\"}}"
                ))),
            );
        }
    };
    match value {
        Value::Object(mut map) => {
            let transaction = map.remove("transaction");
            (transaction, Ok(map))
        }
        other => (None, Err(refuse(format!("the payload must be a JSON object, got {}", kind(&other))))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn take_str(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Refused> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(refuse(format!("{key} must be a string, got {}", kind(&other)))),
    }
}

fn machine(id: &str) -> Result<(), Refused> {
    crate::data::MachineId::parse(id).map(|_| ()).map_err(|e| refuse(e.to_string()))
}

fn model_type(t: &str) -> Result<&'static str, Refused> {
    crate::ml::ModelType::parse(t)
        .map(|t| t.as_str())
        .ok_or_else(|| refuse(format!("unknown model_type {t:?}: use classification, regression, anomaly or timeseries")))
}

fn task_id(id: &str) -> Result<(), Refused> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(refuse(format!("task_id {id:?} is not a task id")));
    }
    Ok(())
}

fn no_more(name: &str, map: &Map<String, Value>) -> Result<(), Refused> {
    match map.keys().next() {
        Some(k) => Err(refuse(format!("unknown field {k:?} in a {name} request"))),
        None => Ok(()),
    }
}

fn json_body(map: &Map<String, Value>) -> Option<Vec<u8>> {
    Some(Value::Object(map.clone()).to_string().into_bytes())
}

/// The HTTP call a request stands for. Path parts are validated first: nothing from the payload reaches
/// a path unchecked.
pub fn to_call(name: &str, mut map: Map<String, Value>) -> Result<Call, Refused> {
    match name {
        "train" => {
            // `model_type` picks a single-model route; otherwise the batch route (default all four).
            let path = match take_str(&mut map, "model_type")? {
                Some(t) => format!("/api/ml/train/{}", model_type(&t)?),
                None => "/api/ml/train/batch".to_string(),
            };
            Ok(Call { method: Method::POST, path, body: json_body(&map) })
        }
        "cancel" => {
            let id = take_str(&mut map, "task_id")?.ok_or_else(|| refuse("cancel needs task_id"))?;
            task_id(&id)?;
            no_more(name, &map)?;
            Ok(Call { method: Method::POST, path: format!("/api/ml/tasks/{id}/cancel"), body: Some(b"{}".to_vec()) })
        }
        "jobs" => {
            if let Some(id) = take_str(&mut map, "task_id")? {
                task_id(&id)?;
                no_more(name, &map)?;
                return Ok(Call { method: Method::GET, path: format!("/api/ml/tasks/{id}"), body: None });
            }
            let mut query = Vec::new();
            if let Some(m) = take_str(&mut map, "machine_id")? {
                machine(&m)?;
                query.push(format!("machine_id={m}"));
            }
            if let Some(s) = take_str(&mut map, "status")? {
                if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphabetic()) {
                    return Err(refuse(format!("status {s:?} is not a task state")));
                }
                query.push(format!("status={s}"));
            }
            match map.remove("limit") {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.as_u64().is_some() => query.push(format!("limit={n}")),
                Some(other) => return Err(refuse(format!("limit must be a non-negative integer, got {other}"))),
            }
            no_more(name, &map)?;
            let q = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
            Ok(Call { method: Method::GET, path: format!("/api/ml/tasks{q}"), body: None })
        }
        "models" => {
            let m = take_str(&mut map, "machine_id")?;
            let t = take_str(&mut map, "model_type")?;
            let version = match map.remove("version") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) if n.as_u64().is_some() => Some(n),
                Some(other) => return Err(refuse(format!("version must be a positive integer, got {other}"))),
            };
            no_more(name, &map)?;
            let path = match (m, t) {
                (None, None) => "/api/ml/models".to_string(),
                (Some(m), None) => {
                    machine(&m)?;
                    format!("/api/ml/models/{m}")
                }
                (Some(m), Some(t)) => {
                    machine(&m)?;
                    format!("/api/ml/models/{m}/{}", model_type(&t)?)
                }
                (None, Some(_)) => return Err(refuse("model_type needs machine_id")),
            };
            let path = match version {
                Some(v) => format!("{path}?version={v}"),
                None => path,
            };
            Ok(Call { method: Method::GET, path, body: None })
        }
        "predict" => {
            let m = take_str(&mut map, "machine_id")?.ok_or_else(|| refuse("predict needs machine_id"))?;
            machine(&m)?;
            // The rest (`rows`, `time_in_life_h`) is the REST body; none means "the machine's latest data".
            let body = if map.is_empty() { None } else { json_body(&map) };
            Ok(Call { method: Method::POST, path: format!("/api/ml/predict/{m}"), body })
        }
        "health_check" => {
            no_more(name, &map)?;
            Ok(Call { method: Method::GET, path: "/api/health".into(), body: None })
        }
        other => Err(Refused { code: "unknown_request", message: format!("unknown request {other:?}: use one of {}", NAMES.join(", ")) }),
    }
}

/// Runs a call through the router as the daemon itself; `Ok(data)` for 2xx, else the API's error.
pub async fn dispatch(router: &Router, token: &str, call: Call) -> Result<Value, (Refused, Option<Value>)> {
    let mut builder = Request::builder().method(call.method).uri(&call.path).header(header::AUTHORIZATION, format!("Bearer {token}"));
    if call.body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(call.body.map(Body::from).unwrap_or_else(Body::empty))
        .map_err(|e| (Refused { code: "internal", message: format!("building the request: {e}") }, None))?;
    let response = match router.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
        .await
        .map_err(|_| (Refused { code: "too_large", message: "the answer is too large for MQTT; use the HTTP API".into() }, None))?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
    let code = match body["error"]["code"].as_str() {
        Some(c) => api_code(c),
        None => "error",
    };
    Err((Refused { code, message }, body["error"].get("details").cloned()))
}

/// The API's codes are `&'static str` there too; map back so the response carries the same word.
fn api_code(c: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "bad_request",
        "not_found",
        "conflict",
        "internal",
        "unauthorized",
        "queue_full",
        "shutting_down",
        "insufficient_resources",
        "too_large",
        "unsupported_media_type",
        "bad_data",
    ];
    KNOWN.iter().find(|k| **k == c).copied().unwrap_or("error")
}

/// Who answers: put in every response.
#[derive(Debug, Clone)]
pub struct Answerer {
    pub instance_id: String,
    pub node_id: String,
}

/// `{status: "ok", data, transaction?, instance_id, node_id}` or `{status: "error", error, code, details?,
/// transaction?, instance_id, node_id}`; the ids show which daemon answered (two on one base topic are a
/// misconfiguration).
pub fn response(result: Result<Value, (Refused, Option<Value>)>, transaction: Option<Value>, me: &Answerer) -> Value {
    let mut v = match result {
        Ok(data) => json!({ "status": "ok", "data": data }),
        Err((r, details)) => {
            let mut v = json!({ "status": "error", "error": r.message, "code": r.code });
            if let Some(d) = details {
                v["details"] = d;
            }
            v
        }
    };
    if let Some(t) = transaction {
        v["transaction"] = t;
    }
    v["instance_id"] = json!(me.instance_id);
    v["node_id"] = json!(me.node_id);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, payload: &str) -> Result<Call, Refused> {
        let (_, map) = parse_payload(payload.as_bytes());
        to_call(name, map?)
    }

    #[test]
    fn transactions_are_split_off_whatever_their_type() {
        let (t, m) = parse_payload(br#"{"transaction": 7, "machine_id": "m"}"#);
        assert_eq!(t, Some(json!(7)));
        assert_eq!(m.unwrap().len(), 1);
        assert!(parse_payload(b"  ").1.unwrap().is_empty());
        let (t, m) = parse_payload(b"[1]");
        assert!(t.is_none());
        assert!(m.unwrap_err().message.contains("JSON object"));
        assert!(parse_payload(b"{oops").1.unwrap_err().message.contains("not JSON"));
    }

    #[test]
    fn requests_map_onto_the_rest_routes() {
        assert_eq!(call("train", r#"{"machine_id":"m1"}"#).unwrap().path, "/api/ml/train/batch");
        let c = call("train", r#"{"machine_id":"m1","model_type":"anomaly","time_limit":5}"#).unwrap();
        assert_eq!(c.path, "/api/ml/train/anomaly");
        assert_eq!(serde_json::from_slice::<Value>(&c.body.unwrap()).unwrap(), json!({"machine_id":"m1","time_limit":5}));
        assert_eq!(call("cancel", r#"{"task_id":"ab-12"}"#).unwrap().path, "/api/ml/tasks/ab-12/cancel");
        assert_eq!(call("jobs", "").unwrap().path, "/api/ml/tasks");
        assert_eq!(
            call("jobs", r#"{"machine_id":"m1","status":"success","limit":3}"#).unwrap().path,
            "/api/ml/tasks?machine_id=m1&status=success&limit=3"
        );
        assert_eq!(call("models", r#"{"machine_id":"m1","model_type":"regression"}"#).unwrap().path, "/api/ml/models/m1/regression");
        let p = call("predict", r#"{"machine_id":"m1"}"#).unwrap();
        assert_eq!((p.path.as_str(), p.body), ("/api/ml/predict/m1", None));
        assert_eq!(call("health_check", "").unwrap().path, "/api/health");
    }

    #[test]
    fn nothing_unchecked_reaches_a_path() {
        assert!(call("cancel", r#"{"task_id":"../../x"}"#).is_err());
        assert!(call("cancel", "{}").unwrap_err().message.contains("task_id"));
        assert!(call("models", r#"{"machine_id":"M/1"}"#).is_err());
        assert!(call("train", r#"{"machine_id":"m","model_type":"x/y"}"#).is_err());
        assert!(call("jobs", r#"{"status":"a&b=c"}"#).is_err());
        assert!(call("predict", r#"{"machine_id":"?"}"#).is_err());
        assert!(call("health_check", r#"{"x":1}"#).unwrap_err().message.contains("unknown field"));
        assert_eq!(call("reboot", "{}").unwrap_err().code, "unknown_request");
    }

    #[test]
    fn responses_echo_the_transaction() {
        let me = Answerer { instance_id: "i1".into(), node_id: "pi".into() };
        let ok = response(Ok(json!({"a":1})), Some(json!("t-1")), &me);
        assert_eq!(ok, json!({"status":"ok","data":{"a":1},"transaction":"t-1","instance_id":"i1","node_id":"pi"}));
        let err = response(Err((refuse("nope"), None)), None, &me);
        assert_eq!(err["status"], "error");
        assert_eq!(err["error"], "nope");
        assert!(err.get("transaction").is_none());
    }
}
