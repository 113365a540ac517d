//! Each machine's score history: what every scoring of new data concluded (the verdict, the four answers in
//! brief, the sensors behind it, the model versions), one JSON line per score in
//! `<state_dir>/scores/<machine>/<YYYY-MM-DD>.jsonl` (UTC days), so a trend can be drawn and a past alarm
//! explained. A score is written when something it rests on changed (newer data, other models, another
//! verdict), not on every evaluation of an idle machine. Day files older than the retention go.
//!
//! The history is derived (it can be scored again from the data), so lines are appended without a sync of
//! their own; a line a power loss cut short is skipped when read.
use crate::util::sync::lock;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("score history {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0:?} is not a machine id")]
    Machine(String),
}

impl ScoreError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ScoreError::Io { path: path.to_path_buf(), source }
    }
}

const DAY_S: f64 = 86_400.0;

/// A machine's latest scoring as a record: the retained MQTT health payload and a line of the history.
pub fn health_record(tile: &Value, scored_at_s: f64) -> Value {
    let versions: serde_json::Map<String, Value> =
        tile["models"].as_object().map(|m| m.iter().map(|(t, v)| (t.clone(), v["version"].clone())).collect()).unwrap_or_default();
    json!({ "machine_id": tile["machine_id"], "light": tile["light"], "state": tile["state"], "severity": tile["severity"],
        "label": tile["label"], "sentence": tile["sentence"], "rul_days": tile["rul_days"], "drivers": tile["drivers"],
        "answers": tile["answers"], "models": versions, "models_state": tile["models_state"], "drift": tile["drift"], "data_updated_at": tile["data_updated_at"], "error": tile["error"],
        "scored_at": crate::alerts::stamp(scored_at_s) })
}

/// What a score rests on: a new line is written only when it differs from the machine's last one.
fn basis(record: &Value) -> String {
    json!([record["data_updated_at"], record["models"], record["state"], record["severity"], record["sentence"], record["error"]])
        .to_string()
}

pub struct ScoreHistory {
    dir: PathBuf,
    retain_days: f64,
    last: Mutex<HashMap<String, String>>,
}

fn day_name(secs: f64) -> String {
    let day = chrono::DateTime::<chrono::Utc>::from_timestamp(secs.floor() as i64, 0).unwrap_or_default();
    format!("{}.jsonl", day.format("%Y-%m-%d"))
}

/// The day a file holds (midnight UTC, epoch seconds), from its name.
fn day_of(path: &Path) -> Option<f64> {
    let stem = path.file_stem()?.to_str()?;
    (path.extension()? == "jsonl").then_some(())?;
    let d = chrono::NaiveDate::parse_from_str(stem, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp() as f64)
}

impl ScoreHistory {
    /// The history under `dir` (created on the first score), keeping `retain_days` days.
    pub fn new(dir: &Path, retain_days: f64) -> ScoreHistory {
        ScoreHistory { dir: dir.to_path_buf(), retain_days, last: Mutex::new(HashMap::new()) }
    }

    fn machine_dir(&self, machine: &str) -> Result<PathBuf, ScoreError> {
        let id = crate::data::MachineId::parse(machine).map_err(|_| ScoreError::Machine(machine.to_string()))?;
        Ok(self.dir.join(id.as_str()))
    }

