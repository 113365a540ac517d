//! The model registry: every trained model kept as a numbered version on disk, the newest one live.
//!
//! Layout: `<state_dir>/models/<machine_id>/<type>/v<N>/` holding `model.mwm`, `report.json` and
//! `meta.json`, plus a `next_version` counter in each type folder. A version folder only ever appears by
//! renaming a finished hidden temp folder, so a reader (or a restart after a power cut) never sees half a
//! model; hidden names are skipped by every listing and swept by [`Registry::open`].
use crate::data::MachineId;
use crate::ml::model::LiveModel;
use crate::ml::{MODEL_FILE, MlError, ModelType, REPORT_FILE, Trained};
use crate::util::fsx;
use crate::util::sync::lock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod pin;
#[cfg(test)]
mod tests;
pub use pin::{PIN_FILE, Pin, PinBy};

pub const MODELS_DIR: &str = "models";
pub const META_FILE: &str = "meta.json";
/// Per type folder: the next number to hand out. It outlives deletes, so a number is never reused.
pub const COUNTER_FILE: &str = "next_version";
pub const DEFAULT_WARN_SIZE_MB: f64 = 500.0;

const MIB: f64 = (1u64 << 20) as f64;

/// One saved version, as listings and the API show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VersionInfo {
    pub machine_id: String,
    pub model_type: ModelType,
    pub version: u32,
    pub trained_at: String,
    pub size_bytes: u64,
    pub oversize: bool,
    pub warning: Option<String>,
    pub job_id: String,
    /// The report's headline (metric, value, baseline), so a listing needs no report.json.
    pub headline: serde_json::Value,
    pub live: bool,
}

/// Whether a saved version goes live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveAs {
    /// Live at once (a job a person started; a challenger that is not worse).
    Live,
    /// Kept beside the live version, which goes on answering (a challenger that was worse); the reason is the pin's.
    KeepLive { reason: String },
}

/// A version folder that exists but cannot be used, with the reason. A damaged version newer than the live
/// one means an older model answers; listings show it so nobody mistakes that for the latest training.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DamagedVersion {
    pub version: u32,
    pub reason: String,
    /// Newer than the live version: the live model is older than the latest training.
    pub newer_than_live: bool,
}

/// What `meta.json` holds: a [`VersionInfo`] without `live`, which depends on the sibling versions.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    version: u32,
    machine_id: String,
    model_type: ModelType,
    #[serde(default)]
    trained_at: String,
    #[serde(default)]
    size_bytes: u64,
    #[serde(default)]
    oversize: bool,
    #[serde(default)]
    warning: Option<String>,
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    headline: serde_json::Value,
}

impl Meta {
    fn into_info(self, live: bool) -> VersionInfo {
        VersionInfo {
            machine_id: self.machine_id,
            model_type: self.model_type,
            version: self.version,
            trained_at: self.trained_at,
            size_bytes: self.size_bytes,
            oversize: self.oversize,
            warning: self.warning,
            job_id: self.job_id,
            headline: self.headline,
            live,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    InvalidMachine(String),
    #[error("{}", not_found_message(machine, *model_type, *version))]
    NotFound { machine: String, model_type: ModelType, version: Option<u32> },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Ml(#[from] MlError),
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("disk full while saving the model to {}: {message}", path.display())]
    DiskFull { path: PathBuf, message: String },
    #[error("registry settings: {0}")]
    Config(String),
}

fn not_found_message(machine: &str, t: ModelType, version: Option<u32>) -> String {
    match version {
        Some(v) => format!("machine {machine} has no {t} model version {v}"),
        None => format!("machine {machine} has no {t} model yet: train one first"),
    }
}

const DISK_FULL_ADVICE: &str =
    "no space left on the device; the previous model version stays live — free some space (delete old model versions or data) and retrain";

fn io_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) || e.raw_os_error() == Some(28)
}

fn io_err(path: &Path, source: io::Error) -> RegistryError {
    if io_full(&source) {
        RegistryError::DiskFull { path: path.to_path_buf(), message: DISK_FULL_ADVICE.into() }
    } else {
        RegistryError::Io { path: path.to_path_buf(), source }
    }
}

/// How the files of a model folder are written: atomically (see [`fsx::write_atomic`]), or, in tests, failing
/// the way a full disk does.
type WriteFile = fn(&Path, &[u8]) -> io::Result<()>;

