//! HTTP limits against the real daemon: header, body and idle timeouts (a silent SSE stream excepted),
//! the connection cap under 1,100 slowloris connections (with the open-file limit raised and under a hard
//! limit of 1,024), authentication before any body is read, bodies refused by their declared length, and
//! the daemon-wide budget of request bodies in flight.
use super::common::{Daemon, TOKEN, fleet, request};
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn setup(rows: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (data, state) = (dir.path().join("data"), dir.path().join("state"));
    fleet(&data, 1, rows);
    (dir, data, state)
}

fn machine(d: &Daemon) -> String {
    d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string()
}

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

/// Reads until the server closes (EOF or reset); returns when that happened and what arrived.
fn until_closed(s: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    while t0.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    (t0.elapsed(), got)
}

/// The status line's code of a raw response ("HTTP/1.1 401 ..." → 401).
fn status_of(raw: &[u8]) -> u16 {
    String::from_utf8_lossy(raw).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn submit(d: &Daemon, route: &str, m: &str) -> String {
    let r = d.post(&format!("/api/ml/train/{route}"), &json!({ "machine_id": m }));
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["task_id"].as_str().unwrap().to_string()
}

#[test]
fn timeouts_close_partial_headers_endless_bodies_and_idle_connections_but_not_sse() {
    let (_dir, data, state) = setup(20_000);
    let d = Daemon::start(
        &data,
        &state,
        &[("MILLWRIGHT_HTTP__HEADER_TIMEOUT_S", "1"), ("MILLWRIGHT_HTTP__BODY_TIMEOUT_S", "1.5"), ("MILLWRIGHT_HTTP__IDLE_TIMEOUT_S", "2")],
    );
    let addr = d.addr;
    let m = machine(&d);

    // A head that never completes, one byte every 300 ms: closed 1 s after the connection opened.
    let partial = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = [0u8; 1024];
        while t0.elapsed() < Duration::from_secs(10) {
            if s.write_all(b"a").is_err() {
                break;
            }
            match s.read(&mut buf) {
                Ok(_) => break,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        t0.elapsed()
    });
    // A chunked body that never ends, a chunk every 100 ms: 408, closed 1.5 s after its head.
    let endless = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        write!(s, "POST /api/ml/train/batch HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", auth()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while t0.elapsed() < Duration::from_secs(10) {
            let _ = s.write_all(b"1\r\n \r\n");
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        (t0.elapsed(), got)
    });
    // A kept-alive connection after one answer: closed 2 s after it.
    let idle = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut buf = [0u8; 16384];
        let n = s.read(&mut buf).unwrap();
        assert_eq!(status_of(&buf[..n]), 200);
        until_closed(&mut s, Duration::from_secs(10))
    });

    // A silent SSE stream: a task waiting behind a training job sends nothing for longer than every timeout,
    // and must still carry its next event.
    let running = submit(&d, "batch", &m);
    let waiting = submit(&d, "batch", &m);
    let mut sse = TcpStream::connect(addr).unwrap();
    write!(sse, "GET /api/ml/tasks/{waiting}/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let opened = Instant::now();
    let (_, first) = until_closed(&mut sse, Duration::from_millis(500));
    assert!(String::from_utf8_lossy(&first).contains("PENDING"), "{}", String::from_utf8_lossy(&first));
    std::thread::sleep(Duration::from_secs(4).saturating_sub(opened.elapsed()));
    assert_eq!(
        d.get(&format!("/api/ml/tasks/{waiting}")).json()["status"],
        "PENDING",
        "the job ahead must still run (the stream stays silent)"
    );
    let r = d.post(&format!("/api/ml/tasks/{waiting}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, later) = until_closed(&mut sse, Duration::from_secs(5));
    let later = String::from_utf8_lossy(&later);
    assert!(later.contains("REVOKED"), "the SSE stream was cut while silent (after {:?}): {later:?}", opened.elapsed());
    d.post(&format!("/api/ml/tasks/{running}/cancel"), &json!({}));

    let partial = partial.join().unwrap();
    assert!(partial >= Duration::from_millis(800) && partial < Duration::from_millis(2500), "partial head closed after {partial:?}");
    let (endless_t, endless_got) = endless.join().unwrap();
    assert_eq!(status_of(&endless_got), 408, "{}", String::from_utf8_lossy(&endless_got));
    assert!(String::from_utf8_lossy(&endless_got).contains("body_timeout"));
    assert!(endless_t >= Duration::from_millis(1300) && endless_t < Duration::from_millis(3500), "endless body closed after {endless_t:?}");
    let (idle_t, _) = idle.join().unwrap();
    assert!(idle_t >= Duration::from_millis(1800) && idle_t < Duration::from_millis(3500), "idle connection closed after {idle_t:?}");
    assert_eq!(d.get("/api/health").json()["status"], "ok");
}

/// Keeps `n` connections that each send a request head one byte every `drip`, reconnecting the ones the
/// server closes, as slowloris does.
struct Slowloris {
    stop: Arc<AtomicBool>,
    reconnects: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Slowloris {
    fn start(addr: SocketAddr, n: usize, drip: Duration) -> Slowloris {
        let stop = Arc::new(AtomicBool::new(false));
        let (reconnects, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s2, r2, o2) = (stop.clone(), reconnects.clone(), open.clone());
        let connect = move || -> Option<TcpStream> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        let handle = std::thread::spawn(move || {
            let mut socks: Vec<Option<TcpStream>> = (0..n).map(|_| connect()).collect();
            let mut buf = [0u8; 1024];
            while !s2.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                for slot in socks.iter_mut() {
                    // Anything read means the server answered or closed: either way the slot is spent.
                    let alive = slot.as_mut().is_some_and(|s| {
                        matches!(s.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock) && s.write_all(b"a").is_ok()
                    });
                    if !alive {
                        r2.fetch_add(1, Ordering::Relaxed);
                        *slot = connect();
                    }
                }
                o2.store(socks.iter().filter(|s| s.is_some()).count(), Ordering::Relaxed);
                while t0.elapsed() < drip && !s2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Slowloris { stop, reconnects, open, handle: Some(handle) }
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

/// Under 1,100 slow connections: /api/health answers fast, and a client that logs in can start training.
fn survive_slowloris(d: &Daemon) -> Vec<Duration> {
    let m = machine(d);
    let want = 1_100;
    let limit = millwright::api::raise_fd_limit().map(|(_, new)| new).unwrap_or(1024);
    // This process holds the slow connections: it needs the descriptors too.
    let n = want.min(usize::try_from(limit).unwrap_or(want).saturating_sub(200));
    assert!(n >= 900, "this test process may open only {limit} files; it needs ~1,300");
    let attack = Slowloris::start(d.addr, n, Duration::from_secs(2));
    let t0 = Instant::now();
    while attack.open.load(Ordering::Relaxed) < n * 9 / 10 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let mut health = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = request(d.addr, "GET", "/api/health", None, &[]);
        health.push(t.elapsed());
        assert_eq!(r.status, 200, "health under attack: {}", r.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let login = request(
        d.addr,
        "POST",
        "/api/auth/login",
        Some(json!({ "token": TOKEN }).to_string().as_bytes()),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(login.status, 200, "login under attack: {}", login.text());
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let origin = format!("http://{}", d.addr);
    let train = request(
        d.addr,
        "POST",
        "/api/ml/train/anomaly",
        Some(json!({ "machine_id": m }).to_string().as_bytes()),
        &[("Cookie", &cookie), ("Origin", &origin), ("Content-Type", "application/json")],
    );
    assert_eq!(train.status, 202, "logged-in train request under attack: {}", train.text());
    assert!(attack.reconnects.load(Ordering::Relaxed) > 0, "the cap never closed a slow connection");
    drop(attack);
    health.sort();
    let median = health[health.len() / 2];
    eprintln!("health under {n} slow connections: median {median:?}, max {:?}; rss {:.1} MB", health[health.len() - 1], d.rss_mb());
    assert!(median < Duration::from_millis(100), "health answered in {health:?}");
    assert!(health[health.len() - 1] < Duration::from_secs(1), "health answered in {health:?}");
    assert!(d.log().contains("HTTP connection cap reached"), "the cap being hit is logged:\n{}", d.log());
    health
}

#[test]
fn slowloris_with_the_open_file_limit_raised() {
    let (_dir, data, state) = setup(1_500);
    // Slow heads are not timed out during the test: only the cap protects the daemon.
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_HTTP__HEADER_TIMEOUT_S", "60")]);
    survive_slowloris(&d);
    assert!(d.log().contains("RLIMIT_NOFILE"), "the start logs the open-file limit");
}

#[test]
fn slowloris_under_a_hard_open_file_limit_of_1024() {
    let (_dir, data, state) = setup(1_500);
    let d = Daemon::start_wrapped(
        &data,
        &state,
        &[("MILLWRIGHT_HTTP__HEADER_TIMEOUT_S", "60"), ("MILLWRIGHT_HTTP__MAX_CONNECTIONS", "4096")],
        &["sh", "-c", "ulimit -n 1024 && exec \"$0\" \"$@\""],
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let nofile = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    assert!(nofile.split_whitespace().filter(|w| *w == "1024").count() == 2, "{nofile}");
    survive_slowloris(&d);
    assert!(d.log().contains("http.max_connections lowered to fit the open-file limit"), "{}", d.log());
}

/// `n` clients each POST an 8 MB predict body without a token and keep the connection open for `hold`;
/// returns the statuses they got (0: none).
fn body_holders(addr: SocketAddr, path: &str, n: usize, hold: Duration) -> Vec<u16> {
    static CHUNK: [u8; 65536] = [b' '; 65536];
    let deadline = Instant::now() + hold;
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let path = path.to_string();
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let Ok(mut s) = TcpStream::connect(addr) else { return 0 };
                    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        8 << 20
                    );
                    if s.write_all(head.as_bytes()).is_err() {
                        return 0;
                    }
                    for _ in 0..(8 << 20) / CHUNK.len() {
                        if s.write_all(&CHUNK).is_err() {
                            break;
                        }
                    }
                    let (_, got) = until_closed(&mut s, Duration::from_secs(10));
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    status_of(&got)
                })
                .unwrap()
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap_or(0)).collect()
}

/// Runs `f` while sampling the daemon's RSS every 20 ms; returns f's result and the highest RSS seen.
fn peak_rss_during<T>(d: &Daemon, f: impl FnOnce() -> T) -> (T, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let pid = d.child.id();
    let s2 = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0.0f64;
        while !s2.load(Ordering::Relaxed) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok());
            peak = peak.max(kb.unwrap_or(0.0) / 1024.0);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let out = f();
    stop.store(true, Ordering::Relaxed);
    (out, sampler.join().unwrap())
}

#[test]
fn unauthenticated_8mb_senders_move_neither_memory_nor_a_running_job() {
    let (_dir, data, state) = setup(20_000);
    let d = Daemon::start(&data, &state, &[]);
    let m = machine(&d);
    let path = format!("/api/ml/predict/{m}");
    for _ in 0..5 {
        d.get("/api/health");
    }
    let before = d.rss_mb();
    let (statuses, peak) = peak_rss_during(&d, || body_holders(d.addr, &path, 200, Duration::from_secs(3)));
    let answered = statuses.iter().filter(|s| **s == 401).count();
    eprintln!("200 unauthenticated 8 MB senders: rss {before:.1} → peak {peak:.1} MB; {answered} answered 401; statuses {:?}", {
        let mut s = statuses.clone();
        s.dedup();
        s
    });
    assert!(peak - before < 50.0, "RSS grew from {before:.1} to {peak:.1} MB");
    assert!(answered >= 190, "every sender is told 401 at once: {statuses:?}");

    // The same while a job trains: it must end SUCCESS (the guard's memory abort never sees the senders).
    let task = submit(&d, "classification", &m);
    d.wait_running(&task, Duration::from_secs(60));
    let (statuses, _) = peak_rss_during(&d, || body_holders(d.addr, &path, 200, Duration::from_secs(2)));
    assert!(statuses.iter().filter(|s| **s == 401).count() >= 190, "{statuses:?}");
    let end = d.wait_task(&task, Duration::from_secs(180));
    assert_eq!(end["status"], "SUCCESS", "{end}");
    assert_eq!(d.get("/api/health").json()["status"], "ok");
}

#[test]
fn bodies_are_refused_before_they_are_read() {
    let (_dir, data, state) = setup(1_500);
    let d = Daemon::start(&data, &state, &[]);
    let m = machine(&d);
    let head = |path: &str, extra: &str, len: usize| {
        let mut s = TcpStream::connect(d.addr).unwrap();
        write!(s, "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n{extra}\r\n")
            .unwrap();
        s
    };
    let body_of = |raw: &[u8]| -> Value {
        let text = String::from_utf8_lossy(raw);
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or(Value::Null)
    };

    // Expect: 100-continue without a token: 401 at once, never "100 Continue".
    let mut s = head(&format!("/api/ml/predict/{m}"), "Expect: 100-continue\r\n", 8 << 20);
    let (t, got) = until_closed(&mut s, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("100 Continue"), "{text}");
    assert_eq!(status_of(&got), 401, "{text}");
    assert_eq!(body_of(&got)["error"]["code"], "unauthorized");
    assert!(t < Duration::from_secs(3), "answered and closed after {t:?}");

    // With the token the same request is invited to send its body.
    let mut s = head(&format!("/api/ml/predict/{m}"), &format!("Expect: 100-continue\r\nAuthorization: {}\r\n", auth()), 2);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&buf[..n]));

    // A declared length above the route's limit: 413 in the one error shape, before any of the body is sent.
    for (path, len, limit) in [("/api/ml/train/batch".to_string(), 2 << 20, "1 MB"), (format!("/api/ml/predict/{m}"), 9 << 20, "8 MB")] {
        let mut s = head(&path, &format!("Authorization: {}\r\n", auth()), len);
        let (_, got) = until_closed(&mut s, Duration::from_secs(5));
        assert_eq!(status_of(&got), 413, "{path}: {}", String::from_utf8_lossy(&got));
        let v = body_of(&got);
        assert_eq!(v["error"]["code"], "too_large", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(limit), "{v}");
    }
    // Without a token the answer is 401, not 413: nothing about the body is looked at.
    let mut s = head("/api/ml/train/batch", "", 2 << 20);
    assert_eq!(status_of(&until_closed(&mut s, Duration::from_secs(5)).1), 401);
    // A client that sends its whole over-long body anyway still reads the 413 (the server lingers).
    let big = vec![b' '; 2 << 20];
    let r = request(d.addr, "POST", "/api/ml/train/batch", Some(&big), &[("Authorization", &auth()), ("Content-Type", "application/json")]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(d.get("/api/health").json()["status"], "ok");
}

#[test]
fn bodies_in_flight_share_one_memory_budget() {
    let (_dir, data, state) = setup(1_500);
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_HTTP__BODY_MEMORY_MB", "8"), ("MILLWRIGHT_HTTP__BODY_TIMEOUT_S", "1.5")]);
    let m = machine(&d);
    // A holds the whole budget: an authenticated 8 MB predict body that stops after 1 KB.
    let mut a = TcpStream::connect(d.addr).unwrap();
    write!(a, "POST /api/ml/predict/{m} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", auth(), 8 << 20).unwrap();
    a.write_all(&[b' '; 1024]).unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(400));
    // B (small, authenticated, asks before sending) waits for A's reservation: no 100 Continue yet.
    let mut b = TcpStream::connect(d.addr).unwrap();
    let body = json!({ "machine_id": m, "model_types": ["anomaly"] }).to_string();
    write!(b, "POST /api/ml/train/batch HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", auth(), body.len()).unwrap();
    b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 4096];
    let continued = loop {
        match b.read(&mut buf) {
            Ok(n) if n > 0 => break t0.elapsed(),
            Ok(_) => panic!("B was closed"),
            Err(_) => assert!(t0.elapsed() < Duration::from_secs(4), "B never got 100 Continue"),
        }
    };
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&buf));
    assert!(continued >= Duration::from_millis(1300), "B was let in after {continued:?}, while A still held the budget");
    // A timed out (408) and gave its reservation back; B goes through.
    let (_, got) = until_closed(&mut a, Duration::from_secs(3));
    assert_eq!(status_of(&got), 408, "{}", String::from_utf8_lossy(&got));
    b.write_all(body.as_bytes()).unwrap();
    let (_, got) = until_closed(&mut b, Duration::from_secs(3));
    assert_eq!(status_of(&got), 202, "{}", String::from_utf8_lossy(&got));
}

#[test]
fn event_streams_give_way_at_the_cap_instead_of_locking_everyone_out() {
    let (_dir, data, state) = setup(20_000);
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_HTTP__MAX_CONNECTIONS", "8")]);
    let m = machine(&d);
    let running = submit(&d, "batch", &m);
    let waiting = submit(&d, "batch", &m);
    // Every connection the cap allows becomes a silent, never-ending event stream (the task waits).
    let streams: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            write!(s, "GET /api/ml/tasks/{waiting}/events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).contains("text/event-stream"));
            s
        })
        .collect();
    for _ in 0..4 {
        let r = d.get("/api/health");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let closed = streams
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut s: &TcpStream = s;
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                    Err(_) => return true,
                }
            }
        })
        .count();
    assert!(closed >= 1, "no stream gave way, yet health was answered?");
    assert!(d.log().contains("HTTP connection cap reached"), "{}", d.log());
    for id in [&waiting, &running] {
        d.post(&format!("/api/ml/tasks/{id}/cancel"), &json!({}));
    }
}
