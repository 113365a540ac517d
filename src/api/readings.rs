//! Readings in over HTTP: `POST /api/machines/{id}/readings` appends a machine's rows to the readings log and
//! answers once they are durable; `GET` says what the log holds for it and how far its readings are in the
//! machine's files (the daemon's compaction moves them there, where training and predictions read them).
use super::{ApiError, AppState, Path, auth};
use crate::ingest::{IngestError, Readings};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

/// Refused rows listed in an answer; the counts are always whole.
const ERRORS_SHOWN: usize = 50;

fn readings(state: &AppState) -> Result<Arc<Readings>, ApiError> {
    state.readings.clone().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "readings_off", "this process takes no readings (the daemon's `serve` does)")
    })
}

/// `text/csv` (or `application/csv`) is CSV; anything else is read as JSON.
fn is_csv(headers: &HeaderMap) -> bool {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "text/csv" || mime == "application/csv"
}

fn write_error(e: IngestError) -> ApiError {
    match e {
        IngestError::Body(m) => ApiError::bad_request(m),
        IngestError::Write { disk_full: true, .. } => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string()),
        IngestError::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e.to_string()),
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "readings_not_stored", e.to_string()),
    }
}

#[utoipa::path(post, path = "/api/machines/{machine_id}/readings", params(("machine_id" = String, Path)),
    request_body(content = String, description = "a JSON object {\"ts\": \"2026-01-01T00:00:00Z\", \"<sensor>\": value, ...} or an array of them (null = a missing reading); or, as text/csv, a header line with ts and the sensors, then rows (an empty cell = a missing reading)", content_type = "application/json"),
    responses((status = 200, description = "accepted rows are durable; each refused row with its reason"), (status = 400), (status = 401), (status = 404),
        (status = 422, description = "no row was accepted"), (status = 507, description = "the disk is full: nothing was stored")))]
pub async fn post_readings(
    AxState(state): AxState<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<Value>, ApiError> {
    auth::require(&state, &headers)?;
    let log = readings(&state)?;
    let rows = if is_csv(&headers) { crate::ingest::parse_csv(&raw) } else { crate::ingest::parse_json(&raw) }.map_err(write_error)?;
    let target = state.readings_target(&id, &rows).await?;
    let out = log.accept(&id, target.sensors, target.history_end, rows).await.map_err(|e| {
        tracing::error!(machine = %id, error = %e, "readings not stored");
        write_error(e)
    })?;
    if let Some(first) = out.errors.first() {
        tracing::warn!(machine = %id, accepted = out.accepted, rejected = out.rejected, row = first.row, error = %first.error, "readings refused");
    }
    let shown: Vec<_> = out.errors.iter().take(ERRORS_SHOWN).collect();
    let body = json!({ "machine_id": id, "accepted": out.accepted, "rejected": out.rejected, "errors": shown });
    if out.accepted == 0 && out.rejected > 0 {
        let first = &out.errors[0];
        let message = format!("none of the {} rows was accepted; row {}: {}", out.rejected, first.row, first.error);
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_reading_accepted", message).details(body));
    }
    Ok(Json(body))
}

#[utoipa::path(get, path = "/api/machines/{machine_id}/readings", params(("machine_id" = String, Path)),
    responses((status = 200, description = "rows the readings log holds for the machine, first and last time, sensors; compacted_until: the newest reading in the machine's files; pending: rows not yet there"), (status = 404)))]
pub async fn get_readings(AxState(state): AxState<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    // Open like every read on the LAN: counts and times, no path.
    let log = readings(&state)?;
    let dir = crate::data::machine_dir(&state.data_dir, &crate::data::MachineId::parse(&id)?);
    let machine = id.clone();
    let (stored, until) = tokio::task::spawn_blocking(move || {
        // A folder that cannot be listed has nothing compacted into it as far as anyone can tell.
        let until = crate::data::live::compacted_until(&dir).ok().flatten().map(|us| us as f64 / 1e6);
        log.stored(&machine, until).map(|s| (s, until))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(write_error)?;
    let time = |t: Option<f64>| t.map(crate::util::time::format_timestamp);
    Ok(Json(json!({
        "machine_id": id,
        "rows": stored.rows,
        "first": time(stored.first),
        "last": time(stored.last),
        "sensors": stored.sensors,
        "compacted_until": time(until),
        "pending": stored.pending,
        "damaged": stored.damaged,
    })))
}
