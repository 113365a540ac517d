//! Table 4 of BENCHMARKS.md: the real daemon (this binary, `serve`, on a loopback port) under an open-loop
//! request mix while batches train, plus progress cadence, cancel latency and 50 SSE clients.
use super::BenchError;
use super::measure::{median, quantile};
use super::spawn::BenchDaemon;
use crate::data::simulate::{FleetOptions, simulate_machine};
use crate::util::http_client::{Conn, sse};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct DaemonOptions {
    /// Requests per second offered, on a fixed schedule (open loop).
    pub rate: f64,
    pub seconds: f64,
    pub sse_clients: usize,
    /// Rows of the machine whose batches train during the load.
    pub rows: usize,
    pub cancels: usize,
    pub work_dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct LatencyRow {
    pub kind: String,
    pub sent: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct DaemonReport {
    pub idle_rss_mb: f64,
    pub max_rss_under_load_mb: f64,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    /// Whether a batch was training for the whole load window (a queue of three batches covers it).
    pub trained_throughout: bool,
    pub latency: Vec<LatencyRow>,
    pub progress_events: usize,
    pub progress_interval_p50_s: f64,
    pub progress_interval_max_s: f64,
    pub cancel_latency_s: Vec<f64>,
    pub sse_clients: usize,
    pub sse_connected: usize,
    pub sse_got_final: usize,
    pub sse_events_per_client: f64,
    pub sse_spread_p50_ms: f64,
    pub sse_spread_p99_ms: f64,
    pub sse_rss_mb: f64,
}

const TERMINAL: [&str; 3] = ["SUCCESS", "FAILURE", "REVOKED"];

pub fn daemon(o: &DaemonOptions) -> Result<DaemonReport, BenchError> {
    let data = o.work_dir.join("data");
    let busy = simulate_machine(0, &FleetOptions { out_dir: data.clone(), machines: 1, rows: o.rows, ..FleetOptions::default() })?;
    let small = simulate_machine(1, &FleetOptions { out_dir: data.clone(), machines: 2, rows: 5_000, ..FleetOptions::default() })?;
    let d = BenchDaemon::start(&data, &o.work_dir.join("state"), &o.work_dir.join("daemon.log"), None, &[])?;
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss_mb = d.rss_mb();
    let mut c = d.conn();

    // The predict target needs live models; it trains before the clock starts.
    let warm = submit(&mut c, &small.id)?;
    wait_end(&mut c, &warm, Duration::from_secs(600))?;

    let load = load_phase(&d, o, &busy.id, &small.id)?;
    let cancel_latency_s = (0..o.cancels).map(|_| cancel_once(&d, &busy.id)).collect::<Result<Vec<_>, _>>()?;
    let fan = sse_fan_out(&d, o.sse_clients, &busy.id, &small.id)?;
    Ok(DaemonReport { idle_rss_mb, cancel_latency_s, ..merge(load, fan, o) })
}

struct LoadResult {
    latency: Vec<LatencyRow>,
    achieved_rate: f64,
    max_rss: f64,
    trained_throughout: bool,
    progress: Vec<f64>,
}

struct FanOut {
    connected: usize,
    got_final: usize,
    events_per_client: f64,
    spreads_ms: Vec<f64>,
    rss_mb: f64,
}

fn merge(l: LoadResult, f: FanOut, o: &DaemonOptions) -> DaemonReport {
    DaemonReport {
        idle_rss_mb: f64::NAN,
        max_rss_under_load_mb: l.max_rss,
        offered_rate: o.rate,
        achieved_rate: l.achieved_rate,
        trained_throughout: l.trained_throughout,
        latency: l.latency,
        progress_events: l.progress.len() + 1,
        progress_interval_p50_s: median(&l.progress),
        progress_interval_max_s: l.progress.iter().copied().fold(f64::NAN, f64::max),
        cancel_latency_s: Vec::new(),
        sse_clients: o.sse_clients,
        sse_connected: f.connected,
        sse_got_final: f.got_final,
        sse_events_per_client: f.events_per_client,
        sse_spread_p50_ms: median(&f.spreads_ms),
        sse_spread_p99_ms: quantile(&f.spreads_ms, 0.99),
        sse_rss_mb: f.rss_mb,
    }
}

/// Three batches queue on the busy machine, then `rate` requests/s arrive on a fixed schedule for `seconds`:
/// 40 % task status, 30 % machine list, 30 % predictions. Latency counts from each request's scheduled time,
/// so a stalled server cannot hide behind fewer requests (no coordinated omission).
fn load_phase(d: &BenchDaemon, o: &DaemonOptions, busy: &str, small: &str) -> Result<LoadResult, BenchError> {
    let mut c = d.conn();
    let batches = (0..3).map(|_| submit(&mut c, busy)).collect::<Result<Vec<_>, _>>()?;
    let first = batches[0].clone();
    let addr = d.addr;
    let watcher = std::thread::spawn(move || sse(addr, &format!("/api/ml/tasks/{first}/events"), Duration::from_secs(900), || {}));
    wait_status(&mut c, &batches[0], |s| s == "PROGRESS", Duration::from_secs(60))?;

    let total = (o.rate * o.seconds).round().max(1.0) as usize;
    let next = AtomicUsize::new(0);
    let samples: Mutex<Vec<(usize, f64, bool)>> = Mutex::new(Vec::with_capacity(total));
    let stop = AtomicBool::new(false);
    let max_rss = Mutex::new(0.0f64);
    let t0 = Instant::now() + Duration::from_millis(100);
    let paths =
        [format!("/api/ml/tasks/{}", batches[0]), "/api/ml/train/machines/available".to_string(), format!("/api/ml/predict/{small}")];
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let r = d.rss_mb();
                if let Ok(mut m) = max_rss.lock() {
                    *m = m.max(r);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let workers: Vec<_> = (0..32)
            .map(|_| {
                s.spawn(|| {
                    let mut conn = d.conn();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let due = t0 + Duration::from_secs_f64(i as f64 / o.rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let kind = match i % 10 {
                            0..=3 => 0,
                            4..=6 => 1,
                            _ => 2,
                        };
                        let r = if kind == 2 { conn.post(&paths[2], &json!({})) } else { conn.get(&paths[kind]) };
                        let ok = r.is_ok_and(|r| r.status == 200);
                        if let Ok(mut v) = samples.lock() {
                            v.push((kind, due.elapsed().as_secs_f64() * 1e3, ok));
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let window = t0.elapsed().as_secs_f64();
    let last = status(&mut c, &batches[2])?;
    let trained_throughout = !TERMINAL.contains(&last.as_str());
    for id in &batches {
        let _ = c.post(&format!("/api/ml/tasks/{id}/cancel"), &json!({}));
    }
    for id in &batches {
        wait_end(&mut c, id, Duration::from_secs(60))?;
    }
    let events = watcher.join().map_err(|_| BenchError::Daemon("the SSE watcher thread panicked".into()))??;
    let times: Vec<Instant> = events.iter().filter(|(_, v)| v["status"] == "PROGRESS").map(|(t, _)| *t).collect();
    let progress: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();

    let samples = samples.into_inner().unwrap_or_default();
    let latency = ["status", "machines", "predict"]
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let ms: Vec<f64> = samples.iter().filter(|s| s.0 == k).map(|s| s.1).collect();
            LatencyRow {
                kind: (*name).into(),
                sent: ms.len(),
                errors: samples.iter().filter(|s| s.0 == k && !s.2).count(),
                p50_ms: median(&ms),
                p99_ms: quantile(&ms, 0.99),
                max_ms: ms.iter().copied().fold(f64::NAN, f64::max),
            }
        })
        .collect();
    Ok(LoadResult {
        latency,
        achieved_rate: samples.len() as f64 / window,
        max_rss: max_rss.into_inner().unwrap_or(f64::NAN),
        trained_throughout,
        progress,
    })
}

/// Seconds from the cancel request to the task's REVOKED state, for a batch caught mid-training.
fn cancel_once(d: &BenchDaemon, machine: &str) -> Result<f64, BenchError> {
    let mut c = d.conn();
    let id = submit(&mut c, machine)?;
    wait_status(&mut c, &id, |s| s == "PROGRESS", Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let r = c.post(&format!("/api/ml/tasks/{id}/cancel"), &json!({}))?;
    if r.status >= 300 {
        return Err(BenchError::Daemon(format!("cancel answered {}: {}", r.status, String::from_utf8_lossy(&r.body))));
    }
    let end = wait_end(&mut c, &id, Duration::from_secs(30))?;
    if end != "REVOKED" {
        return Err(BenchError::Daemon(format!("a cancelled batch ended {end}, not REVOKED")));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// `clients` SSE streams open on a pending batch before it starts; every event each of them receives is
/// matched across clients, and the spread between the first and the last arrival is the fan-out delay.
fn sse_fan_out(d: &BenchDaemon, clients: usize, busy: &str, small: &str) -> Result<FanOut, BenchError> {
    let mut c = d.conn();
    let blocker = submit(&mut c, busy)?;
    let watched = submit(&mut c, small)?;
    let connected = Arc::new(AtomicUsize::new(0));
    let addr = d.addr;
    let streams: Vec<_> = (0..clients)
        .map(|_| {
            let connected = connected.clone();
            let path = format!("/api/ml/tasks/{watched}/events");
            std::thread::spawn(move || {
                sse(addr, &path, Duration::from_secs(600), move || {
                    connected.fetch_add(1, Ordering::SeqCst);
                })
            })
        })
        .collect();
    let t0 = Instant::now();
    while connected.load(Ordering::SeqCst) < clients && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss_mb = d.rss_mb();
    let _ = c.post(&format!("/api/ml/tasks/{blocker}/cancel"), &json!({}))?;
    wait_end(&mut c, &watched, Duration::from_secs(600))?;
    let mut all: Vec<Vec<(Instant, Value)>> = Vec::new();
    for s in streams {
        all.push(s.join().map_err(|_| BenchError::Daemon("an SSE client thread panicked".into()))?.unwrap_or_default());
    }
    let got_final =
        all.iter().filter(|ev| ev.last().is_some_and(|(_, v)| v["status"].as_str().is_some_and(|s| TERMINAL.contains(&s)))).count();
    let mut arrivals: std::collections::HashMap<String, Vec<Instant>> = std::collections::HashMap::new();
    for ev in &all {
        for (t, v) in ev {
            arrivals.entry(v.to_string()).or_default().push(*t);
        }
    }
    let spreads_ms = arrivals
        .values()
        .filter(|ts| ts.len() > 1)
        .filter_map(|ts| Some((*ts.iter().max()? - *ts.iter().min()?).as_secs_f64() * 1e3))
        .collect();
    let events_per_client = median(&all.iter().map(|e| e.len() as f64).collect::<Vec<_>>());
    Ok(FanOut { connected: connected.load(Ordering::SeqCst), got_final, events_per_client, spreads_ms, rss_mb })
}

fn submit(c: &mut Conn, machine: &str) -> Result<String, BenchError> {
    let r = c.post("/api/ml/train/batch", &json!({ "machine_id": machine }))?;
    let id = r.json().unwrap_or_default()["task_id"].as_str().map(str::to_string);
    id.filter(|_| r.status < 300)
        .ok_or_else(|| BenchError::Daemon(format!("submitting a batch answered {}: {}", r.status, String::from_utf8_lossy(&r.body))))
}

fn status(c: &mut Conn, id: &str) -> Result<String, BenchError> {
    let r = c.get(&format!("/api/ml/tasks/{id}"))?;
    Ok(r.json().unwrap_or_default()["status"].as_str().unwrap_or("").to_string())
}

fn wait_status(c: &mut Conn, id: &str, want: impl Fn(&str) -> bool, limit: Duration) -> Result<String, BenchError> {
    let t0 = Instant::now();
    loop {
        let s = status(c, id)?;
        if want(&s) {
            return Ok(s);
        }
        if t0.elapsed() > limit {
            return Err(BenchError::Daemon(format!("task {id} still {s} after {limit:?}")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_end(c: &mut Conn, id: &str, limit: Duration) -> Result<String, BenchError> {
    wait_status(c, id, |s| TERMINAL.contains(&s), limit)
}

/// This very binary as `serve` on a free loopback port, with its own token, data and state, MQTT off.
pub fn print(r: &DaemonReport) {
    println!("idle RSS {:.1} MB; max RSS under load {:.1} MB", r.idle_rss_mb, r.max_rss_under_load_mb);
    println!(
        "load: {:.0} req/s offered, {:.1} req/s answered, a batch training {}",
        r.offered_rate,
        r.achieved_rate,
        if r.trained_throughout { "throughout" } else { "for part of the window only" }
    );
    println!("{:<10} {:>6} {:>7} {:>9} {:>9} {:>9}", "request", "sent", "errors", "p50 ms", "p99 ms", "max ms");
    for l in &r.latency {
        println!("{:<10} {:>6} {:>7} {:>9.2} {:>9.2} {:>9.2}", l.kind, l.sent, l.errors, l.p50_ms, l.p99_ms, l.max_ms);
    }
    println!(
        "progress events: {} (interval p50 {:.2} s, max {:.2} s)",
        r.progress_events, r.progress_interval_p50_s, r.progress_interval_max_s
    );
    let c = &r.cancel_latency_s;
    println!("cancel latency: median {:.3} s, max {:.3} s over {} cancels", median(c), c.iter().copied().fold(f64::NAN, f64::max), c.len());
    println!(
        "SSE: {} clients, {} connected, {} got the final state, {:.0} events each; fan-out spread p50 {:.2} ms, p99 {:.2} ms; daemon RSS {:.1} MB",
        r.sse_clients, r.sse_connected, r.sse_got_final, r.sse_events_per_client, r.sse_spread_p50_ms, r.sse_spread_p99_ms, r.sse_rss_mb
    );
}
