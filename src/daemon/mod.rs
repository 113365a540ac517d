//! `millwright serve`: opens the store, the registry and the queue, starts the runner and the HTTP server,
//! and stops all of them from one shutdown signal within the grace period.
//!
//! [`start`] builds the parts (a [`Daemon`]) and [`run`] serves them on a bound listener until
//! `Daemon::shutdown` is triggered; `serve` wraps both in the process (runtime, signals, the "listening"
//! line). Tests call `start` and `run` in-process on a port-0 listener (tests/daemon_api.rs), and spawn the
//! binary only for what needs a process (kill -9, systemd, resource limits).
mod token;

pub mod systemd;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::jobs::{JobQueue, Runner};
use crate::lifecycle::{Bus, Heartbeat, Shutdown};
use crate::ml::{PauseGate, TrainParams};
use crate::registry::Registry;
use crate::store::{SledStore, StoreError};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;

fn training_defaults(cfg: &Config) -> TrainParams {
    let d = TrainParams::default();
    TrainParams {
        time_limit_s: cfg.training.default_time_limit_s,
        threads: if cfg.training.threads == 0 { d.threads } else { cfg.training.threads },
        quality: cfg.training.quality,
        ..d
    }
}

/// Creates the demo fleet when the data folder holds no machine, so a newcomer can train at once.
fn ensure_demo_fleet(cfg: &Config) -> Result<()> {
    if !crate::data::machine_ids(&cfg.data_dir).unwrap_or_default().is_empty() {
        return Ok(());
    }
    tracing::info!(data_dir = %cfg.data_dir.display(), "no machines found: creating the demo fleet");
    let opts = crate::data::simulate::FleetOptions { out_dir: cfg.data_dir.clone(), ..Default::default() };
    let fleet = crate::data::simulate::simulate_fleet(&opts).context("creating the demo fleet")?;
    tracing::info!(machines = fleet.len(), "demo fleet ready");
    Ok(())
}

/// Everything a running daemon holds; built by [`start`], used by `serve` and by tests.
pub struct Daemon {
    pub state: AppState,
    pub queue: Arc<JobQueue>,
    pub shutdown: Shutdown,
    pub runner: Option<std::thread::JoinHandle<()>>,
    pub runner_heartbeat: Heartbeat,
    pub gate: Arc<PauseGate>,
    /// Daemon-wide events (guard, models) for MQTT and the log; job changes come from `queue.subscribe()`.
    pub bus: Bus,
    /// What the MQTT bridge tells `/api/health` (connected, instance id, twin).
    pub mqtt_status: Arc<crate::mqtt::Status>,
    /// The queue's store, kept here for its backup (refreshed in the background and at stop).
    pub store: Arc<SledStore>,
    /// Jobs this start found running (a restart or power loss) and marked FAILURE, for MQTT to tell.
    pub interrupted: Vec<String>,
}

/// Opens the job store, repairing what can be repaired (see `store::recovery`), and says what it found.
fn open_store(cfg: &Config) -> Result<Arc<SledStore>> {
    let dir = cfg.state_dir.join("jobs.sled");
    let (store, report) = match crate::store::recovery::open(&dir) {
        Ok(opened) => opened,
        // The message says it all (folder, free and needed space, what to do); no "opening the job store:" prefix.
        Err(e @ StoreError::NoSpaceToOpen { .. }) => return Err(anyhow::anyhow!("not starting: {e}")),
        Err(e) => return Err(anyhow::Error::new(e).context("opening the job store")),
    };
    let summary = crate::store::recovery::summary(&report);
    if report.clean() {
        tracing::info!(store = %dir.display(), "job store open: {summary}");
    } else {
        tracing::warn!(store = %dir.display(), "job store open after repairs: {summary}");
    }
    Ok(Arc::new(store))
}

