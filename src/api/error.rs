//! One error shape for every route: `{"error": {"code", "message", "details"?}}` with the right status.
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// The message for a client without the token when `message` may quote paths or file content.
    pub redacted: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: None, redacted: None }
    }

    /// The message a client may see: in full with the token, else without paths or file content.
    pub fn message_for(&self, logged_in: bool) -> &str {
        match (&self.redacted, logged_in) {
            (Some(r), false) => r,
            _ => &self.message,
        }
    }

    pub fn details(mut self, d: serde_json::Value) -> ApiError {
        self.details = Some(d);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route changes state and needs the token: send `Authorization: Bearer <token>` or log in (POST /api/auth/login)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(d) = self.details {
            body["error"]["details"] = d;
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::data::DataError> for ApiError {
    fn from(e: crate::data::DataError) -> Self {
        ApiError::from(&e)
    }
}

impl From<&crate::data::DataError> for ApiError {
    fn from(e: &crate::data::DataError) -> Self {
        use crate::data::DataError as D;
        let mut out = match e {
            D::InvalidMachineId { .. } => ApiError::bad_request(e.to_string()),
            D::UnknownMachine { id, .. } => ApiError::not_found(format!("unknown machine {id:?}")),
            _ => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_data", e.to_string()),
        };
        out.redacted = Some(e.redacted());
        out
    }
}

impl From<crate::registry::RegistryError> for ApiError {
    fn from(e: crate::registry::RegistryError) -> Self {
        use crate::registry::RegistryError as R;
        match &e {
            R::InvalidMachine(..) => ApiError::bad_request(e.to_string()),
            R::NotFound { .. } => ApiError::not_found(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<crate::jobs::JobError> for ApiError {
    fn from(e: crate::jobs::JobError) -> Self {
        use crate::jobs::JobError as J;
        match &e {
            J::QueueFull { pending, capacity } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string())
                .details(json!({ "pending": pending, "capacity": capacity, "ahead": pending })),
            J::NotFound(_) => ApiError::not_found(e.to_string()),
            J::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e.to_string()),
            J::Store(s) => ApiError::from_store(s),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl ApiError {
    /// A full disk is the operator's to fix, not a bug: 507 with the numbers and no file paths; a store that
    /// stopped after a failed write is 503 until the daemon restarts.
    fn from_store(e: &crate::store::StoreError) -> ApiError {
        use crate::store::{StoreError as S, mb};
        match e {
            S::DiskFull { free, needed, .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                format!("the disk is full: the job store needs at least {} free to record a change and {} are left; nothing was changed. Free space on the daemon's state disk (old models, data files, logs) and try again", mb(*needed), mb(*free)),
            )
            .details(json!({ "free_bytes": free, "needed_bytes": needed })),
            S::Failed { disk_full: true, .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                "the job store stopped taking changes when the disk filled up; nothing was changed. Free space on the daemon's state disk, then restart millwright",
            ),
            S::Failed { disk_full: false, cause } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_failed",
                format!("the job store stopped taking changes after a failed write ({cause}); nothing was changed. Check the daemon's state disk, then restart millwright"),
            ),
            _ => ApiError::internal(format!("the job store failed: {e}")),
        }
    }
}

/// JSON bodies whose rejection speaks our error shape (400 malformed, 413 too large, 415 wrong type).
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the request body is too large"))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            )),
            Err(e) => Err(ApiError::bad_request(format!("malformed JSON body: {}", e.body_text()))),
        }
    }
}

/// Path parameters whose rejection (bad percent-encoding, invalid UTF-8) speaks our error shape, not axum's text.
pub struct Path<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) if e.status().is_client_error() => Err(ApiError::bad_request(format!("bad path: {}", e.body_text()))),
            Err(e) => Err(ApiError::internal(e.body_text())),
        }
    }
}

/// Query strings whose rejection (`?limit=abc`, `?version=-1`) speaks our error shape and names the parameter.
pub struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(ApiError::bad_request(format!("bad query string: {}", e.body_text()))),
        }
    }
}
