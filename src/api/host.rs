//! Answers only to names this device goes by. A site on the internet can point its own name at the Pi's
//! LAN address (DNS rebinding); the visitor's browser then treats our answers as that site's and lets its
//! script read the open GET routes. Such a request carries the foreign name in `Host`, so a name that is
//! neither localhost, an IP address, this machine's host name nor one listed in `http.allowed_hosts` is
//! refused before any route runs.
use super::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The host names accepted besides localhost and IP literals, lower-case.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    names: Vec<String>,
    /// `"*"` in the setting: every name (e.g. behind a reverse proxy that checks names itself).
    any: bool,
}

impl AllowedHosts {
    /// This machine's host name (and its mDNS `.local` form, which is how a stock Pi is reached) plus
    /// the configured names.
    pub fn new(configured: &[String]) -> AllowedHosts {
        let mut names: Vec<String> = Vec::new();
        for own in machine_host_names() {
            names.push(format!("{own}.local"));
            names.push(own);
        }
        names.extend(configured.iter().map(|n| normalize(n)));
        names.sort();
        names.dedup();
        AllowedHosts { any: configured.iter().any(|n| n.trim() == "*"), names }
    }

    /// `host` is the `Host` header's value (`name`, `name:port`, `[v6]:port`).
    pub fn allows(&self, host: &str) -> bool {
        let name = normalize(strip_port(host));
        if self.any || name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if name.parse::<Ipv4Addr>().is_ok() {
            return true;
        }
        if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']'))
            && v6.parse::<Ipv6Addr>().is_ok()
        {
            return true;
        }
        self.names.contains(&name)
    }
}

fn normalize(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    name.strip_suffix('.').map(str::to_string).unwrap_or(name)
}

fn strip_port(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The kernel's host name (what `hostname` prints), else /etc/hostname.
fn machine_host_names() -> Vec<String> {
    let mut out = Vec::new();
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            let name = normalize(&text);
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// Middleware: refuses a request whose `Host` names someone else. A request without one (HTTP/1.0, the
/// MQTT bridge's in-process calls) names nobody and passes.
pub async fn check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).map(|v| v.to_str().unwrap_or("\u{fffd}").to_string());
    match host {
        Some(h) if !state.access.allowed_hosts.allows(&h) => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            format!(
                "this device does not answer to the name {h:?}: open it by its IP address or host name, or add the name to http.allowed_hosts (MILLWRIGHT_HTTP__ALLOWED_HOSTS) in its config"
            ),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_ip_literals_own_and_listed_names_pass() {
        let a = AllowedHosts::new(&["Mill.Example.com".to_string()]);
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "app.localhost:1",
            "127.0.0.1:8080",
            "10.0.0.7",
            "[::1]:8080",
            "[fe80::1]",
            "mill.example.com",
            "mill.example.com:8080",
            "MILL.example.com.",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "mill.example.com.evil",
            "localhost.evil",
            "[::1",
            "",
            "2130706433x",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
        for own in machine_host_names() {
            assert!(a.allows(&own) && a.allows(&format!("{own}.local:8080")), "{own}");
        }
    }

    #[test]
    fn a_star_allows_every_name() {
        assert!(AllowedHosts::new(&["*".to_string()]).allows("anything.example"));
        assert!(!AllowedHosts::default().allows("anything.example"));
    }
}