pub fn start(cfg: &Config) -> Result<Daemon> {
    for note in cfg.deprecations() {
        tracing::warn!("{note}");
    }
    std::fs::create_dir_all(&cfg.state_dir).with_context(|| format!("creating the state folder {}", cfg.state_dir.display()))?;
    // First: on a full disk the daemon must refuse before anything writes.
    let store = open_store(cfg)?;
    ensure_demo_fleet(cfg)?;
    let token = token::load_or_create(cfg)?;
    if !cfg.auth.required {
        tracing::warn!("auth.required = false: ANYONE on the network can start, cancel and delete training. Only for closed test benches.");
    }
    let (queue, recovery) = JobQueue::open(store.clone(), cfg.queue.capacity, cfg.queue.retention, cfg.queue.requeue_interrupted)?;
    for id in &recovery.interrupted {
        tracing::warn!(task_id = %id, "job was interrupted by a restart; marked FAILURE");
    }
    for id in &recovery.requeued {
        tracing::info!(task_id = %id, "interrupted job queued again");
    }
    let queue = Arc::new(queue);
    let stopping = queue.clone();
    store.spawn_backups(move || stopping.is_stopping()).context("starting the job store's backup")?;
    let registry =
        Arc::new(Registry::open(&cfg.state_dir, cfg.models.keep_versions, cfg.models.warn_size_mb).context("opening the model registry")?);
    let gate = Arc::new(PauseGate::default());
    let runner_heartbeat = Heartbeat::new();
    let bus = Bus::new();
    let summaries = Arc::new(crate::data::Summaries::new(&cfg.data_dir, cfg.data.caps()));
    let guard = crate::guard::Guard::new(cfg, bus.clone(), summaries.clone());
    let admit: crate::jobs::Admission = {
        let g = guard.clone();
        Arc::new(move |job: &crate::jobs::Job| g.admit(job))
    };
    // The monitor ends by itself once the queue stops (Daemon::stop), so its handle need not be kept.
    guard.spawn(queue.clone(), gate.clone()).context("starting the resource guard")?;
    registry.set_disk_reserve_mb(cfg.guard.disk_reserve_mb);
    let runner = Runner {
        data_caps: cfg.data.caps(),
        grid: cfg.data.grid_setting(),
        queue: queue.clone(),
        registry: registry.clone(),
        data_dir: cfg.data_dir.clone(),
        gate: gate.clone(),
        heartbeat: runner_heartbeat.clone(),
        admit,
        requeue_on_shutdown: cfg.queue.shutdown.requeues(),
    }
    .spawn()
    .context("starting the job runner")?;
    let mqtt_status = Arc::new(crate::mqtt::Status::default());
    let state = AppState::new(api::Setup {
        queue: queue.clone(),
        registry,
        data_dir: cfg.data_dir.clone(),
        access: api::Access::new(token, cfg.auth.required, &cfg.http.allowed_hosts),
        training: api::TrainingLimits { defaults: training_defaults(cfg), max_time_limit_s: cfg.training.max_time_limit_s },
        http: api::HttpLimits::from_config(&cfg.http),
        hooks: hooks(guard, mqtt_status.clone()),
    })
    .with_summaries(summaries);
    let state = if cfg.readings.enabled { state.with_readings(open_readings(cfg)?, cfg.readings.create_machines) } else { state };
    state.fleet.configure(
        api::fleet::Settings { stale_data_h: cfg.fleet.stale_data_h },
        crate::alerts::AlertBook::open(&cfg.state_dir.join(ALERTS_FILE), cfg.fleet.alert_retention_days),
        Some(std::sync::Arc::new(crate::scores::ScoreHistory::new(&cfg.state_dir.join(SCORES_DIR), cfg.fleet.score_history_days))),
        bus.clone(),
    );
    Ok(Daemon {
        state,
        queue,
        shutdown: Shutdown::new(),
        runner: Some(runner),
        runner_heartbeat,
        gate,
        bus,
        mqtt_status,
        store,
        interrupted: recovery.interrupted,
    })
}

/// The alerts, in the state folder.
pub const ALERTS_FILE: &str = "alerts.json";
/// Each machine's score history, under the state folder.
pub const SCORES_DIR: &str = "scores";

/// The readings log, in the state folder.
pub const READINGS_DIR: &str = "readings";

fn open_readings(cfg: &Config) -> anyhow::Result<Arc<crate::ingest::Readings>> {
    let dir = cfg.state_dir.join(READINGS_DIR);
    let tolerances = crate::ingest::Tolerances { future_s: cfg.readings.future_tolerance_s, order_s: cfg.readings.order_tolerance_s };
    let (readings, recovered) = crate::ingest::Readings::open(&dir, tolerances)
        .with_context(|| format!("opening the readings log in {} (move the folder aside to start an empty one)", dir.display()))?;
    if recovered.cut_bytes > 0 {
        tracing::warn!(bytes = recovered.cut_bytes, "readings log: cut off a write the last stop interrupted (it was never acknowledged)");
    }
    tracing::info!(segments = recovered.segments, "readings log open");
    Ok(Arc::new(readings))
}

