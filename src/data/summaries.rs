//! Machine summaries from metadata ([`peek_machine`]), cached by what the folder's files are: the listing,
//! the fleet view and the resource guard all ask here, so a folder is read once however many of them ask.
use super::caps::Caps;
use super::error::DataError;
use super::load::MachineSummary;
use super::peek::peek_machine;
use crate::util::sync::lock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// What a machine folder's files were when it was summarised: path, size and mtime of each (two levels
/// deep, enough for `[[files]]` patterns in a subfolder).
type Fingerprint = Vec<(PathBuf, u64, SystemTime)>;

/// A summary or why there is none, kept alike: a folder that fails is not re-read until its files change.
pub type Summary = Result<MachineSummary, Arc<DataError>>;

/// One summary of a folder is made at a time; requests arriving meanwhile wait for it and share it.
pub struct Summaries {
    data_dir: PathBuf,
    caps: Caps,
    done: Mutex<HashMap<String, (Fingerprint, Summary)>>,
    flights: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    made: AtomicU64,
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

impl Summaries {
    pub fn new(data_dir: &Path, caps: Caps) -> Summaries {
        Summaries {
            data_dir: data_dir.to_path_buf(),
            caps,
            done: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            made: AtomicU64::new(0),
        }
    }

    /// The caps a machine's data must keep to (`[data]` in the configuration).
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// How many summaries were made rather than served from the cache.
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// The machine's summary; blocks while its files are read (call it off the async runtime).
    pub fn get(&self, id: &str) -> Summary {
        let mid = super::MachineId::parse(id)?;
        let dir = super::machine_dir(&self.data_dir, &mid);
        let lookup =
            |print: &Fingerprint| -> Option<Summary> { lock(&self.done).get(id).filter(|(p, _)| p == print).map(|(_, s)| s.clone()) };
        if let Some(hit) = lookup(&fingerprint(&dir)) {
            return hit;
        }
        let flight = lock(&self.flights).entry(id.to_string()).or_default().clone();
        let _turn = lock(&flight);
        // Whoever held the turn before may have just made it.
        let print = fingerprint(&dir);
        if let Some(hit) = lookup(&print) {
            return hit;
        }
        let started = Instant::now();
        let made: Summary = peek_machine(&self.data_dir, id, &self.caps).map_err(Arc::new);
        self.made.fetch_add(1, Ordering::Relaxed);
        tracing::info!(machine = id, ok = made.is_ok(), ms = started.elapsed().as_millis() as u64, "machine summarised from metadata");
        lock(&self.done).insert(id.to_string(), (print, made.clone()));
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::data::simulate::{FleetOptions, simulate_fleet};

    #[test]
    fn a_folder_is_read_again_only_when_its_files_change_and_failures_are_kept_too() {
        let tmp = tempfile::tempdir().unwrap();
        simulate_fleet(&FleetOptions { out_dir: tmp.path().to_path_buf(), machines: 1, rows: 500, ..Default::default() }).unwrap();
        let id = crate::data::machine_ids(tmp.path()).unwrap().remove(0);
        let s = Summaries::new(tmp.path(), Caps::default());
        let first = s.get(&id).unwrap();
        assert_eq!(s.get(&id).unwrap().rows, first.rows);
        assert_eq!(s.made(), 1);
        // A broken description: the failure is made once and served from the cache until the files change.
        let dir = crate::data::machine_dir(tmp.path(), &crate::data::MachineId::parse(&id).unwrap());
        std::fs::write(dir.join("machine.toml"), "not = [toml").unwrap();
        assert!(s.get(&id).is_err());
        assert!(s.get(&id).is_err());
        assert_eq!(s.made(), 2);
        assert!(matches!(s.get("../x").err().as_deref(), Some(DataError::InvalidMachineId { .. })));
    }
}
