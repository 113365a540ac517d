//! Turns the queue's stream of job snapshots into what MQTT publishes: progress at most once a second per
//! task (and on every stage change), the current job, and one event per transition. Pure logic: the
//! caller passes the clock, so the rate limit is tested without sleeping.
use crate::jobs::{Job, JobState};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// `tasks/<id>/progress` (not retained).
    Progress { task_id: String, payload: Value },
    /// `jobs/current`: the running job, or None when idle.
    Current(Option<Value>),
    /// `bridge/event`.
    Event { kind: &'static str, data: Value },
    /// A job ended: refresh the machine's model and training topics.
    Finished { machine_id: String },
}

struct Seen {
    state: JobState,
    /// (stage, state, model type, batch index) of the last progress published.
    phase: (String, JobState, Option<String>, usize),
    last_progress: Option<Instant>,
    last_percent: f64,
    oversize: HashSet<String>,
}

#[derive(Default)]
pub struct Tracker {
    jobs: HashMap<String, Seen>,
}

fn state_name(s: JobState) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The seed's broadcast shape (`{task_id, machine_id, progress, status, message, stage, model_type, ...}`).
pub fn progress_payload(job: &Job) -> Value {
    let now = crate::util::time::now_secs();
    json!({
        "task_id": job.id,
        "machine_id": job.request.machine_id,
        "progress": round1(job.progress.progress_percent),
        "current": round1(job.progress.current),
        "total": job.progress.total,
        "status": state_name(job.state),
        "message": job.progress.message,
        "stage": job.progress.stage,
        "model_type": job.progress.model_type,
        "batch_index": job.progress.batch_index,
        "batch_total": job.progress.batch_total,
        "eta_s": job.progress.eta_seconds.map(|e| e.round()),
        "ts": super::ts_of(now),
    })
}

fn current_payload(job: &Job) -> Value {
    json!({
        "task_id": job.id,
        "machine_id": job.request.machine_id,
        "model_type": job.progress.model_type,
        "model_types": job.request.model_types,
        "status": state_name(job.state),
        "stage": job.progress.stage,
        "message": job.progress.message,
        "progress": round1(job.progress.progress_percent),
        "eta_s": job.progress.eta_seconds.map(|e| e.round()),
        "batch_index": job.progress.batch_index,
        "batch_total": job.progress.batch_total,
        "started_at": job.started_at,
        "ts": super::now_ts(),
    })
}

