//! millwright: trains the four predictive-maintenance models of a machine on the device beside it.
//!
//! Each folder under `src/` is one part with a small public face:
//! - [`data`]: machines on disk (seed layout, described tables, the built-in simulator) → one in-memory table.
//! - [`ml`]: the four trainers, features, splits, metrics, model bundles and predictions.
pub mod data;
pub mod ml;
pub mod util;
pub mod cli;
