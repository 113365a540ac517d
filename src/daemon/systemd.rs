//! systemd integration for `Type=notify` units: READY once the daemon can do its job, a `STATUS=` line that
//! tells the story in `systemctl status`, STOPPING on shutdown, and a watchdog that pings only while the
//! runner, the HTTP server and (when enabled) the MQTT loop show recent signs of life.
//!
//! Everything here is a no-op outside systemd: without `NOTIFY_SOCKET` nothing is sent, and without
//! `WATCHDOG_USEC` no watchdog runs.
use crate::jobs::JobQueue;
use crate::lifecycle::{Heartbeat, Shutdown, epoch_secs};
use sd_notify::NotifyState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The liveness counters the watchdog reads: each part's last sign of life.
#[derive(Clone)]
pub struct Heartbeats {
    /// Bumped by the runner on every turn of its loop (at least every 500 ms while it waits for work or a
    /// job is held by the guard), on every progress event, and while a job waits at the pause gate.
    pub runner: Heartbeat,
    /// Bumped by every `/api/health` request; the watchdog sends one itself each tick.
    pub http: Heartbeat,
    /// The MQTT loop's counter; `None` means MQTT is disabled and is not part of the verdict.
    /// Contract for the MQTT loop: bump it at least every few seconds, including while reconnecting to a
    /// broker that is down (a broker outage is not a reason for systemd to restart the daemon).
    pub mqtt: Option<Heartbeat>,
}

/// What the daemon hands to [`start`].
pub struct Parts {
    pub queue: Arc<JobQueue>,
    pub beats: Heartbeats,
    /// Where the HTTP server listens, for the watchdog's own health probe.
    pub addr: SocketAddr,
}

/// One reading of the heartbeats, the input of [`stale_parts`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub now: u64,
    pub runner: u64,
    pub http: u64,
    pub mqtt: Option<u64>,
}

impl Reading {
    fn take(beats: &Heartbeats) -> Reading {
        Reading { now: epoch_secs(), runner: beats.runner.last(), http: beats.http.last(), mqtt: beats.mqtt.as_ref().map(Heartbeat::last) }
    }

    /// Beats older than `start` (the watchdog's own start) count from it: each part gets one interval to
    /// show its first sign of life. Without this, the first tick, right after READY, could find the MQTT loop
    /// not yet run once and call the daemon unhealthy ("mqtt silent for 1796685111 s", seen in CI).
    fn counted_from(self, start: u64) -> Reading {
        Reading { runner: self.runner.max(start), http: self.http.max(start), mqtt: self.mqtt.map(|m| m.max(start)), ..self }
    }
}

/// Why the watchdog withholds its pings, shared with the STATUS loop; `None` while every part is alive.
#[derive(Clone, Default)]
struct Unhealthy(Arc<std::sync::Mutex<Option<String>>>);

