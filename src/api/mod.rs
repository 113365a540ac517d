//! The HTTP API (the seed's paths and shapes). [`serve`] takes a bound listener, the routes to serve besides
//! the API's (the daemon passes the page's) and a shutdown future, so tests start it on port 0 and one signal
//! stops everything. Connections are served by [`server`] (timeouts, a connection cap) and every request
//! passes [`intake`] (auth before the body, body limits and budget) before its handler.
mod auth;
mod error;
mod host;
pub mod intake;
mod limits;
mod models;
mod redact;
pub mod server;
mod tasks;

pub use error::{ApiError, Body, Path, Query};
pub use host::AllowedHosts;
pub use limits::HttpLimits;
pub use server::{fd_limit, raise_fd_limit};

use crate::data::MachineSummary;
use crate::jobs::JobQueue;
use crate::lifecycle::Heartbeat;
use crate::ml::{ModelType, TrainParams};
use crate::registry::Registry;
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use intake::{BODY_LIMIT, PREDICT_BODY_LIMIT};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use utoipa::OpenApi;

pub use crate::jobs::Refusal;
pub type AdmissionCheck = Arc<dyn Fn(&str, &[ModelType]) -> Option<Refusal> + Send + Sync>;
/// Extra facts for /api/health from parts that are not the API's (guard, MQTT).
pub type HealthExtra = Arc<dyn Fn() -> Value + Send + Sync>;

/// The state folder is the registry's parent (`<state_dir>/models`).
fn private_folders(data_dir: &std::path::Path, registry: &Registry) -> Vec<String> {
    let mut out = redact::spellings(data_dir);
    if let Some(state_dir) = registry.root().parent() {
        out.extend(redact::spellings(state_dir));
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<JobQueue>,
    pub registry: Arc<Registry>,
    pub data_dir: PathBuf,
    pub token: Arc<String>,
    pub auth_required: bool,
    pub defaults: TrainParams,
    pub max_time_limit_s: f64,
    pub queue_capacity: usize,
    pub started: Instant,
    pub admission_check: AdmissionCheck,
    pub health_extra: HealthExtra,
    /// Bumped when serving starts and by every `/api/health` request, for the watchdog.
    pub heartbeat: Heartbeat,
    /// The `[http]` limits and the shared body budget (defaults until the daemon sets its config's).
    pub http: Arc<HttpLimits>,
    summaries: Arc<Mutex<HashMap<String, (SystemTime, MachineSummary)>>>,
    /// Host names answered besides localhost and IP literals (`http.allowed_hosts` plus our own).
    pub allowed_hosts: Arc<AllowedHosts>,
    sessions: Arc<auth::Sessions>,
    login_throttle: Arc<auth::LoginThrottle>,
    /// The data and state folders as they may appear in answers, hidden from anonymous readers.
    private_folders: Arc<Vec<String>>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: Arc<JobQueue>,
        registry: Arc<Registry>,
        data_dir: PathBuf,
        token: String,
        auth_required: bool,
        defaults: TrainParams,
        max_time_limit_s: f64,
        queue_capacity: usize,
    ) -> AppState {
        let private_folders = Arc::new(private_folders(&data_dir, &registry));
        AppState {
            queue,
            registry,
            data_dir,
            token: Arc::new(token),
            auth_required,
            defaults,
            max_time_limit_s,
            queue_capacity,
            started: Instant::now(),
            admission_check: Arc::new(|_, _| None),
            health_extra: Arc::new(|| json!({})),
            heartbeat: Heartbeat::new(),
            http: Arc::new(HttpLimits::default()),
            summaries: Arc::new(Mutex::new(HashMap::new())),
            allowed_hosts: Arc::new(AllowedHosts::new(&[])),
            sessions: Arc::new(auth::Sessions::default()),
            login_throttle: Arc::new(auth::LoginThrottle::default()),
            private_folders,
        }
    }

    pub async fn machine_summary(&self, id: &str) -> Result<MachineSummary, ApiError> {
        let me = self.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || me.summary_blocking(&id)).await.map_err(|e| ApiError::internal(e.to_string()))?
    }

    fn summary_blocking(&self, id: &str) -> Result<MachineSummary, ApiError> {
        let mid = crate::data::MachineId::parse(id)?;
        let dir = crate::data::machine_dir(&self.data_dir, &mid);
        if !dir.is_dir() {
            return Err(ApiError::not_found(format!("unknown machine {id:?}")));
        }
        let mtime = crate::data::folder_mtime(&dir);
        if let Ok(cache) = self.summaries.lock()
            && let Some((t, s)) = cache.get(id)
            && *t == mtime
        {
            return Ok(s.clone());
        }
        let table = crate::data::load_machine(&self.data_dir, id)?;
        let s = crate::data::summarize(&table);
        if let Ok(mut cache) = self.summaries.lock() {
            cache.insert(id.to_string(), (mtime, s.clone()));
        }
        Ok(s)
    }

    /// Every machine folder with its summary or the reason it cannot be loaded.
    pub async fn machine_summaries(&self) -> Result<Vec<(String, Result<MachineSummary, ApiError>)>, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let ids = crate::data::machine_ids(&me.data_dir).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(ids
                .into_iter()
                .map(|id| {
                    let s = me.summary_blocking(&id);
                    (id, s)
                })
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
    }

    /// Whether this request's client has the token (Bearer or a live session): it may see paths and file
    /// content in errors.
    pub fn is_logged_in(&self, headers: &axum::http::HeaderMap) -> bool {
        auth::is_logged_in(self, headers)
    }

    fn beat(&self) {
        self.heartbeat.beat();
    }
}