/// Writes `<dir>/model.mwm` from the trained model's bundle bytes, then `<dir>/report.json` with the model's
/// size in it (bundle first, so a report never describes a missing model); returns the size. Versions are
/// filled this way, and so are the plain folders of `millwright train --out`.
pub fn write_model_dir(dir: &Path, trained: &mut Trained) -> Result<u64, RegistryError> {
    write_model_files(dir, trained, fsx::write_atomic)
}

fn write_model_files(dir: &Path, trained: &mut Trained, write: WriteFile) -> Result<u64, RegistryError> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let bundle = trained.bundle()?;
    let model_path = dir.join(MODEL_FILE);
    write(&model_path, &bundle).map_err(|e| io_err(&model_path, e))?;
    trained.report.model_size_bytes = bundle.len() as u64;
    let report_path = dir.join(REPORT_FILE);
    // The grade in plant language goes into the stored report, so every reader shows the same words.
    let mut report =
        serde_json::to_value(&trained.report).map_err(|e| RegistryError::Corrupt { path: report_path.clone(), message: e.to_string() })?;
    report["quality"] = serde_json::json!(crate::verdict::grade(&trained.report.model_type, &report));
    write(&report_path, &to_json_bytes(&report, &report_path)?).map_err(|e| io_err(&report_path, e))?;
    Ok(trained.report.model_size_bytes)
}

fn parse_machine(id: &str) -> Result<MachineId, RegistryError> {
    MachineId::parse(id).map_err(|e| RegistryError::InvalidMachine(e.to_string()))
}

/// `v<N>` exactly, so `v01` or `v+1` cannot alias `v1`.
fn parse_version_name(name: &str) -> Option<u32> {
    let n: u32 = name.strip_prefix('v')?.parse().ok()?;
    (format!("v{n}") == name).then_some(n)
}

fn version_name(n: u32) -> String {
    format!("v{n}")
}

/// A hidden `*.tmp*` entry left by an interrupted save or delete. One whose writer (the pid after the last
/// `-`) is another live process is still being written, so it is left alone.
fn is_leftover(name: &str) -> bool {
    if !(name.starts_with('.') && name.contains(".tmp")) {
        return false;
    }
    let owner = name.rsplit_once('-').and_then(|(_, pid)| pid.parse::<u32>().ok());
    match owner {
        Some(pid) if pid != std::process::id() => !Path::new("/proc").join(pid.to_string()).exists(),
        _ => true,
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) }
}

/// Version folders by number, newest first, without reading them.
fn version_dirs(type_dir: &Path) -> Result<Vec<(u32, PathBuf)>, RegistryError> {
    version_entries(type_dir, true)
}

/// `dirs_only: false` also counts stray files named like versions: they block the folder name all the same.
fn version_entries(type_dir: &Path, dirs_only: bool) -> Result<Vec<(u32, PathBuf)>, RegistryError> {
    let entries = match fs::read_dir(type_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(type_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(type_dir, e))?;
        let Some(n) = entry.file_name().to_str().and_then(parse_version_name) else { continue };
        if !dirs_only || entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push((n, entry.path()));
        }
    }
    out.sort_by_key(|v| std::cmp::Reverse(v.0));
    Ok(out)
}

fn read_counter(type_dir: &Path) -> Option<u32> {
    let path = type_dir.join(COUNTER_FILE);
    let text = fs::read_to_string(&path).ok()?;
    let parsed = text.trim().parse().ok();
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "ignoring an unreadable version counter; numbering continues after the newest folder");
    }
    parsed
}

fn write_counter(type_dir: &Path, next: u32) -> Result<(), RegistryError> {
    let path = type_dir.join(COUNTER_FILE);
    fsx::write_atomic(&path, format!("{next}\n").as_bytes()).map_err(|e| io_err(&path, e))
}

fn to_json_bytes<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>, RegistryError> {
    serde_json::to_vec_pretty(value).map_err(|e| RegistryError::Corrupt { path: path.to_path_buf(), message: e.to_string() })
}

fn read_json(path: &Path) -> Result<serde_json::Value, RegistryError> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| RegistryError::Corrupt { path: path.to_path_buf(), message: format!("not valid JSON: {e}") })
}