impl Unhealthy {
    fn set(&self, why: Option<String>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }

    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The STATUS line: the watchdog's complaint first while there is one, then the queue's line. One place
/// composes it, so a recovery puts the queue's line back (before, the status loop resent its line only when
/// the queue changed, and "unhealthy" stayed in `systemctl status` after the parts had recovered).
fn compose_status(unhealthy: Option<&str>, line: &str) -> String {
    match unhealthy {
        Some(why) => format!("unhealthy: {why}; {line}"),
        None => line.to_string(),
    }
}

/// The parts whose last sign of life is older than `max_age`, each with its age in seconds; empty means the
/// watchdog may ping. A part that never beat (0) counts as stale. There is no exemption for a runner the
/// guard holds (paused for heat, waiting for memory): its waits beat too, so a stuck runner is seen then as well.
pub fn stale_parts(r: &Reading, max_age: Duration) -> Vec<(&'static str, u64)> {
    let limit = max_age.as_secs().max(1);
    let age = |beat: u64| r.now.saturating_sub(beat);
    let mut stale = Vec::new();
    if age(r.runner) > limit {
        stale.push(("runner", age(r.runner)));
    }
    if age(r.http) > limit {
        stale.push(("http", age(r.http)));
    }
    if let Some(m) = r.mqtt
        && age(m) > limit
    {
        stale.push(("mqtt", age(m)));
    }
    stale
}

/// The `STATUS=` line: queue depth and the running job, short enough for one `systemctl status` line.
pub fn status_line(queue: &JobQueue) -> String {
    let pending = queue.pending_count();
    match queue.running() {
        Some(job) => {
            let model = job.progress.model_type.map(|t| t.to_string()).unwrap_or_else(|| "starting".into());
            let stage = if job.progress.stage.is_empty() { String::new() } else { format!(", {}", job.progress.stage) };
            format!("training {} {model} {:.0}%{stage}; {pending} queued", job.request.machine_id, job.progress.progress_percent)
        }
        None => format!("idle; {pending} queued"),
    }
}

fn notify(states: &[NotifyState]) {
    // A lost notification must never take the daemon down; systemd notices a missing READY by itself.
    if let Err(e) = send_nonblocking(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// The notify protocol without ever blocking: these sends run on the async workers, and a notify socket
/// whose reader stalls (a full receive buffer) would otherwise block them and take HTTP down with it. A
/// message that cannot go out at once is dropped; the next tick sends a fresh one.
fn send_nonblocking(states: &[NotifyState]) -> std::io::Result<()> {
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(()) };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => <UnixAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)?,
        None => UnixAddr::from_pathname(std::path::Path::new(&path))?,
    };
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    sock.send_to_addr(msg.as_bytes(), &addr)?;
    Ok(())
}

/// How long READY waits for the runner thread's first heartbeat before announcing anyway.
const RUNNER_START_WAIT: Duration = Duration::from_secs(5);
/// How often the status line is recomputed (sent only when it changed).
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Tasks started by [`start`]; they end on shutdown after sending STOPPING.
pub struct Handle {
    tasks: Vec<JoinHandle<()>>,
}

impl Handle {
    /// Waits (briefly) until STOPPING went out, so it precedes the process exit.
    pub async fn finish(self) {
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
    }
}

/// Announces READY (after the runner's first heartbeat: the store is open and the port bound by the time the
/// caller gets here), then keeps STATUS current and runs the watchdog when systemd asked for one.
/// Does nothing when not started by systemd.
pub async fn start(parts: Parts, shutdown: Shutdown) -> Handle {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return Handle { tasks: Vec::new() };
    }
    let t0 = Instant::now();
    while parts.beats.runner.last() == 0 && t0.elapsed() < RUNNER_START_WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = status_line(&parts.queue);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tracing::info!("systemd notified: ready");
    let unhealthy = Unhealthy::default();
    let mut tasks = vec![tokio::spawn(status_loop(parts.queue.clone(), status, unhealthy.clone(), shutdown.clone()))];
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tracing::info!(watchdog_s = interval.as_secs_f64(), "systemd watchdog enabled");
        let watch = Watchdog { beats: parts.beats, addr: probe_addr(parts.addr), interval, unhealthy };
        tasks.push(tokio::spawn(watch.run(shutdown, notify)));
    }
    Handle { tasks }
}

async fn status_loop(queue: Arc<JobQueue>, mut last: String, unhealthy: Unhealthy, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tick.tick() => {
                let line = compose_status(unhealthy.get().as_deref(), &status_line(&queue));
                if line != last {
                    notify(&[NotifyState::Status(&line)]);
                    last = line;
                }
            }
        }
    }
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping: cancelling the running job and flushing the queue")]);
}

/// A listener on 0.0.0.0 or [::] is probed on loopback.
fn probe_addr(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    addr
}

struct Watchdog {
    beats: Heartbeats,
    addr: SocketAddr,
    /// systemd's WATCHDOG_USEC: pings go out at half of it, and a part silent for longer is stale.
    interval: Duration,
    unhealthy: Unhealthy,
}