/// What the guard and the MQTT bridge add to the API: the guard's refusals, and both parts' facts on
/// `/api/health` (the bridge's next to the guard's).
fn hooks(guard: Arc<crate::guard::Guard>, mqtt: Arc<crate::mqtt::Status>) -> api::Hooks {
    let g = guard.clone();
    api::Hooks {
        admission_check: Arc::new(move |machine: &str, types: &[crate::ml::ModelType]| g.refusal(machine, types)),
        health_extra: Arc::new(move || {
            let mut v = guard.health();
            if let (Some(obj), serde_json::Value::Object(facts)) = (v.as_object_mut(), mqtt.health()) {
                obj.extend(facts);
            }
            v
        }),
    }
}

impl Daemon {
    /// Stops the runner (cancelling the running job) and flushes the store, within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(id) = self.queue.stop() {
            tracing::info!(task_id = %id, "cancelling the running job for shutdown");
        }
        if let Some(handle) = self.runner.take() {
            let deadline = std::time::Instant::now() + grace;
            while !handle.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                tracing::warn!("the job runner did not stop within the grace period");
            }
        }
        if let Err(e) = self.queue.flush() {
            tracing::error!(error = %e, "final flush of the job store failed");
        }
        self.store.backup_now();
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub fn serve(cfg: Config) -> Result<()> {
    // Each client connection is a file descriptor; the usual soft limit of 1,024 is far below the hard one.
    match api::raise_fd_limit() {
        Ok((old, new)) if new > old => tracing::info!(old, new, "raised the open-file limit (RLIMIT_NOFILE)"),
        Ok((old, _)) => tracing::info!(limit = old, "open-file limit (RLIMIT_NOFILE) already at its hard limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit (RLIMIT_NOFILE)"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Each request's store and registry work runs on a blocking thread; tokio's default of 512 such threads
        // let a burst of clients cost tens of MB (measured by tests/load.rs), too much for a Pi.
        .max_blocking_threads(16)
        .enable_all()
        .thread_name("millwright-io")
        .build()?;
    rt.block_on(serve_async(cfg))
}

async fn serve_async(cfg: Config) -> Result<()> {
    let daemon = tokio::task::block_in_place(|| start(&cfg))?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding {} (set `listen` or MILLWRIGHT_LISTEN)", cfg.listen))?;
    let addr = listener.local_addr()?;
    // Scripts and tests read this line to find the port when listening on port 0; an unspecified address
    // (0.0.0.0) is shown as loopback, which opens, instead of an address no browser can open.
    let local = open_addr(addr);
    println!("millwright listening on http://{local}/");
    for url in page_urls(addr) {
        println!("open the page at {url}");
    }
    let sig = daemon.shutdown.clone();
    tokio::spawn(async move {
        signal().await;
        sig.trigger();
    });
    run(daemon, listener, &cfg).await
}

/// The address to show for a bound one: loopback for an unspecified address.
fn open_addr(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    a
}

/// The page's URLs a person can open: `http://localhost:<port>/` when reachable locally, and this machine's
/// LAN address when listening on all interfaces (or the one address listened on).
fn page_urls(addr: std::net::SocketAddr) -> Vec<String> {
    let port = addr.port();
    let ip = addr.ip();
    if !ip.is_unspecified() {
        return vec![format!("http://{}/", open_addr(addr))];
    }
    let mut out = vec![format!("http://localhost:{port}/")];
    if let Some(lan) = lan_ip() {
        out.push(format!("http://{}/", std::net::SocketAddr::new(lan, port)));
    }
    out
}

/// The address of the interface that routes to the LAN: a UDP socket "connected" to a documentation
/// address (no packet is sent) takes the source address the kernel would use.
fn lan_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// Serves the API and the page on `listener`, with MQTT and the systemd notifications, until
/// `daemon.shutdown` is triggered; then stops every part within the grace period. `serve` adds the process
/// around it (runtime, signals); tests run it in-process on a port-0 listener and trigger the shutdown
/// themselves. Needs a multi-threaded runtime (the stop blocks in place).
pub async fn run(mut daemon: Daemon, listener: tokio::net::TcpListener, cfg: &Config) -> Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), state_dir = %cfg.state_dir.display(), "serving");
    let shutdown = daemon.shutdown.clone();
    let wait = shutdown.clone();
    let server = tokio::spawn(api::serve(listener, daemon.state.clone(), crate::web::router(), async move { wait.wait().await }));
    // A broker that is down is retried in the background; only settings that cannot work stop the start.
    let mqtt =
        crate::mqtt::Mqtt::start(cfg, daemon.state.clone(), &daemon.bus, shutdown.clone(), daemon.mqtt_status.clone(), &daemon.interrupted)
            .context("starting MQTT (fix the [mqtt] settings, or set mqtt.enabled = false)")?;
    // READY goes out here: the store is open, the port bound and the runner up. The MQTT loop's heartbeat
    // counts only when MQTT runs (None = disabled).
    let systemd_beats = systemd::Heartbeats {
        runner: daemon.runner_heartbeat.clone(),
        http: daemon.state.heartbeat.clone(),
        mqtt: mqtt.as_ref().map(|m| m.heartbeat()),
    };
    tokio::spawn(api::fleet::watch(
        daemon.state.clone(),
        daemon.bus.clone(),
        Duration::from_secs_f64(cfg.fleet.evaluate_interval_s),
        shutdown.clone(),
    ));
    tokio::spawn(
        crate::retrain::schedule::Scheduler::new(daemon.state.clone(), cfg.retrain.settings(), &cfg.state_dir).run(shutdown.clone()),
    );
    if let Some(readings) = daemon.state.readings.clone() {
        let every = Duration::from_secs_f64(cfg.readings.compact_interval_s);
        let fleet = daemon.state.fleet.clone();
        tokio::spawn(compact_readings(readings, fleet, cfg.data_dir.clone(), cfg.readings.retention(), every, shutdown.clone()));
    }
    let systemd = systemd::start(systemd::Parts { queue: daemon.queue.clone(), beats: systemd_beats, addr }, shutdown.clone()).await;
    shutdown.wait().await;
    let grace = Duration::from_secs(cfg.queue.shutdown_grace_s.min(9));
    tokio::task::block_in_place(|| daemon.stop(grace));
    // After the runner stopped, so the job's last change is published before `offline`.
    if let Some(mqtt) = mqtt {
        mqtt.finish(Duration::from_secs(3)).await;
    }
    // STOPPING was sent when the shutdown began; make sure it left before the process exits.
    systemd.finish().await;
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server error"),
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP connections still open after shutdown; closing"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Moves the readings log into the machines' files every `every` (the first pass right away: readings a
/// previous run left in the log). Not at shutdown: a long pass would hold up the stop, and the log keeps
/// everything until the next start.
async fn compact_readings(
    readings: Arc<crate::ingest::Readings>,
    fleet: Arc<crate::api::fleet::Fleet>,
    data_dir: std::path::PathBuf,
    keep: crate::data::retention::Retention,
    every: Duration,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let (r, d) = (readings.clone(), data_dir.clone());
        let pass = tokio::task::spawn_blocking(move || {
            let done = r.compact(&d);
            // After the pass: the day it just joined counts as one file.
            (done, crate::data::retention::retain_machines(&d, &keep))
        });
        let (done, retained) = match pass.await {
            Ok(both) => both,
            Err(e) => {
                tracing::error!(error = %e, "readings compaction task failed");
                continue;
            }
        };
        match retained {
            Ok(kept) if kept.removed() > 0 => tracing::info!(
                by_age = kept.by_age,
                by_machine_size = kept.by_machine_size,
                by_total_size = kept.by_total_size,
                mb_removed = kept.bytes_removed >> 20,
                mb_kept = kept.bytes_kept >> 20,
                "old readings files removed ([readings] retain_*)"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "readings retention could not run; old readings files stay"),
        }
        match done {
            Ok(done) => {
                if done.rows > 0 {
                    // New readings are in the machines' files: score them now, not at the next tick.
                    fleet.evaluate_soon();
                }
                if done.rows > 0 || done.segments_removed > 0 {
                    tracing::info!(
                        rows = done.rows,
                        files = done.files,
                        held = done.held,
                        segments_removed = done.segments_removed,
                        merged = done.merged,
                        "readings compacted into the machines' files"
                    );
                }
                for (machine, why) in &done.waiting {
                    tracing::warn!(machine = %machine, "readings stay in the log: {why}");
                }
            }
            Err(e) => tracing::error!(error = %e, "readings compaction failed; the readings stay in the log"),
        }
    }
}

/// `millwright healthcheck`: exit 0 when the daemon answers /api/health with 200.
pub fn healthcheck(cfg: &Config, timeout: Duration) -> Result<()> {
    let mut addr: std::net::SocketAddr = cfg.listen.parse().with_context(|| format!("listen = {:?} is not an address", cfg.listen))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let answer = crate::util::http_client::request(addr, "GET", "/api/health", &[], None, timeout)
        .with_context(|| format!("asking {addr} for /api/health"))?;
    anyhow::ensure!(answer.status == 200, "unhealthy answer from {addr}: HTTP {}", answer.status);
    Ok(())
}
