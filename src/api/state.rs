//! What every handler reads, grouped by what it is for: the parts served (queue, registry, data folder), who
//! may do what ([`Access`]), what a submission may ask for ([`TrainingLimits`]), what other parts add
//! ([`Hooks`]), and the server's own limits and heartbeat. [`AppState::new`] takes them as one [`Setup`].
use super::auth;
use super::error::ApiError;
use super::host::AllowedHosts;
use super::limits::HttpLimits;
use super::redact;
use crate::data::MachineSummary;
use crate::jobs::JobQueue;
use crate::lifecycle::Heartbeat;
use crate::ml::{ModelType, TrainParams};
use crate::registry::Registry;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use crate::jobs::Refusal;
/// Whether the resource guard refuses a submission outright (machine, model types).
pub type AdmissionCheck = Arc<dyn Fn(&str, &[ModelType]) -> Option<Refusal> + Send + Sync>;
/// Extra facts for /api/health from parts that are not the API's (guard, MQTT).
pub type HealthExtra = Arc<dyn Fn() -> Value + Send + Sync>;

/// Who may do what: the token and whether it is required, browsers' sessions and login attempts, the host
/// names answered, and the folders hidden from anonymous readers.
pub struct Access {
    /// Shared with the MQTT bridge, whose in-process requests carry it.
    pub token: Arc<String>,
    pub required: bool,
    /// Host names answered besides localhost and IP literals (`http.allowed_hosts` plus our own).
    pub allowed_hosts: AllowedHosts,
    pub(super) sessions: auth::Sessions,
    pub(super) login_throttle: auth::LoginThrottle,
    /// The data and state folders as they may appear in answers; set by [`AppState::new`].
    pub(super) private_folders: Vec<String>,
}

impl Access {
    pub fn new(token: String, required: bool, allowed_hosts: &[String]) -> Access {
        Access {
            token: Arc::new(token),
            required,
            allowed_hosts: AllowedHosts::new(allowed_hosts),
            sessions: auth::Sessions::default(),
            login_throttle: auth::LoginThrottle::default(),
            private_folders: Vec::new(),
        }
    }
}

/// What a submission gets when it asks for nothing, and the most it may ask for.
#[derive(Clone, Debug)]
pub struct TrainingLimits {
    pub defaults: TrainParams,
    pub max_time_limit_s: f64,
}

/// What parts that are not the API's plug in (the guard, MQTT); by default nothing is refused and nothing added.
#[derive(Clone)]
pub struct Hooks {
    pub admission_check: AdmissionCheck,
    pub health_extra: HealthExtra,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks { admission_check: Arc::new(|_, _| None), health_extra: Arc::new(|| json!({})) }
    }
}

/// Everything [`AppState::new`] needs.
pub struct Setup {
    pub queue: Arc<JobQueue>,
    pub registry: Arc<Registry>,
    pub data_dir: PathBuf,
    pub access: Access,
    pub training: TrainingLimits,
    /// The `[http]` limits and the shared body budget.
    pub http: HttpLimits,
    pub hooks: Hooks,
}

#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<JobQueue>,
    pub registry: Arc<Registry>,
    pub data_dir: PathBuf,
    pub access: Arc<Access>,
    pub training: Arc<TrainingLimits>,
    pub hooks: Hooks,
    pub http: Arc<HttpLimits>,
    /// Bumped when serving starts and by every `/api/health` request, for the watchdog.
    pub heartbeat: Heartbeat,
    pub started: Instant,
    summaries: Arc<crate::data::Summaries>,
    /// Verdicts, their cache and the alerts (configured by the daemon).
    pub fleet: Arc<super::fleet::Fleet>,
    /// The log readings are appended to; `None` where no daemon runs (tools, the fuzzer).
    pub readings: Option<Arc<crate::ingest::Readings>>,
    /// Readings for a machine with no folder make one (`readings.create_machines`).
    pub create_machines: bool,
    /// Held while a history file is received or made into a machine: one at a time.
    pub uploads: Arc<tokio::sync::Mutex<()>>,
}

/// What a machine's readings are checked against.
pub struct ReadingsTarget {
    pub sensors: Vec<String>,
    /// The end of the machine's history in its files.
    pub history_end: Option<f64>,
}

