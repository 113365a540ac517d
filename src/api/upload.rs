//! A machine from a history file, in two steps the page walks through: `POST /api/uploads?filename=…` takes
//! the file (streamed to disk, never held in memory; one upload at a time) and answers with a preview — its
//! columns, what each holds, the first rows and a guessed role for each; `POST /api/uploads/{id}/machine`
//! then makes the machine from the roles the person chose (see [`crate::data::upload`]). A file the reader
//! refuses is removed at once; one that waits for its mapping more than a day is swept.
use super::{ApiError, AppState, Path, Query, auth};
use crate::data::upload::{self, Mapping, UploadError};
use axum::Json;
use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use http_body::Body as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// An upload not made into a machine within this long is removed by the next upload.
const KEEP_UNUSED: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
pub struct UploadQuery {
    /// The file's own name: `.csv`, `.txt` or `.parquet`.
    filename: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineBody {
    machine_id: String,
    mapping: Mapping,
}

fn extension(filename: &str) -> Result<&'static str, ApiError> {
    let lower = filename.to_ascii_lowercase();
    if upload::is_parquet_name(&lower) {
        Ok("parquet")
    } else if lower.ends_with(".csv") || lower.ends_with(".txt") {
        Ok("csv")
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_file",
            format!("{filename:?}: upload a CSV (.csv, .txt) or Parquet (.parquet) file"),
        ))
    }
}

/// An upload id is 16 hex digits; anything else names no file.
fn upload_file(state: &AppState, id: &str) -> Result<PathBuf, ApiError> {
    let gone = || {
        ApiError::not_found(format!("no upload {id:?} (it was made into a machine, refused, or swept after a day): upload the file again"))
    };
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(gone());
    }
    let dir = upload::uploads_dir(&state.data_dir);
    ["csv", "parquet"].iter().map(|ext| dir.join(format!("{id}.{ext}"))).find(|p| p.is_file()).ok_or_else(gone)
}

fn sweep(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let old = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age > KEEP_UNUSED);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes the body to `path` as it arrives, at most `limit` bytes, each piece within `idle` of the last.
async fn receive(body: Body, path: &std::path::Path, limit: u64, idle: Duration) -> Result<u64, ApiError> {
    let io = |e: std::io::Error| {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", "the data folder's disk is full: nothing was kept")
        } else {
            ApiError::internal(format!("the upload could not be written: {e}"))
        }
    };
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut body = std::pin::pin!(body);
    let mut total = 0u64;
    loop {
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx));
        let next = tokio::time::timeout(idle, frame).await.map_err(|_| {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", format!("the upload stalled for {} s", idle.as_secs()))
        })?;
        match next {
            None => break,
            Some(Err(e)) => return Err(ApiError::bad_request(format!("the upload broke off: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    total += data.len() as u64;
                    if total > limit {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "too_large",
                            format!("the file is larger than data.max_file_mb ({} MB)", limit >> 20),
                        ));
                    }
                    file.write_all(&data).await.map_err(io)?;
                }
            }
        }
    }
    file.sync_all().await.map_err(io)?;
    Ok(total)
}

#[utoipa::path(post, path = "/api/uploads", params(("filename" = String, Query, description = "the file's name: .csv, .txt or .parquet")),
    request_body(content = String, description = "the file's bytes", content_type = "application/octet-stream"),
    responses((status = 200, description = "upload_id and the preview: columns with their kind, the first rows, the guessed roles"),
        (status = 401), (status = 409, description = "another upload is being received"), (status = 413), (status = 415),
        (status = 422, description = "the file cannot be read: nothing was kept"), (status = 507)))]
pub async fn post_upload(
    AxState(state): AxState<AppState>,
    headers: HeaderMap,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    auth::require(&state, &headers)?;
    let ext = extension(&q.filename)?;
    let Ok(_one) = state.uploads.clone().try_lock_owned() else {
        return Err(ApiError::conflict("another file is being uploaded; try again when it is done"));
    };
    let dir = upload::uploads_dir(&state.data_dir);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::internal(format!("cannot make the uploads folder: {e}")))?;
    let d = dir.clone();
    let _ = tokio::task::spawn_blocking(move || sweep(&d)).await;
    let id =
        format!("{:016x}", crate::util::rng::Rng::new(crate::util::time::now_secs().to_bits() ^ u64::from(std::process::id())).next_u64());
    let path = dir.join(format!("{id}.{ext}"));
    let caps = state.data_caps();
    let bytes = match receive(body, &path, caps.max_file_bytes, state.http.body_timeout).await {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            tracing::warn!(file = %q.filename, error = %e.message, "upload refused");
            return Err(e);
        }
    };
    let p = path.clone();
    let preview = tokio::task::spawn_blocking(move || upload::preview(&p, &caps)).await.map_err(|e| ApiError::internal(e.to_string()))?;
    match preview {
        Ok(preview) => {
            tracing::info!(file = %q.filename, bytes, rows = preview.rows, columns = preview.columns.len(), upload = %id, "upload received");
            Ok(Json(json!({ "upload_id": id, "filename": q.filename, "bytes": bytes, "preview": preview })))
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            let mut err = ApiError::from(&e);
            err.message = format!("{}: {}", q.filename, e.to_string().replace(&path.display().to_string(), "the file"));
            Err(err)
        }
    }
}

#[utoipa::path(post, path = "/api/uploads/{upload_id}/machine", params(("upload_id" = String, Path)), request_body = MachineBody,
    responses((status = 201, description = "the machine, as the loader read it: rows, sensors, lives, time range"), (status = 400), (status = 401),
        (status = 404, description = "no such upload"), (status = 409, description = "a machine with that id exists"),
        (status = 422, description = "the mapping or the file does not load: nothing was written")))]
pub async fn make_machine(
    AxState(state): AxState<AppState>,
    headers: HeaderMap,
    Path(upload_id): Path<String>,
    Json(b): Json<MachineBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth::require(&state, &headers)?;
    let mid = crate::data::MachineId::parse(&b.machine_id)?;
    let Ok(_one) = state.uploads.clone().try_lock_owned() else {
        return Err(ApiError::conflict("a file is being uploaded; try again when it is done"));
    };
    let file = upload_file(&state, &upload_id)?;
    let (data_dir, caps) = (state.data_dir.clone(), state.data_caps());
    let f = file.clone();
    let made = tokio::task::spawn_blocking(move || {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        upload::create_machine(&data_dir, &mid, &f, &name, &b.mapping, &caps)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    match made {
        Ok(created) => {
            tracing::info!(machine = %created.machine_id, rows = created.rows, sensors = created.sensors.len(), "machine made from an upload");
            Ok((StatusCode::CREATED, Json(json!(created))))
        }
        Err(UploadError::Exists(id)) => Err(ApiError::conflict(UploadError::Exists(id).to_string())),
        Err(UploadError::Mapping(m)) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_mapping", m)),
        Err(UploadError::Data(e)) => {
            let mut err = ApiError::from(&e);
            err.message = format!("the machine was not made: {e}");
            Err(err)
        }
    }
}