/// Reads and checks a version folder's meta; the error text says why the folder is skipped.
fn read_meta(dir: &Path, machine: &str, t: ModelType, n: u32) -> Result<Meta, String> {
    let bytes = fs::read(dir.join(META_FILE)).map_err(|e| format!("{META_FILE}: {e}"))?;
    let mut meta: Meta = serde_json::from_slice(&bytes).map_err(|e| format!("{META_FILE}: {e}"))?;
    if meta.version != n || meta.machine_id != machine || meta.model_type != t {
        return Err(format!("{META_FILE} describes {} {} v{}, not the folder it is in", meta.machine_id, meta.model_type, meta.version));
    }
    if !dir.join(MODEL_FILE).is_file() {
        return Err(format!("{MODEL_FILE} is missing"));
    }
    if meta.headline.is_null() {
        meta.headline = read_json(&dir.join(REPORT_FILE)).ok().and_then(|r| r.get("headline").cloned()).unwrap_or_default();
    }
    Ok(meta)
}

type CacheKey = (String, ModelType);

#[derive(Clone)]
struct Cached {
    info: VersionInfo,
    payload: Arc<LiveModel>,
    /// The newest folder number at load time: it differs from `info.version` when newer folders are
    /// unreadable, and remembering it spares re-reading (and re-warning about) them on every prediction.
    newest_seen: u32,
    /// The pinned version at load time: a pin or an unpin must be seen at once too.
    pin_seen: Option<u32>,
}

pub struct Registry {
    root: PathBuf,
    keep_versions: usize,
    warn_size_bytes: u64,
    warn_size_mb: f64,
    cache: Mutex<HashMap<CacheKey, Cached>>,
    /// Serialises saves and deletes, so numbering and pruning never race each other in this process.
    writes: Mutex<()>,
    /// A save that would leave less free space than this fails (the resource guard's `disk_reserve_mb`).
    disk_reserve_bytes: std::sync::atomic::AtomicU64,
}

