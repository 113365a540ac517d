//! The fleet view and what hangs off it: one verdict per machine (`GET /api/fleet`,
//! `GET /api/machines/{id}/verdict`, CSV export) and the alerts raised from verdicts, stale data, oversize
//! models and failed trainings (`GET /api/alerts`, `POST /api/alerts/{id}/ack`).
//!
//! Fast with hundreds of machines: a machine's verdict inputs (its models' answers and graded reports) are
//! cached under the machine's data-folder time and its live model versions, so a repeated request reads
//! only folder listings and small meta files; the verdict itself (which depends on the data's age) is
//! decided again on each request, which is pure and cheap.
use super::{ApiError, AppState, Path, Query, auth};
use crate::alerts::{AlertBook, Change, Kind};
use crate::lifecycle::Bus;
use crate::ml::ModelType;
use crate::scores::ScoreHistory;
use crate::util::sync::lock;
use crate::verdict::{self, Inputs, Quality, Severity, State, Verdict};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// Live models older than the newest data by more than this are "models stale": retrain them.
pub const MODEL_STALE_DAYS: f64 = 30.0;

/// The fleet's settings (from `[fleet]`), its cache and its alerts; one per daemon, shared by the API.
pub struct Fleet {
    settings: Mutex<Settings>,
    cache: Mutex<HashMap<String, Cached>>,
    alerts: Mutex<AlertBook>,
    bus: Mutex<Option<Bus>>,
    /// Each machine's last verdict sentence, so a change is announced once.
    last: Mutex<HashMap<String, String>>,
    /// Display names from the machine summaries.
    names: Mutex<HashMap<String, String>>,
    /// Where each evaluation's scores are kept (none: not kept, as in tests of the API alone).
    history: Mutex<Option<std::sync::Arc<ScoreHistory>>>,
    /// When the history last let its old days go (epoch seconds).
    pruned_at: Mutex<f64>,
    /// Every machine's tile after the latest evaluation on the cadence.
    scored: tokio::sync::watch::Sender<std::sync::Arc<Vec<Value>>>,
    /// Machines whose models answered again (data or models changed) since the start; the rest came from
    /// the cache.
    rescored: std::sync::atomic::AtomicU64,
    /// How the evaluations on the cadence went, for `/api/health`.
    evaluations: Mutex<Evaluations>,
    /// Asks for an evaluation before the next tick (new readings reached the machines' files).
    soon: tokio::sync::Notify,
}

/// The cadence's record: how long the latest evaluation took, for how many machines, and the slowest.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Evaluations {
    pub count: u64,
    pub last: Option<Evaluation>,
    /// The slowest since the start.
    pub slowest: Option<Evaluation>,
    /// Evaluations that took longer than the cadence (the next one then starts late, never twice at once).
    pub overran: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    pub at: String,
    pub machines: usize,
    /// Machines whose models answered again in this evaluation.
    pub rescored: u64,
    pub seconds: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub stale_data_h: f64,
}

#[derive(Clone, PartialEq)]
struct Key {
    data_mtime: SystemTime,
    versions: Vec<Option<u32>>,
}

#[derive(Clone)]
struct Cached {
    key: Key,
    inputs: Inputs,
    /// The four answers, in brief (see [`brief`]).
    answers: Value,
    models: Value,
    oldest_model_s: Option<f64>,
    error: Option<String>,
    /// The latest rows against the models' training data (see [`crate::ml::drift`]), in brief.
    drift: Value,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            settings: Mutex::new(Settings { stale_data_h: crate::config::FleetConfig::default().stale_data_h }),
            cache: Mutex::new(HashMap::new()),
            alerts: Mutex::new(AlertBook::in_memory(crate::config::FleetConfig::default().alert_retention_days)),
            bus: Mutex::new(None),
            last: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            history: Mutex::new(None),
            pruned_at: Mutex::new(0.0),
            scored: tokio::sync::watch::Sender::new(std::sync::Arc::new(Vec::new())),
            rescored: std::sync::atomic::AtomicU64::new(0),
            evaluations: Mutex::new(Evaluations::default()),
            soon: tokio::sync::Notify::new(),
        }
    }
}

