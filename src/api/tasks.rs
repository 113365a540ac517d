//! Training requests and tasks, in the seed's paths and shapes.
use super::{ApiError, AppState, Body, Path, Query, auth};
use crate::jobs::{Job, JobRequest, JobState};
use crate::ml::{ModelType, Quality, TrainParams};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::time::Duration;

/// Body of the single-model routes (`time_limit` in seconds) and, with `model_types`, of the batch route.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainBody {
    pub machine_id: String,
    /// Seconds per model.
    pub time_limit: Option<f64>,
    /// Batch route: per-model time limit (seconds).
    pub time_limit_per_model: Option<f64>,
    /// Batch route: which models (default all four).
    pub model_types: Option<Vec<String>>,
    pub horizon_hours: Option<f64>,
    pub contamination: Option<f64>,
    /// `[k, n]`: an anomaly alarm needs k of the last n readings over the threshold.
    pub alarm_k_of_n: Option<[u32; 2]>,
    pub forecast_hours: Option<f64>,
    /// fast, standard or best.
    pub quality: Option<String>,
    pub exclude_sensors: Option<Vec<String>>,
    pub threads: Option<usize>,
    pub seed: Option<u64>,
    /// Training (and validation) rows the tree models fit on at most, taken evenly across lives.
    pub max_train_rows: Option<usize>,
}

fn params(state: &AppState, b: &TrainBody) -> Result<TrainParams, ApiError> {
    let mut p = state.training.defaults.clone();
    if let Some(t) = b.time_limit.or(b.time_limit_per_model) {
        let range = (crate::ml::bounds::TIME_LIMIT_S.0, state.training.max_time_limit_s);
        crate::ml::check_range("time_limit", t, range, " seconds (training.max_time_limit_s sets the upper end)")
            .map_err(ApiError::bad_request)?;
        p.time_limit_s = t;
    }
    if let Some(q) = &b.quality {
        p.quality = Quality::parse(q).ok_or_else(|| ApiError::bad_request(format!("quality {q:?}: use fast, standard or best")))?;
    }
    if let Some(h) = b.horizon_hours {
        p.horizon_hours = h;
    }
    if let Some(c) = b.contamination {
        p.contamination = c;
    }
    if let Some(k_of_n) = b.alarm_k_of_n {
        p.alarm_k_of_n = k_of_n;
    }
    if let Some(f) = b.forecast_hours {
        p.forecast_hours = f;
    }
    if let Some(x) = &b.exclude_sensors {
        p.exclude_sensors = x.clone();
    }
    if let Some(t) = b.threads {
        // The configured budget is a ceiling: the device may run other services beside training.
        let ceiling = state.training.defaults.threads.max(1);
        if t == 0 || t > ceiling {
            return Err(ApiError::bad_request(format!(
                "threads must be between 1 and {ceiling} (training.threads on this device), got {t}"
            )));
        }
        p.threads = t;
    }
    if let Some(s) = b.seed {
        p.seed = s;
    }
    if let Some(m) = b.max_train_rows {
        p.max_train_rows = m;
    }
    p.validate().map_err(ApiError::bad_request)?;
    Ok(p)
}

/// Validates the machine (id, folder, loadable data) before a job is queued, so bad requests fail at once.
async fn check_machine(state: &AppState, id: &str, params: &TrainParams) -> Result<(), ApiError> {
    crate::data::MachineId::parse(id)?;
    let summary = state.machine_summary(id).await?;
    // A misspelt exclusion would silently train on the sensor the user meant to drop.
    if let Some(bad) = params.exclude_sensors.iter().find(|s| !summary.sensor_names.contains(s)) {
        return Err(ApiError::bad_request(format!(
            "exclude_sensors: {id} has no sensor {bad:?} (sensors: {})",
            summary.sensor_names.join(", ")
        )));
    }
    // Excluding every sensor is left to the trainers: the job fails with "nothing to learn from" on the
    // progress view, where the page shows a failed job's reason (tests/e2e step 8 relies on it).
    Ok(())
}

