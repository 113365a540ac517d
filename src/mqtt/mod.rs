//! MQTT for SCADA, Node-RED and Home Assistant, in Zigbee2MQTT's conventions: one base topic, plain JSON,
//! a retained availability topic with a last will, retained state only, and request/response topics
//! with a `transaction` echo.
//!
//! Shape: [`Mqtt::start`] spawns a link task (rumqttc's event loop, reconnecting with back-off), a
//! session task (owns the client and every retained message, republishes after each reconnect, answers
//! requests through the HTTP router), a job watcher (queue snapshots → progress, jobs/current, events),
//! a bus forwarder (guard events) and a publisher (info, health every 30 s, models, discovery).
//! Everything reaches the broker through one bounded [`outbox::Outbox`] that drops rather than waits, so
//! a slow or absent broker never slows training.
//!
//! Each install has an instance id ([`instance`]) in its state, info, health and responses; the session
//! listens to its own `bridge/*` topics to notice a twin ([`twin`]), says so in the log and on
//! `/api/health` ([`status`]), and lets only one of two twins answer requests.
pub mod discovery;
pub mod instance;
pub mod outbox;
pub mod publisher;
pub mod readings_in;
pub mod requests;
pub mod session;
pub mod settings;
pub mod status;
pub mod topics;
pub mod tracker;
pub mod twin;
pub mod verdicts;
pub mod wire;

use crate::api::AppState;
use crate::config::Config;
use crate::jobs::JobQueue;
use crate::lifecycle::{Bus, BusEvent, Heartbeat, Shutdown};
use outbox::{Message, Outbox};
use serde_json::json;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

pub use settings::Settings;
pub use status::Status;
pub use topics::Topics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Online,
    Offline,
}

/// The `bridge/state` payload. Consumers read `state` (Home Assistant's availability template too); the
/// instance id tells twins whose state, or whose last will, it is.
pub fn availability(state: Availability, instance_id: &str) -> Vec<u8> {
    let state = match state {
        Availability::Online => "online",
        Availability::Offline => "offline",
    };
    json!({ "state": state, "instance_id": instance_id }).to_string().into_bytes()
}

