//! A job record: one request to train one or several model types of one machine, in the shapes the seed's
//! clients know (TaskStatusResponse).
use crate::ml::{LeaderRow, ModelType, TrainParams};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobState {
    Pending,
    Started,
    Progress,
    Success,
    Failure,
    Retry,
    Revoked,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Success | JobState::Failure | JobState::Revoked)
    }

    pub fn is_running(self) -> bool {
        matches!(self, JobState::Started | JobState::Progress)
    }

    pub fn parse(s: &str) -> Option<JobState> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase())).ok()
    }
}

/// Where one model of a batch stands (`progress.models.<type>.status`), upper-case like the job's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ModelStatus {
    #[default]
    Pending,
    Progress,
    Success,
    Failure,
    /// Cancelled, or interrupted by a shutdown.
    Revoked,
    /// Never started: the resource guard failed the job while it waited.
    Skipped,
}

/// One model's entry in a finished job's `result.results.<type>`. The seed's clients read "completed" and
/// "failed" there, while `progress.models.<type>.status` says SUCCESS and FAILURE for the same outcomes: both
/// spellings stay on the wire, and [`ModelResult::status`] ties them together.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ModelResult {
    Completed {
        version: u32,
        /// False when a pin or a better live model keeps the previous version answering.
        live: bool,
        size_bytes: u64,
        oversize: bool,
        warning: Option<String>,
        metrics: serde_json::Value,
        train_seconds: f64,
    },
    Failed {
        error: String,
    },
}

impl ModelResult {
    /// The same outcome in `progress.models`' spelling.
    pub fn status(&self) -> ModelStatus {
        match self {
            ModelResult::Completed { .. } => ModelStatus::Success,
            ModelResult::Failed { .. } => ModelStatus::Failure,
        }
    }
}

/// One model of a batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelProgress {
    pub status: ModelStatus,
    pub progress_percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub oversize: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub current: f64,
    pub total: f64,
    pub progress_percent: f64,
    pub stage: String,
    pub message: String,
    pub model_type: Option<ModelType>,
    pub batch_index: usize,
    pub batch_total: usize,
    pub eta_seconds: Option<f64>,
    pub models: BTreeMap<String, ModelProgress>,
}

/// Who asked for a job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum JobOrigin {
    /// Through the API, the page, MQTT or the command line: its models go live at once.
    #[default]
    Person,
    /// The machine's `retrain` schedule, for the reason given.
    Schedule {
        reason: String,
        #[serde(default)]
        promote: Promote,
    },
}

/// Whether a scheduled job's models go live when they are worse than the live ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Promote {
    Always,
    /// Live only when not worse than the live model on the same held-out rows (where they can be compared).
    #[default]
    IfNotWorse,
}

impl Promote {
    pub fn parse(s: &str) -> Option<Promote> {
        match s.trim() {
            "always" => Some(Promote::Always),
            "if_not_worse" => Some(Promote::IfNotWorse),
            _ => None,
        }
    }
}

/// What was asked for; everything the runner needs to start the job again from scratch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    pub machine_id: String,
    pub model_types: Vec<ModelType>,
    pub params: TrainParams,
    /// Jobs stored before schedules existed were all a person's.
    #[serde(default)]
    pub origin: JobOrigin,
}

impl JobRequest {
    pub fn complete_system(&self) -> bool {
        ModelType::ALL.iter().all(|t| self.model_types.contains(t))
    }
}

pub const MAX_LOG_LINES: usize = 500;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    /// Submission order; also the key in the store.
    pub seq: u64,
    pub request: JobRequest,
    pub state: JobState,
    pub progress: Progress,
    pub logs: VecDeque<String>,
    pub leaderboard: Vec<LeaderRow>,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// Set on a copy queued again after its original was interrupted.
    pub requeued_from: Option<String>,
    /// Why a PENDING job is not starting yet (the resource guard's reason).
    pub waiting_reason: Option<String>,
}

impl Job {
    pub fn new(id: String, seq: u64, request: JobRequest) -> Job {
        let models = request
            .model_types
            .iter()
            .map(|t| (t.as_str().to_string(), ModelProgress { status: ModelStatus::Pending, ..Default::default() }))
            .collect();
        let batch_total = request.model_types.len();
        Job {
            id,
            seq,
            request,
            state: JobState::Pending,
            progress: Progress { total: 100.0, batch_total, models, ..Default::default() },
            logs: VecDeque::new(),
            leaderboard: Vec::new(),
            error: None,
            result: None,
            created_at: crate::util::time::format_timestamp(crate::util::time::now_secs()),
            started_at: None,
            completed_at: None,
            requeued_from: None,
            waiting_reason: None,
        }
    }

    pub fn log(&mut self, line: impl Into<String>) {
        let stamp = chrono::Utc::now().format("%H:%M:%S");
        self.logs.push_back(format!("{stamp} {}", line.into()));
        while self.logs.len() > MAX_LOG_LINES {
            self.logs.pop_front();
        }
    }

    pub fn finish(&mut self, state: JobState, error: Option<String>) {
        self.state = state;
        self.error = error;
        self.completed_at = Some(crate::util::time::format_timestamp(crate::util::time::now_secs()));
        self.waiting_reason = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The wire spellings the page, the MQTT topics and the seed's clients read.
    #[test]
    fn model_statuses_keep_their_wire_spellings() {
        let all = [
            (ModelStatus::Pending, "PENDING"),
            (ModelStatus::Progress, "PROGRESS"),
            (ModelStatus::Success, "SUCCESS"),
            (ModelStatus::Failure, "FAILURE"),
            (ModelStatus::Revoked, "REVOKED"),
            (ModelStatus::Skipped, "SKIPPED"),
        ];
        for (status, text) in all {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(text));
            assert_eq!(serde_json::from_value::<ModelStatus>(json!(text)).unwrap(), status);
        }
        let done = ModelResult::Completed {
            version: 2,
            live: true,
            size_bytes: 10,
            oversize: false,
            warning: None,
            metrics: json!({ "headline": {} }),
            train_seconds: 1.5,
        };
        assert_eq!(
            serde_json::to_value(&done).unwrap(),
            json!({ "status": "completed", "version": 2, "live": true, "size_bytes": 10, "oversize": false, "warning": null, "metrics": { "headline": {} }, "train_seconds": 1.5 })
        );
        assert_eq!(done.status(), ModelStatus::Success);
        let failed = ModelResult::Failed { error: "only one class".into() };
        assert_eq!(serde_json::to_value(&failed).unwrap(), json!({ "status": "failed", "error": "only one class" }));
        assert_eq!(failed.status(), ModelStatus::Failure);
    }
}