impl Fleet {
    /// The daemon's settings, its alerts file, its score history and its bus (alert changes and verdict
    /// changes go out on it).
    pub fn configure(&self, settings: Settings, alerts: AlertBook, history: Option<std::sync::Arc<ScoreHistory>>, bus: Bus) {
        *lock(&self.settings) = settings;
        *lock(&self.alerts) = alerts;
        *lock(&self.history) = history;
        *lock(&self.bus) = Some(bus);
    }

    fn stale_data_h(&self) -> f64 {
        lock(&self.settings).stale_data_h
    }

    fn announce(&self, changes: &[Change]) {
        if let Some(bus) = lock(&self.bus).as_ref() {
            for c in changes {
                bus.emit(c.name(), json!(c.alert()));
            }
        }
    }

    /// Tells the daemon's other parts (MQTT) about a change made through the API.
    pub fn emit(&self, kind: &str, data: Value) {
        if let Some(bus) = lock(&self.bus).as_ref() {
            bus.emit(kind, data);
        }
    }

    /// Records an event alert (oversize model, failed training) and announces it.
    pub fn event_alert(&self, machine: &str, kind: Kind, message: String) {
        let r = lock(&self.alerts).event(machine, kind, message, crate::util::time::now_secs());
        match r {
            Ok(c) => self.announce(&[c]),
            Err(e) => tracing::warn!("alert not saved: {e}"),
        }
    }

    /// Feeds one machine's verdict to the alerts; announces alert changes and a changed verdict.
    fn observe(&self, machine: &str, v: &Verdict) {
        let r = lock(&self.alerts).observe(machine, v, crate::util::time::now_secs());
        match r {
            Ok(changes) => self.announce(&changes),
            Err(e) => tracing::warn!("alerts not saved: {e}"),
        }
        // The sentence, and the anomaly answer, which a weak anomaly model can flip without changing the sentence.
        let key = format!("{}|{:?}", v.sentence, v.anomalous);
        let changed = lock(&self.last).insert(machine.to_string(), key.clone()).as_deref() != Some(key.as_str());
        if changed && let Some(bus) = lock(&self.bus).as_ref() {
            bus.emit("verdict_changed", json!({ "machine_id": machine, "verdict": v }));
        }
    }

    /// Writes an evaluation's scores to the history, and once an hour lets the oldest days go. The history is
    /// a record, not the verdict: failing to write it is said, and the scoring goes on.
    fn keep_scores(&self, tiles: &[Value], now_s: f64) {
        let Some(history) = lock(&self.history).clone() else { return };
        if let Err(e) = history.record(tiles, now_s) {
            tracing::warn!("score history not written: {e}");
        }
        let due = {
            let mut pruned = lock(&self.pruned_at);
            let due = now_s - *pruned >= 3_600.0;
            if due {
                *pruned = now_s;
            }
            due
        };
        if due && let Err(e) = history.prune(now_s) {
            tracing::warn!("score history not pruned: {e}");
        }
    }

    /// The machine's scores (see [`ScoreHistory::read`]); empty when no history is kept.
    pub fn score_history(&self, machine: &str, since_s: Option<f64>, limit: usize) -> Result<Vec<Value>, crate::scores::ScoreError> {
        match lock(&self.history).clone() {
            Some(h) => h.read(machine, since_s, limit),
            None => Ok(Vec::new()),
        }
    }

    /// The tiles of each evaluation on the cadence, as they come.
    pub fn scores(&self) -> tokio::sync::watch::Receiver<std::sync::Arc<Vec<Value>>> {
        self.scored.subscribe()
    }

    pub fn active_alerts(&self, machine: &str) -> Vec<crate::alerts::Alert> {
        lock(&self.alerts).active_for(machine)
    }

    /// The next evaluation runs now (or right after the one running), and the cadence starts again from it.
    pub fn evaluate_soon(&self) {
        self.soon.notify_one();
    }

