//! The "hostile LAN" table of BENCHMARKS.md: the real daemon (this binary, `serve`, on a loopback port) while
//! clients misbehave — slowloris connections, unauthenticated senders of 8 MB bodies, idle kept-alive
//! connections, a hard open-file limit of 1,024, a stream of wrong-token logins — with the daemon's health
//! latency (fresh connection per probe, as the watchdog's own probe) and RSS during each.
use super::BenchError;
use super::measure::{median, quantile};
use super::spawn::{BenchDaemon, rss_mb};
use crate::data::simulate::{FleetOptions, simulate_machine};
use serde::Serialize;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct HostileOptions {
    pub slow_connections: usize,
    pub body_senders: usize,
    pub idle_connections: usize,
    /// Seconds of wrong-token login attempts.
    pub login_seconds: f64,
    pub work_dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct HostileRow {
    pub scenario: String,
    pub health_p50_ms: f64,
    pub health_max_ms: f64,
    /// Health probes that failed (no 200 within 5 s).
    pub health_failed: usize,
    pub rss_before_mb: f64,
    pub rss_peak_mb: f64,
    pub outcome: String,
}

/// The idle timeout the bench daemon runs with, so idle connections are seen closing within the run.
const IDLE_TIMEOUT_S: u64 = 5;
const PROBES: usize = 40;

/// The bench daemon with fast training and the short idle timeout, plus `env`.
fn start_daemon(data: &Path, state: &Path, log: &Path, nofile: Option<u64>, env: &[(&str, &str)]) -> Result<BenchDaemon, BenchError> {
    let idle = IDLE_TIMEOUT_S.to_string();
    let mut all = vec![("MILLWRIGHT_TRAINING__QUALITY", "fast"), ("MILLWRIGHT_HTTP__IDLE_TIMEOUT_S", idle.as_str())];
    all.extend_from_slice(env);
    BenchDaemon::start(data, state, log, nofile, &all)
}

/// One request on a fresh connection: (status, body, latency); status 0 when it failed.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String, Duration) {
    let t0 = Instant::now();
    let fail = |t0: Instant| (0, String::new(), t0.elapsed());
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else { return fail(t0) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    if s.write_all(head.as_bytes()).is_err() {
        return fail(t0);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body, t0.elapsed())
}

struct Health {
    p50_ms: f64,
    max_ms: f64,
    failed: usize,
}

/// `PROBES` health requests 50 ms apart.
fn probe_health(addr: SocketAddr) -> Health {
    let mut ms = Vec::new();
    let mut failed = 0;
    for _ in 0..PROBES {
        let (status, _, t) = request(addr, "GET", "/api/health", &[], None);
        if status == 200 {
            ms.push(t.as_secs_f64() * 1e3);
        } else {
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Health { p50_ms: median(&ms), max_ms: quantile(&ms, 1.0), failed }
}

/// Samples the daemon's RSS every 20 ms while it lives; `peak()` stops it.
struct RssPeak {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<f64>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0.0f64;
            while !s2.load(Ordering::Relaxed) {
                peak = peak.max(rss_mb(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        RssPeak { stop, handle }
    }

    fn peak(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(f64::NAN)
    }
}

/// Connections that each send a request head one byte every 2 s, reconnected when the server closes them.
struct Slowloris {
    stop: Arc<AtomicBool>,
    reconnects: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Slowloris {
    fn start(addr: SocketAddr, n: usize) -> Slowloris {
        let stop = Arc::new(AtomicBool::new(false));
        let reconnects = Arc::new(AtomicUsize::new(0));
        let (s2, r2) = (stop.clone(), reconnects.clone());
        let connect = move || -> Option<TcpStream> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        let handle = std::thread::spawn(move || {
            let mut socks: Vec<Option<TcpStream>> = (0..n).map(|_| connect()).collect();
            let mut buf = [0u8; 512];
            while !s2.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                for slot in socks.iter_mut() {
                    let alive = slot.as_mut().is_some_and(|s| {
                        matches!(s.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock) && s.write_all(b"a").is_ok()
                    });
                    if !alive {
                        r2.fetch_add(1, Ordering::Relaxed);
                        *slot = connect();
                    }
                }
                while t0.elapsed() < Duration::from_secs(2) && !s2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Slowloris { stop, reconnects, handle: Some(handle) }
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn log_has(d: &BenchDaemon, needle: &str) -> bool {
    std::fs::read_to_string(&d.log).unwrap_or_default().contains(needle)
}

/// Logs in with the token (cookie) and submits an anomaly job: "202 in N ms" or what went wrong.
fn logged_in_train(d: &BenchDaemon, machine: &str) -> String {
    let login = serde_json::json!({ "token": d.token }).to_string();
    let t0 = Instant::now();
    let mut s = match TcpStream::connect_timeout(&d.addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => return format!("login: {e}"),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "POST /api/auth/login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{login}",
        d.addr,
        login.len()
    );
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let Some(cookie) = raw.lines().find_map(|l| l.strip_prefix("set-cookie: ")).and_then(|c| c.split(';').next()) else {
        return format!("login failed: {}", raw.lines().next().unwrap_or("no answer"));
    };
    let origin = format!("http://{}", d.addr);
    let body = serde_json::json!({ "machine_id": machine }).to_string();
    let (status, _, _) = request(d.addr, "POST", "/api/ml/train/anomaly", &[("Cookie", cookie), ("Origin", &origin)], Some(&body));
    format!("logged-in train request {status} in {:.0} ms", t0.elapsed().as_secs_f64() * 1e3)
}

/// `n` unauthenticated senders of an 8 MB predict body that keep their connection for `hold`; returns the
/// statuses they got and the median time to the answer.
fn body_senders(addr: SocketAddr, path: &str, n: usize, hold: Duration) -> (Vec<u16>, f64) {
    static CHUNK: [u8; 65536] = [b' '; 65536];
    let deadline = Instant::now() + hold;
    let threads: Vec<_> = (0..n)
        .filter_map(|_| {
            let path = path.to_string();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> (u16, f64) {
                    let t0 = Instant::now();
                    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else { return (0, 0.0) };
                    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        8 << 20
                    );
                    if s.write_all(head.as_bytes()).is_err() {
                        return (0, 0.0);
                    }
                    // The answer may come before the body is sent: read it on a second handle while writing.
                    let reader = s.try_clone().ok().map(|mut r| {
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 256];
                            let n = r.read(&mut buf).unwrap_or(0);
                            let status =
                                String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0u16);
                            (status, t0.elapsed().as_secs_f64() * 1e3)
                        })
                    });
                    for _ in 0..(8 << 20) / CHUNK.len() {
                        if s.write_all(&CHUNK).is_err() {
                            break;
                        }
                    }
                    let got = reader.and_then(|r| r.join().ok()).unwrap_or((0, 0.0));
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    got
                })
                .ok()
        })
        .collect();
    let results: Vec<(u16, f64)> = threads.into_iter().map(|t| t.join().unwrap_or((0, 0.0))).collect();
    let answered: Vec<f64> = results.iter().filter(|(s, _)| *s != 0).map(|(_, ms)| *ms).collect();
    (results.iter().map(|(s, _)| *s).collect(), median(&answered))
}

fn count_of(statuses: &[u16]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(*s).or_insert(0usize) += 1;
    }
    counts.iter().map(|(s, n)| if *s == 0 { format!("{n} no answer") } else { format!("{n}× {s}") }).collect::<Vec<_>>().join(", ")
}

pub fn hostile(o: &HostileOptions) -> Result<Vec<HostileRow>, BenchError> {
    // This process holds the attackers' connections.
    let _ = crate::api::raise_fd_limit();
    let data = o.work_dir.join("data");
    let m = simulate_machine(0, &FleetOptions { out_dir: data.clone(), machines: 1, rows: 5_000, ..FleetOptions::default() })?;
    let d = start_daemon(&data, &o.work_dir.join("state"), &o.work_dir.join("daemon.log"), None, &[])?;
    std::thread::sleep(Duration::from_secs(1));
    let mut rows = Vec::new();
    let mut row = |scenario: String, h: Health, before: f64, peak: f64, outcome: String| {
        rows.push(HostileRow {
            scenario,
            health_p50_ms: h.p50_ms,
            health_max_ms: h.max_ms,
            health_failed: h.failed,
            rss_before_mb: before,
            rss_peak_mb: peak,
            outcome,
        });
    };

    let before = d.rss_mb();
    let rss = RssPeak::start(d.pid());
    let h = probe_health(d.addr);
    row("quiet (no attack)".into(), h, before, rss.peak(), String::new());

    let before = d.rss_mb();
    let rss = RssPeak::start(d.pid());
    let slow = Slowloris::start(d.addr, o.slow_connections);
    std::thread::sleep(Duration::from_secs(3));
    let h = probe_health(d.addr);
    let train = logged_in_train(&d, &m.id);
    let reconnects = slow.reconnects.load(Ordering::Relaxed);
    drop(slow);
    let outcome = format!(
        "{train}; {reconnects} slow connections closed by the cap (and reopened by the attacker); cap logged: {}",
        log_has(&d, "HTTP connection cap reached")
    );
    row(format!("{} slowloris connections (a header byte every 2 s)", o.slow_connections), h, before, rss.peak(), outcome);

    let before = d.rss_mb();
    let rss = RssPeak::start(d.pid());
    let addr = d.addr;
    let (path, senders) = (format!("/api/ml/predict/{}", m.id), o.body_senders);
    let attack = std::thread::spawn(move || body_senders(addr, &path, senders, Duration::from_secs(4)));
    std::thread::sleep(Duration::from_millis(300));
    let h = probe_health(d.addr);
    let (statuses, answer_ms) = attack.join().unwrap_or_default();
    row(
        format!("{} unauthenticated 8 MB predict bodies, held open", o.body_senders),
        h,
        before,
        rss.peak(),
        format!("{}; answered in {answer_ms:.1} ms (median)", count_of(&statuses)),
    );

    let before = d.rss_mb();
    let rss = RssPeak::start(d.pid());
    let mut idle = Vec::new();
    for _ in 0..o.idle_connections {
        let Ok(mut s) = TcpStream::connect_timeout(&d.addr, Duration::from_secs(2)) else { continue };
        if write!(s, "GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n").is_ok() {
            idle.push(s);
        }
    }
    let made = Instant::now();
    let h = probe_health(d.addr);
    let open_after = |socks: &[TcpStream]| {
        let mut buf = [0u8; 4096];
        socks
            .iter()
            .filter(|s| {
                let _ = s.set_nonblocking(true);
                let mut s: &TcpStream = s;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => return false,
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                        Err(_) => return false,
                    }
                }
            })
            .count()
    };
    let open_now = open_after(&idle);
    std::thread::sleep(Duration::from_secs(IDLE_TIMEOUT_S + 1).saturating_sub(made.elapsed()));
    let open_later = open_after(&idle);
    drop(idle);
    row(
        format!("{} idle kept-alive connections (one request each)", o.idle_connections),
        h,
        before,
        rss.peak(),
        format!(
            "{open_now} still open after the probes (the cap closes the longest idle), {open_later} after idle_timeout_s = {IDLE_TIMEOUT_S}"
        ),
    );

    let before = d.rss_mb();
    let rss = RssPeak::start(d.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let tries = Arc::new(AtomicUsize::new(0));
    let logins: Vec<_> = (0..4)
        .map(|i| {
            let (stop, tries, addr) = (stop.clone(), tries.clone(), d.addr);
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("{{\"token\":\"wrong-{i}-{}\"}}", tries.fetch_add(1, Ordering::Relaxed));
                    statuses.push(request(addr, "POST", "/api/auth/login", &[], Some(&body)).0);
                }
                statuses
            })
        })
        .collect();
    let t0 = Instant::now();
    let h = probe_health(d.addr);
    std::thread::sleep(Duration::from_secs_f64(o.login_seconds).saturating_sub(t0.elapsed()));
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = logins.into_iter().flat_map(|t| t.join().unwrap_or_default()).collect();
    let rate = statuses.len() as f64 / t0.elapsed().as_secs_f64();
    row("wrong-token logins from 4 clients".into(), h, before, rss.peak(), format!("{rate:.0} attempts/s: {}", count_of(&statuses)));
    drop(d);

    // The hard limit of a stock unit without LimitNOFILE=; the configured cap is lowered to fit it.
    let d = start_daemon(
        &data,
        &o.work_dir.join("state-ulimit"),
        &o.work_dir.join("daemon-ulimit.log"),
        Some(1024),
        &[("MILLWRIGHT_HTTP__MAX_CONNECTIONS", "4096")],
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let before = d.rss_mb();
    let rss = RssPeak::start(d.pid());
    let slow = Slowloris::start(d.addr, o.slow_connections);
    std::thread::sleep(Duration::from_secs(3));
    let h = probe_health(d.addr);
    let train = logged_in_train(&d, &m.id);
    drop(slow);
    let outcome = format!("{train}; max_connections 4096 lowered to fit: {}", log_has(&d, "lowered to fit the open-file limit"));
    row(format!("fd limit: `ulimit -n 1024` (hard) + {} slowloris connections", o.slow_connections), h, before, rss.peak(), outcome);
    Ok(rows)
}

pub fn print(rows: &[HostileRow]) {
    println!("| scenario | health p50 / max ms (failed of {PROBES}) | RSS before → peak MB | outcome |");
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} / {:.2} ({}) | {:.1} → {:.1} | {} |",
            r.scenario, r.health_p50_ms, r.health_max_ms, r.health_failed, r.rss_before_mb, r.rss_peak_mb, r.outcome
        );
    }
}
