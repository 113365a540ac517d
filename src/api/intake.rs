//! What every request goes through before a handler sees it, so that a client without the token costs
//! nothing and no client can make the daemon hold more than a bounded amount of request bodies:
//!
//! 1. A mutating method (POST, PUT, PATCH, DELETE) is authenticated from its headers alone, before a byte
//!    of its body is read, and answered 401 at once — also when the client sent `Expect: 100-continue`,
//!    which therefore never gets `100 Continue` (hyper sends it only when the body is first read). Logging
//!    in and out are the exceptions.
//! 2. A declared `Content-Length` above the route's limit is answered 413 before reading.
//! 3. The body is then read here, whole, within `http.body_timeout_s` (408 otherwise), after reserving its
//!    size (or the route's limit when the length is not declared) from a daemon-wide budget of
//!    `http.body_memory_mb`; a sender that finds the budget spent waits, within the same deadline (503
//!    after it). The handler gets the bytes in memory and the reservation is returned when it answers.
//!
//! The one exception to 3 is an upload of a history file (`POST /api/uploads`), streamed to disk by its handler.
//!
//! Read-only routes take no body; one sent anyway is never read. The MQTT bridge's requests pass through
//! here too: they carry the token, and their bodies are already in memory, so no deadline applies to them
//! (a deadline exists for clients on a connection; in-process callers may run without a timer).
use super::auth;
use super::server::ConnHandle;
use super::{ApiError, AppState};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use tokio::time::Instant;

/// Request bodies above this are refused (413); predictions may carry more readings, logins are tiny.
pub const BODY_LIMIT: usize = 1024 * 1024;
pub const PREDICT_BODY_LIMIT: usize = 8 * 1024 * 1024;
pub const AUTH_BODY_LIMIT: usize = 16 * 1024;

