//! What can be wrong with the configuration, said so that the message names where the value came from, the
//! key, the value and what would be accepted.
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::CONFIG_PATH_VAR;
use super::env;

/// Where a value came from, so an error can point at the thing to edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "config {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

fn prefix(origin: &Option<Origin>) -> String {
    origin.as_ref().map(|o| format!("{o}: ")).unwrap_or_default()
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion.as_ref().map(|s| format!(" (did you mean \"{s}\"?)")).unwrap_or_default()
}

fn did_you_mean_env(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(key) => format!(" (did you mean {key}, i.e. {}?)", env::var_name(key)),
        None => format!(
            " (config keys are listed by the commented default config; {CONFIG_PATH_VAR}, MILLWRIGHT_LOG and MILLWRIGHT_TEST_* are the only other MILLWRIGHT_ names)"
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist (check the path, or create it from the commented default config)", .path.display())]
    NotFound { path: PathBuf },
    #[error("config {}: cannot read it: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax errors and anything else serde reports; toml's text keeps the line and column.
    #[error("config {}: {message}", .path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("unknown key \"{key}\" in {}{}", .path.display(), did_you_mean(.suggestion))]
    UnknownKey { key: String, path: PathBuf, suggestion: Option<String> },
    #[error("unknown environment variable {var}: \"{key}\" is not a config key{}", did_you_mean_env(.suggestion))]
    UnknownEnv { var: String, key: String, suggestion: Option<String> },
    #[error("{}{key} = {value}: expected {expected}", prefix(.origin))]
    WrongType { origin: Option<Origin>, key: String, value: String, expected: String },
    #[error("{}{key} = {value} is invalid: {reason}", prefix(.origin))]
    Invalid { origin: Option<Origin>, key: String, value: String, reason: String },
}

impl ConfigError {
    /// The dotted key the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::UnknownEnv { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    pub(super) fn with_origin(self, origins: &HashMap<String, Origin>, file: Option<&Path>) -> Self {
        match self {
            ConfigError::Invalid { origin: None, key, value, reason } => {
                let origin = origin_of(&key, origins, file);
                ConfigError::Invalid { origin, key, value, reason }
            }
            other => other,
        }
    }
}

pub(super) fn origin_of(key: &str, origins: &HashMap<String, Origin>, file: Option<&Path>) -> Option<Origin> {
    origins.get(key).cloned().or_else(|| file.map(|p| Origin::File(p.to_path_buf())))
}

/// An invalid value; where it came from is added by [`load`](super::load) once the sources are known.
pub(super) fn invalid(key: &str, value: String, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: None, key: key.to_string(), value, reason: reason.into() }
}
