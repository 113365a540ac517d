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
        }
    }

    /// Readings in over the API go to `readings`.
    pub fn with_readings(mut self, readings: Arc<crate::ingest::Readings>) -> AppState {
        self.readings = Some(readings);
        self
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