#[utoipa::path(get, path = "/api/health", responses((status = 200, description = "version, uptime, queue, running job, guard and MQTT facts; disk paths only for a client with the token")))]
async fn health(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Json<Value> {
    state.beat();
    let running = state.queue.running().map(|j| json!({ "task_id": j.id, "machine_id": j.request.machine_id, "model_type": j.progress.model_type, "progress_percent": j.progress.progress_percent, "stage": j.progress.stage }));
    let mut v = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "queue": { "pending": state.queue.pending_count(), "capacity": state.queue_capacity },
        "running": running,
        "auth_required": state.auth_required,
    });
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), (state.health_extra)()) {
        obj.extend(extra);
    }
    if !state.is_logged_in(&headers) {
        redact::paths(&mut v, &state.private_folders);
    }
    Json(v)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "millwright", description = "Trains and serves the four predictive-maintenance models of each machine."),
    paths(
        health,
        openapi_json,
        auth::login,
        auth::logout,
        auth::status,
        tasks::train_classification,
        tasks::train_regression,
        tasks::train_anomaly,
        tasks::train_timeseries,
        tasks::train_batch,
        tasks::get_task,
        tasks::list_tasks,
        tasks::cancel_task,
        tasks::task_events,
        models::machines_available,
        models::all_models,
        models::machine_models,
        models::model_detail,
        models::download,
        models::delete_model,
        models::predict,
    ),
    components(schemas(tasks::TrainBody, models::PredictBody, auth::LoginBody))
)]
struct ApiDoc;

#[utoipa::path(get, path = "/api/openapi.json", responses((status = 200, description = "this document")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The API alone: what the MQTT bridge and the fuzzer call in-process.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The API with `extra` routes merged in (the daemon's page), all behind the same host check and intake, and
/// answering unknown routes and methods in the API's one error shape.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let api = Router::new()
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/status", get(auth::status))
        .route("/api/ml/train/classification", post(tasks::train_classification))
        .route("/api/ml/train/regression", post(tasks::train_regression))
        .route("/api/ml/train/anomaly", post(tasks::train_anomaly))
        .route("/api/ml/train/timeseries", post(tasks::train_timeseries))
        .route("/api/ml/train/batch", post(tasks::train_batch))
        .route("/api/ml/train/machines/available", get(models::machines_available))
        .route("/api/ml/tasks", get(tasks::list_tasks))
        .route("/api/ml/tasks/{task_id}", get(tasks::get_task))
        .route("/api/ml/tasks/{task_id}/cancel", post(tasks::cancel_task))
        .route("/api/ml/tasks/{task_id}/events", get(tasks::task_events))
        .route("/api/ml/models", get(models::all_models))
        .route("/api/ml/models/{machine_id}", get(models::machine_models))
        .route("/api/ml/models/{machine_id}/{model_type}", get(models::model_detail).delete(models::delete_model))
        .route("/api/ml/models/{machine_id}/{model_type}/download", get(models::download))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let predict =
        Router::new().route("/api/ml/predict/{machine_id}", post(models::predict)).layer(DefaultBodyLimit::max(PREDICT_BODY_LIMIT));
    api.merge(predict)
        .merge(extra)
        .fallback(|| async { ApiError::not_found("no such route (see /api/openapi.json)") })
        // axum's own 405 has an empty body; clients parse one error shape everywhere.
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method (see /api/openapi.json)",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), intake::intake))
        // Outermost: a request for a foreign host name reaches no route at all.
        .layer(axum::middleware::from_fn_with_state(state.clone(), host::check))
        .with_state(state)
}

/// Serves the API and `extra` (see [`router_with`]) until `shutdown` resolves; in-flight requests finish, new
/// connections are refused.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    extra: Router<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.beat();
    let limits = state.http.clone();
    server::serve(listener, router_with(state, extra), limits, shutdown).await
}