pub const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// How often the data folder is looked at for new machines.
const NEW_MACHINE_LOOK: Duration = Duration::from_secs(2);
/// If nobody calls [`Mqtt::finish`] after a shutdown (an error path), the session still ends by then.
const FALLBACK_STOP: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// A setting the config's own checks refuse (a `Config` built in code skips them).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{key}: {message}")]
    Setting { key: &'static str, message: String },
    #[error("{key} = {path}: {message}", path = path.display())]
    File { key: &'static str, path: PathBuf, message: String },
}

/// A running MQTT bridge; [`Mqtt::finish`] publishes `offline` and disconnects.
pub struct Mqtt {
    stop: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
    heartbeat: Heartbeat,
}

impl Mqtt {
    /// Starts the bridge when `mqtt.enabled`; a broker that is down is not an error (it is retried), a
    /// setting that cannot work (unreadable password or CA file) is. `status` is what `/api/health` shows.
    /// `interrupted`: the jobs this start's queue recovery found running and marked FAILURE (told as `job_failed`).
    pub fn start(
        cfg: &Config,
        state: AppState,
        bus: &Bus,
        shutdown: Shutdown,
        status: Arc<Status>,
        interrupted: &[String],
    ) -> Result<Option<Mqtt>, MqttError> {
        if !cfg.mqtt.enabled {
            return Ok(None);
        }
        // Only ring is compiled in; installing it as the process default keeps any rustls user working.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let instance_id = instance::load_or_create(&cfg.state_dir);
        // Before the publisher starts: a health message without our id would come back as a nameless twin.
        status.set(status::Facts { instance_id: instance_id.clone(), answers_requests: cfg.mqtt.accept_requests, ..Default::default() });
        let settings = Settings::from_config(&cfg.mqtt, &instance_id)?;
        let topics = settings.topics.clone();
        tracing::info!(broker = %settings.broker, tls = settings.tls, user = cfg.mqtt.username.as_deref().unwrap_or("(none)"), client_id = %settings.client_id, base_topic = %topics.base(), instance_id = %instance_id, "MQTT: connecting");
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let (outbox, outbox_rx) = Outbox::new();
        let (link_tx, link_rx) = mpsc::channel(256);
        let refresh = Arc::new(Notify::new());
        let (machines_tx, machines_rx) = mpsc::channel(64);
        let router = crate::api::router(state.clone());
        let told = Arc::new(Mutex::new(HashSet::new()));

        let link = tokio::spawn(session::link(settings.clone(), link_tx, stop_rx.clone()));
        let watcher = JobWatcher {
            queue: state.queue.clone(),
            topics: topics.clone(),
            outbox: outbox.clone(),
            machines: machines_tx.clone(),
            told: told.clone(),
            interrupted: interrupted.to_vec(),
        };
        let publisher = publisher::Publisher {
            state: state.clone(),
            router: router.clone(),
            topics: topics.clone(),
            outbox: outbox.clone(),
            info: info(cfg, &settings),
            online: Message {
                topic: topics.state(),
                payload: availability(Availability::Online, &instance_id),
                retain: true,
                qos: rumqttc::QoS::AtLeastOnce,
                correlation: None,
            },
            homeassistant: cfg.mqtt.homeassistant,
            buttons: cfg.mqtt.accept_requests,
            set_models: Default::default(),
            known_machines: Default::default(),
            started: Default::default(),
            sysfs_root: cfg.guard.sysfs_root.clone(),
        };
        let mut helpers = vec![
            tokio::spawn(watcher.run(stop_rx.clone())),
            tokio::spawn(forward_bus(bus.subscribe(), topics.clone(), outbox.clone(), told, machines_tx, stop_rx.clone())),
            tokio::spawn(run_publisher(publisher, refresh.clone(), machines_rx, stop_rx.clone())),
            tokio::spawn(verdicts::run(bus.subscribe(), topics.clone(), outbox.clone(), state.fleet.clone(), stop_rx.clone())),
        ];
        if let Some(readings_in) = readings_in(cfg, &settings, &state, &status)? {
            helpers.push(tokio::spawn(readings_in.run(stop_rx.clone())));
        }
        let twins = twin::Twins::new(
            twin::Names {
                instance_id,
                node_id: settings.node_id.clone(),
                client_id: settings.client_id.clone(),
                base_topic: topics.base().to_string(),
            },
            cfg.mqtt.accept_requests,
        );
        let mut session = session::Session::new(
            topics,
            settings.broker.clone(),
            cfg.mqtt.accept_requests,
            cfg.mqtt.homeassistant,
            router,
            state.access.token.clone(),
            outbox,
            refresh,
            twins,
            status,
        );
        session.url = cfg.mqtt.url.clone();
        session.trust = match &cfg.mqtt.ca_file {
            Some(path) => format!("only the CA in mqtt.ca_file = {}", path.display()),
            None => "the system's CA certificates (mqtt.ca_file is not set)".into(),
        };
        let heartbeat = session.heartbeat.clone();
        let task = tokio::spawn(session.run(link_rx, outbox_rx, stop_rx, link, helpers));
        let fallback = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            tokio::time::sleep(FALLBACK_STOP).await;
            let _ = fallback.send(true);
        });
        Ok(Some(Mqtt { stop: stop_tx, task, heartbeat }))
    }

    /// The session loop's last sign of life (every 2 s, also while the broker is down): the systemd
    /// watchdog's MQTT heartbeat.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    /// Publishes what is still queued, then `offline` (retained), and disconnects cleanly so the broker
    /// does not fire the last will. Call after the runner stopped, so the job's last change goes out too.
    pub async fn finish(self, limit: Duration) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!("MQTT did not finish in time; the broker will publish the last will");
            abort.abort();
        }
    }
}