/// `jobs/current` between jobs: a document with the same keys (nulls), never an empty payload, so a
/// consumer that parses JSON always can and a template reads "no progress" rather than failing.
pub fn idle_current() -> Value {
    json!({
        "task_id": null, "machine_id": null, "model_type": null, "model_types": [], "status": "IDLE", "stage": null,
        "message": null, "progress": null, "eta_s": null, "batch_index": null, "batch_total": null, "started_at": null,
        "ts": super::now_ts(),
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn summary(job: &Job) -> Value {
    json!({ "task_id": job.id, "machine_id": job.request.machine_id, "model_types": job.request.model_types })
}

pub fn finished_data(job: &Job) -> Value {
    let mut v = summary(job);
    let models: serde_json::Map<String, Value> = job
        .progress
        .models
        .iter()
        .map(|(t, m)| (t.clone(), json!({ "status": m.status, "version": m.version, "metrics": m.metrics, "size_bytes": m.size_bytes, "oversize": m.oversize, "error": m.error })))
        .collect();
    v["models"] = Value::Object(models);
    v["error"] = json!(job.error);
    v["completed_at"] = json!(job.completed_at);
    v["requeued_from"] = json!(job.requeued_from);
    v
}

impl Tracker {
    /// What a new snapshot of `job` should publish, in order.
    pub fn observe(&mut self, job: &Job, now: Instant) -> Vec<Note> {
        let mut notes = Vec::new();
        let phase =
            (job.progress.stage.clone(), job.state, job.progress.model_type.map(|t| t.as_str().to_string()), job.progress.batch_index);
        let first = !self.jobs.contains_key(&job.id);
        let seen = self.jobs.entry(job.id.clone()).or_insert_with(|| Seen {
            state: JobState::Pending,
            phase: (String::new(), JobState::Pending, None, 0),
            last_progress: None,
            last_percent: -1.0,
            oversize: HashSet::new(),
        });
        if first {
            // A job first met already running (MQTT started after it) still gets its events in order.
            notes.push(Note::Event { kind: "job_queued", data: summary(job) });
        }
        let was_running = seen.state.is_running();
        if job.state.is_running() && !was_running {
            notes.push(Note::Event { kind: "job_started", data: summary(job) });
        }
        for (t, m) in &job.progress.models {
            if m.oversize && seen.oversize.insert(t.clone()) {
                notes.push(Note::Event {
                    kind: "model_oversize",
                    data: json!({ "task_id": job.id, "machine_id": job.request.machine_id, "model_type": t, "size_bytes": m.size_bytes, "warning": m.warning }),
                });
            }
        }
        let changed = first || seen.phase != phase || seen.state != job.state;
        let due = seen.last_progress.is_none_or(|t| now.duration_since(t) >= PROGRESS_INTERVAL)
            && job.progress.progress_percent != seen.last_percent;
        let publish_progress = (job.state.is_running() || job.state.is_finished()) && (changed || due);
        if publish_progress && (job.state.is_running() || was_running || seen.last_progress.is_some()) {
            seen.last_progress = Some(now);
            seen.last_percent = job.progress.progress_percent;
            notes.push(Note::Progress { task_id: job.id.clone(), payload: progress_payload(job) });
            if job.state.is_running() {
                notes.push(Note::Current(Some(current_payload(job))));
            }
        }
        seen.phase = phase;
        seen.state = job.state;
        if job.state.is_finished() {
            let kind = match job.state {
                JobState::Success => "job_done",
                JobState::Failure => "job_failed",
                _ => "job_revoked",
            };
            if was_running {
                notes.push(Note::Current(None));
            }
            notes.push(Note::Event { kind, data: finished_data(job) });
            notes.push(Note::Finished { machine_id: job.request.machine_id.clone() });
            self.jobs.remove(&job.id);
        }
        notes
    }

    pub fn follows(&self, id: &str) -> bool {
        self.jobs.contains_key(id)
    }

    /// Jobs being followed (finished ones are forgotten at once).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobRequest;
    use crate::ml::{ModelType, TrainParams};

    fn job() -> Job {
        Job::new(
            "t1".into(),
            1,
            JobRequest {
                machine_id: "m1".into(),
                model_types: vec![ModelType::Classification, ModelType::Anomaly],
                params: TrainParams::default(),
                origin: Default::default(),
            },
        )
    }

    fn kinds(notes: &[Note]) -> Vec<String> {
        notes
            .iter()
            .map(|n| match n {
                Note::Progress { .. } => "progress".to_string(),
                Note::Current(Some(_)) => "current".into(),
                Note::Current(None) => "idle".into(),
                Note::Event { kind, .. } => kind.to_string(),
                Note::Finished { .. } => "finished".into(),
            })
            .collect()
    }

    #[test]
    fn a_job_life_gives_each_event_once_and_progress_at_most_once_a_second_per_stage() {
        let mut tr = Tracker::default();
        let t0 = Instant::now();
        let mut j = job();
        assert_eq!(kinds(&tr.observe(&j, t0)), ["job_queued"]);
        // A second pending snapshot (e.g. a waiting reason) announces nothing new.
        assert!(tr.observe(&j, t0).is_empty());
        j.state = JobState::Started;
        assert_eq!(kinds(&tr.observe(&j, t0)), ["job_started", "progress", "current"]);
        j.state = JobState::Progress;
        j.progress.stage = "features".into();
        j.progress.progress_percent = 1.0;
        assert_eq!(kinds(&tr.observe(&j, t0 + Duration::from_millis(10))), ["progress", "current"], "stage change publishes at once");
        j.progress.progress_percent = 2.0;
        assert!(tr.observe(&j, t0 + Duration::from_millis(500)).is_empty(), "same stage within a second is held back");
        j.progress.progress_percent = 3.0;
        assert_eq!(kinds(&tr.observe(&j, t0 + Duration::from_millis(1100))), ["progress", "current"]);
        // No change in percent, a second later: nothing to say.
        assert!(tr.observe(&j, t0 + Duration::from_millis(2500)).is_empty());
        j.progress.models.get_mut("classification").unwrap().oversize = true;
        assert_eq!(kinds(&tr.observe(&j, t0 + Duration::from_millis(2600))), ["model_oversize"]);
        assert!(tr.observe(&j, t0 + Duration::from_millis(2700)).is_empty(), "oversize is told once");
        j.finish(JobState::Success, None);
        j.progress.stage = "success".into();
        j.progress.progress_percent = 100.0;
        assert_eq!(kinds(&tr.observe(&j, t0 + Duration::from_millis(2800))), ["progress", "idle", "job_done", "finished"]);
        assert!(tr.is_empty());
    }

    #[test]
    fn a_pending_job_cancelled_is_revoked_without_progress_or_current() {
        let mut tr = Tracker::default();
        let mut j = job();
        tr.observe(&j, Instant::now());
        j.finish(JobState::Revoked, Some("cancelled before it started".into()));
        assert_eq!(kinds(&tr.observe(&j, Instant::now())), ["job_revoked", "finished"]);
    }

    #[test]
    fn timestamps_are_iso_utc_with_milliseconds_and_idle_is_a_document() {
        assert_eq!(super::super::ts_of(1_764_934_700.123_4), "2025-12-05T11:38:20.123Z");
        let idle = idle_current();
        assert_eq!((idle["status"].as_str(), idle["progress"].is_null()), (Some("IDLE"), true));
        assert_eq!(idle.as_object().unwrap().len(), current_payload(&job()).as_object().unwrap().len(), "the same keys: {idle}");
    }

    #[test]
    fn progress_payload_has_the_seed_shape() {
        let mut j = job();
        j.state = JobState::Progress;
        j.progress.progress_percent = 42.04;
        j.progress.model_type = Some(ModelType::Anomaly);
        let p = progress_payload(&j);
        for k in ["task_id", "machine_id", "progress", "status", "message", "stage", "model_type", "batch_index", "batch_total", "ts"] {
            assert!(p.get(k).is_some(), "{k} missing in {p}");
        }
        assert_eq!(p["progress"], 42.0);
        let ts = p["ts"].as_str().unwrap();
        assert!(crate::util::time::parse_timestamp(ts).is_some() && ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
        assert_eq!(p["status"], "PROGRESS");
        assert_eq!(p["model_type"], "anomaly");
    }
}
