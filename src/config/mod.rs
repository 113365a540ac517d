//! The daemon's configuration: one TOML file plus `MILLWRIGHT_*` environment overrides.
//!
//! Precedence, lowest first: built-in defaults, the file, the environment.
//! - File: the path given to [`load`]; else `$MILLWRIGHT_CONFIG`; else
//!   `/etc/millwright/config.toml` when it exists; else defaults only.
//! - Environment: `MILLWRIGHT_<KEY>` with `__` between a section and its key, matched
//!   case-insensitively (`MILLWRIGHT_QUEUE__CAPACITY=32`, `MILLWRIGHT_MQTT__ENABLED=false`).
//!   An empty value removes the key, so it falls back to its default. `MILLWRIGHT_CONFIG` (the
//!   file), `MILLWRIGHT_LOG` (log filter) and `MILLWRIGHT_TEST_*` are not config keys and are
//!   skipped; any other unknown `MILLWRIGHT_` variable is an error, because a typo there would
//!   otherwise be silently ignored on a device nobody is watching.
//!
//! Every error names where the value came from, the key, the value and what would be accepted.

//!
//! The parts: the section types and their defaults (`sections`), the key table everything else reads
//! (`schema`), loading (`load`, `env`), type checking (`check`), validation per section (`validate`),
//! errors ([`ConfigError`]) and how values are shown (`render`, `template`).

mod check;
mod env;
mod error;
mod load;
mod render;
mod schema;
mod sections;
mod template;
#[cfg(test)]
mod tests;
mod validate;

pub use error::{ConfigError, Origin};
pub use load::load;
#[cfg(test)]
use load::load_with_default_path;
pub use sections::{
    AuthConfig, Config, DataConfig, FleetConfig, GuardConfig, HttpConfig, ModelsConfig, MqttConfig, MqttProtocol, QueueConfig,
    ReadingsConfig, RetrainConfig, ShutdownPolicy, TrainingConfig,
};
pub use template::print_default;
pub use validate::Broker;

/// Read when no path is given and `MILLWRIGHT_CONFIG` is unset; its absence is not an error.
pub const DEFAULT_PATH: &str = "/etc/millwright/config.toml";
/// Names the config file when no path is given explicitly.
pub const CONFIG_PATH_VAR: &str = "MILLWRIGHT_CONFIG";
pub const ENV_PREFIX: &str = "MILLWRIGHT_";
/// Accepted values of `queue.shutdown` (the old name `finish_safe_point` is read too, with a warning).
pub const SHUTDOWN_POLICIES: &[&str] = schema::SHUTDOWN_CHOICES;
/// Accepted values of `training.quality`.
pub const QUALITIES: &[&str] = schema::QUALITY_CHOICES;
