//! Machines, the model registry, downloads and predictions.
use super::params::{VersionQuery, graded_report, machine, model_type, model_version};
use super::{ApiError, AppState, Body, Path, Query, auth};
use crate::ml::ModelType;
use crate::ml::model::{Recent, UrgencyHours};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A model file that fails its checksum: the client's one error shape, without the device's paths.
fn damaged_model(t: ModelType, version: u32, message: &str) -> ApiError {
    let reason = message.split(" (").nth(1).and_then(|r| r.split(')').next()).unwrap_or("checksum mismatch");
    ApiError::new(
        StatusCode::CONFLICT,
        "model_damaged",
        format!("the {t} model file version {version} is damaged on disk ({reason}); delete this version or retrain"),
    )
    .details(json!({ "model_type": t, "version": version }))
}

/// Each type's damaged versions (only types that have some), for listings beside the live ones.
fn damaged_of(state: &AppState, id: &str) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for t in ModelType::ALL {
        let d = state.registry.damaged(id, t)?;
        if !d.is_empty() {
            out.insert(t.as_str().into(), json!(d));
        }
    }
    Ok(Value::Object(out))
}

/// What exists for one machine: each type's live version, or nothing.
fn models_of(state: &AppState, id: &str) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for t in ModelType::ALL {
        let live = state.registry.live(id, t)?;
        out.insert(t.as_str().into(), live.map_or(Value::Null, |v| json!(v)));
    }
    Ok(Value::Object(out))
}

/// A folder that does not load shows why; only a client with the token sees paths and what the files say.
#[utoipa::path(get, path = "/api/ml/train/machines/available", responses((status = 200, description = "machines with trainable data and which of the 4 models exist; data_dir and load errors in full only with the token")))]
pub async fn machines_available(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let logged_in = state.is_logged_in(&headers);
    let summaries = state.machine_summaries().await?;
    let mut machines = Vec::new();
    for (id, summary) in summaries {
        match summary {
            Ok(s) => {
                let models = models_of(&state, &id)?;
                let trained = models.as_object().map_or(0, |m| m.values().filter(|v| !v.is_null()).count());
                machines.push(json!({ "machine_id": id, "display_name": s.name, "family": s.family, "sensors": s.sensors, "rows": s.rows, "lives": s.lives,
                    "has_label": s.has_label, "has_rul": s.has_rul, "has_anomaly": s.has_anomaly, "interval_s": s.interval_s, "layout": s.layout,
                    "models": models, "models_trained": trained }));
            }
            Err(e) => machines.push(json!({ "machine_id": id, "error": e.message_for(logged_in) })),
        }
    }
    let mut answer = json!({ "total": machines.len(), "machines": machines });
    if logged_in {
        answer["data_dir"] = json!(state.data_dir.display().to_string());
    }
    Ok(Json(answer))
}

#[utoipa::path(get, path = "/api/ml/models", responses((status = 200, description = "every machine's live models")))]
pub async fn all_models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut out = Map::new();
    for id in state.registry.machines()? {
        out.insert(id.clone(), models_of(&state, &id)?);
    }
    let mut damaged = Map::new();
    for id in state.registry.machine_folders()? {
        let d = damaged_of(&state, &id)?;
        if d.as_object().is_some_and(|m| !m.is_empty()) {
            damaged.insert(id, d);
        }
    }
    Ok(Json(json!({ "machines": out, "damaged": damaged })))
}

#[utoipa::path(get, path = "/api/ml/models/{machine_id}", params(("machine_id" = String, Path)), responses((status = 200, description = "versions of each type"), (status = 400)))]
pub async fn machine_models(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    machine(&id)?;
    let mut out = Map::new();
    for t in ModelType::ALL {
        out.insert(t.as_str().into(), json!(state.registry.versions(&id, t)?));
    }
    Ok(Json(json!({ "machine_id": id, "models": out, "damaged": damaged_of(&state, &id)? })))
}

