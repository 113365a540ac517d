//! Alerts: raised when a machine's verdict crosses into plan maintenance or act now, when its data goes
//! stale, when a model is oversize and when a training job fails; acknowledged by name; kept in one JSON
//! file in the state folder (written atomically) and pruned after the retention.
//!
//! Hysteresis, so a machine near a limit does not flap: a verdict alert is raised at plan maintenance, but
//! cleared only once the verdict is back to ok ("watch" is a dead band that keeps it raised) on
//! [`CLEAR_AFTER`] evaluations in a row. Escalation (plan → act) updates the alert in place. Stale-data
//! alerts clear when fresh data arrives; event alerts (oversize, training failed) clear when acknowledged.
use crate::verdict::{Severity, State, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Consecutive calm (ok) evaluations before a verdict alert clears.
pub const CLEAR_AFTER: u32 = 2;
/// Alerts kept at most, cleared ones dropped first, whatever the retention.
pub const MAX_KEPT: usize = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Verdict,
    StaleData,
    ModelOversize,
    TrainingFailed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Cleared,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub machine_id: String,
    pub kind: Kind,
    pub status: Status,
    /// For verdict alerts: plan or act.
    pub severity: Option<Severity>,
    pub message: String,
    pub raised_at: String,
    pub updated_at: String,
    pub cleared_at: Option<String>,
    pub acked_by: Option<String>,
    pub acked_at: Option<String>,
}

/// What an observation changed, for the bus and MQTT.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "change", content = "alert", rename_all = "snake_case")]
pub enum Change {
    Raised(Alert),
    Escalated(Alert),
    Cleared(Alert),
    Acknowledged(Alert),
}

impl Change {
    pub fn alert(&self) -> &Alert {
        match self {
            Change::Raised(a) | Change::Escalated(a) | Change::Cleared(a) | Change::Acknowledged(a) => a,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Change::Raised(_) => "alert_raised",
            Change::Escalated(_) => "alert_escalated",
            Change::Cleared(_) => "alert_cleared",
            Change::Acknowledged(_) => "alert_acknowledged",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("no alert {0}")]
    NotFound(u64),
    #[error("cannot save the alerts to {path}: {source}")]
    Save { path: PathBuf, source: std::io::Error },
}

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    next_id: u64,
    alerts: Vec<Alert>,
}

/// The alert list with its file; callers hold it behind a lock.
pub struct AlertBook {
    path: Option<PathBuf>,
    retention_s: f64,
    stored: Stored,
    /// Calm evaluations in a row per machine (not stored: a restart starts counting again).
    calm: HashMap<String, u32>,
}

