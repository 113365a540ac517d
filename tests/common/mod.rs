//! Test harness: a demo fleet on disk, the real daemon as a child process on port 0 ([`Daemon`]) or in this
//! process ([`InProcess`]), and the crate's own HTTP client (`millwright::util::http_client`) with the
//! panics a test wants.
#![allow(dead_code)]
use millwright::util::http_client;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789abcdef";
/// How long a test request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A small demo fleet (few rows so training is quick in debug builds), made once per test binary.
pub fn fleet(dir: &Path, machines: usize, rows: usize) {
    let opts = millwright::data::simulate::FleetOptions { out_dir: dir.to_path_buf(), machines, seed: 11, rows, ..Default::default() };
    millwright::data::simulate::simulate_fleet(&opts).unwrap();
}

/// Copies machine `from` to `to` with its test file ending at the row `cut` picks from the RUL column
/// (hours): the data's latest reading then sits where the test wants it.
pub fn cut_copy(data: &Path, from: &str, to: &str, cut: impl Fn(&[f64]) -> Option<usize>) {
    let (src, dst) = (data.join("machines").join(from), data.join("machines").join(to));
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(src.join("test.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let col = header.split(',').position(|c| c == "rul").expect("a rul column");
    let rows: Vec<&str> = lines.collect();
    let rul: Vec<f64> = rows.iter().map(|l| l.split(',').nth(col).unwrap().parse().unwrap()).collect();
    let last = cut(&rul).filter(|&i| i < rows.len()).unwrap_or_else(|| panic!("no row to cut {from}'s test file at for {to}: {rul:?}"));
    let kept: Vec<&str> = std::iter::once(header).chain(rows[..=last].iter().copied()).collect();
    std::fs::write(dst.join("test.csv"), kept.join("\n") + "\n").unwrap();
}

/// A fleet of one machine with `rows` rows, made once per test binary (and size) and only read by daemons.
pub fn shared_fleet(rows: usize) -> &'static Path {
    static FLEETS: OnceLock<Mutex<HashMap<usize, &'static Path>>> = OnceLock::new();
    let mut fleets = FLEETS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    fleets.entry(rows).or_insert_with(|| {
        // Kept for the whole run, like the static it lives in.
        let dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let data: &'static Path = Box::leak(dir.path().join("data").into_boxed_path());
        fleet(data, 1, rows);
        data
    })
}

/// How a test launches `millwright serve`.
#[derive(Clone, Copy, Default)]
pub struct Launch<'a> {
    /// Set after the test defaults, so they win over them.
    pub env: &'a [(&'a str, &'a str)],
    /// Start without a configured token, so the daemon generates one into STATE_DIR/token.
    pub generate_token: bool,
    /// A command that gets the binary and its arguments after its own, e.g.
    /// `["sh", "-c", "ulimit -n 1024 && exec \"$0\" \"$@\""]`; `exec` keeps the pid.
    pub wrapper: &'a [&'a str],
}

