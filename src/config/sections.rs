//! The configuration's sections as Rust types, each with its defaults. What each key means and which values
//! it takes is in `schema`; the checks between values are in `validate`.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ml::Quality;

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
    pub fleet: FleetConfig,
    pub data: DataConfig,
    pub readings: ReadingsConfig,
    pub retrain: RetrainConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    pub capacity: usize,
    pub requeue_interrupted: bool,
    pub retention: usize,
    pub shutdown: ShutdownPolicy,
    pub shutdown_grace_s: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 16,
            requeue_interrupted: true,
            retention: 200,
            shutdown: ShutdownPolicy::CancelAndRequeue,
            shutdown_grace_s: 8,
        }
    }
}

/// What a stop does with the running job. Either way the job is cancelled within `queue.shutdown_grace_s`: a
/// model has no point to save before its end, and the grace is seconds where a model takes minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownPolicy {
    /// Cancel it, and queue a copy that starts from scratch when the daemon starts again.
    #[default]
    CancelAndRequeue,
    /// Cancel it; it stays FAILURE ("interrupted by shutdown").
    Cancel,
    /// The old name of [`ShutdownPolicy::Cancel`], which promised a save point that never existed. It does
    /// what `Cancel` does, and the daemon warns at start (see [`Config::deprecations`]).
    FinishSafePoint,
}

impl ShutdownPolicy {
    /// Whether the interrupted job is queued again.
    pub fn requeues(self) -> bool {
        self == ShutdownPolicy::CancelAndRequeue
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
    /// The trainers' own type: "fast", "standard" or "best" in the file.
    pub quality: Quality,
    pub max_time_limit_s: f64,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig { threads: 0, default_time_limit_s: 900.0, quality: Quality::Standard, max_time_limit_s: 3600.0 * 4.0 }
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
    pub protocol: MqttProtocol,
}

/// Which MQTT version the daemon speaks to the broker. Clients of either version talk to each other
/// through the broker; MQTT 5 adds Response Topic / Correlation Data to requests and tells live
/// retained requests apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MqttProtocol {
    /// MQTT 5, falling back to 3.1.1 for a broker that does not speak 5.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "5")]
    V5,
    #[serde(rename = "3.1.1")]
    V311,
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
            protocol: MqttProtocol::Auto,
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
            fleet: FleetConfig::default(),
            data: DataConfig::default(),
            readings: ReadingsConfig::default(),
            retrain: RetrainConfig::default(),
        }
    }
}

/// systemd's `StateDirectory=a b` yields `STATE_DIRECTORY=/var/lib/a:/var/lib/b`; the first is ours.
pub(super) fn default_state_dir(state_directory: Option<&str>) -> PathBuf {
    state_directory
        .and_then(|v| v.split(':').next())
        .filter(|first| !first.is_empty())
        .map_or_else(|| PathBuf::from("state"), PathBuf::from)
}

/// The fleet view's verdicts and the alerts raised from them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// A machine whose newest data is older than this many hours gets "stale data" instead of a verdict.
    pub stale_data_h: f64,
    /// Seconds between evaluations of every machine's verdict for alerts (and MQTT).
    pub evaluate_interval_s: f64,
    /// Days a cleared alert is kept.
    pub alert_retention_days: f64,
    /// Days each machine's score history is kept.
    pub score_history_days: f64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig { stale_data_h: 24.0, evaluate_interval_s: 60.0, alert_retention_days: 30.0, score_history_days: 30.0 }
    }
}

/// Training again without anyone asking: when, for machines whose `machine.toml` does not say.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetrainConfig {
    /// "off", "daily@02:00", "weekly@sun 03:00", "after 24 new hours of data" or "on drift".
    pub default: String,
    /// Hours after a scheduled retrain before new data or drift may queue another for the same machine.
    pub min_gap_h: f64,
    /// "if_not_worse" (a scheduled retrain goes live only if it is not worse than the live model on the same
    /// held-out rows) or "always".
    pub promote: String,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        RetrainConfig { default: "off".into(), min_gap_h: 12.0, promote: "if_not_worse".into() }
    }
}