    pub fn evaluations(&self) -> Evaluations {
        lock(&self.evaluations).clone()
    }

    fn rescored_so_far(&self) -> u64 {
        self.rescored.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records one evaluation on the cadence; one that took longer than the cadence is said in the log, as
    /// the verdicts then come later than configured.
    fn record_evaluation(&self, e: Evaluation, every: std::time::Duration) {
        let over = e.seconds > every.as_secs_f64();
        if over {
            tracing::warn!(
                machines = e.machines,
                rescored = e.rescored,
                seconds = e.seconds,
                every_s = every.as_secs_f64(),
                "scoring every machine took longer than fleet.evaluate_interval_s; verdicts come later than configured"
            );
        }
        let mut book = lock(&self.evaluations);
        book.count += 1;
        book.overran += u64::from(over);
        if book.slowest.as_ref().is_none_or(|s| e.seconds > s.seconds) {
            book.slowest = Some(e.clone());
        }
        book.last = Some(e);
    }
}

fn now() -> f64 {
    crate::util::time::now_secs()
}

fn secs_of(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The verdict inputs of one machine, from the cache when neither its data nor its live models changed.
fn inputs_of(state: &AppState, id: &str) -> Result<Cached, ApiError> {
    let mid = crate::data::MachineId::parse(id)?;
    let dir = crate::data::machine_dir(&state.data_dir, &mid);
    let data_mtime = crate::data::folder_mtime(&dir);
    let mut live = Vec::new();
    for t in ModelType::ALL {
        live.push(state.registry.live(id, t)?);
    }
    let key = Key { data_mtime, versions: live.iter().map(|l| l.as_ref().map(|v| v.version)).collect() };
    if let Some(c) = lock(&state.fleet.cache).get(id).filter(|c| c.key == key) {
        return Ok(c.clone());
    }
    let mut reports = HashMap::new();
    let mut qualities: HashMap<String, Quality> = HashMap::new();
    let mut models = Map::new();
    let mut oldest: Option<f64> = None;
    for (t, info) in ModelType::ALL.iter().zip(&live) {
        let Some(info) = info else {
            models.insert(t.as_str().into(), Value::Null);
            continue;
        };
        let report = state.registry.report(id, *t, Some(info.version)).unwrap_or(Value::Null);
        let q = verdict::grade(t.as_str(), &report);
        let trained = crate::util::time::parse_timestamp(&info.trained_at);
        if let Some(s) = trained {
            oldest = Some(oldest.map_or(s, |o: f64| o.min(s)));
        }
        models.insert(
            t.as_str().into(),
            json!({ "version": info.version, "trained_at": info.trained_at, "grade": q.grade, "quality": q.sentences, "oversize": info.oversize }),
        );
        qualities.insert(t.as_str().into(), q);
        reports.insert(t.as_str().to_string(), report);
    }
    let (inputs, answers, drift, error) = if reports.is_empty() {
        (Inputs::default(), Value::Null, Value::Null, None)
    } else {
        match super::models::predict_blocking(state, id, None) {
            Ok(Json(answer)) => (
                verdict::inputs_from(&answer["predictions"], &reports, &qualities),
                brief(&answer["predictions"]),
                drift_brief(&answer["drift"]),
                None,
            ),
            Err(e) => (Inputs { has_models: true, ..Default::default() }, Value::Null, Value::Null, Some(e.message_for(false).to_string())),
        }
    };
    let c = Cached { key, inputs, answers, models: Value::Object(models), oldest_model_s: oldest, error, drift };
    state.fleet.rescored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    lock(&state.fleet.cache).insert(id.to_string(), c.clone());
    Ok(c)
}

/// Each live model's answer in a few numbers (what a dashboard shows beside the verdict): the forecast's
/// values stay behind `POST /api/ml/predict`.
fn brief(predictions: &Value) -> Value {
    let mut out = Map::new();
    for t in ModelType::ALL {
        let p = &predictions[t.as_str()];
        let a = &p["answer"];
        let v = if p["available"] != Value::Bool(true) {
            Value::Null
        } else if !p["error"].is_null() {
            json!({ "error": p["error"] })
        } else {
            match t {
                ModelType::Classification => {
                    json!({ "failure_probability": a["failure_probability"], "will_fail": a["will_fail"], "health": a["health"] })
                }
                ModelType::Regression => json!({ "rul_hours": a["rul_hours"], "urgency": a["urgency"], "at_cap": a["at_cap"] }),
                ModelType::Anomaly => {
                    json!({ "is_anomaly": a["is_anomaly"], "anomaly_score": a["anomaly_score"], "threshold": a["threshold"],
                    "top_sensors": a["top_sensors"].as_array().map(|s| s.iter().take(3).cloned().collect::<Vec<_>>()) })
                }
                ModelType::Timeseries => json!({ "start": a["start"], "horizon_hours": a["horizon_hours"] }),
            }
        };
        out.insert(t.as_str().into(), v);
    }
    Value::Object(out)
}

/// Sensors of the drift shown beside the verdict, largest first.
const DRIFT_SHOWN: usize = 5;

/// The drift in brief: its level, the window and the sensors that moved most.
fn drift_brief(d: &Value) -> Value {
    if d.is_null() {
        return Value::Null;
    }
    let sensors: Vec<Value> = d["sensors"].as_array().map(|s| s.iter().take(DRIFT_SHOWN).cloned().collect()).unwrap_or_default();
    json!({ "level": d["level"], "rows": d["rows"], "from": d["from"], "to": d["to"], "sensors": sensors, "note": d["note"] })
}

/// Why the live models no longer fit the machine, if they do not: much newer data, or readings that
/// drifted far from what they were trained on.
fn stale_reason(c: &Cached, data_s: f64) -> Option<String> {
    if let Some(m) = c.oldest_model_s
        && data_s - m > MODEL_STALE_DAYS * 86_400.0
    {
        return Some(format!("the data is more than {MODEL_STALE_DAYS} days newer than the oldest live model"));
    }
    if c.drift["level"] == "large" {
        let moved: Vec<String> = c.drift["sensors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["level"] == "large")
            .map(|s| {
                let outside = s["outside"].as_f64().unwrap_or(f64::NAN) * 100.0;
                format!("{} ({outside:.0} % of readings outside the trained range)", s["sensor"].as_str().unwrap_or("?"))
            })
            .collect();
        return Some(format!("the latest readings drifted from the training data: {}", moved.join(", ")));
    }
    None
}

fn light(v: &Verdict) -> &'static str {
    match (v.state, v.severity) {
        (State::Fresh, Some(Severity::Act)) => "red",
        (State::Fresh, Some(Severity::Plan)) => "orange",
        (State::Fresh, Some(Severity::Watch)) => "yellow",
        (State::Fresh, _) => "green",
        _ => "grey",
    }
}

/// One machine's tile: its verdict decided now, with the ages of its data and models.
fn tile(state: &AppState, id: &str, name: &str) -> Result<(Value, Verdict), ApiError> {
    let c = inputs_of(state, id)?;
    let now = now();
    let data_s = secs_of(c.key.data_mtime);
    let data_age_h = (data_s > 0.0).then(|| ((now - data_s) / 3600.0).max(0.0));
    let mut inputs = c.inputs.clone();
    inputs.data_age_h = data_age_h;
    inputs.stale_after_h = state.fleet.stale_data_h();
    let v = verdict::decide(&inputs);
    let stale = stale_reason(&c, data_s);
    let models_state = match (c.oldest_model_s, &stale) {
        (None, _) => "no_models",
        (Some(_), Some(_)) => "models_stale",
        (Some(_), None) => "ok",
    };
    let alerts = state.fleet.active_alerts(id);
    let t = json!({
        "machine_id": id, "display_name": name, "light": light(&v), "rank": v.rank,
        "state": v.state, "severity": v.severity, "label": v.label, "sentence": v.sentence,
        "rul_days": v.rul_days, "drivers": v.drivers, "contradiction": v.contradiction,
        "data_age_h": data_age_h, "data_updated_at": (data_s > 0.0).then(|| crate::alerts::stamp(data_s)),
        "models_age_h": c.oldest_model_s.map(|m| ((now - m) / 3600.0).max(0.0)),
        "models_state": models_state, "stale_reason": stale, "drift": c.drift, "models": c.models, "answers": c.answers, "error": c.error,
        "alerts_active": alerts.len(),
    });
    Ok((t, v))
}

/// Every machine's tile, worst first; feeds the alerts as a side effect.
pub fn fleet_blocking(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let ids = crate::data::machine_ids(&state.data_dir).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let name = display_name(state, &id);
        match tile(state, &id, &name) {
            Ok((t, v)) => {
                state.fleet.observe(&id, &v);
                out.push(t);
            }
            Err(e) => out.push(json!({ "machine_id": id, "display_name": name, "light": "grey", "rank": 0, "state": "no_answer",
                "label": "cannot load", "sentence": e.message_for(false), "error": e.message_for(false) })),
        }
    }
    out.sort_by(|a, b| {
        b["rank"].as_u64().cmp(&a["rank"].as_u64()).then_with(|| {
            let rul = |v: &Value| v["rul_days"].as_f64().unwrap_or(f64::INFINITY);
            rul(a).total_cmp(&rul(b))
        })
    });
    Ok(out)
}

/// The display name from the summary cache (which reads the data only when it changed).
fn display_name(state: &AppState, id: &str) -> String {
    lock(&state.fleet.names).get(id).cloned().unwrap_or_else(|| id.to_string())
}

async fn blocking<T: Send + 'static>(state: &AppState, f: impl FnOnce(&AppState) -> T + Send + 'static) -> Result<T, ApiError> {
    let st = state.clone();
    tokio::task::spawn_blocking(move || f(&st)).await.map_err(|e| ApiError::internal(e.to_string()))
}