impl Watchdog {
    /// `send` is `notify` in the daemon; tests pass a recorder.
    async fn run(self, shutdown: Shutdown, send: impl Fn(&[NotifyState])) {
        let mut tick = tokio::time::interval(self.interval / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut withheld: Vec<&'static str> = Vec::new();
        let started = epoch_secs();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                _ = tick.tick() => {
                    // The probe goes through the real accept loop and router; its /api/health bumps the
                    // HTTP heartbeat, so a wedged server leaves that heartbeat old.
                    if let Err(e) = health_probe(self.addr, self.interval / 2).await {
                        tracing::debug!(error = %e, "watchdog health probe failed");
                    }
                    if shutdown.is_triggered() {
                        break;
                    }
                    let stale = stale_parts(&Reading::take(&self.beats).counted_from(started), self.interval);
                    let names: Vec<&'static str> = stale.iter().map(|(n, _)| *n).collect();
                    if stale.is_empty() {
                        send(&[NotifyState::Watchdog]);
                        if !withheld.is_empty() {
                            self.unhealthy.set(None);
                            tracing::info!("all parts alive again; watchdog pings resumed");
                        }
                    } else if names != withheld {
                        let detail = stale.iter().map(|(n, age)| format!("{n} silent for {age} s")).collect::<Vec<_>>().join(", ");
                        tracing::error!(stale = ?names, "watchdog pings withheld ({detail}); systemd will restart the daemon if this lasts");
                        send(&[NotifyState::Status(&format!("unhealthy: {detail}"))]);
                        self.unhealthy.set(Some(detail));
                    }
                    withheld = names;
                }
            }
        }
    }
}

