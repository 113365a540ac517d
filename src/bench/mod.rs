//! `millwright bench`: the figures of BENCHMARKS.md, measured by this binary in one run and printed as tables —
//! accuracy on the shared datasets beside the Python stack's anchors, scaling with rows and sensors, and the
//! daemon under load. Per-step peak memory comes from resetting the kernel's high-water mark before each step.
mod accuracy;
mod daemon;
mod hostile;
mod ingest;
mod measure;
mod protocol;
mod scaling;
mod scoring;
mod spawn;

pub use accuracy::{AccuracyRow, accuracy, print as print_accuracy};
pub use daemon::{DaemonOptions, DaemonReport, daemon, print as print_daemon};
pub use hostile::{HostileOptions, HostileRow, hostile, print as print_hostile};
pub use ingest::{IngestOptions, IngestReport, ingest, print as print_ingest};
pub use measure::{Probe, Sample, median, quantile};
pub use protocol::{DATASETS, ProtocolRow, example_dir, run_protocol};
pub use scaling::{Case, ScalingRow, print as print_scaling, scaling};
pub use scoring::{ScoringOptions, ScoringReport, print as print_scoring, scoring};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Ml(#[from] crate::ml::MlError),
    #[error("{0} is missing; run the bench from the repository root, where examples/ and ../shared/datasets are")]
    Missing(String),
    #[error("{0}")]
    Invalid(String),
    /// A shared dataset without what its standard protocol scores (C-MAPSS's given split, RUL, test engines).
    #[error("{0}")]
    Protocol(String),
    #[error("daemon benchmark: {0}")]
    Daemon(String),
    #[error("daemon benchmark: {0}")]
    Io(#[from] std::io::Error),
}