impl Registry {
    /// `keep_versions` below 1 is taken as 1: the live version is always kept.
    pub fn open(state_dir: &Path, keep_versions: usize, warn_size_mb: f64) -> Result<Registry, RegistryError> {
        if !(warn_size_mb.is_finite() && warn_size_mb > 0.0) {
            return Err(RegistryError::Config(format!("the model size warning limit must be a positive number of MB, got {warn_size_mb}")));
        }
        let root = state_dir.join(MODELS_DIR);
        fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
        let registry = Registry {
            root,
            keep_versions: keep_versions.max(1),
            warn_size_bytes: (warn_size_mb * MIB) as u64,
            warn_size_mb,
            cache: Mutex::new(HashMap::new()),
            writes: Mutex::new(()),
            disk_reserve_bytes: std::sync::atomic::AtomicU64::new(0),
        };
        registry.sweep_leftovers()?;
        Ok(registry)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn sweep_leftovers(&self) -> Result<(), RegistryError> {
        for machine_dir in self.subdirs(&self.root)? {
            for type_dir in self.subdirs(&machine_dir)? {
                let entries = fs::read_dir(&type_dir).map_err(|e| io_err(&type_dir, e))?;
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    if name.to_str().is_some_and(is_leftover) {
                        let path = entry.path();
                        match remove_any(&path) {
                            Ok(()) => tracing::info!(path = %path.display(), "removed the leftover of an interrupted model save"),
                            // Leftovers are never listed, so one that cannot go yet is only clutter.
                            Err(e) => {
                                tracing::warn!(path = %path.display(), error = %e, "could not remove the leftover of an interrupted model save")
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn subdirs(&self, dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
        let entries = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(dir, e)),
        };
        let mut out: Vec<PathBuf> = entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect();
        out.sort();
        Ok(out)
    }

    fn type_dir(&self, machine: &MachineId, t: ModelType) -> PathBuf {
        self.root.join(machine.as_str()).join(t.as_str())
    }

    /// The size of a model file and whether it is over the warning limit, with the warning to show.
    /// A file that cannot be read counts as 0 bytes (the caller finds out soon enough when loading it).
    pub fn check_size(&self, path: &Path) -> (u64, bool, Option<String>) {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let (oversize, warning) = self.size_verdict(size);
        (size, oversize, warning)
    }

    fn size_verdict(&self, size: u64) -> (bool, Option<String>) {
        if size <= self.warn_size_bytes {
            return (false, None);
        }
        let warning = format!(
            "model is {:.1} MB, over the {} MB warning limit: train with fewer trees (quality fast), a smaller time limit or fewer sensors",
            size as f64 / MIB,
            self.warn_size_mb
        );
        (true, Some(warning))
    }

    /// Saves a trained model as the next version and makes it live: the previous live version stays
    /// untouched until the new one is complete on disk, then older versions beyond `keep_versions` go.
    pub fn save(&self, machine: &MachineId, trained: &mut Trained, job_id: &str) -> Result<VersionInfo, RegistryError> {
        self.save_with(machine, trained, job_id, fsx::write_atomic, SaveAs::Live)
    }

    /// Saves as [`Registry::save`] does, and then either makes the new version live (removing any pin) or,
    /// with [`SaveAs::KeepLive`], keeps the version that answered before answering (pinning it, unless a pin
    /// already holds it). The returned info says whether the new version is live.
    pub fn save_as(&self, machine: &MachineId, trained: &mut Trained, job_id: &str, how: SaveAs) -> Result<VersionInfo, RegistryError> {
        self.save_with(machine, trained, job_id, fsx::write_atomic, how)
    }

    /// `save` with the file writer passed in, so tests can make it fail like a full disk does.
    fn save_with(
        &self,
        machine: &MachineId,
        trained: &mut Trained,
        job_id: &str,
        write: WriteFile,
        how: SaveAs,
    ) -> Result<VersionInfo, RegistryError> {
        let t = trained.payload.model_type();
        let _writing = lock(&self.writes);
        let type_dir = self.type_dir(machine, t);
        fs::create_dir_all(&type_dir).map_err(|e| io_err(&type_dir, e))?;
        let before = self.live_meta(machine, t, &version_dirs(&type_dir)?).map(|m| m.version);
        let version = self.allocate_version(&type_dir)?;
        let tmp = type_dir.join(format!(".{}.tmp-{}", version_name(version), std::process::id()));
        let final_dir = type_dir.join(version_name(version));

        let filled = self.fill_version(&tmp, machine, version, trained, job_id, write).and_then(|meta| {
            crate::util::failpoint::hit("registry.before_rename");
            fs::rename(&tmp, &final_dir).map_err(|e| io_err(&final_dir, e))?;
            crate::util::failpoint::hit("registry.after_rename");
            Ok(meta)
        });
        let meta = match filled {
            Ok(meta) => meta,
            Err(e) => {
                if let Err(rm) = fs::remove_dir_all(&tmp)
                    && rm.kind() != io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %tmp.display(), error = %rm, "could not remove a failed model save; it is swept at the next start");
                }
                return Err(e);
            }
        };
        // The rename is the commit point; without this a power cut could still undo it.
        fsx::sync_dir(&type_dir).map_err(|e| io_err(&type_dir, e))?;
        let live = match (how, before) {
            (SaveAs::Live, _) | (SaveAs::KeepLive { .. }, None) => {
                pin::remove(&type_dir)?;
                true
            }
            (SaveAs::KeepLive { reason }, Some(kept)) => {
                if pin::read(&type_dir).is_none_or(|p| p.version != kept) {
                    let at = crate::util::time::format_timestamp(crate::util::time::now_secs());
                    pin::write(&type_dir, &Pin { version: kept, by: PinBy::Challenger, reason, at })?;
                }
                false
            }
        };
        self.invalidate(machine.as_str(), t);
        if let Err(e) = self.prune(machine, t, &type_dir) {
            // The new version is saved and live; a version that could not be pruned is retried next save.
            tracing::warn!(machine = %machine, model_type = %t, error = %e, "could not prune old model versions");
        }
        tracing::info!(machine = %machine, model_type = %t, version, size_bytes = meta.size_bytes, live, "saved model version");
        Ok(meta.into_info(live))
    }

    /// Models are refused when saving them would leave less than `mb` free on the state folder's file system.
    pub fn set_disk_reserve_mb(&self, mb: u64) {
        self.disk_reserve_bytes.store(mb << 20, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the model, its report and `meta.json` into the temporary folder `tmp` of a new version.
    fn fill_version(
        &self,
        tmp: &Path,
        machine: &MachineId,
        version: u32,
        trained: &mut Trained,
        job_id: &str,
        write: WriteFile,
    ) -> Result<Meta, RegistryError> {
        let t = trained.payload.model_type();
        let written = write_model_files(tmp, trained, write)?;
        let size = fs::metadata(tmp.join(MODEL_FILE)).map(|m| m.len()).unwrap_or(written);
        let reserve = self.disk_reserve_bytes.load(std::sync::atomic::Ordering::Relaxed);
        if reserve > 0
            && let Ok(free) = fs2::available_space(tmp)
            && free < reserve
        {
            return Err(RegistryError::DiskFull {
                path: tmp.to_path_buf(),
                message: format!(
                    "saving leaves {} MB free, below guard.disk_reserve_mb = {} MB; the previous version stays live",
                    free >> 20,
                    reserve >> 20
                ),
            });
        }
        let (oversize, warning) = self.size_verdict(size);
        if let Some(w) = &warning {
            tracing::warn!(machine = %machine, model_type = %t, version, "{w}");
            trained.report.warnings.push(w.clone());
            let report_path = tmp.join(REPORT_FILE);
            let json = to_json_bytes(&trained.report, &report_path)?;
            write(&report_path, &json).map_err(|e| io_err(&report_path, e))?;
        }
        let meta = Meta {
            version,
            machine_id: machine.to_string(),
            model_type: t,
            trained_at: trained.report.created_at.clone(),
            size_bytes: size,
            oversize,
            warning,
            job_id: job_id.to_string(),
            headline: serde_json::to_value(&trained.report.headline).unwrap_or_default(),
        };
        let meta_path = tmp.join(META_FILE);
        // write_atomic fsyncs the file and the temp folder, as the bundle and report writes did.
        write(&meta_path, &to_json_bytes(&meta, &meta_path)?).map_err(|e| io_err(&meta_path, e))?;
        Ok(meta)
    }

    /// The next number past both the counter and every folder (folders may predate the counter), recorded
    /// before the folder is written, so even a failed save never lets the number be handed out twice.
    fn allocate_version(&self, type_dir: &Path) -> Result<u32, RegistryError> {
        let newest = version_entries(type_dir, false)?.first().map_or(0, |v| v.0);
        let overflow = || RegistryError::Corrupt { path: type_dir.to_path_buf(), message: "version numbers are exhausted".into() };
        let next = read_counter(type_dir).unwrap_or(1).max(newest.checked_add(1).ok_or_else(overflow)?);
        write_counter(type_dir, next.checked_add(1).ok_or_else(overflow)?)?;
        Ok(next)
    }

    /// Keeps the `keep_versions` newest folders and the live one (the newest readable), removes the rest.
    fn prune(&self, machine: &MachineId, t: ModelType, type_dir: &Path) -> Result<(), RegistryError> {
        let dirs = version_dirs(type_dir)?;
        let live = self.live_meta(machine, t, &dirs).map(|m| m.version);
        for (n, path) in dirs.iter().skip(self.keep_versions) {
            if Some(*n) != live {
                self.remove_version_dir(type_dir, *n, path)?;
                tracing::info!(machine = %machine, model_type = %t, version = n, "pruned old model version");
            }
        }
        Ok(())
    }

    /// Renames the folder to a hidden name first, so no listing ever sees a half-deleted version.
    fn remove_version_dir(&self, type_dir: &Path, n: u32, path: &Path) -> Result<(), RegistryError> {
        let doomed = type_dir.join(format!(".{}.del.tmp-{}", version_name(n), std::process::id()));
        fs::rename(path, &doomed).map_err(|e| io_err(path, e))?;
        fs::remove_dir_all(&doomed).map_err(|e| io_err(&doomed, e))
    }

    fn first_valid(&self, machine: &MachineId, t: ModelType, dirs: &[(u32, PathBuf)]) -> Option<Meta> {
        dirs.iter().find_map(|(n, path)| match read_meta(path, machine.as_str(), t, *n) {
            Ok(meta) => Some(meta),
            Err(message) => {
                tracing::warn!(path = %path.display(), "skipping an unreadable model version: {message}");
                None
            }
        })
    }

    /// The version that answers: the pinned one when it is readable, else the newest readable.
    fn live_meta(&self, machine: &MachineId, t: ModelType, dirs: &[(u32, PathBuf)]) -> Option<Meta> {
        if let Some(p) = pin::read(&self.type_dir(machine, t))
            && let Some((n, path)) = dirs.iter().find(|(n, _)| *n == p.version)
        {
            match read_meta(path, machine.as_str(), t, *n) {
                Ok(meta) => return Some(meta),
                Err(message) => {
                    tracing::warn!(path = %path.display(), "the pinned model version is unreadable; the newest answers: {message}")
                }
            }
        }
        self.first_valid(machine, t, dirs)
    }

    /// Pins `version` (a person's choice: a roll-back, or keeping a model through later trainings) and
    /// returns it, now live.
    pub fn pin(&self, machine: &str, t: ModelType, version: u32, reason: &str) -> Result<VersionInfo, RegistryError> {
        let (meta, _) = self.resolve(machine, t, Some(version))?;
        let machine = parse_machine(machine)?;
        let _writing = lock(&self.writes);
        let at = crate::util::time::format_timestamp(crate::util::time::now_secs());
        pin::write(&self.type_dir(&machine, t), &Pin { version, by: PinBy::Person, reason: reason.to_string(), at })?;
        self.invalidate(machine.as_str(), t);
        tracing::info!(machine = %machine, model_type = %t, version, reason, "model version pinned");
        Ok(meta.into_info(true))
    }

    /// Removes the pin, if any, so the newest readable version answers again; returns the pin removed.
    pub fn unpin(&self, machine: &str, t: ModelType) -> Result<Option<Pin>, RegistryError> {
        let machine = parse_machine(machine)?;
        let _writing = lock(&self.writes);
        let type_dir = self.type_dir(&machine, t);
        let was = pin::read(&type_dir);
        pin::remove(&type_dir)?;
        self.invalidate(machine.as_str(), t);
        if let Some(p) = &was {
            tracing::info!(machine = %machine, model_type = %t, version = p.version, "model version unpinned; the newest answers");
        }
        Ok(was)
    }

    /// The pin of a machine's model type, when one is set.
    pub fn pinned(&self, machine: &str, t: ModelType) -> Result<Option<Pin>, RegistryError> {
        let machine = parse_machine(machine)?;
        Ok(pin::read(&self.type_dir(&machine, t)))
    }

    fn invalidate(&self, machine: &str, t: ModelType) {
        lock(&self.cache).remove(&(machine.to_string(), t));
    }

    /// The version that answers: the pinned one, else the newest readable.
    pub fn live(&self, machine: &str, t: ModelType) -> Result<Option<VersionInfo>, RegistryError> {
        let machine = parse_machine(machine)?;
        let dirs = version_dirs(&self.type_dir(&machine, t))?;
        Ok(self.live_meta(&machine, t, &dirs).map(|m| m.into_info(true)))
    }

    /// Readable versions, newest first; unreadable folders are skipped with a warning.
    pub fn versions(&self, machine: &str, t: ModelType) -> Result<Vec<VersionInfo>, RegistryError> {
        let machine = parse_machine(machine)?;
        let dirs = version_dirs(&self.type_dir(&machine, t))?;
        let live = self.live_meta(&machine, t, &dirs).map(|m| m.version);
        let mut out: Vec<VersionInfo> = Vec::with_capacity(dirs.len());
        for (n, path) in &dirs {
            match read_meta(path, machine.as_str(), t, *n) {
                Ok(meta) => {
                    out.push(meta.into_info(live == Some(*n)));
                }
                Err(message) => tracing::warn!(path = %path.display(), "skipping an unreadable model version: {message}"),
            }
        }
        Ok(out)
    }

    /// Version folders that cannot be used (unreadable or inconsistent `meta.json`, missing model file),
    /// newest first. Reads only the small meta files; a model file's checksum is checked when it is loaded.
    pub fn damaged(&self, machine: &str, t: ModelType) -> Result<Vec<DamagedVersion>, RegistryError> {
        let machine = parse_machine(machine)?;
        let mut live_seen = false;
        let mut out = Vec::new();
        for (n, path) in version_dirs(&self.type_dir(&machine, t))? {
            match read_meta(&path, machine.as_str(), t, n) {
                Ok(_) => live_seen = true,
                Err(reason) => out.push(DamagedVersion { version: n, reason, newer_than_live: !live_seen }),
            }
        }
        Ok(out)
    }

    /// Every machine folder in the registry, readable models or not, sorted.
    pub fn machine_folders(&self) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .subdirs(&self.root)?
            .iter()
            .filter_map(|d| d.file_name()?.to_str())
            .filter(|n| MachineId::parse(n).is_ok())
            .map(str::to_string)
            .collect())
    }

    /// Reads a version's model file and checks its checksum, so a download never serves a damaged bundle.
    pub fn read_checked(&self, machine: &str, t: ModelType, version: u32) -> Result<Vec<u8>, RegistryError> {
        let path = self.model_path(machine, t, Some(version))?;
        let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
        crate::ml::bundle::decode(&bytes).map_err(|e| RegistryError::Corrupt {
            path: path.clone(),
            message: format!("the model file is damaged ({e}); delete this version or retrain"),
        })?;
        Ok(bytes)
    }

    /// Machines with at least one readable model version, sorted.
    pub fn machines(&self) -> Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        for dir in self.subdirs(&self.root)? {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()) else { continue };
            let Ok(machine) = MachineId::parse(name) else { continue };
            let mut has_model = false;
            for t in ModelType::ALL {
                if self.first_valid(&machine, t, &version_dirs(&self.type_dir(&machine, t))?).is_some() {
                    has_model = true;
                    break;
                }
            }
            if has_model {
                out.push(machine.to_string());
            }
        }
        Ok(out)
    }

    /// The folder of a version (None = the live one), checked readable.
    fn resolve(&self, machine: &str, t: ModelType, version: Option<u32>) -> Result<(Meta, PathBuf), RegistryError> {
        let machine = parse_machine(machine)?;
        let type_dir = self.type_dir(&machine, t);
        let not_found = || RegistryError::NotFound { machine: machine.to_string(), model_type: t, version };
        match version {
            None => {
                let dirs = version_dirs(&type_dir)?;
                let meta = self.live_meta(&machine, t, &dirs).ok_or_else(not_found)?;
                let dir = type_dir.join(version_name(meta.version));
                Ok((meta, dir))
            }
            Some(v) => {
                let dir = type_dir.join(version_name(v));
                if !dir.is_dir() {
                    return Err(not_found());
                }
                let meta =
                    read_meta(&dir, machine.as_str(), t, v).map_err(|message| RegistryError::Corrupt { path: dir.clone(), message })?;
                Ok((meta, dir))
            }
        }
    }

    pub fn report(&self, machine: &str, t: ModelType, version: Option<u32>) -> Result<serde_json::Value, RegistryError> {
        let (_, dir) = self.resolve(machine, t, version)?;
        read_json(&dir.join(REPORT_FILE))
    }

    /// The model file of a version (None = the live one), for downloads.
    pub fn model_path(&self, machine: &str, t: ModelType, version: Option<u32>) -> Result<PathBuf, RegistryError> {
        let (_, dir) = self.resolve(machine, t, version)?;
        Ok(dir.join(MODEL_FILE))
    }

    /// The live model, loaded once and cached. Each call lists the type folder and reads nothing more while
    /// the newest folder is the one seen at load time, so a retrain or a delete — even by another process —
    /// is picked up at once; numbers are never reused, so the same number means the same model.
    pub fn load_live(&self, machine: &str, t: ModelType) -> Result<Option<(VersionInfo, Arc<LiveModel>)>, RegistryError> {
        let machine = parse_machine(machine)?;
        let key: CacheKey = (machine.to_string(), t);
        let type_dir = self.type_dir(&machine, t);
        let dirs = version_dirs(&type_dir)?;
        let newest = dirs.first().map(|d| d.0);
        let pin_seen = pin::read(&type_dir).map(|p| p.version);
        let cached = lock(&self.cache).get(&key).cloned();
        if let Some(entry) = &cached
            && Some(entry.newest_seen) == newest
            && entry.pin_seen == pin_seen
        {
            return Ok(Some((entry.info.clone(), entry.payload.clone())));
        }
        let (Some(newest), Some(meta)) = (newest, self.live_meta(&machine, t, &dirs)) else {
            lock(&self.cache).remove(&key);
            return Ok(None);
        };
        let payload = match cached {
            Some(entry) if entry.info.version == meta.version => entry.payload,
            // Loaded without holding the cache lock, so a big model does not stall other machines' predictions.
            _ => {
                let path = self.type_dir(&machine, t).join(version_name(meta.version)).join(MODEL_FILE);
                let (_, live) = LiveModel::load(&path)?;
                if live.payload.model_type() != t {
                    return Err(RegistryError::Corrupt {
                        path,
                        message: format!("holds a {} model, not a {t} model", live.payload.model_type()),
                    });
                }
                Arc::new(live)
            }
        };
        let info = meta.into_info(true);
        lock(&self.cache).insert(key, Cached { info: info.clone(), payload: payload.clone(), newest_seen: newest, pin_seen });
        Ok(Some((info, payload)))
    }

    /// Deletes one version, or all versions of the type (None); returns how many were deleted. Numbers
    /// stay taken: the next save continues after the highest number ever used.
    pub fn delete(&self, machine: &str, t: ModelType, version: Option<u32>) -> Result<usize, RegistryError> {
        let machine = parse_machine(machine)?;
        let _writing = lock(&self.writes);
        let type_dir = self.type_dir(&machine, t);
        let dirs = version_dirs(&type_dir)?;
        if let Some((newest, _)) = dirs.first()
            && read_counter(&type_dir).is_none_or(|c| c <= *newest)
        {
            // Folders made before the counter existed would otherwise free their numbers once deleted.
            let next = newest
                .checked_add(1)
                .ok_or_else(|| RegistryError::Corrupt { path: type_dir.clone(), message: "version numbers are exhausted".into() })?;
            write_counter(&type_dir, next)?;
        }
        let targets: Vec<&(u32, PathBuf)> = dirs.iter().filter(|(n, _)| version.is_none_or(|v| v == *n)).collect();
        if let Some(v) = version
            && targets.is_empty()
        {
            return Err(RegistryError::NotFound { machine: machine.to_string(), model_type: t, version: Some(v) });
        }
        let mut deleted = 0;
        let mut result = Ok(());
        for (n, path) in targets {
            match self.remove_version_dir(&type_dir, *n, path) {
                Ok(()) => deleted += 1,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Whatever went, the cache must not keep serving it.
        self.invalidate(machine.as_str(), t);
        if deleted > 0 {
            fsx::sync_dir(&type_dir).map_err(|e| io_err(&type_dir, e))?;
            tracing::info!(machine = %machine, model_type = %t, deleted, "deleted model versions");
        }
        result.map(|()| deleted)
    }

    /// Recomputes a version's size and oversize warning from its model file and rewrites `meta.json`
    /// (rebuilt from `report.json` when missing or unreadable): for folders restored by hand, or after the
    /// warning limit changed. A new warning is added to `report.json` too.
    pub fn refresh_meta(&self, machine: &str, t: ModelType, version: u32) -> Result<VersionInfo, RegistryError> {
        let machine = parse_machine(machine)?;
        let _writing = lock(&self.writes);
        let type_dir = self.type_dir(&machine, t);
        let dir = type_dir.join(version_name(version));
        let model = dir.join(MODEL_FILE);
        if !model.is_file() {
            return Err(RegistryError::NotFound { machine: machine.to_string(), model_type: t, version: Some(version) });
        }
        let report_path = dir.join(REPORT_FILE);
        let report = read_json(&report_path).ok();
        let mut meta = read_meta(&dir, machine.as_str(), t, version).unwrap_or_else(|_| Meta {
            version,
            machine_id: machine.to_string(),
            model_type: t,
            trained_at: report.as_ref().and_then(|r| r.get("created_at")).and_then(|v| v.as_str()).unwrap_or_default().to_string(),
            size_bytes: 0,
            oversize: false,
            warning: None,
            job_id: String::new(),
            headline: report.as_ref().and_then(|r| r.get("headline")).cloned().unwrap_or_default(),
        });
        let (size, oversize, warning) = self.check_size(&model);
        (meta.size_bytes, meta.oversize, meta.warning) = (size, oversize, warning.clone());
        if let (Some(w), Some(mut report)) = (warning, report)
            && let Some(list) = report.get_mut("warnings").and_then(|v| v.as_array_mut())
            && !list.iter().any(|x| x.as_str() == Some(w.as_str()))
        {
            list.push(serde_json::Value::String(w));
            fsx::write_atomic(&report_path, &to_json_bytes(&report, &report_path)?).map_err(|e| io_err(&report_path, e))?;
        }
        let meta_path = dir.join(META_FILE);
        fsx::write_atomic(&meta_path, &to_json_bytes(&meta, &meta_path)?).map_err(|e| io_err(&meta_path, e))?;
        self.invalidate(machine.as_str(), t);
        let live = self.live_meta(&machine, t, &version_dirs(&type_dir)?).is_some_and(|m| m.version == version);
        Ok(meta.into_info(live))
    }
}