/// GET /api/health on our own listener; Ok when it answered 200 within `limit`.
async fn health_probe(addr: SocketAddr, limit: Duration) -> std::io::Result<()> {
    let probe = async {
        let s = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET /api/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let mut sent = 0;
        while sent < request.len() {
            s.writable().await?;
            match s.try_write(&request.as_bytes()[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while head.len() < STATUS_OK.len() {
            s.readable().await?;
            match s.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if head.starts_with(STATUS_OK) {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("answer {:?}", String::from_utf8_lossy(&head))))
        }
    };
    tokio::time::timeout(limit, probe).await.unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer")))
}

const STATUS_OK: &[u8] = b"HTTP/1.1 200";

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(30);

    fn fresh(now: u64) -> Reading {
        Reading { now, runner: now, http: now - 1, mqtt: None }
    }

    #[test]
    fn all_recent_means_ping() {
        assert!(stale_parts(&fresh(1_000), MAX).is_empty());
        assert!(stale_parts(&Reading { mqtt: Some(990), ..fresh(1_000) }, MAX).is_empty());
    }

    #[test]
    fn a_stalled_runner_withholds_the_ping() {
        let r = Reading { runner: 1_000 - 31, ..fresh(1_000) };
        assert_eq!(stale_parts(&r, MAX), vec![("runner", 31)]);
        // Exactly at the limit is still alive: heartbeats are whole seconds.
        assert!(stale_parts(&Reading { runner: 1_000 - 30, ..fresh(1_000) }, MAX).is_empty());
    }

    #[test]
    fn a_stale_server_is_named_on_its_own() {
        let r = Reading { http: 2, ..fresh(1_000) };
        assert_eq!(stale_parts(&r, MAX), vec![("http", 998)]);
    }

    #[test]
    fn mqtt_counts_only_when_enabled() {
        assert_eq!(stale_parts(&Reading { mqtt: Some(900), ..fresh(1_000) }, MAX), vec![("mqtt", 100)]);
        assert!(stale_parts(&Reading { mqtt: None, ..fresh(1_000) }, MAX).is_empty());
    }

    #[test]
    fn parts_that_never_beat_are_stale() {
        let r = Reading { now: 1_000, runner: 0, http: 0, mqtt: Some(0) };
        let names: Vec<_> = stale_parts(&r, MAX).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["runner", "http", "mqtt"]);
    }

    #[test]
    fn a_part_gets_one_interval_from_the_watchdogs_start_to_beat() {
        let r = Reading { now: 1_000, runner: 0, http: 999, mqtt: Some(0) };
        assert!(stale_parts(&r.counted_from(999), MAX).is_empty(), "just started: nobody is late yet");
        let names: Vec<_> = stale_parts(&r.counted_from(940), MAX).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["runner", "mqtt"], "an interval after the start, a part that never beat is stale");
    }

    #[test]
    fn the_status_line_carries_the_complaint_only_while_there_is_one() {
        assert_eq!(compose_status(Some("mqtt silent for 9 s"), "idle; 0 queued"), "unhealthy: mqtt silent for 9 s; idle; 0 queued");
        assert_eq!(compose_status(None, "idle; 0 queued"), "idle; 0 queued");
    }

    #[test]
    fn a_clock_step_backwards_does_not_look_like_a_stall() {
        let r = Reading { now: 500, runner: 1_000, http: 1_000, mqtt: Some(1_000) };
        assert!(stale_parts(&r, MAX).is_empty());
    }

    #[test]
    fn tiny_intervals_still_allow_a_second_of_jitter() {
        let r = Reading { runner: 999, http: 999, ..fresh(1_000) };
        assert!(stale_parts(&r, Duration::from_millis(200)).is_empty());
    }

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        assert_eq!(probe_addr("0.0.0.0:8080".parse().unwrap()), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(probe_addr("[::]:8080".parse().unwrap()), "[::1]:8080".parse().unwrap());
        assert_eq!(probe_addr("192.0.2.7:80".parse().unwrap()), "192.0.2.7:80".parse().unwrap());
    }

    /// The real watchdog loop, fed by real counters and probing a real server: with the runner beating it
    /// pings; when the runner goes silent the pings stop; when it beats again they resume.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watchdog_loop_stops_pinging_while_the_runner_is_silent() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let http = Heartbeat::new();
        // A minimal /api/health: every request is a sign of life, like the real handler's.
        let h = http.clone();
        std::thread::spawn(move || {
            for mut s in listener.incoming().map_while(Result::ok) {
                h.beat();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let runner = Heartbeat::new();
        runner.beat();
        let beats = Heartbeats { runner: runner.clone(), http: http.clone(), mqtt: None };
        let unhealthy = Unhealthy::default();
        let watch = Watchdog { beats, addr, interval: Duration::from_secs(2), unhealthy: unhealthy.clone() };
        let sent = Arc::new(std::sync::Mutex::new(Vec::<(Duration, String)>::new()));
        let t0 = Instant::now();
        let record = sent.clone();
        let send = move |states: &[NotifyState]| {
            let text: String = states.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ");
            record.lock().unwrap().push((t0.elapsed(), text));
        };
        let shutdown = Shutdown::new();
        let looped = tokio::spawn(watch.run(shutdown.clone(), send));
        // Runner alive for 3 s, silent for 5 s, then alive again for 2.5 s.
        let beat_until = |until: Duration| {
            let runner = runner.clone();
            async move {
                while t0.elapsed() < until {
                    runner.beat();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        beat_until(Duration::from_secs(3)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let while_silent = unhealthy.get();
        let silent_end = t0.elapsed();
        beat_until(silent_end + Duration::from_millis(2_500)).await;
        shutdown.trigger();
        looped.await.unwrap();
        let sent = sent.lock().unwrap();
        let pings_between =
            |a: f64, b: f64| sent.iter().filter(|(t, s)| s == "WATCHDOG=1" && t.as_secs_f64() >= a && t.as_secs_f64() < b).count();
        assert!(pings_between(0.0, 3.0) >= 2, "an alive runner must be pinged for: {sent:?}");
        // Stale once silent for more than 2 s (whole seconds): no pings from 6.1 s until it beats again.
        assert_eq!(pings_between(6.1, silent_end.as_secs_f64()), 0, "a silent runner must withhold pings: {sent:?}");
        assert!(sent.iter().any(|(_, s)| s.starts_with("STATUS=unhealthy: runner silent for")), "the reason must show in STATUS: {sent:?}");
        assert!(pings_between(silent_end.as_secs_f64(), 99.0) >= 1, "pings must resume when the runner beats again: {sent:?}");
        assert!(http.last() > 0, "the probe must reach the server");
        assert!(while_silent.is_some_and(|why| why.starts_with("runner silent for")), "the STATUS loop must hear of it");
        assert_eq!(unhealthy.get(), None, "and hear of the recovery, so the queue's line comes back");
    }
}