#[utoipa::path(get, path = "/api/ml/models/{machine_id}/{model_type}", params(("machine_id" = String, Path), ("model_type" = String, Path), VersionQuery), responses((status = 200, description = "versions and the report"), (status = 404)))]
pub async fn model_detail(
    State(state): State<AppState>,
    Path((id, t)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    machine(&id)?;
    let t = model_type(&t)?;
    let versions = state.registry.versions(&id, t)?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no {t} model for {id}")));
    }
    let report = graded_report(&state, &id, t, q.version)?;
    let damaged = state.registry.damaged(&id, t)?;
    let pin = state.registry.pinned(&id, t)?;
    Ok(Json(json!({ "machine_id": id, "model_type": t, "versions": versions, "report": report, "damaged": damaged, "pin": pin })))
}

#[utoipa::path(get, path = "/api/ml/models/{machine_id}/{model_type}/download", params(("machine_id" = String, Path), ("model_type" = String, Path), VersionQuery), responses((status = 200, description = "the bundle file"), (status = 404)))]
pub async fn download(
    State(state): State<AppState>,
    Path((id, t)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, ApiError> {
    machine(&id)?;
    let t = model_type(&t)?;
    let info = model_version(&state, &id, t, q.version)?;
    let registry = state.registry.clone();
    let (id2, version) = (id.clone(), info.version);
    let bytes = tokio::task::spawn_blocking(move || registry.read_checked(&id2, t, version))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| match e {
            // The path stays in the log; the client learns what is wrong and what to do.
            crate::registry::RegistryError::Corrupt { path, message } => {
                tracing::warn!(path = %path.display(), "refused to serve a damaged model file: {message}");
                damaged_model(t, version, &message)
            }
            other => other.into(),
        })?;
    let name = format!("{id}-{t}-v{}.mwm", info.version);
    let mut resp = Bytes::from(bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[utoipa::path(delete, path = "/api/ml/models/{machine_id}/{model_type}", params(("machine_id" = String, Path), ("model_type" = String, Path), VersionQuery), responses((status = 200, description = "deleted"), (status = 401), (status = 404)))]
pub async fn delete_model(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, t)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    auth::require(&state, &headers)?;
    machine(&id)?;
    let t = model_type(&t)?;
    let n = state.registry.delete(&id, t, q.version)?;
    if n == 0 {
        return Err(ApiError::not_found(format!("no {t} model{} for {id}", q.version.map_or(String::new(), |v| format!(" version {v}")))));
    }
    let live = state.registry.live(&id, t)?;
    state.fleet.emit(
        "model_deleted",
        json!({ "machine_id": id, "model_type": t, "deleted_versions": n, "live_version": live.as_ref().map(|l| l.version) }),
    );
    Ok(Json(json!({ "success": true, "deleted_versions": n, "live": live })))
}

/// The version to pin, and why (kept with the pin, shown on the page).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    pub version: u32,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A pin's reason is shown as given; a page of text is not a reason.
const MAX_PIN_REASON: usize = 500;

#[utoipa::path(post, path = "/api/ml/models/{machine_id}/{model_type}/pin", params(("machine_id" = String, Path), ("model_type" = String, Path)),
    request_body = PinBody,
    responses((status = 200, description = "the version answers from now on, whatever is trained later, until unpinned"), (status = 400), (status = 401), (status = 404)))]
pub async fn pin_model(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, t)): Path<(String, String)>,
    Body(body): Body<PinBody>,
) -> Result<Json<Value>, ApiError> {
    auth::require(&state, &headers)?;
    machine(&id)?;
    let t = model_type(&t)?;
    let reason = body.reason.unwrap_or_default();
    if reason.chars().count() > MAX_PIN_REASON {
        return Err(ApiError::bad_request(format!("the reason is longer than {MAX_PIN_REASON} characters")));
    }
    let reason = if reason.trim().is_empty() { "pinned through the API".to_string() } else { reason.trim().to_string() };
    let live = state.registry.pin(&id, t, body.version, &reason)?;
    state.fleet.emit("model_pinned", json!({ "machine_id": id, "model_type": t, "version": body.version, "reason": reason }));
    Ok(Json(json!({ "success": true, "live": live, "pin": state.registry.pinned(&id, t)? })))
}