fn info(cfg: &Config, settings: &Settings) -> serde_json::Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": settings.node_id,
        "instance_id": settings.instance_id,
        "base_topic": settings.topics.base(),
        "requests": if cfg.mqtt.accept_requests { requests::NAMES.to_vec() } else { Vec::new() },
        "homeassistant": cfg.mqtt.homeassistant,
        "limits": {
            "queue_capacity": cfg.queue.capacity,
            "max_time_limit_s": cfg.training.max_time_limit_s,
            "default_time_limit_s": cfg.training.default_time_limit_s,
            "quality": cfg.training.quality,
            "threads": cfg.training.threads,
            "model_warn_size_mb": cfg.models.warn_size_mb,
        },
        // Secrets are "***" in the summary.
        "config": cfg.summary(),
    })
}

/// Resolves once the stop flag is set (or its sender is gone); holds no borrow across the await.
/// The readings connection, when readings are taken in and `readings.mqtt_topic` names a topic.
fn readings_in(cfg: &Config, settings: &Settings, state: &AppState, status: &Status) -> Result<Option<readings_in::ReadingsIn>, MqttError> {
    let Some(readings) = state.readings.clone() else { return Ok(None) };
    if cfg.readings.mqtt_topic.is_empty() {
        return Ok(None);
    }
    let topic = crate::ingest::ReadingsTopic::parse(&cfg.readings.mqtt_topic, settings.topics.base())
        .map_err(|why| MqttError::Setting { key: "readings.mqtt_topic", message: why })?;
    let counts = Arc::new(readings_in::Counts::default());
    status.set_readings(counts.clone());
    tracing::info!(filter = %topic.filter(), client_id = %format!("{}-readings", settings.client_id), "MQTT: taking readings in");
    Ok(Some(readings_in::ReadingsIn { settings: settings.clone(), topic, state: state.clone(), readings, counts }))
}

pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await.map(|_| ());
}

fn event(kind: &str, data: serde_json::Value) -> serde_json::Value {
    json!({ "type": kind, "data": data, "ts": now_ts() })
}

/// The one timestamp format of every MQTT payload: ISO-8601 UTC with milliseconds (`new Date(ts)` in
/// JavaScript and `datetime.fromisoformat` in Python read it as is).
pub fn now_ts() -> String {
    ts_of(crate::util::time::now_secs())
}