/// The largest body a route takes.
pub fn body_limit(path: &str) -> usize {
    if path.starts_with("/api/ml/predict/") {
        PREDICT_BODY_LIMIT
    } else if path.starts_with("/api/auth/") {
        AUTH_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

fn is_mutating(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// Routes a client without the token must reach: logging in, and logging out (harmless, and the page calls
/// it whatever its state).
fn is_open(m: &Method, path: &str) -> bool {
    *m == Method::POST && matches!(path, "/api/auth/login" | "/api/auth/logout")
}

/// Uploads of history files (hundreds of MB) go to disk as they arrive: their handler reads the body itself,
/// within `data.max_file_mb` and with its own stall timeout, and takes one at a time.
fn is_streamed(m: &Method, path: &str) -> bool {
    *m == Method::POST && path == "/api/uploads"
}

fn size_text(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) { format!("{} MB", n >> 20) } else { format!("{} KB", n.div_ceil(1024)) }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is too large (this route takes at most {})", size_text(limit)),
    )
    .details(serde_json::json!({ "limit_bytes": limit }))
}

#[derive(Debug)]
enum ReadError {
    TooLarge,
    Timeout,
    Broken(String),
}

/// Reads a whole body of at most `limit` bytes, before `deadline` if there is one.
async fn collect(body: Body, limit: usize, deadline: Option<Instant>) -> Result<Bytes, ReadError> {
    let declared = body.size_hint().exact().and_then(|n| usize::try_from(n).ok());
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut body = std::pin::pin!(body);
    loop {
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx));
        let next = match deadline {
            Some(d) => tokio::time::timeout_at(d, frame).await.map_err(|_| ReadError::Timeout)?,
            None => frame.await,
        };
        match next {
            None => return Ok(Bytes::from(buf)),
            Some(Err(e)) => return Err(ReadError::Broken(e.to_string())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(ReadError::TooLarge);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// An answer given while the body may still be on its way: the connection is closed after it (gently, so
/// the client reads the answer; see `server`).
fn early(err: ApiError, conn: Option<&ConnHandle>) -> Response {
    if let Some(c) = conn {
        c.linger();
    }
    closing(err)
}

fn closing(err: ApiError) -> Response {
    let mut resp = err.into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The middleware (see the module doc).
pub async fn intake(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let conn = req.extensions().get::<ConnHandle>().cloned();
    let path = req.uri().path().to_string();
    let has_body = req.body().size_hint().exact() != Some(0);
    if is_mutating(req.method())
        && !is_open(req.method(), &path)
        && let Err(e) = auth::require(&state, req.headers())
    {
        return if has_body { early(e, conn.as_ref()) } else { e.into_response() };
    }
    if !has_body {
        return next.run(req).await;
    }
    if is_streamed(req.method(), &path) {
        return next.run(req).await;
    }
    if !is_mutating(req.method()) {
        // No read-only route takes a body; one sent anyway is dropped unread.
        if let Some(c) = &conn {
            c.linger();
        }
        let (parts, _) = req.into_parts();
        return next.run(Request::from_parts(parts, Body::empty())).await;
    }
    let limit = body_limit(&path);
    let declared = req.body().size_hint().exact().map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if declared.is_some_and(|n| n > limit) {
        return early(too_large(limit), conn.as_ref());
    }
    let limits = state.http.clone();
    let deadline = conn.is_some().then(|| Instant::now() + limits.body_timeout);
    let reserve = u32::try_from(declared.unwrap_or(limit).min(limits.body_memory)).unwrap_or(u32::MAX);
    let acquire = limits.budget.clone().acquire_many_owned(reserve);
    let permit = match deadline {
        Some(d) => tokio::time::timeout_at(d, acquire).await.ok().and_then(Result::ok),
        None => acquire.await.ok(),
    };
    let permit = match permit {
        Some(p) => p,
        None => {
            tracing::warn!(route = %path, budget_mb = limits.body_memory >> 20, "request refused: the HTTP body budget (http.body_memory_mb) stayed spent for http.body_timeout_s");
            let mut resp = early(
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the daemon is receiving too many request bodies at once (http.body_memory_mb); retry shortly",
                ),
                conn.as_ref(),
            );
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
    };
    let (parts, body) = req.into_parts();
    let bytes = match collect(body, limit, deadline).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return early(too_large(limit), conn.as_ref()),
        Err(ReadError::Timeout) => {
            let secs = limits.body_timeout.as_secs_f64();
            return closing(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {secs} s (http.body_timeout_s)"),
            ));
        }
        Err(ReadError::Broken(e)) => return closing(ApiError::bad_request(format!("the request body could not be read: {e}"))),
    };
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    drop(permit);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn route_limits_and_their_wording() {
        assert_eq!(body_limit("/api/ml/predict/m1"), PREDICT_BODY_LIMIT);
        assert_eq!(body_limit("/api/auth/login"), AUTH_BODY_LIMIT);
        assert_eq!(body_limit("/api/ml/train/batch"), BODY_LIMIT);
        assert_eq!(size_text(PREDICT_BODY_LIMIT), "8 MB");
        assert_eq!(size_text(AUTH_BODY_LIMIT), "16 KB");
        assert!(is_open(&Method::POST, "/api/auth/login") && !is_open(&Method::POST, "/api/ml/train/batch"));
        assert!(is_mutating(&Method::DELETE) && !is_mutating(&Method::GET));
    }

    fn trickle(chunks: usize, every: Duration) -> Body {
        let s = futures_util::stream::iter(0..chunks).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))
        });
        Body::from_stream(s)
    }

    #[tokio::test]
    async fn bodies_are_read_within_the_deadline_and_the_limit() {
        let soon = || Some(Instant::now() + Duration::from_millis(300));
        assert_eq!(collect(trickle(3, Duration::from_millis(10)), 100, soon()).await.unwrap().len(), 30);
        assert!(matches!(collect(trickle(3, Duration::from_millis(10)), 25, soon()).await, Err(ReadError::TooLarge)));
        // A body that never ends is cut at the deadline, however steadily it trickles.
        let t0 = Instant::now();
        assert!(matches!(collect(trickle(usize::MAX, Duration::from_millis(20)), usize::MAX, soon()).await, Err(ReadError::Timeout)));
        assert!(t0.elapsed() < Duration::from_millis(500));
        // In-process callers (the MQTT bridge) have their bodies in memory: no deadline, no timer needed.
        assert_eq!(collect(Body::from("{}"), 100, None).await.unwrap().len(), 2);
    }

    /// The MQTT bridge and the fuzzer call the router in-process, on runtimes that may have no timer.
    #[test]
    fn in_process_requests_need_no_timer_and_are_still_authenticated() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SledStore::open(&dir.path().join("jobs.sled")).unwrap();
        let (queue, _) = crate::jobs::JobQueue::open(Arc::new(store), 3, 10, false).unwrap();
        let registry = crate::registry::Registry::open(&dir.path().join("state"), 2, 50.0).unwrap();
        let state = AppState::new(crate::api::Setup {
            queue: Arc::new(queue),
            registry: Arc::new(registry),
            data_dir: dir.path().join("data"),
            access: crate::api::Access::new("t0k3n-0123456789abcdef".into(), true, &[]),
            training: crate::api::TrainingLimits { defaults: crate::ml::TrainParams::default(), max_time_limit_s: 3600.0 },
            http: crate::api::HttpLimits::default(),
            hooks: crate::api::Hooks::default(),
        });
        let app = super::super::router(state);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let call = |token: Option<&str>| {
            let mut req =
                axum::http::Request::builder().method("POST").uri("/api/ml/predict/m1").header(header::CONTENT_TYPE, "application/json");
            if let Some(t) = token {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let req = req.body(Body::from(r#"{"rows": []}"#)).unwrap();
            rt.block_on(app.clone().oneshot(req)).unwrap().status()
        };
        assert_eq!(call(None), StatusCode::UNAUTHORIZED);
        let status = call(Some("t0k3n-0123456789abcdef"));
        assert!(status.is_client_error() && status != StatusCode::UNAUTHORIZED && status != StatusCode::REQUEST_TIMEOUT, "{status}");
    }
}
