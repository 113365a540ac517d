//! The resource guard: keeps training from pushing a Pi into the OOM killer, into minutes of thermal
//! throttling or onto a full SD card.
//!
//! - [`readings`]: temperature, throttling, memory (system, daemon, systemd cgroup), disk, SD writes — all read
//!   under `guard.sysfs_root` so tests fake a Pi with files.
//! - [`estimate`]: a job's peak memory from rows × features and its model types, measured against real runs.
//! - [`Guard::admit`]: the runner asks before starting a job; a job that does not fit now stays PENDING with the
//!   reason (`waiting_reason`) and fails after `guard.wait_max_s`; one that could never fit is refused at
//!   submission ([`Guard::admission_check`], HTTP 503 with the numbers).
//! - The monitor thread ([`Guard::spawn`]): pauses training above `guard.temp_pause_c` and resumes below
//!   `guard.temp_resume_c`, fails a job paused longer than `guard.pause_max_s` or whose daemon passes
//!   `guard.memory_abort_mb`, and publishes its decisions on the daemon's bus.
pub mod estimate;
mod monitor;
pub mod readings;
pub mod thermal;
pub mod throttle;

use crate::config::Config;
use crate::jobs::{Job, JobQueue};
use crate::lifecycle::Bus;
use crate::ml::{ModelType, PauseGate};
use crate::util::sync::lock;
use estimate::{ShapeCache, estimate_bytes};
use readings::{Probe, Readings};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

const MIB: u64 = 1024 * 1024;

/// Disk a saved model may take, on top of the reserve: bundles are kilobytes, a report a few more; the
/// oversize warning starts at hundreds of MB, so this only has to cover the ordinary case.
const MODEL_DISK_ALLOWANCE: u64 = 8 * MIB;

#[derive(Debug, Error)]
pub enum GuardError {
    #[error("starting the resource guard's monitor thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// Why a PENDING job is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldKind {
    Memory,
    Disk,
    Heat,
}

#[derive(Clone, Debug)]
struct Hold {
    since: Instant,
    kind: HoldKind,
    reason: String,
    numbers: Value,
}

#[derive(Default)]
struct Status {
    paused: Option<thermal::Paused>,
    held: HashMap<String, Hold>,
}

pub struct Guard {
    cfg: crate::config::GuardConfig,
    probe: Mutex<Probe>,
    latest: Mutex<Readings>,
    status: Mutex<Status>,
    shapes: ShapeCache,
    bus: Bus,
}

