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

mod env;
mod schema;
mod template;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use template::print_default;

/// Read when no path is given and `MILLWRIGHT_CONFIG` is unset; its absence is not an error.
pub const DEFAULT_PATH: &str = "/etc/millwright/config.toml";
/// Names the config file when no path is given explicitly.
pub const CONFIG_PATH_VAR: &str = "MILLWRIGHT_CONFIG";
pub const ENV_PREFIX: &str = "MILLWRIGHT_";
/// Accepted values of `queue.shutdown`.
pub const SHUTDOWN_POLICIES: &[&str] = schema::SHUTDOWN_CHOICES;
/// Accepted values of `training.quality`.
pub const QUALITIES: &[&str] = schema::QUALITY_CHOICES;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Kept as text (checked by `validate`) so the file and the summary show what was written.
    pub listen: String,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log_level: String,
    pub queue: QueueConfig,
    pub models: ModelsConfig,
    pub training: TrainingConfig,
    pub auth: AuthConfig,
    pub mqtt: MqttConfig,
    pub guard: GuardConfig,
    pub http: HttpConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    pub capacity: usize,
    pub requeue_interrupted: bool,
    pub retention: usize,
    /// "cancel_and_requeue" or "finish_safe_point" (see [`SHUTDOWN_POLICIES`]); text rather than
    /// an enum so callers compare it directly and the summary shows it as written.
    pub shutdown: String,
    pub shutdown_grace_s: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { capacity: 16, requeue_interrupted: true, retention: 200, shutdown: "cancel_and_requeue".into(), shutdown_grace_s: 8 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    pub keep_versions: usize,
    pub warn_size_mb: f64,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig { keep_versions: 3, warn_size_mb: 500.0 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// 0 = all cores.
    pub threads: usize,
    /// Seconds, fractional like the trainers' own time limit.
    pub default_time_limit_s: f64,
    /// "fast", "standard" or "best" (see [`QUALITIES`]), the trainers' spelling.
    pub quality: String,
    pub max_time_limit_s: f64,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig { threads: 0, default_time_limit_s: 900.0, quality: "standard".into(), max_time_limit_s: 3600.0 * 4.0 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { required: true, token: None, token_file: None }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub enabled: bool,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub keepalive_s: u64,
    /// None → `millwright/<node_id>`, filled in by the MQTT part once the node id is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_topic: Option<String>,
    /// None → the host name, filled in by the MQTT part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    pub homeassistant: bool,
    pub accept_requests: bool,
    pub discovery_prefix: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            url: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            client_id: None,
            keepalive_s: 30,
            base_topic: None,
            node_id: None,
            homeassistant: false,
            accept_requests: true,
            discovery_prefix: "homeassistant".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    pub sysfs_root: PathBuf,
    pub temp_pause_c: f64,
    pub temp_resume_c: f64,
    pub pause_max_s: u64,
    pub memory_reserve_mb: u64,
    pub memory_abort_mb: u64,
    pub wait_max_s: u64,
    pub disk_reserve_mb: u64,
    pub hot_threads: usize,
    pub poll_interval_s: f64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            sysfs_root: PathBuf::from("/"),
            temp_pause_c: 75.0,
            temp_resume_c: 68.0,
            pause_max_s: 1800,
            memory_reserve_mb: 256,
            memory_abort_mb: 1536,
            wait_max_s: 3600,
            disk_reserve_mb: 200,
            hot_threads: 1,
            poll_interval_s: 2.0,
        }
    }
}

/// The HTTP API: the host names it answers to, and limits so slow, idle or hostile clients on the LAN cannot
/// exhaust the daemon.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Host names answered besides localhost, IP literals and the machine's own name; `"*"` = any.
    pub allowed_hosts: Vec<String>,
    /// A request's line and headers must arrive within this many seconds of the connection opening (or of
    /// the first byte of a later request on a kept-alive connection).
    pub header_timeout_s: f64,
    /// A request's body must arrive within this many seconds of its headers.
    pub body_timeout_s: f64,
    /// A kept-alive connection with no request (or a response nobody reads) is closed after this long.
    pub idle_timeout_s: f64,
    /// Connections open at once; lowered to fit the open-file limit.
    pub max_connections: usize,
    /// Memory (MB) all request bodies being received may hold together.
    pub body_memory_mb: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allowed_hosts: Vec::new(),
            header_timeout_s: 10.0,
            body_timeout_s: 60.0,
            idle_timeout_s: 30.0,
            max_connections: 256,
            body_memory_mb: 32,
        }
    }
}