/// Refreshes the display names from the machine summaries (cached per data-folder time by AppState).
async fn refresh_names(state: &AppState) {
    if let Ok(all) = state.machine_summaries().await {
        let mut names = lock(&state.fleet.names);
        for (id, s) in all {
            if let Ok(s) = s {
                names.insert(id, s.name);
            }
        }
    }
}

#[utoipa::path(get, path = "/api/fleet", responses((status = 200, description = "one tile per machine, worst first: traffic light, verdict, RUL in days, driving sensors, ages of data and models")))]
pub async fn fleet(AxState(state): AxState<AppState>) -> Result<Json<Value>, ApiError> {
    refresh_names(&state).await;
    let tiles = blocking(&state, fleet_blocking).await??;
    let count = |l: &str| tiles.iter().filter(|t| t["light"] == l).count();
    let summary = json!({ "act_now": count("red"), "plan": count("orange"), "watch": count("yellow"), "ok": count("green"), "unknown": count("grey") });
    Ok(Json(
        json!({ "total": tiles.len(), "summary": summary, "stale_data_h": state.fleet.stale_data_h(), "generated_at": crate::alerts::stamp(now()), "machines": tiles }),
    ))
}

#[utoipa::path(get, path = "/api/fleet.csv", responses((status = 200, description = "the fleet view as CSV")))]
pub async fn fleet_csv(AxState(state): AxState<AppState>) -> Result<Response, ApiError> {
    refresh_names(&state).await;
    let tiles = blocking(&state, fleet_blocking).await??;
    let cols = [
        "machine_id",
        "display_name",
        "light",
        "label",
        "sentence",
        "rul_days",
        "drivers",
        "data_age_h",
        "models_age_h",
        "models_state",
        "alerts_active",
    ];
    let rows: Vec<Vec<Value>> = tiles.iter().map(|t| cols.iter().map(|c| t[*c].clone()).collect()).collect();
    Ok(super::export::csv_response("fleet.csv", super::export::csv_table(&cols, &rows)))
}

