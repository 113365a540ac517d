//! The bounded, sequential, persistent job queue and the runner that trains one job at a time.
mod job;
mod queue;
mod runner;

pub use job::{Job, JobOrigin, JobRequest, JobState, MAX_LOG_LINES, ModelProgress, ModelResult, ModelStatus, Progress, Promote};
pub use queue::{CancelOutcome, JobError, JobQueue, Next, Recovery};
pub use runner::{Admission, Refusal, Runner};
