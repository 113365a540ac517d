//! Reading is open on the LAN; every mutating route needs the token as a Bearer header, or a session
//! cookie that `POST /api/auth/login` hands out in exchange for the token. Never accepted in a URL.
//!
//! - The cookie carries a random session id, never the long-lived token: sessions live in memory only, so a
//!   restart logs every browser out (the token is unchanged, logging in again is one dialog), and logout
//!   revokes the id at once. Bearer stays for scripts and the MQTT bridge.
//! - A cookie is sent by the browser whatever page asked for the request, and `SameSite` does not tell ports
//!   apart: a page on 127.0.0.1:Q could post a form to us on 127.0.0.1:P. So a mutating request that
//!   authenticates with the cookie must come from our own origin (`Origin` host:port equal to `Host`,
//!   `Sec-Fetch-Site` not cross-site or same-site). A Bearer header cannot be forged by another page.
//! - Wrong tokens at login are throttled per client address (a few free tries, then a lockout that doubles
//!   with each further failure) and logged, rate-limited, with the address.
use super::{ApiError, AppState, Body};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "millwright_session";

/// A session unused this long is gone (the page polls while open, so this is "the browser was closed").
const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Even a session in constant use ends after this; the browser then asks for the token once more.
const SESSION_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// More live sessions than any plant needs; the oldest goes when a new one would exceed it.
const MAX_SESSIONS: usize = 64;

/// Wrong tokens from one address answered normally before the lockout starts.
const FREE_FAILURES: u32 = 5;
/// The lockout doubles from 1 s with each failure past the free ones, up to this.
const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// An address with no failure for this long starts again with its free tries.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Addresses remembered at once; past it the stalest are forgotten (IPv6 counts per /64).
const MAX_TRACKED: usize = 4096;
/// At most one log line per address per interval; the line counts the failures in between.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Equal-length comparison that does not stop at the first differing byte.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, PartialEq)]
enum Credential {
    Bearer(String),
    Session(String),
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
}

/// A Bearer header wins over the cookie; other Authorization schemes are not credentials.
fn presented(headers: &HeaderMap) -> Option<Credential> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ")
    {
        return Some(Credential::Bearer(t.trim().to_string()));
    }
    cookie(headers).map(Credential::Session)
}

/// The check each mutating handler calls first.
pub fn require(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if !state.access.required {
        return Ok(());
    }
    match presented(headers) {
        Some(Credential::Bearer(t)) if same(&t, &state.access.token) => Ok(()),
        Some(Credential::Session(id)) => {
            same_origin(headers)?;
            if state.access.sessions.touch(&id, Instant::now()) { Ok(()) } else { Err(ApiError::unauthorized()) }
        }
        _ => Err(ApiError::unauthorized()),
    }
}

/// Whether this client may see what is kept from anonymous readers (paths, file content in errors).
pub fn is_logged_in(state: &AppState, headers: &HeaderMap) -> bool {
    if !state.access.required {
        return true;
    }
    match presented(headers) {
        Some(Credential::Bearer(t)) => same(&t, &state.access.token),
        Some(Credential::Session(id)) => state.access.sessions.touch(&id, Instant::now()),
        None => false,
    }
}

fn cross_origin(what: String) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        format!(
            "{what}: the login cookie is honoured only for requests from this daemon's own page; scripts send `Authorization: Bearer <token>` instead"
        ),
    )
}

/// host:port of an `http(s)://` origin, lower-case, without the scheme's default port.
fn origin_authority(origin: &str) -> Option<String> {
    let origin = origin.trim().to_ascii_lowercase();
    let (rest, default_port) = match origin.split_once("://")? {
        ("http", rest) => (rest, ":80"),
        ("https", rest) => (rest, ":443"),
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    Some(rest.strip_suffix(default_port).unwrap_or(rest).to_string())
}

fn host_authority(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    host.strip_suffix(":80").map(str::to_string).unwrap_or(host)
}

/// Cookie-authenticated changes only from our own origin. A client that sends neither `Origin` nor
/// `Sec-Fetch-Site` is not a current browser (they send `Origin` with every POST and DELETE), so it is
/// not a page another site could have made the browser load.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        let site = site.trim().to_ascii_lowercase();
        if site == "cross-site" || site == "same-site" {
            return Err(cross_origin(format!("refused a request another site made the browser send (Sec-Fetch-Site: {site})")));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("");
    let host = text(header::HOST.as_str()).map(host_authority);
    match (origin_authority(origin), host) {
        (Some(o), Some(h)) if o == h => Ok(()),
        _ => Err(cross_origin(format!("refused a request from the page at {origin:?}, which is not this daemon's"))),
    }
}

/// Live browser sessions: random id → when it was made and last used.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, (Instant, Instant)>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Instant)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(now: Instant, created: Instant, used: Instant) -> bool {
        now.saturating_duration_since(used) < SESSION_IDLE && now.saturating_duration_since(created) < SESSION_MAX_AGE
    }

    /// 244 random bits from the OS generator, hex.
    pub fn create(&self, now: Instant) -> String {
        let id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let mut map = self.lock();
        map.retain(|_, (c, u)| Self::live(now, *c, *u));
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| k.clone()) else { break };
            map.remove(&oldest);
        }
        map.insert(id.clone(), (now, now));
        id
    }

    /// Whether `id` is a live session; using it keeps it alive.
    pub fn touch(&self, id: &str, now: Instant) -> bool {
        let mut map = self.lock();
        match map.get_mut(id) {
            Some((c, u)) if Self::live(now, *c, *u) => {
                *u = now;
                true
            }
            Some(_) => {
                map.remove(id);
                false
            }
            None => false,
        }
    }

    pub fn revoke(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
    logged_at: Option<Instant>,
    /// Failures (and refused tries while locked) since the last log line.
    unlogged: u32,
}