/// One machine's verdict with how each answer was weighed, and its active alerts.
pub fn verdict_blocking(state: &AppState, id: &str) -> Result<Value, ApiError> {
    let mid = crate::data::MachineId::parse(id)?;
    if !crate::data::machine_dir(&state.data_dir, &mid).is_dir() && state.registry.machines()?.iter().all(|m| m != id) {
        return Err(ApiError::not_found(format!("unknown machine {id:?}")));
    }
    let (t, v) = tile(state, id, &display_name(state, id))?;
    state.fleet.observe(id, &v);
    Ok(json!({ "machine_id": id, "verdict": v, "tile": t, "alerts": state.fleet.active_alerts(id) }))
}

#[utoipa::path(get, path = "/api/machines/{machine_id}/verdict", params(("machine_id" = String, Path)), responses((status = 200, description = "severity (ok / watch / plan / act), a sentence with the action and the reason, how each model's answer was weighed"), (status = 404)))]
pub async fn machine_verdict(AxState(state): AxState<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    crate::data::MachineId::parse(&id)?;
    refresh_names(&state).await;
    Ok(Json(blocking(&state, move |s| verdict_blocking(s, &id)).await??))
}

/// Scores a request gets at most.
const MAX_SCORES: usize = 10_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScoresQuery {
    /// Only scores from this time on (RFC 3339 or epoch seconds).
    pub since: Option<String>,
    /// The newest this many (default 500, at most 10000).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/machines/{machine_id}/scores", params(("machine_id" = String, Path), ScoresQuery), responses((status = 200, description = "the machine's score history, oldest first: each scoring of new data with its verdict, the four answers in brief, the sensors behind it and the model versions (kept fleet.score_history_days)"), (status = 400), (status = 404)))]
pub async fn machine_scores(
    AxState(state): AxState<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ScoresQuery>,
) -> Result<Json<Value>, ApiError> {
    let mid = crate::data::MachineId::parse(&id)?;
    let since = match q.since.as_deref() {
        None => None,
        Some(text) => Some(crate::util::time::parse_timestamp(text).ok_or_else(|| {
            ApiError::bad_request(format!("since = {text:?} is not a time: give RFC 3339 (2026-12-01T00:00:00Z) or epoch seconds"))
        })?),
    };
    let limit = q.limit.unwrap_or(500);
    if !(1..=MAX_SCORES).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit = {limit}: give 1 to {MAX_SCORES}")));
    }
    let known = blocking(&state, move |s| {
        crate::data::machine_dir(&s.data_dir, &mid).is_dir() || s.registry.machines().is_ok_and(|m| m.iter().any(|x| x == mid.as_str()))
    })
    .await?;
    if !known {
        return Err(ApiError::not_found(format!("unknown machine {id:?}")));
    }
    let scores =
        blocking(&state, move |s| s.fleet.score_history(&id, since, limit)).await?.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({ "count": scores.len(), "scores": scores })))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AlertQuery {
    /// Include cleared alerts (kept for `fleet.alert_retention_days`).
    pub all: Option<bool>,
    pub machine_id: Option<String>,
}