impl RetrainConfig {
    /// The settings the schedule runs on (`default` was checked by validation).
    pub fn settings(&self) -> crate::retrain::schedule::Settings {
        crate::retrain::schedule::Settings {
            default: crate::retrain::When::parse(&self.default).unwrap_or(crate::retrain::When::Off),
            min_gap_h: self.min_gap_h,
            promote: crate::jobs::Promote::parse(&self.promote).unwrap_or_default(),
        }
    }
}

/// Readings taken in (HTTP and MQTT): how they are checked and how often they move into the machines' files.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReadingsConfig {
    pub enabled: bool,
    /// Seconds a reading may be stamped ahead of this clock.
    pub future_tolerance_s: f64,
    /// Seconds a reading may be older than the machine's newest one.
    pub order_tolerance_s: f64,
    /// Seconds between moves of the readings log into the machines' `live/` files.
    pub compact_interval_s: f64,
    /// The MQTT topic readings arrive on (with `mqtt.enabled`): `{base}` is the base topic, `{machine}` the
    /// machine's segment and an optional `{sensor}` segment makes it one value per message. Empty: none.
    pub mqtt_topic: String,
    /// Days the readings taken in are kept in the machines' `live/` files (0: no age limit).
    pub retain_days: f64,
    /// MB of readings files kept per machine (0: no limit).
    pub retain_mb_per_machine: u64,
    /// MB of readings files kept for all machines together (0: no limit).
    pub retain_mb_total: u64,
    /// Readings for a machine with no folder make one, described by the sensors of its first message.
    pub create_machines: bool,
}

impl ReadingsConfig {
    /// The limits as the retention pass takes them.
    pub fn retention(&self) -> crate::data::retention::Retention {
        let mb = |v: u64| (v > 0).then(|| v.saturating_mul(1 << 20));
        crate::data::retention::Retention {
            max_age_s: (self.retain_days > 0.0).then_some((self.retain_days * 86_400.0) as u64),
            machine_bytes: mb(self.retain_mb_per_machine),
            total_bytes: mb(self.retain_mb_total),
        }
    }
}

impl Default for ReadingsConfig {
    fn default() -> Self {
        ReadingsConfig {
            enabled: true,
            future_tolerance_s: 300.0,
            order_tolerance_s: 60.0,
            compact_interval_s: 300.0,
            mqtt_topic: "{base}/machines/{machine}/readings".into(),
            retain_days: 365.0,
            retain_mb_per_machine: 1024,
            retain_mb_total: 8192,
            create_machines: false,
        }
    }
}

/// Hard caps on a machine's data files, checked from metadata before a file is read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub max_file_mb: u64,
    pub max_columns: usize,
    pub max_line_kb: u64,
    pub max_rows: u64,
    /// "auto", "off" or a step such as "1 min": readings finer than the grid are aggregated onto it.
    pub grid: String,
    pub grid_rows: u64,
    pub grid_stats: Vec<String>,
}

impl Default for DataConfig {
    fn default() -> Self {
        let grid = crate::data::grid::GridSetting::default();
        DataConfig {
            max_file_mb: 1024,
            max_columns: 1000,
            max_line_kb: 1024,
            max_rows: 50_000_000,
            grid: "auto".into(),
            grid_rows: grid.max_rows as u64,
            grid_stats: grid.stats.iter().map(|s| s.as_str().to_string()).collect(),
        }
    }
}

impl DataConfig {
    pub fn caps(&self) -> crate::data::Caps {
        crate::data::Caps {
            max_file_bytes: self.max_file_mb.saturating_mul(1 << 20),
            max_columns: self.max_columns,
            max_line_bytes: usize::try_from(self.max_line_kb.saturating_mul(1024)).unwrap_or(usize::MAX),
            max_rows: usize::try_from(self.max_rows).unwrap_or(usize::MAX),
        }
    }

    /// The grid policy; the config was validated, so an unreadable value cannot reach here (the default
    /// stands in for it rather than a panic).
    pub fn grid_setting(&self) -> crate::data::grid::GridSetting {
        use crate::data::grid::{GridChoice, GridSetting, GridStat};
        let fallback = GridSetting::default();
        GridSetting {
            choice: GridChoice::parse(&self.grid).unwrap_or(fallback.choice),
            max_rows: usize::try_from(self.grid_rows).unwrap_or(usize::MAX),
            stats: self.grid_stats.iter().filter_map(|s| GridStat::parse(s)).collect(),
        }
    }
}