/// What the throttle says about a login attempt.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Try,
    /// Refused unchecked until this much time has passed.
    Locked(Duration),
}

/// Wrong-token counts per client address.
#[derive(Default)]
pub struct LoginThrottle {
    map: Mutex<HashMap<Option<IpAddr>, Failures>>,
}

/// IPv6 clients pick addresses freely within their /64, so they are counted per /64.
fn client_key(ip: Option<IpAddr>) -> Option<IpAddr> {
    ip.map(|ip| match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    })
}

fn show(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".into(), |ip| ip.to_string())
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<IpAddr>, Failures>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn check(&self, ip: Option<IpAddr>, now: Instant) -> Verdict {
        let key = client_key(ip);
        let mut map = self.lock();
        let Some(f) = map.get_mut(&key) else { return Verdict::Try };
        match f.locked_until {
            Some(until) if until > now => {
                f.unlogged += 1;
                Verdict::Locked(until - now)
            }
            _ => Verdict::Try,
        }
    }

    /// Counts a wrong token; returns the lockout it starts, if any.
    pub fn failed(&self, ip: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let key = client_key(ip);
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            map.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            while map.len() >= MAX_TRACKED {
                let Some(stalest) = map.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) else { break };
                map.remove(&stalest);
            }
        }
        let fresh = Failures { count: 0, last: now, locked_until: None, logged_at: None, unlogged: 0 };
        let f = map.entry(key).or_insert(fresh);
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            *f = Failures { logged_at: f.logged_at, ..fresh };
        }
        f.count += 1;
        f.last = now;
        f.unlogged += 1;
        let lock = (f.count > FREE_FAILURES).then(|| {
            let doublings = (f.count - FREE_FAILURES - 1).min(20);
            Duration::from_secs(1u64 << doublings).min(MAX_LOCKOUT)
        });
        f.locked_until = lock.map(|d| now + d);
        if f.logged_at.is_none_or(|t| now.saturating_duration_since(t) >= LOG_INTERVAL) {
            tracing::warn!(
                client = %show(key),
                failures = f.count,
                since_last_log = f.unlogged,
                locked_for_s = lock.map_or(0, |d| d.as_secs()),
                "failed login: wrong token from {}",
                show(key)
            );
            f.logged_at = Some(now);
            f.unlogged = 0;
        }
        lock
    }

    pub fn succeeded(&self, ip: Option<IpAddr>) {
        self.lock().remove(&client_key(ip));
    }
}

/// The client's address when the server recorded it (`ConnectInfo`); in-process calls have none.
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub token: String,
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many wrong tokens from this address: try again in {secs} s"),
    )
    .details(json!({ "retry_after_s": secs }))
    .into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Checks the token and answers with a fresh session cookie (HttpOnly, SameSite=Strict).
