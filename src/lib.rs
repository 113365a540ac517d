//! millwright: trains the four predictive-maintenance models of a machine on the device beside it.
//!
//! Each folder under `src/` is one part with a small public face:
//! - [`data`]: machines on disk (legacy layout, described tables, the built-in simulator) → one in-memory table.
//! - [`guard`]: memory, SoC temperature, throttling and disk readings; pauses, refusals and aborts.
//! - [`ml`]: the four trainers, features, splits, metrics, model bundles and predictions.
//! - [`registry`]: versioned model bundles on disk; the live version of each model.
//! - [`store`] and [`jobs`]: the persistent, bounded, sequential job queue and its runner.
//! - [`api`]: the HTTP API (the seed's paths), auth, server-sent events.
//! - [`daemon`]: `millwright serve` — wires the parts together and shuts them down together.
//! - [`lifecycle`]: what the long-running parts share: the shutdown signal, the event bus, heartbeats.
//! - [`mqtt`]: progress, state, events and requests over MQTT (Zigbee2MQTT conventions, Home Assistant discovery).
//! - [`web`]: the embedded training page.
//! - [`verdict`]: model grades in plant language and one verdict per machine from its models' answers.
//! - [`alerts`]: alerts from verdicts, stale data, oversize models and failed trainings, with hysteresis.
//! - [`config`]: one TOML file plus `MILLWRIGHT_*` overrides, refused with the fix when wrong.
//! - [`bench`]: `millwright bench` — the figures of BENCHMARKS.md, measured in one run.
//! - [`cli`]: the command line.
// Input reaches most of this crate: a panic there is a daemon down. Tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod alerts;
pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod data;
pub mod guard;
pub mod ingest;
pub mod jobs;
pub mod lifecycle;
pub mod ml;
pub mod mqtt;
pub mod registry;
pub mod retrain;
pub mod scores;
pub mod store;
pub mod util;
pub mod verdict;
pub mod web;