fn mb(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

/// Runs a possibly slow load (a machine's table) without stalling the async worker that called it.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Guard {
    /// Takes a first reading at once, so the first job is judged on real numbers.
    /// `summaries` are the daemon's, shared with the API: sizing a job reads no folder the listing has read.
    pub fn new(cfg: &Config, bus: Bus, summaries: Arc<crate::data::Summaries>) -> Arc<Guard> {
        let mut probe = Probe::new(&cfg.guard.sysfs_root, &cfg.state_dir, &cfg.data_dir);
        let first = probe.read();
        tracing::info!(
            temperature_c = ?first.temperature_c,
            available_mb = ?first.memory.available_bytes.map(mb),
            cgroup = ?first.memory.cgroup.as_ref().map(|c| c.path.clone()),
            root = %cfg.guard.sysfs_root.display(),
            "resource guard: first readings"
        );
        Arc::new(Guard {
            cfg: cfg.guard.clone(),
            probe: Mutex::new(probe),
            latest: Mutex::new(first),
            status: Mutex::new(Status::default()),
            shapes: ShapeCache::new(summaries, cfg.data.grid_setting()),
            bus,
        })
    }

    pub fn readings(&self) -> Readings {
        lock(&self.latest).clone()
    }

    fn poll(&self) -> Readings {
        let r = lock(&self.probe).read();
        *lock(&self.latest) = r.clone();
        r
    }

    fn reserve_bytes(&self) -> u64 {
        self.cfg.memory_reserve_mb * MIB
    }

    /// The daemon RSS past which the running job is stopped: `guard.memory_abort_mb`, or less when the unit's
    /// cgroup limit minus the reserve is tighter (systemd would kill the whole daemon there).
    fn abort_bytes(&self, r: &Readings) -> u64 {
        let configured = self.cfg.memory_abort_mb * MIB;
        let cgroup = r
            .memory
            .cgroup
            .as_ref()
            .and_then(|c| c.limit_bytes())
            .filter(|&l| l > 2 * self.reserve_bytes())
            .map(|l| l - self.reserve_bytes());
        cgroup.map_or(configured, |c| c.min(configured))
    }

    /// The runner asks before starting `job`; `Some(reason)` keeps it PENDING. Called with the queue locked,
    /// so it only reads the latest readings (the monitor refreshes them) and never touches the queue.
    pub fn admit(&self, job: &Job) -> Option<String> {
        let verdict = self.judge(job);
        let mut st = lock(&self.status);
        match verdict {
            None => {
                st.held.remove(&job.id);
                None
            }
            Some((kind, reason, numbers)) => {
                let first = st.held.get(&job.id).is_none_or(|h| h.kind != kind);
                if first {
                    tracing::warn!(task_id = %job.id, "job held by the resource guard: {reason}");
                    let event = match kind {
                        HoldKind::Memory => "memory_refused",
                        HoldKind::Disk => "disk_refused",
                        HoldKind::Heat => "thermal_wait",
                    };
                    let mut data = json!({ "task_id": job.id, "machine_id": job.request.machine_id, "reason": reason });
                    if let (Some(d), Value::Object(n)) = (data.as_object_mut(), numbers.clone()) {
                        d.extend(n);
                    }
                    self.bus.emit(event, data);
                    let since = st.held.get(&job.id).map_or_else(Instant::now, |h| h.since);
                    st.held.insert(job.id.clone(), Hold { since, kind, reason: reason.clone(), numbers });
                } else if let Some(h) = st.held.get_mut(&job.id) {
                    h.reason = reason.clone();
                    h.numbers = numbers;
                }
                Some(reason)
            }
        }
    }

    fn judge(&self, job: &Job) -> Option<(HoldKind, String, Value)> {
        if let Some(p) = &lock(&self.status).paused {
            let now = lock(&self.latest).temperature_c.unwrap_or(p.at_c);
            let reason =
                format!("waiting for the SoC to cool: {now:.0} °C, starts below {} °C (guard.temp_resume_c)", self.cfg.temp_resume_c);
            return Some((HoldKind::Heat, reason, json!({ "temperature_c": now, "temp_resume_c": self.cfg.temp_resume_c })));
        }
        let r = self.readings();
        if let Some((reason, numbers)) = self.disk_shortage(&r) {
            return Some((HoldKind::Disk, reason, numbers));
        }
        let shape = self.shapes.shape(&job.request.machine_id)?;
        let estimate = estimate_bytes(&shape, &job.request.model_types, Some(&job.request.params));
        let headroom = r.memory.headroom_bytes()?;
        if estimate + self.reserve_bytes() > headroom {
            let reason = format!(
                "waiting for memory: the job needs about {} MB, {} MB are available and guard.memory_reserve_mb keeps {} MB free",
                mb(estimate),
                headroom / MIB,
                self.cfg.memory_reserve_mb
            );
            return Some((
                HoldKind::Memory,
                reason,
                json!({ "estimate_mb": mb(estimate), "available_mb": headroom / MIB, "memory_reserve_mb": self.cfg.memory_reserve_mb, "rows": shape.rows, "sensors": shape.sensors.len() }),
            ));
        }
        None
    }

    /// A folder the daemon writes to with less free space than the reserve plus a model: (reason, numbers).
    fn disk_shortage(&self, r: &Readings) -> Option<(String, Value)> {
        let needed = self.cfg.disk_reserve_mb * MIB + MODEL_DISK_ALLOWANCE;
        let (disk, free) = r.disks.iter().find_map(|d| d.free_bytes.filter(|f| *f < needed).map(|f| (d, f)))?;
        let reason = format!(
            "not enough disk space: {} MB free for the {} folder, and guard.disk_reserve_mb keeps {} MB free (plus {} MB for the models); free some space (old model versions, data) first",
            free / MIB,
            disk.role,
            self.cfg.disk_reserve_mb,
            mb(MODEL_DISK_ALLOWANCE)
        );
        Some((reason, json!({ "free_mb": free / MIB, "disk_reserve_mb": self.cfg.disk_reserve_mb, "folder_role": disk.role })))
    }

    /// A submission that cannot start now and will not by waiting: (message, numbers) for a 503. A disk below
    /// its reserve rarely frees itself, so it is refused here rather than queued and failed a moment later.
    pub fn refusal(&self, machine: &str, types: &[ModelType]) -> Option<crate::jobs::Refusal> {
        if let Some((reason, numbers)) = self.disk_shortage(&self.readings()) {
            self.bus.emit("disk_refused", json!({ "machine_id": machine, "reason": reason }));
            return Some((format!("refused by the resource guard: {reason}"), numbers));
        }
        self.admission_check(machine, types)
    }

    /// A submission that could never fit, however long it waited: (message, numbers) for a 503.
    pub fn admission_check(&self, machine: &str, types: &[ModelType]) -> Option<crate::jobs::Refusal> {
        let shape = blocking(|| self.shapes.shape(machine))?;
        let estimate = estimate_bytes(&shape, types, None);
        let memory = self.readings().memory;
        let ceiling = memory.ceiling_bytes()?;
        let source = if memory.cgroup.as_ref().and_then(|c| c.limit_bytes()).is_some_and(|l| l <= memory.total_bytes.unwrap_or(u64::MAX)) {
            "the service's cgroup memory limit"
        } else {
            "physical memory"
        };
        if estimate + self.reserve_bytes() <= ceiling {
            return None;
        }
        let message = format!(
            "this job would need about {} MB at its peak ({} rows × {} sensors), but {source} is {} MB and guard.memory_reserve_mb keeps {} MB free: train fewer model types at once, exclude sensors or use less data",
            mb(estimate),
            shape.rows,
            shape.sensors.len(),
            ceiling / MIB,
            self.cfg.memory_reserve_mb
        );
        self.bus.emit(
            "memory_refused",
            json!({ "machine_id": machine, "estimate_mb": mb(estimate), "ceiling_mb": ceiling / MIB, "memory_reserve_mb": self.cfg.memory_reserve_mb, "never_fits": true }),
        );
        let numbers = json!({
            "estimate_mb": mb(estimate),
            "ceiling_mb": ceiling / MIB,
            "ceiling_source": source,
            "memory_reserve_mb": self.cfg.memory_reserve_mb,
            "rows": shape.rows,
            "sensors": shape.sensors.len(),
            "model_types": types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        });
        Some((message, numbers))
    }

    /// ok, paused (heat) or refusing (a job held for memory or disk).
    fn state(&self) -> (&'static str, Option<String>) {
        let st = lock(&self.status);
        if let Some(p) = &st.paused {
            return ("paused", Some(p.reason.clone()));
        }
        match st.held.values().min_by_key(|h| h.since) {
            Some(h) => ("refusing", Some(h.reason.clone())),
            None => ("ok", None),
        }
    }

    /// The `guard` object of GET /api/health (and the MQTT health topic).
    pub fn health(&self) -> Value {
        let r = self.readings();
        let (state, reason) = self.state();
        let paused_for_s = lock(&self.status).paused.as_ref().map(|p| p.since.elapsed().as_secs_f64());
        let unknown = || Value::String("unknown".into());
        let throttle = r.throttle.map_or_else(unknown, |t| {
            json!({
                "raw": format!("0x{:x}", t.raw),
                "now": t.now, "since_boot": t.since_boot,
                "summary": t.now.describe(),
            })
        });
        json!({
            "guard": {
                "state": state,
                "reason": reason,
                "paused_for_s": paused_for_s,
                "temperature_c": r.temperature_c,
                "temperature": r.temperature_c.map_or_else(|| "unknown".to_string(), |t| format!("{t:.1} °C")),
                "temperature_source": r.temperature_source,
                "throttled": throttle,
                "under_voltage_alarm": r.under_voltage_alarm.map_or_else(unknown, Value::Bool),
                "memory": r.memory.json(),
                "disk": r.disks.iter().map(|d| json!({ "role": d.role, "path": d.path, "free_mb": d.free_bytes.map(|b| b / MIB) })).collect::<Vec<_>>(),
                "sd_card": r.sd_write_sectors.map_or_else(unknown, |s| json!({ "write_sectors": s, "written_mb": (s * 512) / 1_000_000 })),
                "limits": {
                    "temp_pause_c": self.cfg.temp_pause_c,
                    "temp_resume_c": self.cfg.temp_resume_c,
                    "pause_max_s": self.cfg.pause_max_s,
                    "memory_reserve_mb": self.cfg.memory_reserve_mb,
                    "memory_abort_mb": self.cfg.memory_abort_mb,
                    "memory_abort_effective_mb": self.abort_bytes(&r) / MIB,
                    "wait_max_s": self.cfg.wait_max_s,
                    "disk_reserve_mb": self.cfg.disk_reserve_mb,
                    "poll_interval_s": self.cfg.poll_interval_s,
                },
            }
        })
    }

    /// Starts the monitor thread; it stops by itself once the queue is stopping (daemon shutdown).
    pub fn spawn(self: &Arc<Self>, queue: Arc<JobQueue>, gate: Arc<PauseGate>) -> Result<std::thread::JoinHandle<()>, GuardError> {
        let guard = self.clone();
        let poll = Duration::from_secs_f64(self.cfg.poll_interval_s.clamp(0.1, 600.0));
        Ok(std::thread::Builder::new().name("millwright-guard".into()).spawn(move || monitor::run(&guard, &queue, &gate, poll))?)
    }
}