async fn submit(
    state: &AppState,
    headers: &HeaderMap,
    body: TrainBody,
    types: Vec<ModelType>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth::require(state, headers)?;
    let params = params(state, &body)?;
    check_machine(state, &body.machine_id, &params).await?;
    if let Some(refusal) = (state.hooks.admission_check)(&body.machine_id, &types) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "insufficient_resources", refusal.0).details(refusal.1));
    }
    let request = JobRequest { machine_id: body.machine_id.clone(), model_types: types, params, origin: Default::default() };
    let complete = request.complete_system();
    let queue = state.queue.clone();
    let job = tokio::task::spawn_blocking(move || queue.submit(request)).await.map_err(|e| ApiError::internal(e.to_string()))??;
    let position = state.queue.position(&job.id);
    let names: Vec<&str> = job.request.model_types.iter().map(|t| t.as_str()).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "success": true, "machine_id": job.request.machine_id, "task_id": job.id, "complete_system": complete,
            "model_types": names, "queue_position": position,
            "message": format!("queued {} for {}{}", names.join(", "), job.request.machine_id, position.map_or(String::new(), |p| format!(" (position {p})"))),
        })),
    ))
}

macro_rules! single_route {
    ($name:ident, $path:literal, $t:expr) => {
        #[utoipa::path(post, path = $path, request_body = TrainBody, responses((status = 202, description = "queued"), (status = 400), (status = 401), (status = 404), (status = 429, description = "queue full"), (status = 503)))]
        pub async fn $name(State(state): State<AppState>, headers: HeaderMap, Body(body): Body<TrainBody>) -> Result<(StatusCode, Json<Value>), ApiError> {
            if body.model_types.is_some() {
                return Err(ApiError::bad_request("model_types belongs to /api/ml/train/batch"));
            }
            submit(&state, &headers, body, vec![$t]).await
        }
    };
}

single_route!(train_classification, "/api/ml/train/classification", ModelType::Classification);
single_route!(train_regression, "/api/ml/train/regression", ModelType::Regression);
single_route!(train_anomaly, "/api/ml/train/anomaly", ModelType::Anomaly);
single_route!(train_timeseries, "/api/ml/train/timeseries", ModelType::Timeseries);

/// A batch for one machine: all four models unless `model_types` says otherwise.
#[utoipa::path(post, path = "/api/ml/train/batch", request_body = TrainBody, responses((status = 202, description = "queued"), (status = 400), (status = 401), (status = 404), (status = 429, description = "queue full"), (status = 503)))]
pub async fn train_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body<TrainBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let types = match &body.model_types {
        None => ModelType::ALL.to_vec(),
        Some(list) if list.is_empty() => {
            return Err(ApiError::bad_request("model_types is empty: give at least one, or omit it for all four"));
        }
        Some(list) => model_list(list)?,
    };
    submit(&state, &headers, body, types).await
}

/// Each entry one type: a repeated type is a client bug worth naming, and a comma inside an entry would
/// otherwise smuggle in a second list.
fn model_list(list: &[String]) -> Result<Vec<ModelType>, ApiError> {
    let mut out: Vec<ModelType> = Vec::new();
    for name in list {
        let t = ModelType::parse(name.trim()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "model_types: unknown model type {name:?}: use classification, regression, anomaly or timeseries"
            ))
        })?;
        if out.contains(&t) {
            return Err(ApiError::bad_request(format!("model_types lists {t} twice")));
        }
        out.push(t);
    }
    out.sort();
    Ok(out)
}

/// TaskStatusResponse.
pub fn task_json(job: &Job, queue_position: Option<usize>) -> Value {
    json!({
        "task_id": job.id,
        "status": job.state,
        "machine_id": job.request.machine_id,
        "model_types": job.request.model_types,
        "complete_system": job.request.complete_system(),
        "progress": job.progress,
        "leaderboard": job.leaderboard,
        "logs": job.logs,
        "error": job.error,
        "result": job.result,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "queue_position": queue_position,
        "waiting_reason": job.waiting_reason,
        "requeued_from": job.requeued_from,
        "params": job.request.params,
        "origin": job.request.origin,
    })
}

fn find(state: &AppState, id: &str) -> Result<Job, ApiError> {
    state.queue.get(id).ok_or_else(|| ApiError::not_found(format!("no task {id:?}")))
}

