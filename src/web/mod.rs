//! The embedded training page: the files in `web/`, compiled into the binary with `rust-embed`.
//! In debug builds rust-embed reads them from disk on each request, so editing the page is live.
//!
//! `/` is `index.html` (never cached, so a new binary's page is picked up at once); everything else lives under
//! `/static/`, with an ETag, gzip when the browser accepts it, and — when the URL carries the current
//! `?v=` page version — a year-long immutable cache. One strict Content-Security-Policy for every answer:
//! the page talks to this daemon only.
//!
//! The daemon merges [`router`] into the API's (`api::router_with`), so the page's answers pass the same host
//! check and speak the API's one error shape.
use crate::api::ApiError;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// No third-party origin anywhere: scripts, styles, images, fonts and fetches come from this daemon only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The placeholder in `index.html` replaced by the page version, so asset URLs change when any file does.
const VERSION_MARK: &str = "__PAGE_VERSION__";

/// Files smaller than this go out as they are: gzip would not pay for its header.
const MIN_GZIP: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("no page file {0:?}")]
    NotFound(String),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut resp = ApiError::not_found(self.to_string()).into_response();
        security_headers(resp.headers_mut());
        resp
    }
}

/// The page's routes; they read no state, so they fit any router's.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/index.html", get(index)).route("/static/{*path}", get(asset))
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short hash over every file's content hash: it changes when any page file changes.
fn page_version() -> String {
    static RELEASE: OnceLock<String> = OnceLock::new();
    let compute = || {
        let mut names: Vec<_> = Assets::iter().collect();
        names.sort();
        // FNV-1a over the names and their sha256s: stable, dependency-free and only needs to notice change.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for name in names {
            let digest = Assets::get(&name).map(|f| f.metadata.sha256_hash()).unwrap_or_default();
            for b in name.as_bytes().iter().chain(digest.iter()) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    };
    // Debug builds read files from disk, so the version must follow edits; release files never change.
    if cfg!(debug_assertions) { compute() } else { RELEASE.get_or_init(compute).clone() }
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, not refused with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        let refused = it.any(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

/// Path → (ETag, gzipped body).
type GzCache = Mutex<HashMap<String, (String, Vec<u8>)>>;

/// Gzipped bodies, made at first request and kept while the content (its ETag) stays the same.
fn gzipped(key: &str, etag: &str, body: &[u8]) -> Option<Vec<u8>> {
    static CACHE: OnceLock<GzCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(c) = cache.lock()
        && let Some((e, z)) = c.get(key)
        && e == etag
    {
        return Some(z.clone());
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), flate2::Compression::best());
    enc.write_all(body).ok()?;
    let z = enc.finish().ok()?;
    if let Ok(mut c) = cache.lock() {
        c.insert(key.to_string(), (etag.to_string(), z.clone()));
    }
    Some(z)
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/") == etag
    })
}

/// One answer for a page file: ETag / 304, gzip when accepted, the given caching and the security headers.
fn respond(key: &str, body: Vec<u8>, etag: String, cache_control: &'static str, req: &HeaderMap) -> Response {
    let mut h = HeaderMap::new();
    security_headers(&mut h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if etag_matches(req, &etag) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(key)));
    let body = if body.len() >= MIN_GZIP && accepts_gzip(req) {
        match gzipped(key, &etag, &body) {
            Some(z) => {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                z
            }
            None => body,
        }
    } else {
        body
    };
    (StatusCode::OK, h, body).into_response()
}

async fn index(req: HeaderMap) -> Result<Response, WebError> {
    let file = Assets::get("index.html").ok_or_else(|| WebError::NotFound("index.html".into()))?;
    let version = page_version();
    let html = String::from_utf8_lossy(&file.data).replace(VERSION_MARK, &version);
    let etag = format!("\"{}-{version}\"", hex(&file.metadata.sha256_hash()[..8]));
    Ok(respond("index.html", html.into_bytes(), etag, "no-store", &req))
}

async fn asset(Path(path): Path<String>, uri: Uri, req: HeaderMap) -> Result<Response, WebError> {
    // rust-embed only knows the embedded names, so `..` cannot reach outside web/; refuse it anyway, clearly.
    if path.split('/').any(|seg| seg == ".." || seg.is_empty()) || path == "index.html" {
        return Err(WebError::NotFound(path));
    }
    let key = format!("static/{path}");
    let file = Assets::get(&key).ok_or_else(|| WebError::NotFound(path.clone()))?;
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..12]));
    let versioned = uri.query().is_some_and(|q| q.split('&').any(|kv| kv == format!("v={}", page_version())));
    // A URL naming the current version can be kept for good; other URLs (module imports) revalidate by ETag.
    let cache = if versioned { "public, max-age=31536000, immutable" } else { "no-cache" };
    Ok(respond(&key, file.data.into_owned(), etag, cache, &req))
}

/// Total bytes of the page (every embedded file), for the size budget test.
pub fn page_bytes() -> usize {
    Assets::iter().filter_map(|n| Assets::get(&n)).map(|f| f.data.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate, br"));
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br;q=1.0, gzip;q=0"));
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn etag_comparison() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"b\""));
        assert!(etag_matches(&h, "\"b\""));
        assert!(!etag_matches(&h, "\"c\""));
    }

    #[test]
    fn page_is_embedded_small_and_self_contained() {
        let html = Assets::get("index.html").expect("web/index.html is embedded");
        assert!(String::from_utf8_lossy(&html.data).contains(VERSION_MARK));
        let total = page_bytes();
        assert!(total < 250 * 1024, "the page is {total} bytes; the budget is 250 KB");
        for name in Assets::iter() {
            let f = Assets::get(&name).expect("listed file");
            // SVG namespace URIs are identifiers, not requests; any other absolute URL would leave the device.
            let text = String::from_utf8_lossy(&f.data).replace("http://www.w3.org/", "");
            for bad in ["http://", "https://", "@import", "url(//"] {
                assert!(!text.contains(bad), "{name} refers to {bad}: the page must be self-contained");
            }
        }
        assert_eq!(content_type("static/app.js"), "text/javascript; charset=utf-8");
    }
}
