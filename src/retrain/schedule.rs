//! The retrain schedule: after each fleet evaluation, every machine whose `retrain` setting is due gets one
//! job for all four models, queued like a person's but never in a person's way: a scheduled job is queued
//! only while at least one place in the queue stays free, and at most one per machine waits at a time.
//! When each machine's schedule last fired is kept in `state_dir/retrain.json`, so a restart neither
//! repeats a slot nor forgets one that was missed while the daemon was down.
use super::{Facts, When};
use crate::api::AppState;
use crate::jobs::{JobOrigin, JobRequest, JobState};
use crate::ml::ModelType;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The fleet-wide settings; a machine's `machine.toml` `[retrain] when` overrides `default`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub default: When,
    /// Hours a machine waits after a scheduled retrain before new data or drift may queue another.
    pub min_gap_h: f64,
    /// Whether a scheduled job's models go live when they score worse than the live ones.
    pub promote: crate::jobs::Promote,
}

/// Per machine: when its schedule was first seen and last queued a job (epoch seconds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Book {
    machines: BTreeMap<String, Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    /// A new schedule waits for its first slot after this: it does not fire for one that passed before.
    seen: f64,
    queued: Option<f64>,
}

pub const STATE_FILE: &str = "retrain.json";

fn read_book(path: &Path) -> Book {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "the retrain schedule's record is unreadable; every schedule starts afresh");
            Book::default()
        }),
        Err(_) => Book::default(),
    }
}

fn write_book(path: &Path, book: &Book) {
    let written =
        serde_json::to_vec_pretty(book).map_err(std::io::Error::other).and_then(|bytes| crate::util::fsx::write_atomic(path, &bytes));
    if let Err(e) = written {
        // The next tick writes it again; at worst a slot fires once more after a restart.
        tracing::warn!(path = %path.display(), error = %e, "could not record the retrain schedule");
    }
}

/// What one tick decided for one machine.
#[derive(Debug, PartialEq)]
enum Decision {
    Idle,
    Queue(String),
    /// Due, but not now (a scheduled job still waits, or the queue has no room to spare).
    Wait(String),
}

pub struct Scheduler {
    state: AppState,
    settings: Settings,
    book_path: PathBuf,
    book: Book,
    /// The setting each machine was last seen with, so a bad one is logged once, not every tick.
    complained: BTreeMap<String, String>,
}

impl Scheduler {
    pub fn new(state: AppState, settings: Settings, state_dir: &Path) -> Scheduler {
        let book_path = state_dir.join(STATE_FILE);
        let book = read_book(&book_path);
        Scheduler { state, settings, book_path, book, complained: BTreeMap::new() }
    }