#[utoipa::path(get, path = "/api/alerts", params(AlertQuery), responses((status = 200, description = "alerts, newest first")))]
pub async fn alerts(AxState(state): AxState<AppState>, Query(q): Query<AlertQuery>) -> Result<Json<Value>, ApiError> {
    let list: Vec<_> = lock(&state.fleet.alerts)
        .list(q.all.unwrap_or(false))
        .into_iter()
        .filter(|a| q.machine_id.as_ref().is_none_or(|m| *m == a.machine_id))
        .collect();
    let active = list.iter().filter(|a| a.status == crate::alerts::Status::Active).count();
    Ok(Json(json!({ "total": list.len(), "active": active, "alerts": list })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Who acknowledges (shown beside the alert); "operator" when absent.
    pub by: Option<String>,
}

#[utoipa::path(post, path = "/api/alerts/{alert_id}/ack", params(("alert_id" = u64, Path)), request_body = AckBody, responses((status = 200, description = "acknowledged: who and when"), (status = 400), (status = 401), (status = 404)))]
pub async fn ack(
    AxState(state): AxState<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<Value>, ApiError> {
    auth::require(&state, &headers)?;
    let id: u64 =
        id.parse().map_err(|_| ApiError::bad_request(format!("alert id {id:?} is not a number: use an id from GET /api/alerts")))?;
    let body: AckBody = if raw.iter().all(u8::is_ascii_whitespace) {
        AckBody::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e} (send {{\"by\": \"your name\"}})")))?
    };
    let who = body.by.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or("operator");
    if who.chars().count() > 64 || who.chars().any(char::is_control) {
        return Err(ApiError::bad_request("by must be a name of at most 64 characters without control characters"));
    }
    let change = lock(&state.fleet.alerts).ack(id, who, now()).map_err(|e| match e {
        crate::alerts::AlertError::NotFound(_) => ApiError::not_found(format!("{e}: see GET /api/alerts?all=true")),
        other => ApiError::internal(other.to_string()),
    })?;
    state.fleet.announce(std::slice::from_ref(&change));
    Ok(Json(json!({ "success": true, "alert": change.alert() })))
}

/// One evaluation of every machine: tiles, alerts, the score history, and the record of how long it took.
async fn evaluate(state: &AppState, every: std::time::Duration) {
    let (began, rescored_before) = (std::time::Instant::now(), state.fleet.rescored_so_far());
    refresh_names(state).await;
    let scored = blocking(state, |s| {
        let tiles = fleet_blocking(s)?;
        s.fleet.keep_scores(&tiles, now());
        Ok::<_, ApiError>(tiles)
    });
    match scored.await {
        // This tick's scores: MQTT publishes each as the machine's retained health. Not on the bus,
        // where hundreds of machines a tick would push the alerts out of its backlog.
        Ok(Ok(tiles)) => {
            let e = Evaluation {
                at: crate::alerts::stamp(now()),
                machines: tiles.len(),
                rescored: state.fleet.rescored_so_far().saturating_sub(rescored_before),
                seconds: began.elapsed().as_secs_f64(),
            };
            state.fleet.record_evaluation(e, every);
            state.fleet.scored.send_replace(std::sync::Arc::new(tiles));
        }
        Ok(Err(e)) => tracing::warn!("fleet evaluation failed: {}", e.message),
        Err(e) => tracing::warn!("fleet evaluation failed: {}", e.message),
    }
}

/// Evaluates every machine's verdict every `every` and as soon as new readings reached the machines' files
/// ([`Fleet::evaluate_soon`]; the cadence then starts again from there), with alerts and verdict changes on
/// the bus; turns failed trainings and oversize models into alerts, until `shutdown`.
pub async fn watch(state: AppState, bus: Bus, every: std::time::Duration, shutdown: crate::lifecycle::Shutdown) {
    let mut jobs = state.queue.subscribe();
    let mut events = bus.subscribe();
    // The first evaluation waits one interval: a starting daemon has better things to do, and a page view
    // evaluates at once anyway.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => evaluate(&state, every).await,
            _ = state.fleet.soon.notified() => {
                evaluate(&state, every).await;
                tick.reset();
            }
            job = jobs.recv() => match job {
                Ok(job) if job.state == crate::jobs::JobState::Failure => {
                    let why = job.error.clone().unwrap_or_else(|| "no reason given".into());
                    state.fleet.event_alert(&job.request.machine_id, Kind::TrainingFailed, format!("training job {} failed: {why}", job.id));
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            ev = events.recv() => match ev {
                Ok(ev) if ev.kind == "model_oversize" => {
                    let machine = ev.data["machine_id"].as_str().unwrap_or_default().to_string();
                    let what = ev.data["warning"].as_str().map_or_else(|| format!("a {} model is oversize", ev.data["model_type"].as_str().unwrap_or("")), str::to_string);
                    state.fleet.event_alert(&machine, Kind::ModelOversize, what);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