pub fn ts_of(secs: f64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis((secs * 1000.0).round() as i64)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `model_oversize` may come from a job snapshot and from the bus; whichever is first is told.
fn first_telling(told: &Mutex<HashSet<String>>, data: &serde_json::Value) -> bool {
    let key = format!("{}/{}", data["task_id"].as_str().unwrap_or(""), data["model_type"].as_str().unwrap_or(""));
    match told.lock() {
        Ok(mut set) => {
            if set.len() > 1000 {
                set.clear();
            }
            set.insert(key)
        }
        Err(_) => true,
    }
}

struct JobWatcher {
    queue: Arc<JobQueue>,
    topics: Topics,
    outbox: Outbox,
    machines: mpsc::Sender<String>,
    told: Arc<Mutex<HashSet<String>>>,
    interrupted: Vec<String>,
}

impl JobWatcher {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut rx = self.queue.subscribe();
        let mut tracker = tracker::Tracker::default();
        self.tell_interrupted();
        match self.queue.running() {
            Some(job) => self.apply(tracker.observe(&job, Instant::now())),
            None => self.outbox.send(Message::state(self.topics.jobs_current(), &tracker::idle_current())),
        }
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(job) => self.apply(tracker.observe(&job, Instant::now())),
                    // Fell behind the queue: catch up from what is true now.
                    Err(RecvError::Lagged(_)) => {
                        let jobs: Vec<_> = self.queue.list().into_iter().rev().filter(|j| !j.state.is_finished() || tracker.follows(&j.id)).collect();
                        for job in &jobs {
                            self.apply(tracker.observe(job, Instant::now()));
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = stopped(&mut stop) => {
                    while let Ok(job) = rx.try_recv() {
                        self.apply(tracker.observe(&job, Instant::now()));
                    }
                    break;
                }
            }
        }
    }

    /// Jobs the queue's recovery found running at start (a restart or power loss) were marked FAILURE
    /// before MQTT started, so no snapshot ever reaches the tracker: say `job_failed` for each here, by the ids
    /// the recovery returned (not by age or error text: an older failure is never told twice).
    fn tell_interrupted(&self) {
        for job in self.interrupted.iter().filter_map(|id| self.queue.get(id)) {
            if job.state == crate::jobs::JobState::Failure {
                self.apply(vec![tracker::Note::Event { kind: "job_failed", data: tracker::finished_data(&job) }]);
                let _ = self.machines.try_send(job.request.machine_id.clone());
            }
        }
    }

    fn apply(&self, notes: Vec<tracker::Note>) {
        use tracker::Note;
        for note in notes {
            match note {
                Note::Progress { task_id, payload } => self.outbox.send(Message::transient(self.topics.progress(&task_id), &payload)),
                Note::Current(Some(v)) => self.outbox.send(Message::state(self.topics.jobs_current(), &v)),
                Note::Current(None) => self.outbox.send(Message::state(self.topics.jobs_current(), &tracker::idle_current())),
                Note::Event { kind, data } => {
                    if kind != "model_oversize" || first_telling(&self.told, &data) {
                        self.outbox.send(Message::transient(self.topics.event(), &event(kind, data)));
                    }
                }
                Note::Finished { machine_id } => {
                    let _ = self.machines.try_send(machine_id);
                }
            }
        }
    }
}

async fn forward_bus(
    mut rx: tokio::sync::broadcast::Receiver<BusEvent>,
    topics: Topics,
    outbox: Outbox,
    told: Arc<Mutex<HashSet<String>>>,
    machines: mpsc::Sender<String>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(ev) => {
                    // A model deleted, pinned or unpinned through the API: its retained topic is cleared (or
                    // moves to the version now live) at once, not at the next health tick.
                    if matches!(ev.kind.as_str(), "model_deleted" | "model_pinned" | "model_unpinned")
                        && let Some(m) = ev.data["machine_id"].as_str()
                    {
                        let _ = machines.try_send(m.to_string());
                    }
                    if ev.kind != "model_oversize" || first_telling(&told, &ev.data) {
                        outbox.send(Message::transient(topics.event(), &event(&ev.kind, ev.data)));
                    }
                }
                Err(RecvError::Lagged(n)) => tracing::debug!(missed = n, "MQTT: missed daemon events"),
                Err(RecvError::Closed) => break,
            },
            _ = stopped(&mut stop) => break,
        }
    }
}

async fn run_publisher(
    publisher: publisher::Publisher,
    refresh: Arc<Notify>,
    mut machines: mpsc::Receiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut look = tokio::time::interval(NEW_MACHINE_LOOK);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                publisher.new_machines().await;
                publisher.gone_models().await;
                publisher.health().await;
            }
            // A machine folder dropped into the data folder shows up in Home Assistant within seconds
            // (one directory listing per look; nothing is loaded).
            _ = look.tick() => publisher.new_machines().await,
            _ = refresh.notified() => publisher.everything().await,
            Some(m) = machines.recv() => {
                publisher.machine(&m).await;
                // The queue depth changed too.
                publisher.health().await;
            }
            _ = stopped(&mut stop) => {
                while let Ok(m) = machines.try_recv() {
                    publisher.machine(&m).await;
                }
                break;
            }
        }
    }
}