/// The state folder is the registry's parent (`<state_dir>/models`).
fn private_folders(data_dir: &Path, registry: &Registry) -> Vec<String> {
    let mut out = redact::spellings(data_dir);
    if let Some(state_dir) = registry.root().parent() {
        out.extend(redact::spellings(state_dir));
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

impl AppState {
    pub fn new(setup: Setup) -> AppState {
        let Setup { queue, registry, data_dir, mut access, training, http, hooks } = setup;
        access.private_folders = private_folders(&data_dir, &registry);
        let data_dir_for_summaries = data_dir.clone();
        AppState {
            queue,
            registry,
            data_dir,
            access: Arc::new(access),
            training: Arc::new(training),
            hooks,
            http: Arc::new(http),
            heartbeat: Heartbeat::new(),
            started: Instant::now(),
            fleet: Arc::new(super::fleet::Fleet::default()),
            summaries: Arc::new(crate::data::Summaries::new(&data_dir_for_summaries, crate::data::Caps::default())),
            readings: None,
            uploads: Arc::new(tokio::sync::Mutex::new(())),
            create_machines: false,
        }
    }

    /// Readings in over the API go to `readings`.
    /// Readings in over the API go to `readings`; with `create_machines`, readings for a machine that has no
    /// folder make one.
    pub fn with_readings(mut self, readings: Arc<crate::ingest::Readings>, create_machines: bool) -> AppState {
        self.readings = Some(readings);
        self.create_machines = create_machines;
        self
    }

    /// The sensors and end of history a machine's readings are checked against. A machine with no folder is
    /// made from these rows (their sensors, in the order first seen) when the configuration allows it.
    pub async fn readings_target(&self, id: &str, rows: &[Result<crate::ingest::Row, String>]) -> Result<ReadingsTarget, ApiError> {
        let me = self.clone();
        let id = id.to_string();
        let sensors = sensors_first_seen(rows);
        tokio::task::spawn_blocking(move || me.readings_target_blocking(&id, sensors))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
    }

    fn readings_target_blocking(&self, id: &str, sensors: Vec<String>) -> Result<ReadingsTarget, ApiError> {
        let mid = crate::data::MachineId::parse(id)?;
        let dir = crate::data::machine_dir(&self.data_dir, &mid);
        if !dir.is_dir() {
            if !self.create_machines {
                return Err(ApiError::not_found(format!(
                    "unknown machine {id:?}; readings make a machine only with `create_machines = true` under [readings] in the configuration"
                )));
            }
            if sensors.is_empty() {
                return Err(ApiError::bad_request(format!("unknown machine {id:?}, and no row names a sensor to make it with")));
            }
            if crate::data::live::create_from_readings(&dir, id, &sensors)? == crate::data::live::Creation::Created {
                tracing::info!(machine = id, sensors = sensors.len(), "machine made from its first readings (readings.create_machines)");
            }
        }
        match self.summaries.get(id) {
            Ok(s) => Ok(ReadingsTarget { sensors: s.sensor_names, history_end: s.last_time }),
            Err(e) => match &*e {
                crate::data::DataError::NoReadingsYet { sensors, .. } => Ok(ReadingsTarget { sensors: sensors.clone(), history_end: None }),
                other => Err(ApiError::from(other)),
            },
        }
    }

    /// The daemon's machine summaries, shared with the resource guard so a folder is read once for both.
    pub fn with_summaries(mut self, summaries: Arc<crate::data::Summaries>) -> AppState {
        self.summaries = summaries;
        self
    }

    /// The caps of `[data]`, as loading a machine must keep to them.
    pub fn data_caps(&self) -> crate::data::Caps {
        self.summaries.caps()
    }

    /// How many machine summaries were made rather than served from the cache.
    pub fn summaries_made(&self) -> u64 {
        self.summaries.made()
    }

    pub async fn machine_summary(&self, id: &str) -> Result<MachineSummary, ApiError> {
        let me = self.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || me.summary_blocking(&id)).await.map_err(|e| ApiError::internal(e.to_string()))?
    }

    /// [`AppState::machine_summary`] on the calling thread (for code already off the runtime).
    pub fn machine_summary_blocking(&self, id: &str) -> Result<MachineSummary, ApiError> {
        self.summary_blocking(id)
    }

    fn summary_blocking(&self, id: &str) -> Result<MachineSummary, ApiError> {
        let mid = crate::data::MachineId::parse(id)?;
        if !crate::data::machine_dir(&self.data_dir, &mid).is_dir() {
            return Err(ApiError::not_found(format!("unknown machine {id:?}")));
        }
        self.summaries.get(id).map_err(|e| ApiError::from(&*e))
    }

    /// Every machine folder with its summary or the reason it cannot be loaded.
    pub async fn machine_summaries(&self) -> Result<Vec<(String, Result<MachineSummary, ApiError>)>, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let ids = crate::data::machine_ids(&me.data_dir).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(ids
                .into_iter()
                .map(|id| {
                    let s = me.summary_blocking(&id);
                    (id, s)
                })
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
    }

    /// Whether this request's client has the token (Bearer or a live session): it may see paths and file
    /// content in errors.
    pub fn is_logged_in(&self, headers: &axum::http::HeaderMap) -> bool {
        auth::is_logged_in(self, headers)
    }

    pub(super) fn beat(&self) {
        self.heartbeat.beat();
    }
}

/// The sensor names of `rows` in the order they first appear.
fn sensors_first_seen(rows: &[Result<crate::ingest::Row, String>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, _) in rows.iter().flatten().flat_map(|r| &r.values) {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}