impl Default for Config {
    /// `state_dir` follows this process's `$STATE_DIRECTORY`; [`load`] instead uses the
    /// environment it is given, so tests stay independent of how they were started.
    fn default() -> Self {
        let state_directory = std::env::var("STATE_DIRECTORY").ok();
        Config {
            listen: "0.0.0.0:8080".into(),
            data_dir: PathBuf::from("data"),
            state_dir: default_state_dir(state_directory.as_deref()),
            log_level: "info".into(),
            queue: QueueConfig::default(),
            models: ModelsConfig::default(),
            training: TrainingConfig::default(),
            auth: AuthConfig::default(),
            mqtt: MqttConfig::default(),
            guard: GuardConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// systemd's `StateDirectory=a b` yields `STATE_DIRECTORY=/var/lib/a:/var/lib/b`; the first is ours.
fn default_state_dir(state_directory: Option<&str>) -> PathBuf {
    state_directory
        .and_then(|v| v.split(':').next())
        .filter(|first| !first.is_empty())
        .map_or_else(|| PathBuf::from("state"), PathBuf::from)
}

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

    fn with_origin(self, origins: &HashMap<String, Origin>, file: Option<&Path>) -> Self {
        match self {
            ConfigError::Invalid { origin: None, key, value, reason } => {
                let origin = origin_of(&key, origins, file);
                ConfigError::Invalid { origin, key, value, reason }
            }
            other => other,
        }
    }
}

fn origin_of(key: &str, origins: &HashMap<String, Origin>, file: Option<&Path>) -> Option<Origin> {
    origins.get(key).cloned().or_else(|| file.map(|p| Origin::File(p.to_path_buf())))
}

/// Loads the configuration: defaults, then the file, then `MILLWRIGHT_*` variables from `env`,
/// then [`Config::validate`].
///
/// `path` None reads `$MILLWRIGHT_CONFIG` (from `env`) if set, else [`DEFAULT_PATH`] if it
/// exists, else uses defaults. A path that was named (argument or variable) must exist.
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    load_with_default_path(path, Path::new(DEFAULT_PATH), env)
}

fn load_with_default_path(path: Option<&Path>, default_path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let from_env = env.iter().rev().find(|(k, v)| k == CONFIG_PATH_VAR && !v.is_empty()).map(|(_, v)| PathBuf::from(v));
    let file: Option<PathBuf> = match path.map(Path::to_path_buf).or(from_env) {
        Some(explicit) => {
            if !explicit.exists() {
                return Err(ConfigError::NotFound { path: explicit });
            }
            Some(explicit)
        }
        None => default_path.exists().then(|| default_path.to_path_buf()),
    };

    let mut table = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            parse_file(&text, path)?
        }
        None => toml::Table::new(),
    };

    let origins = env::apply(&mut table, env)?;

    if !table.contains_key("state_dir") {
        let state_directory = env.iter().rev().find(|(k, _)| k == "STATE_DIRECTORY").map(|(_, v)| v.as_str());
        let dir = default_state_dir(state_directory);
        table.insert("state_dir".into(), toml::Value::String(dir.to_string_lossy().into_owned()));
    }

    check_types(&mut table, &origins, file.as_deref())?;

    let config: Config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| ConfigError::Syntax {
        path: file.clone().unwrap_or_else(|| PathBuf::from("(defaults and environment)")),
        message: e.message().trim().to_string(),
    })?;
    config.validate().map_err(|e| e.with_origin(&origins, file.as_deref()))?;
    Ok(config)
}

