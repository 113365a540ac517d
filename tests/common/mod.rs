//! Test harness: a demo fleet on disk, the real daemon as a child process on port 0, and a tiny HTTP/1.1
//! client (std only) good enough for JSON requests and server-sent events.
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A small demo fleet (few rows so training is quick in debug builds), made once per test binary.
pub fn fleet(dir: &Path, machines: usize, rows: usize) {
    let opts = millwright::data::simulate::FleetOptions { out_dir: dir.to_path_buf(), machines, seed: 11, rows, ..Default::default() };
    millwright::data::simulate::simulate_fleet(&opts).unwrap();
}

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub stderr_log: PathBuf,
}

impl Daemon {
    /// Starts `millwright serve` with the test token and waits for its "listening" line.
    pub fn start(data_dir: &Path, state_dir: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::spawn(data_dir, state_dir, env, true)
    }

    /// Starts without a configured token, so the daemon generates one into STATE_DIR/token.
    pub fn start_without_token(data_dir: &Path, state_dir: &Path) -> Daemon {
        Self::spawn(data_dir, state_dir, &[], false)
    }

    fn spawn(data_dir: &Path, state_dir: &Path, env: &[(&str, &str)], with_token: bool) -> Daemon {
        let log = state_dir.with_extension("stderr.log");
        std::fs::create_dir_all(state_dir).unwrap();
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_millwright"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MILLWRIGHT_DATA_DIR", data_dir)
            .env("MILLWRIGHT_STATE_DIR", state_dir)
            .env("MILLWRIGHT_MQTT__ENABLED", "false")
            .env("MILLWRIGHT_TRAINING__QUALITY", "fast")
            .env("MILLWRIGHT_TRAINING__THREADS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        if with_token {
            cmd.env("MILLWRIGHT_AUTH__TOKEN", TOKEN);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn millwright serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("millwright listening on http://") {
                    let _ = tx.send(rest.trim_end_matches('/').to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("daemon did not start; stderr:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        Daemon { child, addr, data_dir: data_dir.to_path_buf(), state_dir: state_dir.to_path_buf(), stderr_log: log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns how long the daemon took to exit.
    pub fn terminate(&mut self) -> Duration {
        let t0 = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return t0.elapsed();
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> Resp {
        request(
            self.addr,
            "POST",
            path,
            Some(body.to_string().as_bytes()),
            &[("Authorization", &format!("Bearer {TOKEN}")), ("Content-Type", "application/json")],
        )
    }

    pub fn post_raw(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
        request(self.addr, "POST", path, Some(body), headers)
    }

    pub fn delete(&self, path: &str) -> Resp {
        request(self.addr, "DELETE", path, None, &[("Authorization", &format!("Bearer {TOKEN}"))])
    }

    /// Polls a task until it ends; panics after `limit`.
    pub fn wait_task(&self, id: &str, limit: Duration) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let r = self.get(&format!("/api/ml/tasks/{id}"));
            let v = r.json();
            if ["SUCCESS", "FAILURE", "REVOKED"].contains(&v["status"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(t0.elapsed() < limit, "task {id} still {} after {limit:?}: {v}", v["status"]);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_running(&self, id: &str, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let v = self.get(&format!("/api/ml/tasks/{id}")).json();
            if v["status"] == "PROGRESS" && v["progress"]["progress_percent"].as_f64().unwrap_or(0.0) > 0.0 {
                return;
            }
            assert!(t0.elapsed() < limit, "task {id} did not start: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status {} body is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    if let Some(b) = body {
        // The server may answer (413) and close before reading it all.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw.get(split + 4..).unwrap_or_default().to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Resp { status, headers, body }
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { break };
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = b.get(start + size + 2..).unwrap_or_default();
    }
    out
}

/// Reads server-sent events until the stream ends or `limit` passes; returns each event's data as JSON.
pub fn sse(addr: SocketAddr, path: &str, limit: Duration) -> Vec<(Instant, serde_json::Value)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n").unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let mut chunk = [0u8; 8192];
    while t0.elapsed() < limit {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        // Pull complete `data:` lines out as they arrive (chunk-size lines never start with "data:").
        while let Some(pos) = buf.windows(1).position(|w| w == b"\n") {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                if let Ok(v) = serde_json::from_str(data.trim()) {
                    events.push((Instant::now(), v));
                }
            }
        }
    }
    events
}

/// Runs `millwright serve` with [`Daemon::start`]'s settings when it is expected to refuse to start: waits
/// for it to exit (killing it and panicking after `limit`) and returns its exit status and stderr.
pub fn serve_expecting_exit(
    data_dir: &Path,
    state_dir: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_millwright"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MILLWRIGHT_DATA_DIR", data_dir)
        .env("MILLWRIGHT_STATE_DIR", state_dir)
        .env("MILLWRIGHT_MQTT__ENABLED", "false")
        .env("MILLWRIGHT_AUTH__TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn millwright serve");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("millwright serve was expected to exit but still ran after {limit:?}; stderr:\n{}", reader.join().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}

/// Fake /sys and /proc files for the resource guard.
pub mod sysfs;
/// A fake systemd notify socket.
pub mod systemd;

impl Daemon {
    /// Starts `millwright serve` (test token) through a wrapper that gets the binary and its arguments
    /// after its own, e.g. `["sh", "-c", "ulimit -n 1024 && exec \"$0\" \"$@\""]`; `exec` keeps the pid.
    pub fn start_wrapped(data_dir: &Path, state_dir: &Path, env: &[(&str, &str)], wrapper: &[&str]) -> Daemon {
        let log = state_dir.with_extension("stderr.log");
        std::fs::create_dir_all(state_dir).unwrap();
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(env!("CARGO_BIN_EXE_millwright"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MILLWRIGHT_DATA_DIR", data_dir)
            .env("MILLWRIGHT_STATE_DIR", state_dir)
            .env("MILLWRIGHT_MQTT__ENABLED", "false")
            .env("MILLWRIGHT_TRAINING__QUALITY", "fast")
            .env("MILLWRIGHT_TRAINING__THREADS", "1")
            .env("MILLWRIGHT_AUTH__TOKEN", TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let mut child = cmd.spawn().expect("spawn the wrapped millwright serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("millwright listening on http://") {
                    let _ = tx.send(rest.trim_end_matches('/').to_string());
                }
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("daemon did not start; stderr:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        };
        Daemon { child, addr: addr.parse().unwrap(), data_dir: data_dir.to_path_buf(), state_dir: state_dir.to_path_buf(), stderr_log: log }
    }

    /// The daemon's resident memory in MB (VmRSS).
    pub fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}
