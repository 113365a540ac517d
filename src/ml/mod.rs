//! The four trainers and what they share.
pub mod metrics;