/// Parses the file's text and refuses keys that are not config keys, before the environment is
/// applied, so that the error names the file rather than the merged result.
fn parse_file(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax { path: path.to_path_buf(), message: e.to_string().trim_end().to_string() })?;
    let unknown =
        |key: String| ConfigError::UnknownKey { suggestion: schema::suggest(&key).map(str::to_string), key, path: path.to_path_buf() };
    for (name, value) in &table {
        if schema::is_section(name) {
            let toml::Value::Table(section) = value else {
                return Err(ConfigError::WrongType {
                    origin: Some(Origin::File(path.to_path_buf())),
                    key: name.clone(),
                    value: render_value(name, value),
                    expected: format!("a section ([{name}] followed by its keys)"),
                });
            };
            for sub in section.keys() {
                let full = format!("{name}.{sub}");
                if schema::spec(&full).is_none() {
                    return Err(unknown(full));
                }
            }
        } else if schema::spec(name).is_none() {
            if value.is_table() {
                return Err(ConfigError::UnknownKey {
                    suggestion: schema::suggest_section(name).map(str::to_string),
                    key: name.clone(),
                    path: path.to_path_buf(),
                });
            }
            return Err(unknown(name.clone()));
        }
    }
    Ok(table)
}

/// Checks each present value against its key's type before serde sees it, so a wrong type is
/// reported as `key = value: expected ...` (and a secret's value is not echoed).
fn check_types(table: &mut toml::Table, origins: &HashMap<String, Origin>, file: Option<&Path>) -> Result<(), ConfigError> {
    for spec in schema::KEYS {
        let (section, leaf) = match spec.key.split_once('.') {
            Some((s, l)) => (Some(s), l),
            None => (None, spec.key),
        };
        let slot = match section {
            Some(s) => match table.get_mut(s) {
                Some(toml::Value::Table(t)) => t.get_mut(leaf),
                _ => None,
            },
            None => table.get_mut(leaf),
        };
        let Some(value) = slot else { continue };
        let wrong = |value: &toml::Value, expected: String| ConfigError::WrongType {
            origin: origin_of(spec.key, origins, file),
            key: spec.key.to_string(),
            value: render_value(spec.key, value),
            expected,
        };
        match (spec.kind, &*value) {
            (schema::Kind::Str | schema::Kind::Path, toml::Value::String(_)) => {}
            (schema::Kind::Bool, toml::Value::Boolean(_)) => {}
            (schema::Kind::Float, toml::Value::Float(_)) => {}
            // An integer where a number is expected is fine: `temp_pause_c = 75`.
            (schema::Kind::Float, toml::Value::Integer(i)) => *value = toml::Value::Float(*i as f64),
            (schema::Kind::UInt { max }, toml::Value::Integer(i)) => {
                if *i < 0 {
                    return Err(ConfigError::Invalid {
                        origin: origin_of(spec.key, origins, file),
                        key: spec.key.to_string(),
                        value: i.to_string(),
                        reason: "must not be negative".into(),
                    });
                }
                if (*i as u64) > max {
                    return Err(ConfigError::Invalid {
                        origin: origin_of(spec.key, origins, file),
                        key: spec.key.to_string(),
                        value: i.to_string(),
                        reason: format!("must be at most {max}"),
                    });
                }
            }
            (schema::Kind::StrList, toml::Value::Array(items)) => {
                if !items.iter().all(toml::Value::is_str) {
                    return Err(wrong(value, schema::Kind::StrList.expected()));
                }
            }
            (schema::Kind::Choice(options), toml::Value::String(s)) => {
                if !options.contains(&s.as_str()) {
                    return Err(ConfigError::Invalid {
                        origin: origin_of(spec.key, origins, file),
                        key: spec.key.to_string(),
                        value: render_value(spec.key, value),
                        reason: format!("must be one of {}", schema::quoted_list(options)),
                    });
                }
            }
            (kind, other) => return Err(wrong(other, kind.expected())),
        }
    }
    Ok(())
}

/// A value as it would be written in the file; secrets become `***`.
fn render_value(key: &str, value: &toml::Value) -> String {
    if schema::is_secret(key) {
        return "***".into();
    }
    match value {
        // Display of a table is multi-line; a summary reads better in an error.
        toml::Value::Table(_) => "a table".into(),
        other => other.to_string(),
    }
}

fn render_str(key: &str, s: &str) -> String {
    render_value(key, &toml::Value::String(s.to_string()))
}

fn render_path(key: &str, p: &Path) -> String {
    render_str(key, &p.to_string_lossy())
}

fn render_f64(f: f64) -> String {
    toml::Value::Float(f).to_string()
}

fn invalid(key: &str, value: String, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: None, key: key.to_string(), value, reason: reason.into() }
}

const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