#[utoipa::path(post, path = "/api/auth/login", request_body = LoginBody, responses((status = 200, description = "logged in"), (status = 401, description = "wrong token"), (status = 429, description = "too many wrong tokens from this address")))]
pub async fn login(State(state): State<AppState>, Peer(peer): Peer, Body(body): Body<LoginBody>) -> Result<Response, ApiError> {
    let now = Instant::now();
    // Checked before the token, so a locked-out guesser learns nothing, not even from a right guess.
    if let Verdict::Locked(wait) = state.access.login_throttle.check(peer, now) {
        return Ok(too_many(wait));
    }
    if !same(body.token.trim(), &state.access.token) {
        state.access.login_throttle.failed(peer, now);
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong token (it is in STATE_DIR/token on the device)"));
    }
    state.access.login_throttle.succeeded(peer);
    let id = state.access.sessions.create(now);
    let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/");
    let mut resp = axum::Json(json!({ "success": true })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// Revokes the session the cookie names and clears the cookie.
#[utoipa::path(post, path = "/api/auth/logout", responses((status = 200, description = "session revoked, cookie cleared"), (status = 403, description = "from another site's page")))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(id) = cookie(&headers) {
        same_origin(&headers)?;
        state.access.sessions.revoke(&id);
    }
    let mut resp = axum::Json(json!({ "success": true })).into_response();
    let clear = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/api/auth/status", responses((status = 200, description = "whether this client may change state")))]
pub async fn status(State(state): State<AppState>, headers: HeaderMap) -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "auth_required": state.access.required, "logged_in": is_logged_in(&state, &headers) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn bearer_wins_and_the_cookie_is_the_session_id() {
        assert_eq!(presented(&HeaderMap::new()), None);
        let h = headers(&[("cookie", "a=b; millwright_session=xyz")]);
        assert_eq!(presented(&h), Some(Credential::Session("xyz".into())));
        let h = headers(&[("cookie", "millwright_session=xyz"), ("authorization", "Bearer abc")]);
        assert_eq!(presented(&h), Some(Credential::Bearer("abc".into())));
        // The old cookie name, or a name that only resembles it, is not a credential.
        assert_eq!(presented(&headers(&[("cookie", "millwright_token=abc; xmillwright_session=1")])), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn cookie_requests_must_come_from_our_own_origin() {
        let ok = [
            vec![("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")],
            vec![("host", "Pi.local"), ("origin", "http://pi.local:80")],
            vec![("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080"), ("sec-fetch-site", "same-origin")],
            // curl with a cookie jar: no browser, so no forged request either.
            vec![("host", "127.0.0.1:8080")],
        ];
        for h in ok {
            let map = headers(&h);
            assert!(same_origin(&map).is_ok(), "{h:?}");
        }
        let bad = [
            vec![("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8081")],
            vec![("host", "127.0.0.1:8080"), ("origin", "null")],
            vec![("host", "127.0.0.1:8080"), ("origin", "http://evil.example")],
            vec![("host", "127.0.0.1:8080"), ("origin", "ftp://127.0.0.1:8080")],
            vec![("origin", "http://127.0.0.1:8080")],
            vec![("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")],
            vec![("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080"), ("sec-fetch-site", "cross-site")],
        ];
        for h in bad {
            let e = same_origin(&headers(&h)).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::FORBIDDEN, "cross_origin"), "{h:?}");
            assert!(e.message.contains("Bearer"), "{}", e.message);
        }
    }

    #[test]
    fn sessions_expire_are_revoked_and_stay_bounded() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.create(t0);
        assert_eq!(a.len(), 64);
        assert!(s.touch(&a, t0 + Duration::from_secs(60)));
        assert!(!s.touch("nope", t0));
        // Idle too long: gone.
        assert!(!s.touch(&a, t0 + Duration::from_secs(60) + SESSION_IDLE));
        let b = s.create(t0);
        assert_ne!(a, b);
        assert!(s.revoke(&b) && !s.touch(&b, t0));
        let first = s.create(t0);
        for i in 0..MAX_SESSIONS {
            s.create(t0 + Duration::from_millis(i as u64 + 1));
        }
        assert!(s.lock().len() <= MAX_SESSIONS);
        assert!(!s.touch(&first, t0 + Duration::from_secs(1)), "the oldest session makes room");
    }

    #[test]
    fn wrong_logins_lock_the_address_out_for_longer_and_longer() {
        let t = LoginThrottle::default();
        let ip: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
        let other: Option<IpAddr> = Some("192.0.2.8".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.check(ip, t0), Verdict::Try);
            assert_eq!(t.failed(ip, t0), None);
        }
        assert_eq!(t.failed(ip, t0), Some(Duration::from_secs(1)));
        assert_eq!(t.check(ip, t0), Verdict::Locked(Duration::from_secs(1)));
        assert_eq!(t.check(other, t0), Verdict::Try, "other addresses are not affected");
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(t.check(ip, t1), Verdict::Try);
        assert_eq!(t.failed(ip, t1), Some(Duration::from_secs(2)));
        let mut now = t1;
        let mut lock = Duration::ZERO;
        for _ in 0..20 {
            now += lock;
            lock = t.failed(ip, now).unwrap();
        }
        assert_eq!(lock, MAX_LOCKOUT);
        // A success clears the count; a long quiet spell forgets it.
        t.succeeded(ip);
        assert_eq!(t.check(ip, now), Verdict::Try);
        for _ in 0..=FREE_FAILURES {
            t.failed(other, t0);
        }
        let later = t0 + FORGET_AFTER;
        assert_eq!(t.failed(other, later), None);
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a = client_key(Some("2001:db8:1:2:aaaa::1".parse().unwrap()));
        let b = client_key(Some("2001:db8:1:2:bbbb::2".parse().unwrap()));
        let mapped = client_key(Some("::ffff:192.0.2.1".parse().unwrap()));
        assert_eq!(a, b);
        assert_eq!(mapped, Some("192.0.2.1".parse().unwrap()));
    }
}
