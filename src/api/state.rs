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
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

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
    summaries: Arc<SummaryCache>,
    /// Verdicts, their cache and the alerts (configured by the daemon).
    pub fleet: Arc<super::fleet::Fleet>,
}

/// What a machine folder's files were when it was summarised: path, size and mtime of each (two levels
/// deep, enough for `[[files]]` patterns in a subfolder).
type Fingerprint = Vec<(PathBuf, u64, SystemTime)>;

/// A summary or why there is none, kept alike: a folder that fails is not re-read until its files change.
type Cached = Result<MachineSummary, CachedFailure>;

#[derive(Clone)]
struct CachedFailure {
    status: axum::http::StatusCode,
    code: &'static str,
    message: String,
    redacted: Option<String>,
}

impl From<&ApiError> for CachedFailure {
    fn from(e: &ApiError) -> Self {
        CachedFailure { status: e.status, code: e.code, message: e.message.clone(), redacted: e.redacted.clone() }
    }
}

impl From<CachedFailure> for ApiError {
    fn from(f: CachedFailure) -> Self {
        let mut e = ApiError::new(f.status, f.code, f.message);
        e.redacted = f.redacted;
        e
    }
}

/// Machine summaries from metadata ([`crate::data::peek_machine`]), cached by the folder's fingerprint; one
/// summary of a folder is made at a time, and requests arriving meanwhile wait for it and share it.
#[derive(Default)]
struct SummaryCache {
    caps: crate::data::Caps,
    done: Mutex<HashMap<String, (Fingerprint, Cached)>>,
    flights: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Summaries made (not served from the cache), for the log and tests.
    made: std::sync::atomic::AtomicU64,
}

fn fingerprint(dir: &Path) -> Fingerprint {
    fn walk(dir: &Path, depth: usize, out: &mut Fingerprint) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        // A folder of millions of files is not a machine; the cap keeps a listing cheap anyway.
        for entry in entries.filter_map(Result::ok).take(10_000) {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                if depth > 0 {
                    walk(&path, depth - 1, out);
                }
                continue;
            }
            out.push((path, meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        }
    }
    let mut out = Vec::new();
    walk(dir, 1, &mut out);
    out.sort();
    out
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
            summaries: Arc::new(SummaryCache::default()),
        }
    }

    /// The caps a machine's data must keep to (`[data]` in the configuration).
    pub fn with_data_caps(mut self, caps: crate::data::Caps) -> AppState {
        self.summaries = Arc::new(SummaryCache { caps, ..SummaryCache::default() });
        self
    }

    /// The caps of `[data]`, as loading a machine must keep to them.
    pub fn data_caps(&self) -> crate::data::Caps {
        self.summaries.caps
    }

    /// How many machine summaries were made rather than served from the cache.
    pub fn summaries_made(&self) -> u64 {
        self.summaries.made.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn machine_summary(&self, id: &str) -> Result<MachineSummary, ApiError> {
        let me = self.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || me.summary_blocking(&id)).await.map_err(|e| ApiError::internal(e.to_string()))?
    }

    fn summary_blocking(&self, id: &str) -> Result<MachineSummary, ApiError> {
        let mid = crate::data::MachineId::parse(id)?;
        let dir = crate::data::machine_dir(&self.data_dir, &mid);
        if !dir.is_dir() {
            return Err(ApiError::not_found(format!("unknown machine {id:?}")));
        }
        let cache = &self.summaries;
        let lookup = |print: &Fingerprint| -> Option<Cached> {
            let done = cache.done.lock().ok()?;
            done.get(id).filter(|(p, _)| p == print).map(|(_, c)| c.clone())
        };
        if let Some(hit) = lookup(&fingerprint(&dir)) {
            return hit.map_err(ApiError::from);
        }
        let flight = match cache.flights.lock() {
            Ok(mut f) => f.entry(id.to_string()).or_default().clone(),
            Err(_) => Arc::new(Mutex::new(())),
        };
        let _turn = flight.lock().unwrap_or_else(|p| p.into_inner());
        // Whoever held the turn before may have just made it.
        let print = fingerprint(&dir);
        if let Some(hit) = lookup(&print) {
            return hit.map_err(ApiError::from);
        }
        let started = Instant::now();
        let made: Result<MachineSummary, ApiError> = crate::data::peek_machine(&self.data_dir, id, &cache.caps).map_err(ApiError::from);
        cache.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(machine = id, ok = made.is_ok(), ms = started.elapsed().as_millis() as u64, "machine summarised from metadata");
        let cached: Cached = made.as_ref().map(Clone::clone).map_err(CachedFailure::from);
        if let Ok(mut done) = cache.done.lock() {
            done.insert(id.to_string(), (print, cached));
        }
        made
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