impl Config {
    /// Checks values and the relations between them. [`load`] calls it; call it again after
    /// changing a `Config` in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "listen",
                render_str("listen", &self.listen),
                "must be an IP address and port such as \"0.0.0.0:8080\", \"127.0.0.1:8080\" or \"[::]:8080\" (host names are not accepted)",
            ));
        }
        for (key, path) in [("data_dir", &self.data_dir), ("state_dir", &self.state_dir)] {
            if path.as_os_str().is_empty() {
                return Err(invalid(key, render_path(key, path), "must not be empty (use \".\" for the working directory)"));
            }
        }
        validate_log_level(&self.log_level)?;
        self.validate_queue()?;
        self.validate_models_and_training()?;
        self.validate_auth()?;
        self.mqtt.validate()?;
        self.guard.validate()?;
        self.http.validate()?;
        self.http.validate_limits()?;
        Ok(())
    }

    fn validate_queue(&self) -> Result<(), ConfigError> {
        let q = &self.queue;
        if !(1..=10_000).contains(&q.capacity) {
            return Err(invalid(
                "queue.capacity",
                q.capacity.to_string(),
                "must be between 1 and 10000 (the number of jobs that may wait)",
            ));
        }
        if q.retention < 1 {
            return Err(invalid(
                "queue.retention",
                q.retention.to_string(),
                "must be at least 1 (finished jobs kept so their results can be read)",
            ));
        }
        if !SHUTDOWN_POLICIES.contains(&q.shutdown.as_str()) {
            return Err(invalid(
                "queue.shutdown",
                render_str("queue.shutdown", &q.shutdown),
                format!("must be one of {}", schema::quoted_list(SHUTDOWN_POLICIES)),
            ));
        }
        if q.shutdown_grace_s > 3600 {
            return Err(invalid(
                "queue.shutdown_grace_s",
                q.shutdown_grace_s.to_string(),
                "must be at most 3600 seconds (systemd would kill the daemon long before)",
            ));
        }
        Ok(())
    }

    fn validate_models_and_training(&self) -> Result<(), ConfigError> {
        let m = &self.models;
        if m.keep_versions < 1 {
            return Err(invalid(
                "models.keep_versions",
                m.keep_versions.to_string(),
                "must be at least 1 (the version in use is always kept)",
            ));
        }
        if !(m.warn_size_mb.is_finite() && m.warn_size_mb > 0.0) {
            return Err(invalid("models.warn_size_mb", render_f64(m.warn_size_mb), "must be a number greater than 0 (MB)"));
        }
        let t = &self.training;
        if t.threads > 1024 {
            return Err(invalid("training.threads", t.threads.to_string(), "must be at most 1024 (0 uses all cores)"));
        }
        if !(t.max_time_limit_s.is_finite() && t.max_time_limit_s >= 1.0) {
            return Err(invalid("training.max_time_limit_s", render_f64(t.max_time_limit_s), "must be at least 1 second"));
        }
        if !(t.default_time_limit_s.is_finite() && t.default_time_limit_s >= 1.0 && t.default_time_limit_s <= t.max_time_limit_s) {
            return Err(invalid(
                "training.default_time_limit_s",
                render_f64(t.default_time_limit_s),
                format!("must be between 1 and training.max_time_limit_s ({}) seconds", render_f64(t.max_time_limit_s)),
            ));
        }
        if !QUALITIES.contains(&t.quality.as_str()) {
            return Err(invalid(
                "training.quality",
                render_str("training.quality", &t.quality),
                format!("must be one of {}", schema::quoted_list(QUALITIES)),
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if let Some(token) = &a.token {
            if token.is_empty() {
                return Err(invalid(
                    "auth.token",
                    "\"\"".into(),
                    "must not be empty (remove the key to have a token generated into state_dir/token)",
                ));
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    "auth.token",
                    "***".into(),
                    "must not contain spaces or control characters (it is sent in an HTTP header)",
                ));
            }
            if a.token_file.is_some() {
                return Err(invalid(
                    "auth.token_file",
                    a.token_file.as_deref().map(|p| render_path("auth.token_file", p)).unwrap_or_default(),
                    "set either auth.token or auth.token_file, not both",
                ));
            }
            // The same floor a token file must meet: a short token falls to guessing.
            if token.chars().count() < 16 {
                return Err(invalid(
                    "auth.token",
                    "***".into(),
                    "must be at least 16 characters (e.g. the output of `openssl rand -hex 32`), or remove the key to have one generated into state_dir/token",
                ));
            }
        }
        if let Some(path) = &a.token_file
            && path.as_os_str().is_empty()
        {
            return Err(invalid("auth.token_file", "\"\"".into(), "must not be empty (remove the key instead)"));
        }
        Ok(())
    }

    /// The parsed `listen` address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| invalid("listen", render_str("listen", &self.listen), "must be an IP address and port such as \"0.0.0.0:8080\""))
    }

    /// The effective configuration for logs and the status API: secrets become `"***"`, unset
    /// optional keys are left out.
    pub fn summary(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        for spec in schema::KEYS.iter().filter(|s| s.secret) {
            let mut slot = Some(&mut value);
            for part in spec.key.split('.') {
                slot = slot.and_then(|v| v.get_mut(part));
            }
            if let Some(v) = slot
                && !v.is_null()
            {
                *v = serde_json::Value::String("***".into());
            }
        }
        value
    }
}