#[utoipa::path(get, path = "/api/ml/tasks/{task_id}", params(("task_id" = String, Path)), responses((status = 200, description = "TaskStatusResponse"), (status = 404)))]
pub async fn get_task(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let job = find(&state, &id)?;
    Ok(Json(task_json(&job, state.queue.position(&id))))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct TaskFilter {
    pub machine_id: Option<String>,
    /// PENDING, STARTED, PROGRESS, SUCCESS, FAILURE, REVOKED
    pub status: Option<String>,
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/ml/tasks", params(TaskFilter), responses((status = 200, description = "tasks, newest first")))]
pub async fn list_tasks(State(state): State<AppState>, Query(f): Query<TaskFilter>) -> Result<Json<Value>, ApiError> {
    let wanted = match &f.status {
        Some(s) => Some(JobState::parse(s).ok_or_else(|| ApiError::bad_request(format!("status {s:?} is not a task state")))?),
        None => None,
    };
    let tasks: Vec<Value> = state
        .queue
        .list()
        .iter()
        .filter(|j| f.machine_id.as_ref().is_none_or(|m| *m == j.request.machine_id))
        .filter(|j| wanted.is_none_or(|w| j.state == w))
        .take(f.limit.unwrap_or(500))
        .map(|j| {
            let mut v = task_json(j, state.queue.position(&j.id));
            v["logs"] = json!(j.logs.len());
            v
        })
        .collect();
    Ok(Json(json!({ "total": tasks.len(), "tasks": tasks, "pending": state.queue.pending_count(), "capacity": state.queue.capacity() })))
}

#[utoipa::path(post, path = "/api/ml/tasks/{task_id}/cancel", params(("task_id" = String, Path)), responses((status = 200, description = "cancelled or signalled"), (status = 401), (status = 404), (status = 409, description = "already finished")))]
pub async fn cancel_task(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    auth::require(&state, &headers)?;
    let queue = state.queue.clone();
    let id2 = id.clone();
    let outcome = tokio::task::spawn_blocking(move || queue.cancel(&id2)).await.map_err(|e| ApiError::internal(e.to_string()))??;
    use crate::jobs::CancelOutcome as C;
    match outcome {
        C::RemovedPending => Ok(Json(json!({ "success": true, "task_id": id, "status": "REVOKED", "message": "removed from the queue" }))),
        C::Signalled => Ok(Json(
            json!({ "success": true, "task_id": id, "status": "CANCELLING", "message": "stopping at the next safe point (under a second); finished models of the batch are kept" }),
        )),
        C::AlreadyFinished(s) => Err(ApiError::conflict(format!("task {id} already ended ({s:?})")).details(json!({ "status": s }))),
    }
}

/// Server-Sent Events: the task's status now, then every change as it happens, until it ends.
#[utoipa::path(get, path = "/api/ml/tasks/{task_id}/events", params(("task_id" = String, Path)), responses((status = 200, description = "text/event-stream of TaskStatusResponse"), (status = 404)))]
pub async fn task_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let first = find(&state, &id)?;
    let rx = state.queue.subscribe();
    let queue = state.queue.clone();
    let stream = async_stream(first, rx, queue, id);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The first snapshot, then the job's changes; ends right after the snapshot that shows it finished.
fn async_stream(
    first: Job,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Job>>,
    queue: std::sync::Arc<crate::jobs::JobQueue>,
    id: String,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    struct St {
        first: Option<Job>,
        rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Job>>,
        queue: std::sync::Arc<crate::jobs::JobQueue>,
        id: String,
        done: bool,
    }
    let st = St { first: Some(first), rx, queue, id, done: false };
    futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let job = match st.first.take() {
            Some(j) => j,
            None => loop {
                match st.rx.recv().await {
                    Ok(j) if j.id == st.id => break (*j).clone(),
                    Ok(_) => continue,
                    // Fell behind: send the current state instead of the missed ones.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => match st.queue.get(&st.id) {
                        Some(j) => break j,
                        None => return None,
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            },
        };
        st.done = job.state.is_finished();
        let data = serde_json::to_string(&task_json(&job, None)).unwrap_or_default();
        Some((Ok(SseEvent::default().event("progress").data(data)), st))
    })
}