/// `millwright serve` on 127.0.0.1:0 with the test settings: an empty environment but PATH, the given
/// folders, MQTT off, fast single-threaded training, the test token unless the daemon is to make its own.
fn serve_command(data_dir: &Path, state_dir: &Path, launch: Launch) -> Command {
    let mut cmd = match launch.wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(env!("CARGO_BIN_EXE_millwright"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_millwright")),
    };
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MILLWRIGHT_DATA_DIR", data_dir)
        .env("MILLWRIGHT_STATE_DIR", state_dir)
        .env("MILLWRIGHT_MQTT__ENABLED", "false")
        .env("MILLWRIGHT_TRAINING__QUALITY", "fast")
        .env("MILLWRIGHT_TRAINING__THREADS", "1");
    if !launch.generate_token {
        cmd.env("MILLWRIGHT_AUTH__TOKEN", TOKEN);
    }
    cmd.envs(launch.env.iter().copied());
    cmd
}

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub stderr_log: PathBuf,
    /// Every line the daemon wrote to stdout so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `millwright serve` with the test token and waits for its "listening" line.
    pub fn start(data_dir: &Path, state_dir: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::launch(data_dir, state_dir, Launch { env, ..Launch::default() })
    }

    /// Starts without a configured token, so the daemon generates one into STATE_DIR/token.
    pub fn start_without_token(data_dir: &Path, state_dir: &Path) -> Daemon {
        Self::launch(data_dir, state_dir, Launch { generate_token: true, ..Launch::default() })
    }

    /// Starts `millwright serve` (test token) through a wrapper (see [`Launch::wrapper`]).
    pub fn start_wrapped(data_dir: &Path, state_dir: &Path, env: &[(&str, &str)], wrapper: &[&str]) -> Daemon {
        Self::launch(data_dir, state_dir, Launch { env, wrapper, ..Launch::default() })
    }

    /// Starts the daemon as `launch` says and waits (60 s at most) for its "listening" line; stderr goes to
    /// STATE_DIR.stderr.log.
    pub fn launch(data_dir: &Path, state_dir: &Path, launch: Launch) -> Daemon {
        let log = state_dir.with_extension("stderr.log");
        std::fs::create_dir_all(state_dir).unwrap();
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut child = serve_command(data_dir, state_dir, launch)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn millwright serve");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let record = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("millwright listening on http://") {
                    let _ = tx.send(rest.trim_end_matches('/').to_string());
                }
                record.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("daemon did not start; stderr:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        };
        Daemon {
            child,
            addr: addr.parse().unwrap(),
            data_dir: data_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            stderr_log: log,
            stdout: lines,
        }
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
        get(self.addr, path)
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> Resp {
        post(self.addr, path, body)
    }

    pub fn post_raw(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
        request(self.addr, "POST", path, Some(body), headers)
    }

    pub fn delete(&self, path: &str) -> Resp {
        request(self.addr, "DELETE", path, None, &[("Authorization", &format!("Bearer {TOKEN}"))])
    }

    /// Polls a task until it ends; panics after `limit`.
    pub fn wait_task(&self, id: &str, limit: Duration) -> serde_json::Value {
        wait_task(self.addr, id, limit)
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

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failing test shows whether the daemon was still alive and what it last logged: on CI that is all
        // there is to go on.
        if std::thread::panicking() {
            let status = self.child.try_wait();
            let log = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- daemon {} (exit status: {status:?}); last lines of {}:\n{}",
                self.addr,
                self.stderr_log.display(),
                tail.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, None, &[])
}

/// A JSON POST with the test token.
pub fn post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Resp {
    request(
        addr,
        "POST",
        path,
        Some(body.to_string().as_bytes()),
        &[("Authorization", &format!("Bearer {TOKEN}")), ("Content-Type", "application/json")],
    )
}

/// Polls a task until it ends; panics after `limit`.
pub fn wait_task(addr: SocketAddr, id: &str, limit: Duration) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let v = get(addr, &format!("/api/ml/tasks/{id}")).json();
        if ["SUCCESS", "FAILURE", "REVOKED"].contains(&v["status"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(t0.elapsed() < limit, "task {id} still {} after {limit:?}: {v}", v["status"]);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An answer; its `json()` panics with the body when the body is not JSON.
#[derive(Clone, Debug, Default)]
pub struct Resp(pub http_client::Response);

impl std::ops::Deref for Resp {
    type Target = http_client::Response;
    fn deref(&self) -> &http_client::Response {
        &self.0
    }
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        self.0.json().unwrap_or_else(|e| panic!("status {} body is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }
}

/// One request on its own connection. Panics when the daemon cannot be reached; a daemon that closes the
/// connection without answering gives status 0.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Resp {
    match http_client::request(addr, method, path, headers, body, REQUEST_TIMEOUT) {
        Ok(r) => Resp(r),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Resp::default(),
        Err(e) => panic!("{method} {path} on {addr}: {e}"),
    }
}

/// A JSON request with the test token that never panics, for tests that stop or load the daemon: status 0
/// and `null` when there was no answer within `timeout` (the connection failed or closed first).
pub fn try_request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>, timeout: Duration) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    match http_client::request(addr, method, path, &headers, Some(body.unwrap_or("").as_bytes()), timeout) {
        Ok(r) => (r.status, r.json().unwrap_or_default()),
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// Reads server-sent events until the stream ends or `limit` passes; returns each event's data as JSON.
pub fn sse(addr: SocketAddr, path: &str, limit: Duration) -> Vec<(Instant, serde_json::Value)> {
    http_client::sse(addr, path, limit, || {}).unwrap_or_else(|e| panic!("GET {path} (events) on {addr}: {e}"))
}

/// Runs `millwright serve` with [`Daemon::start`]'s settings when it is expected to refuse to start: waits
/// for it to exit (killing it and panicking after `limit`) and returns its exit status and stderr.
pub fn serve_expecting_exit(
    data_dir: &Path,
    state_dir: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let mut child = serve_command(data_dir, state_dir, Launch { env, ..Launch::default() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn millwright serve");
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

/// The daemon in this test process: `daemon::start` and `daemon::run` on a port-0 listener, on a runtime in
/// a thread of its own, with [`Daemon`]'s test settings. [`InProcess::stop`] triggers the daemon's shutdown
/// and waits for `run` to return. For what needs a process (kill -9, signals, systemd), use [`Daemon`].
pub struct InProcess {
    pub addr: SocketAddr,
    shutdown: millwright::lifecycle::Shutdown,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    pub fn start(data_dir: &Path, state_dir: &Path) -> InProcess {
        use millwright::config::{AuthConfig, Config, GuardConfig, MqttConfig, TrainingConfig};
        let cfg = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            mqtt: MqttConfig { enabled: false, ..Default::default() },
            training: TrainingConfig { quality: millwright::ml::Quality::Fast, threads: 1, ..Default::default() },
            auth: AuthConfig { token: Some(TOKEN.into()), ..Default::default() },
            guard: GuardConfig { poll_interval_s: 0.2, ..Default::default() },
            ..Config::default()
        };
        cfg.validate().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(async move {
                let daemon = tokio::task::block_in_place(|| millwright::daemon::start(&cfg))?;
                let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
                let _ = tx.send((listener.local_addr()?, daemon.shutdown.clone()));
                millwright::daemon::run(daemon, listener, &cfg).await
            })
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((addr, shutdown)) => InProcess { addr, shutdown, thread: Some(thread) },
            Err(_) => match thread.join() {
                Ok(Err(e)) => panic!("the in-process daemon did not start: {e:#}"),
                other => panic!("the in-process daemon did not start: {other:?}"),
            },
        }
    }

    /// Triggers the shutdown, waits for `run` to return cleanly and says how long that took.
    pub fn stop(mut self) -> Duration {
        let t0 = Instant::now();
        self.shutdown.trigger();
        let ended = self.thread.take().map(|t| t.join());
        let took = t0.elapsed();
        match ended {
            Some(Ok(Ok(()))) => took,
            Some(Ok(Err(e))) => panic!("daemon::run failed: {e:#}"),
            other => panic!("the in-process daemon's thread: {other:?}"),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies machine `from`'s model versions to machine `to` in a daemon's state folder, each version's meta made
/// to name `to` (the registry takes only versions that name their folder's machine). For machines with the
/// same data, so the copies are what training `to` would make.
pub fn copy_models(state: &Path, from: &str, to: &str) {
    let (src, dst) = (state.join("models").join(from), state.join("models").join(to));
    for t in std::fs::read_dir(&src).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for v in std::fs::read_dir(t.path()).unwrap().flatten().filter(|e| e.path().is_dir()) {
            let target = dst.join(t.file_name()).join(v.file_name());
            std::fs::create_dir_all(&target).unwrap();
            for f in std::fs::read_dir(v.path()).unwrap().flatten() {
                std::fs::copy(f.path(), target.join(f.file_name())).unwrap();
            }
            let meta = target.join("meta.json");
            if meta.is_file() {
                let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
                m["machine_id"] = serde_json::json!(to);
                std::fs::write(&meta, m.to_string()).unwrap();
            }
        }
    }
}