#[utoipa::path(delete, path = "/api/ml/models/{machine_id}/{model_type}/pin", params(("machine_id" = String, Path), ("model_type" = String, Path)),
    responses((status = 200, description = "unpinned: the newest version answers"), (status = 401), (status = 404, description = "no such model")))]
pub async fn unpin_model(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    auth::require(&state, &headers)?;
    machine(&id)?;
    let t = model_type(&t)?;
    if state.registry.versions(&id, t)?.is_empty() {
        return Err(ApiError::not_found(format!("no {t} model for {id}")));
    }
    let was = state.registry.unpin(&id, t)?;
    let live = state.registry.live(&id, t)?;
    if was.is_some() {
        state.fleet.emit("model_unpinned", json!({ "machine_id": id, "model_type": t, "live_version": live.as_ref().map(|l| l.version) }));
    }
    Ok(Json(json!({ "success": true, "was_pinned": was, "live": live })))
}

/// Recent readings: rows of `{timestamp, <sensor>: value, ...}` (oldest first), or none for the machine's own latest data.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictBody {
    #[schema(value_type = Option<Vec<Object>>)]
    pub rows: Option<Vec<Map<String, Value>>>,
    /// Hours since the current life began (only models trained with time-in-life need it).
    pub time_in_life_h: Option<f64>,
}

fn recent_from_rows(rows: &[Map<String, Value>], time_in_life_h: Option<f64>) -> Result<Recent, ApiError> {
    if rows.is_empty() {
        return Err(ApiError::bad_request("rows is empty: send recent readings, or omit rows to use the machine's latest data"));
    }
    let mut timestamps = Vec::with_capacity(rows.len());
    let mut sensors: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let ts = match row.get("timestamp") {
            Some(Value::String(s)) => crate::util::time::parse_timestamp(s),
            Some(Value::Number(n)) => n.as_f64(),
            _ => None,
        }
        .ok_or_else(|| ApiError::bad_request(format!("rows[{i}].timestamp is missing or not a timestamp")))?;
        if timestamps.last().is_some_and(|prev| ts <= *prev) {
            return Err(ApiError::bad_request(format!("rows[{i}].timestamp is not after the previous row's")));
        }
        timestamps.push(ts);
        for (k, v) in row.iter().filter(|(k, _)| *k != "timestamp") {
            let value = match v {
                Value::Number(n) => n
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| ApiError::bad_request(format!("rows[{i}].{k} is not a finite number")))?,
                Value::Null => f64::NAN,
                _ => return Err(ApiError::bad_request(format!("rows[{i}].{k} must be a number or null"))),
            };
            let col = sensors.entry(k.clone()).or_insert_with(|| vec![f64::NAN; i]);
            col.push(value);
        }
        for col in sensors.values_mut() {
            col.resize(i + 1, f64::NAN);
        }
    }
    Ok(Recent { timestamps, sensors, time_in_life_h })
}

/// How a prediction is sent back.
#[derive(Deserialize, utoipa::IntoParams, Default)]
pub struct PredictQuery {
    /// `json` (the default) or `csv`: one value per row, for a spreadsheet.
    pub format: Option<String>,
}