fn validate_log_level(level: &str) -> Result<(), ConfigError> {
    let value = render_str("log_level", level);
    if level.trim().is_empty() {
        return Err(invalid("log_level", value, "must not be empty (use \"info\")"));
    }
    // A single word must be a level: "infoo" is a typo, not a target name. Directive lists
    // ("millwright=debug,warn") are left to the log filter, which reports its own errors.
    if !level.contains(['=', ',']) && !LOG_LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
        return Err(invalid(
            "log_level",
            value,
            format!("must be one of {} or a list of tracing directives", schema::quoted_list(LOG_LEVELS)),
        ));
    }
    Ok(())
}

impl MqttConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let tls = validate_mqtt_url(&self.url)?;
        if self.password.is_some() && self.password_file.is_some() {
            return Err(invalid(
                "mqtt.password_file",
                self.password_file.as_deref().map(|p| render_path("mqtt.password_file", p)).unwrap_or_default(),
                "set either mqtt.password or mqtt.password_file, not both",
            ));
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            return Err(invalid(
                "mqtt.username",
                "(unset)".into(),
                "must be set when a password is (MQTT sends a password only with a user name)",
            ));
        }
        for (key, path) in [
            ("mqtt.password_file", &self.password_file),
            ("mqtt.ca_file", &self.ca_file),
            ("mqtt.client_cert", &self.client_cert),
            ("mqtt.client_key", &self.client_key),
        ] {
            if let Some(p) = path
                && p.as_os_str().is_empty()
            {
                return Err(invalid(key, "\"\"".into(), "must not be empty (remove the key instead)"));
            }
        }
        for (key, path) in [("mqtt.ca_file", &self.ca_file), ("mqtt.client_cert", &self.client_cert), ("mqtt.client_key", &self.client_key)]
        {
            if let Some(p) = path
                && !tls
            {
                return Err(invalid(
                    key,
                    render_path(key, p),
                    format!("only applies to TLS: use an mqtts:// url (mqtt.url is \"{}\")", self.url),
                ));
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), None) => {
                return Err(invalid("mqtt.client_cert", render_path("mqtt.client_cert", cert), "needs mqtt.client_key as well"));
            }
            (None, Some(key)) => {
                return Err(invalid("mqtt.client_key", render_path("mqtt.client_key", key), "needs mqtt.client_cert as well"));
            }
            _ => {}
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
        {
            return Err(invalid(
                "mqtt.client_id",
                render_str("mqtt.client_id", id),
                "must be 1 to 128 printable characters (remove the key to derive it from node_id)",
            ));
        }
        if self.keepalive_s > u64::from(u16::MAX) {
            return Err(invalid(
                "mqtt.keepalive_s",
                self.keepalive_s.to_string(),
                "must be between 0 and 65535 seconds (the MQTT keep-alive field is 16 bits)",
            ));
        }
        if let Some(topic) = &self.base_topic {
            validate_topic("mqtt.base_topic", topic)?;
        }
        validate_topic("mqtt.discovery_prefix", &self.discovery_prefix)?;
        if let Some(node) = &self.node_id
            && (node.is_empty() || node.len() > 64 || !node.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(invalid(
                "mqtt.node_id",
                render_str("mqtt.node_id", node),
                "must be 1 to 64 letters, digits, '_' or '-' (it is part of topics and Home Assistant ids)",
            ));
        }
        Ok(())
    }
}

