//! The HTTP API (the seed's paths and shapes). [`serve`] takes a bound listener, the routes to serve besides
//! the API's (the daemon passes the page's) and a shutdown future, so tests start it on port 0 and one signal
//! stops everything. Connections are served by [`server`] (timeouts, a connection cap) and every request
//! passes [`intake`] (auth before the body, body limits and budget) before its handler.
mod auth;
mod error;
mod export;
pub mod fleet;
mod host;
pub mod intake;
mod limits;
mod models;
mod params;
mod readings;
mod redact;
pub mod server;
mod state;
mod tasks;
mod upload;

pub use error::{ApiError, Body, Path, Query};
pub use host::AllowedHosts;
pub use limits::HttpLimits;
pub use server::{fd_limit, raise_fd_limit};
pub use state::{Access, AdmissionCheck, AppState, HealthExtra, Hooks, ReadingsTarget, Refusal, Setup, TrainingLimits};

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use intake::{BODY_LIMIT, PREDICT_BODY_LIMIT};
use serde_json::{Value, json};
use std::future::Future;
use utoipa::OpenApi;

#[utoipa::path(get, path = "/api/health", responses((status = 200, description = "version, uptime, queue, running job, guard and MQTT facts; disk paths only for a client with the token")))]
async fn health(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Json<Value> {
    state.beat();
    let running = state.queue.running().map(|j| json!({ "task_id": j.id, "machine_id": j.request.machine_id, "model_type": j.progress.model_type, "progress_percent": j.progress.progress_percent, "stage": j.progress.stage }));
    let mut v = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "queue": { "pending": state.queue.pending_count(), "capacity": state.queue.capacity() },
        "running": running,
        "auth_required": state.access.required,
        "fleet": { "evaluations": state.fleet.evaluations() },
    });
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), (state.hooks.health_extra)()) {
        obj.extend(extra);
    }
    if !state.is_logged_in(&headers) {
        redact::paths(&mut v, &state.access.private_folders);
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
        models::pin_model,
        models::unpin_model,
        models::predict,
        export::results_json,
        export::results_csv,
        fleet::fleet,
        fleet::fleet_csv,
        fleet::machine_verdict,
        fleet::machine_scores,
        fleet::alerts,
        fleet::ack,
        readings::post_readings,
        readings::get_readings,
        upload::post_upload,
        upload::make_machine,
    ),
    components(schemas(tasks::TrainBody, models::PredictBody, auth::LoginBody, fleet::AckBody, upload::MachineBody))
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
        .route("/api/ml/models/{machine_id}/{model_type}/pin", post(models::pin_model).delete(models::unpin_model))
        .route("/api/ml/models/{machine_id}/{model_type}/results.json", get(export::results_json))
        .route("/api/ml/models/{machine_id}/{model_type}/results.csv", get(export::results_csv))
        .route("/api/fleet", get(fleet::fleet))
        .route("/api/fleet.csv", get(fleet::fleet_csv))
        .route("/api/machines/{machine_id}/verdict", get(fleet::machine_verdict))
        .route("/api/machines/{machine_id}/scores", get(fleet::machine_scores))
        .route("/api/alerts", get(fleet::alerts))
        .route("/api/alerts/{alert_id}/ack", post(fleet::ack))
        .route("/api/machines/{machine_id}/readings", post(readings::post_readings).get(readings::get_readings))
        .route("/api/uploads/{upload_id}/machine", post(upload::make_machine))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    // Streamed to disk by the handler, within `data.max_file_mb` (the intake passes it through unread).
    let uploads = Router::new().route("/api/uploads", post(upload::post_upload)).layer(DefaultBodyLimit::disable());
    let predict =
        Router::new().route("/api/ml/predict/{machine_id}", post(models::predict)).layer(DefaultBodyLimit::max(PREDICT_BODY_LIMIT));
    api.merge(predict)
        .merge(uploads)
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