/// All four answers from the live models: each says which version answered; missing models are named.
#[utoipa::path(post, path = "/api/ml/predict/{machine_id}", params(("machine_id" = String, Path), PredictQuery), request_body = PredictBody, responses((status = 200, description = "the four answers (JSON, or CSV with ?format=csv)"), (status = 400), (status = 401), (status = 404)))]
pub async fn predict(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PredictQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::bad_request(format!("format {other:?} is not offered: use json or csv"))),
    };
    auth::require(&state, &headers)?;
    machine(&id)?;
    let raw = raw.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the request body is too large (predict: at most 8 MB)")
        }
        _ => ApiError::bad_request(format!("cannot read the request body: {}", e.body_text())),
    })?;
    // An empty body (or `{}`) means "use the machine's own latest data".
    let body: PredictBody = if raw.iter().all(u8::is_ascii_whitespace) {
        PredictBody::default()
    } else {
        if !is_json(&headers) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        // axum's JSON reader names the field that failed (`rows: invalid type ...`), as the train routes do.
        Json::<PredictBody>::from_bytes(&raw)
            .map(|Json(b)| b)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {}", e.body_text())))?
    };
    if let Some(h) = body.time_in_life_h
        && !(h.is_finite() && h >= 0.0)
    {
        return Err(ApiError::bad_request(format!("time_in_life_h must be a number of hours >= 0, got {h}")));
    }
    let given = match &body.rows {
        Some(rows) => Some(recent_from_rows(rows, body.time_in_life_h)?),
        None => None,
    };
    let st = state.clone();
    let id2 = id.clone();
    let Json(answer) =
        tokio::task::spawn_blocking(move || predict_blocking(&st, &id2, given)).await.map_err(|e| ApiError::internal(e.to_string()))??;
    if csv {
        return Ok(super::export::csv_response(&format!("{id}-prediction.csv"), super::export::prediction_csv(&answer)));
    }
    Ok(Json(answer).into_response())
}

/// Same rule as the JSON extractor: `application/json` or any `+json` type, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")))
}

/// The sensors a model reads from the request's rows (a model on a grid: the sensors its columns come from).
fn needed_sensors(model: &crate::ml::model::LiveModel) -> Vec<String> {
    let columns: Vec<String> = match &model.payload {
        crate::ml::model::Payload::Forecast(m) => m.sensors.iter().map(|s| s.sensor.clone()).collect(),
        other => other.feature_spec().map(|s| s.sensors.clone()).unwrap_or_default(),
    };
    if model.grid.is_none() {
        return columns;
    }
    let mut sensors: Vec<String> = Vec::new();
    for c in &columns {
        let s = crate::data::grid::source_sensor(c);
        if !sensors.iter().any(|x| x == s) {
            sensors.push(s.to_string());
        }
    }
    sensors
}

/// Rows lacking a sensor some live model needs are refused as a whole (naming what is missing and what was
/// sent instead, which catches typos), rather than answered with four identical per-model errors.
fn check_readings(
    recent: &Recent,
    live: &[(crate::registry::VersionInfo, std::sync::Arc<crate::ml::model::LiveModel>)],
) -> Result<Vec<String>, ApiError> {
    let mut needed: Vec<String> = Vec::new();
    for (_, model) in live {
        for s in needed_sensors(model) {
            if !needed.contains(&s) {
                needed.push(s);
            }
        }
    }
    let missing: Vec<&String> = needed.iter().filter(|s| !recent.sensors.contains_key(*s)).collect();
    let unknown: Vec<String> = recent.sensors.keys().filter(|k| !needed.contains(k)).cloned().collect();
    if !missing.is_empty() {
        let names = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        let hint =
            if unknown.is_empty() { String::new() } else { format!("; the rows also carry sensors no model uses: {}", unknown.join(", ")) };
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_sensors",
            format!("rows lack sensor(s) the live models need: {}{hint}", names(&missing)),
        )
        .details(json!({ "missing": missing, "needed": needed, "unknown": unknown })));
    }
    Ok(unknown)
}