/// ISO-8601 UTC with milliseconds.
pub fn stamp(secs: f64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros((secs * 1e6).round() as i64)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl AlertBook {
    /// Alerts kept in memory only (tests, tools).
    pub fn in_memory(retention_days: f64) -> AlertBook {
        AlertBook {
            path: None,
            retention_s: retention_days * 86_400.0,
            stored: Stored { next_id: 1, alerts: Vec::new() },
            calm: HashMap::new(),
        }
    }

    /// Reads `path` if it exists; an unreadable file is set aside (renamed `.bad`) and a new list started,
    /// so a damaged file never stops the daemon.
    pub fn open(path: &Path, retention_days: f64) -> AlertBook {
        let mut book = AlertBook::in_memory(retention_days);
        book.path = Some(path.to_path_buf());
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(s) => book.stored = Stored { next_id: s.next_id.max(1), alerts: s.alerts },
                Err(e) => {
                    tracing::warn!(path = %path.display(), "alerts file unreadable ({e}); starting a new one");
                    let _ = std::fs::rename(path, path.with_extension("json.bad"));
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), "cannot read the alerts file: {e}"),
        }
        book
    }

    fn save(&self) -> Result<(), AlertError> {
        let Some(path) = &self.path else { return Ok(()) };
        let bytes = serde_json::to_vec(&self.stored).map_err(|e| AlertError::Save { path: path.clone(), source: e.into() })?;
        crate::util::fsx::write_atomic(path, &bytes).map_err(|source| AlertError::Save { path: path.clone(), source })
    }

    fn active_mut(&mut self, machine: &str, kind: Kind) -> Option<&mut Alert> {
        self.stored.alerts.iter_mut().find(|a| a.machine_id == machine && a.kind == kind && a.status == Status::Active)
    }

    fn raise(&mut self, machine: &str, kind: Kind, severity: Option<Severity>, message: String, now: f64) -> Change {
        let id = self.stored.next_id;
        self.stored.next_id += 1;
        let t = stamp(now);
        let alert = Alert {
            id,
            machine_id: machine.into(),
            kind,
            status: Status::Active,
            severity,
            message,
            raised_at: t.clone(),
            updated_at: t,
            cleared_at: None,
            acked_by: None,
            acked_at: None,
        };
        self.stored.alerts.push(alert.clone());
        Change::Raised(alert)
    }

    fn clear(&mut self, machine: &str, kind: Kind, now: f64) -> Option<Change> {
        let a = self.active_mut(machine, kind)?;
        a.status = Status::Cleared;
        a.cleared_at = Some(stamp(now));
        a.updated_at = stamp(now);
        Some(Change::Cleared(a.clone()))
    }

    /// Applies one evaluation of a machine's verdict; returns what changed (and saves when anything did).
    pub fn observe(&mut self, machine: &str, v: &Verdict, now: f64) -> Result<Vec<Change>, AlertError> {
        let mut out = Vec::new();
        match v.state {
            State::StaleData => {
                if self.active_mut(machine, Kind::StaleData).is_none() {
                    out.push(self.raise(machine, Kind::StaleData, None, v.sentence.clone(), now));
                }
            }
            State::Fresh => out.extend(self.clear(machine, Kind::StaleData, now)),
            State::NoModels | State::NoAnswer => {}
        }
        if v.state == State::Fresh {
            let sev = v.severity.unwrap_or(Severity::Ok);
            if sev >= Severity::Plan {
                self.calm.remove(machine);
                match self.active_mut(machine, Kind::Verdict) {
                    None => out.push(self.raise(machine, Kind::Verdict, Some(sev), v.sentence.clone(), now)),
                    Some(a) if a.severity < Some(sev) => {
                        a.severity = Some(sev);
                        a.message = v.sentence.clone();
                        a.updated_at = stamp(now);
                        // A worse state needs a fresh acknowledgement.
                        a.acked_by = None;
                        a.acked_at = None;
                        out.push(Change::Escalated(a.clone()));
                    }
                    Some(_) => {}
                }
            } else if sev == Severity::Ok {
                let n = self.calm.entry(machine.to_string()).or_insert(0);
                *n += 1;
                if *n >= CLEAR_AFTER {
                    out.extend(self.clear(machine, Kind::Verdict, now));
                }
            } else {
                // Watch: the dead band. Nothing is raised, nothing cleared, and the calm count restarts.
                self.calm.remove(machine);
            }
        }
        if !out.is_empty() {
            self.prune(now);
            self.save()?;
        }
        Ok(out)
    }

    /// An event alert (oversize model, failed training): active until acknowledged.
    pub fn event(&mut self, machine: &str, kind: Kind, message: String, now: f64) -> Result<Change, AlertError> {
        let c = self.raise(machine, kind, None, message, now);
        self.prune(now);
        self.save()?;
        Ok(c)
    }

    /// Records who acknowledged and when; an event alert is cleared by it.
    pub fn ack(&mut self, id: u64, who: &str, now: f64) -> Result<Change, AlertError> {
        let a = self.stored.alerts.iter_mut().find(|a| a.id == id).ok_or(AlertError::NotFound(id))?;
        a.acked_by = Some(who.to_string());
        a.acked_at = Some(stamp(now));
        a.updated_at = stamp(now);
        if matches!(a.kind, Kind::ModelOversize | Kind::TrainingFailed) && a.status == Status::Active {
            a.status = Status::Cleared;
            a.cleared_at = Some(stamp(now));
        }
        let c = Change::Acknowledged(a.clone());
        self.save()?;
        Ok(c)
    }

    /// Newest first; cleared ones only when asked.
    pub fn list(&self, include_cleared: bool) -> Vec<Alert> {
        let mut out: Vec<Alert> = self.stored.alerts.iter().filter(|a| include_cleared || a.status == Status::Active).cloned().collect();
        out.sort_by_key(|a| std::cmp::Reverse(a.id));
        out
    }

    pub fn active_for(&self, machine: &str) -> Vec<Alert> {
        self.stored.alerts.iter().filter(|a| a.machine_id == machine && a.status == Status::Active).cloned().collect()
    }

    /// Drops cleared alerts older than the retention, then the oldest cleared ones past [`MAX_KEPT`].
    fn prune(&mut self, now: f64) {
        let cutoff = now - self.retention_s;
        self.stored.alerts.retain(|a| {
            a.status == Status::Active || a.cleared_at.as_deref().and_then(crate::util::time::parse_timestamp).is_none_or(|t| t >= cutoff)
        });
        while self.stored.alerts.len() > MAX_KEPT {
            match self.stored.alerts.iter().position(|a| a.status == Status::Cleared) {
                Some(i) => {
                    self.stored.alerts.remove(i);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Inputs, RulInput, decide};

    fn verdict(rul_h: f64, age_h: f64) -> Verdict {
        decide(&Inputs {
            rul: Some(RulInput { hours: rul_h, at_cap: false, grade: Some(crate::verdict::Grade::Useful) }),
            has_models: true,
            data_age_h: Some(age_h),
            stale_after_h: 24.0,
            ..Default::default()
        })
    }

    #[test]
    fn raise_escalate_and_clear_with_hysteresis() {
        let mut b = AlertBook::in_memory(30.0);
        let plan = verdict(50.0, 0.1);
        let watch = verdict(100.0, 0.1);
        let ok = verdict(500.0, 0.1);
        let act = verdict(5.0, 0.1);
        let c = b.observe("m", &plan, 1000.0).unwrap();
        assert!(matches!(c.as_slice(), [Change::Raised(a)] if a.severity == Some(Severity::Plan)));
        // Flapping between plan and watch neither raises again nor clears.
        for i in 0..5 {
            assert!(b.observe("m", &watch, 1001.0 + f64::from(i)).unwrap().is_empty());
            assert!(b.observe("m", &plan, 1001.5 + f64::from(i)).unwrap().is_empty());
        }
        assert_eq!(b.list(false).len(), 1);
        assert!(matches!(b.observe("m", &act, 1010.0).unwrap().as_slice(), [Change::Escalated(a)] if a.severity == Some(Severity::Act)));
        // One ok is not enough; a watch in between restarts the count.
        assert!(b.observe("m", &ok, 1011.0).unwrap().is_empty());
        assert!(b.observe("m", &watch, 1012.0).unwrap().is_empty());
        assert!(b.observe("m", &ok, 1013.0).unwrap().is_empty());
        assert!(matches!(b.observe("m", &ok, 1014.0).unwrap().as_slice(), [Change::Cleared(_)]));
        assert!(b.list(false).is_empty());
        assert_eq!(b.list(true).len(), 1);
    }

    #[test]
    fn stale_data_raises_and_fresh_data_clears() {
        let mut b = AlertBook::in_memory(30.0);
        let stale = verdict(500.0, 48.0);
        assert!(matches!(b.observe("m", &stale, 0.0).unwrap().as_slice(), [Change::Raised(a)] if a.kind == Kind::StaleData));
        assert!(b.observe("m", &stale, 1.0).unwrap().is_empty());
        assert!(matches!(b.observe("m", &verdict(500.0, 1.0), 2.0).unwrap().as_slice(), [Change::Cleared(_)]));
    }

    #[test]
    fn ack_records_who_and_when_and_clears_event_alerts() {
        let mut b = AlertBook::in_memory(30.0);
        let Change::Raised(a) = b.event("m", Kind::TrainingFailed, "boom".into(), 0.0).unwrap() else { panic!() };
        let Change::Acknowledged(acked) = b.ack(a.id, "ana", 60.0).unwrap() else { panic!() };
        assert_eq!(acked.acked_by.as_deref(), Some("ana"));
        assert_eq!(acked.acked_at.as_deref(), Some("1970-01-01T00:01:00.000Z"));
        assert_eq!(acked.status, Status::Cleared);
        assert!(matches!(b.ack(999, "x", 0.0), Err(AlertError::NotFound(999))));
    }

    #[test]
    fn kept_on_disk_and_pruned_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        {
            let mut b = AlertBook::open(&path, 1.0);
            b.event("m", Kind::ModelOversize, "big".into(), 0.0).unwrap();
            b.observe("n", &verdict(50.0, 0.1), 0.0).unwrap();
        }
        let mut b = AlertBook::open(&path, 1.0);
        assert_eq!(b.list(true).len(), 2);
        b.ack(1, "ana", 10.0).unwrap();
        // Two days later the cleared one is gone, the active one stays; ids keep counting.
        b.event("m", Kind::TrainingFailed, "again".into(), 2.0 * 86_400.0).unwrap();
        let left: Vec<u64> = b.list(true).iter().map(|a| a.id).collect();
        assert_eq!(left, vec![3, 2]);
        std::fs::write(&path, b"not json").unwrap();
        assert!(AlertBook::open(&path, 1.0).list(true).is_empty());
    }
}