    /// Runs after each fleet evaluation until `shutdown`.
    pub async fn run(mut self, shutdown: crate::lifecycle::Shutdown) {
        let mut scored = self.state.fleet.scores();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                changed = scored.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let tiles = scored.borrow_and_update().clone();
                    let me = self;
                    let done = tokio::task::spawn_blocking(move || {
                        let mut me = me;
                        me.tick(&tiles, chrono::Local::now());
                        me
                    });
                    match done.await {
                        Ok(me) => self = me,
                        Err(e) => {
                            tracing::error!(error = %e, "the retrain schedule stopped");
                            return;
                        }
                    }
                }
            }
        }
    }

    /// One pass over the fleet's tiles (blocking: reads each machine's `machine.toml`, queues jobs).
    pub fn tick<Tz: chrono::TimeZone>(&mut self, tiles: &[Value], now: chrono::DateTime<Tz>) {
        let now_s = now.timestamp() as f64 + f64::from(now.timestamp_subsec_millis()) / 1000.0;
        let before = self.book.clone();
        for tile in tiles {
            let Some(machine) = tile["machine_id"].as_str() else { continue };
            let Some(when) = self.when_of(machine) else { continue };
            if when == When::Off {
                continue;
            }
            let entry = *self.book.machines.entry(machine.to_string()).or_insert(Entry { seen: now_s, queued: None });
            let last_s = entry.queued.unwrap_or(entry.seen);
            let Some(last) = chrono::DateTime::from_timestamp(last_s as i64, 0).map(|t| t.with_timezone(&now.timezone())) else { continue };
            let since_queued_s = entry.queued.map_or(f64::INFINITY, |q| now_s - q);
            match self.decide(machine, &when, tile, &now, &last, since_queued_s) {
                Decision::Idle => {}
                Decision::Wait(why) => tracing::debug!(machine, "retrain due but waiting: {why}"),
                Decision::Queue(reason) => {
                    if self.queue(machine, &reason) {
                        self.book.machines.insert(machine.to_string(), Entry { seen: entry.seen, queued: Some(now_s) });
                    }
                }
            }
        }
        if self.book != before {
            write_book(&self.book_path, &self.book);
        }
    }

    /// The machine's setting, its own or the default; a setting that cannot be read is logged once and skipped.
    fn when_of(&mut self, machine: &str) -> Option<When> {
        let own = match crate::data::machine_description(&self.state.data_dir, machine) {
            Ok(desc) => desc.retrain.when,
            // The tile already says what is wrong with the folder.
            Err(_) => return None,
        };
        let Some(text) = own else { return Some(self.settings.default.clone()) };
        match When::parse(&text) {
            Ok(w) => {
                self.complained.remove(machine);
                Some(w)
            }
            Err(e) => {
                if self.complained.get(machine) != Some(&text) {
                    tracing::error!(machine, "machine.toml [retrain] {e}; this machine is not retrained until it is fixed");
                    self.complained.insert(machine.to_string(), text);
                }
                None
            }
        }
    }

    fn decide<Tz: chrono::TimeZone>(
        &self,
        machine: &str,
        when: &When,
        tile: &Value,
        now: &chrono::DateTime<Tz>,
        last: &chrono::DateTime<Tz>,
        since_queued_s: f64,
    ) -> Decision {
        let facts = facts_of(&self.state, machine, tile, when);
        let Some(reason) = when.due(now, last, &facts) else { return Decision::Idle };
        let conditional = matches!(when, When::AfterNewHours(_) | When::OnDrift);
        if conditional && since_queued_s < self.settings.min_gap_h * 3600.0 {
            return Decision::Wait(format!(
                "the last scheduled retrain was queued less than retrain.min_gap_h = {} h ago",
                self.settings.min_gap_h
            ));
        }
        let jobs = self.state.queue.list();
        if jobs
            .iter()
            .any(|j| j.request.machine_id == machine && !j.state.is_finished() && matches!(j.request.origin, JobOrigin::Schedule { .. }))
        {
            return Decision::Wait("a scheduled job of this machine is still queued or training".into());
        }
        let pending = jobs.iter().filter(|j| j.state == JobState::Pending).count();
        if pending + 1 >= self.state.queue.capacity() {
            return Decision::Wait(format!(
                "{pending} jobs wait in a queue of {}: the last place stays free for a person",
                self.state.queue.capacity()
            ));
        }
        Decision::Queue(reason)
    }

    fn queue(&self, machine: &str, reason: &str) -> bool {
        let request = JobRequest {
            machine_id: machine.to_string(),
            model_types: ModelType::ALL.to_vec(),
            params: self.state.training.defaults.clone(),
            origin: JobOrigin::Schedule { reason: reason.to_string(), promote: self.settings.promote },
        };
        match self.state.queue.submit(request) {
            Ok(job) => {
                tracing::info!(machine, task = %job.id, "retrain queued: {reason}");
                true
            }
            Err(e) => {
                tracing::warn!(machine, error = %e, "retrain due ({reason}) but not queued; tried again at the next evaluation");
                false
            }
        }
    }
}

/// How much newer the machine's data is than what its live models learned from, and its drift.
/// Only what `when` asks about is read: the age of the data needs each model's report, which is not small.
fn facts_of(state: &AppState, machine: &str, tile: &Value, when: &When) -> Facts {
    if !matches!(when, When::AfterNewHours(_)) {
        return Facts { new_data_hours: None, large_drift: large_drift(tile) };
    }
    // The latest training of each model type, live or not (a version a person pinned must not make every
    // evaluation find the data new again); the oldest of them sets how far behind the system is.
    let learned_until = ModelType::ALL
        .iter()
        .filter_map(|t| {
            let newest = state.registry.versions(machine, *t).ok()?.first()?.version;
            state.registry.report(machine, *t, Some(newest)).ok()
        })
        .filter_map(|r| r["data"]["last_time"].as_f64())
        .reduce(f64::min);
    let data_end = state.machine_summary_blocking(machine).ok().and_then(|s| s.last_time);
    let new_data_hours = match (learned_until, data_end) {
        (Some(m), Some(d)) => Some(((d - m) / 3600.0).max(0.0)),
        _ => None,
    };
    Facts { new_data_hours, large_drift: None }
}

/// The sensors that drifted far, when the tile's drift is large.
fn large_drift(tile: &Value) -> Option<String> {
    (tile["drift"]["level"] == "large").then(|| {
        let sensors: Vec<&str> = tile["drift"]["sensors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["level"] == "large")
            .filter_map(|s| s["sensor"].as_str())
            .collect();
        if sensors.is_empty() { "the latest readings".to_string() } else { sensors.join(", ") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_book_survives_a_round_trip_and_an_unreadable_one_starts_afresh() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(STATE_FILE);
        let mut book = Book::default();
        book.machines.insert("m1".into(), Entry { seen: 1_700_000_000.0, queued: Some(1_700_003_600.0) });
        write_book(&path, &book);
        assert_eq!(read_book(&path), book);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(read_book(&path), Book::default());
    }
}
