//! Reading is open on the LAN; every mutating route needs the token, as a Bearer header or as the HttpOnly
//! cookie `POST /api/auth/login` sets. Never accepted in a URL.
use super::{ApiError, AppState, Body};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

pub const COOKIE: &str = "millwright_token";

/// Equal-length comparison that does not stop at the first differing byte.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The check each mutating handler calls first.
pub fn require(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if !state.auth_required {
        return Ok(());
    }
    match presented(headers) {
        Some(t) if same(&t, &state.token) => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

pub fn is_logged_in(state: &AppState, headers: &HeaderMap) -> bool {
    require(state, headers).is_ok()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub token: String,
}

/// Checks the token and sets it as an HttpOnly, SameSite=Strict cookie.
#[utoipa::path(post, path = "/api/auth/login", request_body = LoginBody, responses((status = 200, description = "logged in"), (status = 401, description = "wrong token")))]
pub async fn login(State(state): State<AppState>, Body(body): Body<LoginBody>) -> Result<Response, ApiError> {
    if !same(body.token.trim(), &state.token) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong token (it is in STATE_DIR/token on the device)"));
    }
    let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", state.token);
    let mut resp = axum::Json(json!({ "success": true })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[utoipa::path(post, path = "/api/auth/logout", responses((status = 200, description = "cookie cleared")))]
pub async fn logout() -> Response {
    let mut resp = axum::Json(json!({ "success": true })).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("millwright_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"));
    resp
}

#[utoipa::path(get, path = "/api/auth/status", responses((status = 200, description = "whether this client may change state")))]
pub async fn status(State(state): State<AppState>, headers: HeaderMap) -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "auth_required": state.auth_required, "logged_in": is_logged_in(&state, &headers) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_bearer_or_cookie_only() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; millwright_token=xyz"));
        assert_eq!(presented(&h).as_deref(), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(presented(&h).as_deref(), Some("abc"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