/// Returns whether the url asks for TLS.
fn validate_mqtt_url(url: &str) -> Result<bool, ConfigError> {
    let bad = |reason: &str| invalid("mqtt.url", render_str("mqtt.url", url), reason);
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad("must look like mqtt://host:1883 or mqtts://host:8883"));
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" => false,
        "mqtts" => true,
        _ => return Err(bad("the scheme must be mqtt:// or mqtts:// (for TLS)")),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(bad("must not contain a user name or password; use mqtt.username and mqtt.password_file"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(bad("must be only mqtt(s)://host:port, without a path"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        // IPv6 literal: [::1]:1883
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(bad("an IPv6 address must be closed with ']'"));
        };
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("must name a host, e.g. mqtt://127.0.0.1:1883"));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(bad("the port must be a number between 1 and 65535"));
    }
    Ok(tls)
}

fn validate_topic(key: &str, topic: &str) -> Result<(), ConfigError> {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) || topic.starts_with('/') || topic.ends_with('/') {
        return Err(invalid(
            key,
            render_str(key, topic),
            "must be a non-empty topic without wildcards (+, #) or a leading or trailing '/'",
        ));
    }
    Ok(())
}

impl HttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for name in &self.allowed_hosts {
            let plain = name == "*"
                || (!name.is_empty()
                    && name.len() <= 253
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'));
            if !plain {
                return Err(invalid(
                    "http.allowed_hosts",
                    render_str("http.allowed_hosts", name),
                    "each entry must be a host name such as \"mill.example.com\" (no scheme, port or path), or \"*\" for any name",
                ));
            }
        }
        Ok(())
    }
}

impl GuardConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.sysfs_root.as_os_str().is_empty() {
            return Err(invalid("guard.sysfs_root", "\"\"".into(), "must not be empty (use \"/\")"));
        }
        if !(self.temp_pause_c.is_finite() && self.temp_pause_c > 0.0 && self.temp_pause_c <= 125.0) {
            return Err(invalid("guard.temp_pause_c", render_f64(self.temp_pause_c), "must be a temperature between 0 and 125 °C"));
        }
        if !(self.temp_resume_c.is_finite() && self.temp_resume_c >= 0.0) {
            return Err(invalid("guard.temp_resume_c", render_f64(self.temp_resume_c), "must be a temperature of 0 °C or more"));
        }
        if self.temp_resume_c >= self.temp_pause_c {
            return Err(invalid(
                "guard.temp_resume_c",
                render_f64(self.temp_resume_c),
                format!("must be below guard.temp_pause_c ({}), or a paused job would never resume", render_f64(self.temp_pause_c)),
            ));
        }
        if self.hot_threads < 1 {
            return Err(invalid(
                "guard.hot_threads",
                self.hot_threads.to_string(),
                "must be at least 1 (training stops altogether only at guard.temp_pause_c)",
            ));
        }
        if !(self.poll_interval_s.is_finite() && (0.1..=600.0).contains(&self.poll_interval_s)) {
            return Err(invalid("guard.poll_interval_s", render_f64(self.poll_interval_s), "must be between 0.1 and 600 seconds"));
        }
        Ok(())
    }
}

impl HttpConfig {
    fn validate_limits(&self) -> Result<(), ConfigError> {
        for (key, value, max) in [
            ("http.header_timeout_s", self.header_timeout_s, 300.0),
            ("http.body_timeout_s", self.body_timeout_s, 3600.0),
            ("http.idle_timeout_s", self.idle_timeout_s, 3600.0),
        ] {
            if !(value.is_finite() && (0.1..=max).contains(&value)) {
                return Err(invalid(key, render_f64(value), format!("must be between 0.1 and {max} seconds")));
            }
        }
        if !(8..=65_536).contains(&self.max_connections) {
            return Err(invalid(
                "http.max_connections",
                self.max_connections.to_string(),
                "must be between 8 and 65536 (each open connection holds a file descriptor and up to 64 KB)",
            ));
        }
        if !(8..=4096).contains(&self.body_memory_mb) {
            return Err(invalid(
                "http.body_memory_mb",
                self.body_memory_mb.to_string(),
                "must be between 8 and 4096 MB (at least the largest body a route takes: 8 MB for predict)",
            ));
        }
        Ok(())
    }
}