pub(super) fn predict_blocking(state: &AppState, id: &str, given: Option<Recent>) -> Result<Json<Value>, ApiError> {
    let mut live = Vec::new();
    // A damaged model file fails its own answer, not the other three.
    let mut damaged: BTreeMap<ModelType, String> = BTreeMap::new();
    for t in ModelType::ALL {
        match state.registry.load_live(id, t) {
            Ok(Some(found)) => live.push(found),
            Ok(None) => {}
            Err(crate::registry::RegistryError::Corrupt { path, message }) => {
                tracing::warn!(path = %path.display(), model_type = %t, "live model is damaged: {message}");
                damaged.insert(t, message);
            }
            Err(crate::registry::RegistryError::Ml(e)) => {
                tracing::warn!(model_type = %t, "live model cannot be loaded: {e}");
                damaged.insert(t, e.to_string());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mid = crate::data::MachineId::parse(id)?;
    if live.is_empty() && !crate::data::machine_dir(&state.data_dir, &mid).is_dir() {
        return Err(ApiError::not_found(format!("unknown machine {id:?}: no data folder and no trained model")));
    }
    // From the machine's own history: per grid the live models use, only the latest rows they need are kept
    // while the files stream by, put onto that grid as they are read.
    let tails = match &given {
        Some(_) => Vec::new(),
        None => crate::ml::predict::history_tails(live.iter().map(|(_, m)| (&m.payload, m.grid.as_ref())), |tail, grid| {
            crate::data::load_machine_tail(&state.data_dir, id, &state.data_caps(), tail, grid)
        })?,
    };
    let ignored = match &given {
        Some(r) => check_readings(r, &live)?,
        None => Vec::new(),
    };
    // Only from the machine's own data: rows sent with a request are too few to judge.
    let drift = crate::ml::predict::drift_from_tails(live.iter().map(|(_, m)| m.as_ref()), &tails);
    let mut predictions = Map::new();
    let mut missing = Vec::new();
    let mut live = live.into_iter().peekable();
    for t in ModelType::ALL {
        if let Some(reason) = damaged.get(&t) {
            predictions.insert(t.as_str().into(), json!({ "available": false, "damaged": true, "error": format!("the live {t} model file is damaged ({reason}): retrain it, or delete that version to use the previous one") }));
            continue;
        }
        let Some((info, model)) = live.next_if(|(_, m)| m.payload.model_type() == t) else {
            missing.push(t.as_str());
            predictions.insert(
                t.as_str().into(),
                json!({ "available": false, "message": format!("no {t} model for {id}: train it (POST /api/ml/train/{t})") }),
            );
            continue;
        };
        let (grid, urgency) = (model.grid.as_ref(), UrgencyHours::default());
        let answer = match &given {
            Some(r) => crate::ml::predict::answer(&model.payload, grid, r, &urgency),
            None => crate::ml::predict::answer_from_tails(&model.payload, grid, &tails, &urgency),
        }
        .map_err(|e| e.to_string());
        let entry = match answer {
            Ok(a) => json!({ "available": true, "version": info.version, "trained_at": info.trained_at, "answer": a }),
            Err(e) => json!({ "available": true, "version": info.version, "trained_at": info.trained_at, "error": e }),
        };
        predictions.insert(t.as_str().into(), entry);
    }
    let damaged: Vec<&str> = damaged.keys().map(|t| t.as_str()).collect();
    let predictions = Value::Object(predictions);
    let verdict = verdict_of(state, id, &predictions);
    Ok(Json(json!({ "machine_id": id, "source": if given.is_some() { "request rows" } else { "the machine's latest data" },
        "predictions": predictions, "verdict": verdict, "missing_models": missing, "damaged_models": damaged, "complete_system": missing.is_empty() && damaged.is_empty(), "ignored_sensors": ignored, "drift": drift })))
}

/// The one verdict over these answers, each weighed by its live model's graded report. The data's age is
/// not judged here (the rows may come from the request): the fleet view and the verdict route do that.
fn verdict_of(state: &AppState, id: &str, predictions: &Value) -> crate::verdict::Verdict {
    let mut reports = std::collections::HashMap::new();
    let mut qualities = std::collections::HashMap::new();
    for t in ModelType::ALL {
        if predictions[t.as_str()]["available"] != Value::Bool(true) {
            continue;
        }
        let version = predictions[t.as_str()]["version"].as_u64().and_then(|v| u32::try_from(v).ok());
        if let Ok(report) = state.registry.report(id, t, version) {
            qualities.insert(t.as_str().to_string(), crate::verdict::grade(t.as_str(), &report));
            reports.insert(t.as_str().to_string(), report);
        }
    }
    let mut inputs = crate::verdict::inputs_from(predictions, &reports, &qualities);
    inputs.stale_after_h = f64::INFINITY;
    crate::verdict::decide(&inputs)
}