    /// Appends the scores of `tiles` (one evaluation of the fleet at `now_s`) whose basis changed; returns
    /// how many were written. A machine whose line cannot be written is tried again at the next evaluation.
    pub fn record(&self, tiles: &[Value], now_s: f64) -> Result<usize, ScoreError> {
        let mut written = 0;
        let mut first_error = None;
        for t in tiles {
            let Some(machine) = t["machine_id"].as_str() else { continue };
            let record = health_record(t, now_s);
            let key = basis(&record);
            if lock(&self.last).get(machine) == Some(&key) {
                continue;
            }
            match self.append(machine, &record, now_s) {
                Ok(()) => {
                    lock(&self.last).insert(machine.to_string(), key);
                    written += 1;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if written == 0 => Err(e),
            Some(e) => {
                tracing::warn!("score history: {e}");
                Ok(written)
            }
            None => Ok(written),
        }
    }

    fn append(&self, machine: &str, record: &Value, now_s: f64) -> Result<(), ScoreError> {
        let dir = self.machine_dir(machine)?;
        std::fs::create_dir_all(&dir).map_err(|e| ScoreError::io(&dir, e))?;
        let path = dir.join(day_name(now_s));
        let mut line = record.to_string();
        line.push('\n');
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| ScoreError::io(&path, e))?;
        // One write of the whole line: a reader never sees half of it unless power went.
        f.write_all(line.as_bytes()).map_err(|e| ScoreError::io(&path, e))
    }

    /// The machine's scores from `since` (epoch seconds) on, oldest first, at most the newest `limit`.
    pub fn read(&self, machine: &str, since_s: Option<f64>, limit: usize) -> Result<Vec<Value>, ScoreError> {
        let dir = self.machine_dir(machine)?;
        let mut days = self.day_files(&dir)?;
        days.reverse();
        let mut out: Vec<Value> = Vec::new();
        for (day, path) in days {
            if out.len() >= limit || since_s.is_some_and(|s| day + DAY_S <= s) {
                break;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Pruned meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ScoreError::io(&path, e)),
            };
            let mut lines: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| {
                    let at = v["scored_at"].as_str().and_then(crate::util::time::parse_timestamp);
                    since_s.is_none_or(|s| at.is_some_and(|a| a >= s))
                })
                .collect();
            let keep = limit - out.len();
            if lines.len() > keep {
                lines.drain(..lines.len() - keep);
            }
            lines.append(&mut out);
            out = lines;
        }
        Ok(out)
    }

    /// Day files of one machine, oldest first.
    fn day_files(&self, dir: &Path) -> Result<Vec<(f64, PathBuf)>, ScoreError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ScoreError::io(dir, e)),
        };
        let mut days: Vec<(f64, PathBuf)> = entries.filter_map(Result::ok).filter_map(|e| Some((day_of(&e.path())?, e.path()))).collect();
        days.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(days)
    }

    /// Removes the day files that ended more than the retention before `now_s`; returns how many.
    pub fn prune(&self, now_s: f64) -> Result<usize, ScoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(ScoreError::io(&self.dir, e)),
        };
        let cutoff = now_s - self.retain_days * DAY_S;
        let mut removed = 0;
        for machine in entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()) {
            for (day, path) in self.day_files(&machine)? {
                if day + DAY_S < cutoff {
                    std::fs::remove_file(&path).map_err(|e| ScoreError::io(&path, e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(machine: &str, data_at: &str, sentence: &str) -> Value {
        json!({ "machine_id": machine, "light": "green", "state": "fresh", "sentence": sentence, "data_updated_at": data_at,
            "models": { "anomaly": { "version": 3, "size": 10 } }, "answers": { "anomaly": { "anomaly_score": 0.2 } } })
    }

    #[test]
    fn a_score_is_written_when_its_basis_changes_and_read_back_newest_last_within_the_retention() {
        let d = tempfile::tempdir().unwrap();
        let h = ScoreHistory::new(d.path(), 2.0);
        let t0 = 1_780_000_000.0_f64.div_euclid(DAY_S) * DAY_S;
        // Evaluations every minute; new data every third; the sentence changes once.
        let mut written = 0;
        for i in 0..30 {
            let data_at = format!("2026-06-01T00:{:02}:00Z", i / 3);
            let sentence = if i < 20 { "Running normally." } else { "Plan maintenance." };
            let tiles = [tile("m1", &data_at, sentence), json!({ "machine_id": "../x" })];
            written += h.record(&tiles[..1], t0 + i as f64 * 60.0).unwrap();
            assert!(h.record(&tiles[1..], t0).is_err(), "not a machine id");
        }
        // 10 data times, and the change of sentence inside the seventh (i = 20 is its third evaluation).
        assert_eq!(written, 11);
        let all = h.read("m1", None, 100).unwrap();
        assert_eq!(all.len(), 11);
        assert_eq!(all[0]["models"]["anomaly"], 3, "the versions, not the model details");
        assert_eq!(all.last().unwrap()["sentence"], "Plan maintenance.");
        let newest = h.read("m1", None, 3).unwrap();
        assert_eq!(newest, all[8..].to_vec());
        let since = h.read("m1", Some(t0 + 20.0 * 60.0), 100).unwrap();
        assert_eq!(since.len(), 4, "{since:?}");
        assert!(h.read("m2", None, 10).unwrap().is_empty());

        // A later day, a line cut short by a power loss, then the retention: the first day goes.
        h.record(&[tile("m1", "2026-06-04T00:00:00Z", "x")], t0 + 3.0 * DAY_S).unwrap();
        let today = d.path().join("m1").join(day_name(t0 + 3.0 * DAY_S));
        std::fs::OpenOptions::new().append(true).open(&today).unwrap().write_all(b"{\"machine_id\":\"m1\",\"sco").unwrap();
        assert_eq!(h.read("m1", None, 100).unwrap().len(), 12);
        assert_eq!(h.prune(t0 + 3.5 * DAY_S).unwrap(), 1);
        assert_eq!(h.read("m1", None, 100).unwrap().len(), 1);
    }
}
