//! The embedded training page (issue 7). Until it lands, `/` points at the API.
use crate::api::AppState;
use axum::Router;
use axum::response::Html;
use axum::routing::get;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(|| async { Html("<!doctype html><title>millwright</title><p>millwright is running. The API is at <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>") }))
}
