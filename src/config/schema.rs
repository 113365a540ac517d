//! Every config key once: its type, whether it is secret, and the line of documentation that
//! `print_default()` writes above it. Unknown-key detection, environment parsing, type errors
//! and the commented template all read this table, so they cannot disagree with each other.
//! A test checks that it lists exactly the fields of `Config`.

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind {
    Str,
    Path,
    Bool,
    /// A non-negative integer no larger than `max` (the Rust field's range).
    UInt {
        max: u64,
    },
    Float,
    Choice(&'static [&'static str]),
    /// A list of strings; from the environment, comma-separated.
    StrList,
}

impl Kind {
    pub(super) fn expected(self) -> String {
        match self {
            Kind::Str => "a string".into(),
            Kind::Path => "a path (a string)".into(),
            Kind::Bool => "true or false".into(),
            Kind::UInt { .. } => "an integer".into(),
            Kind::Float => "a number".into(),
            Kind::Choice(options) => format!("one of {}", quoted_list(options)),
            Kind::StrList => "a list of strings, e.g. [\"a\", \"b\"]".into(),
        }
    }
}

pub(super) fn quoted_list(options: &[&str]) -> String {
    options.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>().join(", ")
}

pub(super) struct KeySpec {
    /// Dotted path, e.g. `queue.capacity`; top-level keys have no dot.
    pub key: &'static str,
    pub kind: Kind,
    /// Values are shown as `***` in errors and in `summary()`.
    pub secret: bool,
    /// For keys without a default (options): the commented example line in the template.
    pub example: Option<&'static str>,
    pub doc: &'static str,
}

const fn key(key: &'static str, kind: Kind, doc: &'static str) -> KeySpec {
    KeySpec { key, kind, secret: false, example: None, doc }
}

const fn optional(key: &'static str, kind: Kind, example: &'static str, doc: &'static str) -> KeySpec {
    KeySpec { key, kind, secret: false, example: Some(example), doc }
}

const fn secret(key: &'static str, example: &'static str, doc: &'static str) -> KeySpec {
    KeySpec { key, kind: Kind::Str, secret: true, example: Some(example), doc }
}

const USIZE: Kind = Kind::UInt { max: usize::MAX as u64 };
const U64: Kind = Kind::UInt { max: u64::MAX };

pub(super) const SHUTDOWN_CHOICES: &[&str] = &["cancel_and_requeue", "cancel"];
pub(super) const MQTT_PROTOCOL_CHOICES: &[&str] = &["auto", "5", "3.1.1"];
pub(super) const QUALITY_CHOICES: &[&str] = &["fast", "standard", "best"];

/// A choice still read under the name it had before: `old` does what `new` does, and
/// `Config::deprecations` says so (the daemon logs it at start). Not listed among the choices in messages.
pub(super) struct OldName {
    pub key: &'static str,
    pub old: &'static str,
    pub new: &'static str,
    /// Why the name changed, for the warning.
    pub why: &'static str,
}

pub(super) const OLD_NAMES: &[OldName] = &[OldName {
    key: "queue.shutdown",
    old: "finish_safe_point",
    new: "cancel",
    why: "a stop never waited for a save point: it cancels the running job within queue.shutdown_grace_s either way",
}];

/// Whether `value` is an old name that `key` still reads.
pub(super) fn is_old_name(key: &str, value: &str) -> bool {
    OLD_NAMES.iter().any(|o| o.key == key && o.old == value)
}

/// Section name and the comment written above its header.
pub(super) const SECTIONS: &[(&str, &str)] = &[
    ("queue", "Training jobs wait here; one runs at a time."),
    ("models", "Trained model versions kept on disk."),
    ("training", "Limits applied to every training job unless the request asks for less."),
    ("auth", "Bearer token required by the HTTP API."),
    ("mqtt", "Status and results published to an MQTT broker (and requests taken from it)."),
    ("guard", "Resource guard: keeps training from overheating the Pi or starving it of memory or disk."),
    ("http", "The HTTP API: its connections and the host names it answers to."),
    ("fleet", "The fleet view: one verdict per machine, and the alerts raised from it."),
    ("data", "Hard caps on machine data, checked from file metadata before anything is loaded."),
    (
        "readings",
        "Readings taken in over HTTP and MQTT: checked row by row, durable before acknowledged, then moved into each machine's files.",
    ),
    ("retrain", "Training again without anyone asking, for machines whose machine.toml has no [retrain] when."),
];

pub(super) const KEYS: &[KeySpec] = &[
    key("listen", Kind::Str, "Address and port of the HTTP API; 127.0.0.1:8080 keeps it reachable from this machine only."),
    key("data_dir", Kind::Path, "Where machine data sets live; relative paths are resolved from the working directory."),
    optional(
        "state_dir",
        Kind::Path,
        "state_dir = \"state\"",
        "Queue, models and the generated token; defaults to systemd's $STATE_DIRECTORY, else \"state\".",
    ),
    key("log_level", Kind::Str, "trace, debug, info, warn or error, or tracing directives such as \"millwright=debug,warn\"."),
    key(
        "queue.capacity",
        Kind::UInt { max: 10_000 },
        "Jobs that may wait at once (1..=10000); further submissions are refused until one finishes.",
    ),
    key("queue.requeue_interrupted", Kind::Bool, "Put jobs that were running when the daemon stopped back in the queue at start-up."),
    key("queue.retention", USIZE, "Finished jobs kept so their status and results stay visible; older ones are forgotten."),
    key(
        "queue.shutdown",
        Kind::Choice(SHUTDOWN_CHOICES),
        "On stop the running job is cancelled: \"cancel_and_requeue\" queues it again for the next start, \"cancel\" leaves it failed.",
    ),
    key("queue.shutdown_grace_s", U64, "Seconds a stopping job gets; keep below systemd's TimeoutStopSec (90 s by default)."),
    key("models.keep_versions", USIZE, "Versions kept per model (at least 1); raise it to be able to roll back further."),
    key("models.warn_size_mb", Kind::Float, "A model bundle larger than this many MB is logged as a warning (the SD card fills up)."),
    key("training.threads", USIZE, "Worker threads per job; 0 uses all cores, fewer leaves room for other services."),
    key("training.default_time_limit_s", Kind::Float, "Time limit of a job whose request names none; at most max_time_limit_s."),
    key(
        "training.quality",
        Kind::Choice(QUALITY_CHOICES),
        "Default search effort: \"fast\", \"standard\" or \"best\" (slower, sometimes better).",
    ),
    key("training.max_time_limit_s", Kind::Float, "Longest time limit a request may ask for."),
    key("auth.required", Kind::Bool, "Require the bearer token; turn off only when the API is reachable from trusted hosts alone."),
    secret(
        "auth.token",
        "token = \"change-me-to-a-long-random-string\"",
        "The bearer token; when neither this nor token_file is set, one is generated into state_dir/token.",
    ),
    optional(
        "auth.token_file",
        Kind::Path,
        "token_file = \"/etc/millwright/token\"",
        "Read the token from this file instead (keeps it out of the config).",
    ),
    key("mqtt.enabled", Kind::Bool, "Connect to the broker; turn off when there is none."),
    key("mqtt.url", Kind::Str, "Broker as mqtt://host:port or mqtts://host:port (TLS)."),
    optional("mqtt.username", Kind::Str, "username = \"millwright\"", "Broker user name, when the broker requires a login."),
    secret("mqtt.password", "password = \"secret\"", "Broker password (prefer password_file, which keeps it out of this file)."),
    optional(
        "mqtt.password_file",
        Kind::Path,
        "password_file = \"/etc/millwright/mqtt-password\"",
        "Read the broker password from this file.",
    ),
    optional(
        "mqtt.ca_file",
        Kind::Path,
        "ca_file = \"/etc/ssl/certs/my-ca.pem\"",
        "CA certificate (PEM) for mqtts:// when the broker's certificate is not signed by a system CA.",
    ),
    optional(
        "mqtt.client_cert",
        Kind::Path,
        "client_cert = \"/etc/millwright/client.pem\"",
        "Client certificate (PEM) for brokers that require mutual TLS; needs client_key.",
    ),
    optional("mqtt.client_key", Kind::Path, "client_key = \"/etc/millwright/client.key\"", "Private key (PEM) of client_cert."),
    optional(
        "mqtt.client_id",
        Kind::Str,
        "client_id = \"millwright-pi1\"",
        "MQTT client id; defaults to one derived from node_id. Must be unique per broker.",
    ),
    key("mqtt.keepalive_s", U64, "Seconds between keep-alive pings (0..=65535); lower it if a NAT or firewall drops idle connections."),
    optional(
        "mqtt.base_topic",
        Kind::Str,
        "base_topic = \"factory/line1/millwright\"",
        "Topic prefix of everything published; defaults to millwright/<node_id>.",
    ),
    optional(
        "mqtt.node_id",
        Kind::Str,
        "node_id = \"pi1\"",
        "Name of this device in topics and in Home Assistant; defaults to the host name.",
    ),
    key("mqtt.homeassistant", Kind::Bool, "Publish Home Assistant discovery messages so the device appears there by itself."),
    key("mqtt.accept_requests", Kind::Bool, "Accept training and prediction requests over MQTT, not only over HTTP."),
    key("mqtt.discovery_prefix", Kind::Str, "Home Assistant's discovery prefix; change it only if Home Assistant's was changed."),
    key(
        "mqtt.protocol",
        Kind::Choice(MQTT_PROTOCOL_CHOICES),
        "MQTT version: \"auto\" (5, or 3.1.1 when the broker does not speak 5), \"5\" or \"3.1.1\".",
    ),
    key("guard.sysfs_root", Kind::Path, "Root under which /sys and /proc are read; change only for tests or containers."),
    key("guard.temp_pause_c", Kind::Float, "SoC temperature (°C) at which training pauses; the Pi throttles itself at 80-85."),
    key("guard.temp_resume_c", Kind::Float, "Temperature (°C) at which a paused job resumes; must be below temp_pause_c."),
    key("guard.pause_max_s", U64, "A job paused for heat longer than this many seconds is stopped."),
    key("guard.memory_reserve_mb", U64, "Memory (MB) kept free for the system and other services while training."),
    key(
        "guard.memory_abort_mb",
        U64,
        "Memory (MB) a job may use at most; past it the job is aborted rather than letting the kernel kill processes.",
    ),
    key("guard.wait_max_s", U64, "Longest a job waits for memory or cooling before it starts; after that it fails."),
    key("guard.disk_reserve_mb", U64, "Free disk (MB) kept on the data/state file system; jobs that would go below it fail."),
    key(
        "guard.hot_threads",
        USIZE,
        "Threads used while the SoC is warm (between temp_resume_c and temp_pause_c), to cool down without stopping.",
    ),
    key("guard.poll_interval_s", Kind::Float, "Seconds between readings of temperature and memory (0.1..=600)."),
    key(
        "http.allowed_hosts",
        Kind::StrList,
        "Host names the API and page answer to besides localhost, IP addresses and this machine's host name; add the DNS name you open it by (\"*\" allows any name).",
    ),
    key(
        "http.header_timeout_s",
        Kind::Float,
        "Seconds a client has to send a request's line and headers (0.1..=300); slower connections are closed.",
    ),
    key(
        "http.body_timeout_s",
        Kind::Float,
        "Seconds a client has to send a request's body after its headers (0.1..=3600); raise it for slow links.",
    ),
    key(
        "http.idle_timeout_s",
        Kind::Float,
        "Seconds a kept-alive connection may sit without a request, or a response go unread (0.1..=3600).",
    ),
    key(
        "http.max_connections",
        USIZE,
        "Connections open at once (8..=65536), lowered to fit the open-file limit; past it the oldest one that has not sent a request is closed.",
    ),
    key("http.body_memory_mb", U64, "Memory (MB) all request bodies being received may hold together (8..=4096); further senders wait."),
    key(
        "fleet.stale_data_h",
        Kind::Float,
        "Hours without new data (newest file in the machine's folder) after which a machine shows \"stale data\" instead of a verdict (0.1..=8760).",
    ),
    key("fleet.evaluate_interval_s", Kind::Float, "Seconds between evaluations of every machine's verdict for alerts and MQTT (5..=3600)."),
    key("fleet.alert_retention_days", Kind::Float, "Days a cleared alert is kept before it is deleted (1..=3650)."),
    key(
        "fleet.score_history_days",
        Kind::Float,
        "Days each machine's score history (state_dir/scores/<machine>/<day>.jsonl, GET /api/machines/{id}/scores) is kept (1..=3650).",
    ),
    key("readings.enabled", Kind::Bool, "Take readings in (POST /api/machines/{id}/readings); when off, that route answers 503."),
    key("readings.future_tolerance_s", Kind::Float, "Seconds a reading may be stamped ahead of this Pi's clock (0..=86400)."),
    key(
        "readings.order_tolerance_s",
        Kind::Float,
        "Seconds a reading may be older than the machine's newest one (0..=3600); older ones are refused.",
    ),
    key(
        "readings.compact_interval_s",
        Kind::Float,
        "Seconds between moves of the readings log into each machine's live/ files, where training and predictions read them (10..=86400).",
    ),
    key(
        "readings.mqtt_topic",
        Kind::Str,
        "MQTT topic readings arrive on when mqtt.enabled: {base} is mqtt.base_topic, {machine} the machine's segment; a {sensor} segment means one value per message (a number, or {\"ts\": ..., \"value\": ...}). Empty: no readings over MQTT.",
    ),
    key(
        "readings.retain_days",
        Kind::Float,
        "Days the readings taken in are kept in the machines' live/ files; older files are removed (0 for no age limit; 0..=36500). Files you put in a machine's folder are never removed.",
    ),
    key(
        "readings.retain_mb_per_machine",
        U64,
        "MB of readings files kept per machine; the oldest go first and the newest always stays (0 for no limit).",
    ),
    key(
        "readings.create_machines",
        Kind::Bool,
        "Whether readings for a machine with no folder make one (true or false): its machine.toml then lists the sensors of its first message, the only ones it takes in (with one sensor per message, make the folder yourself instead). Off: such readings are refused as an unknown machine.",
    ),
    key("readings.retain_mb_total", U64, "MB of readings files kept for all machines together; the oldest go first (0 for no limit)."),
    key(
        "retrain.default",
        Kind::Str,
        "When every machine's four models are trained again: \"off\", \"daily@02:00\", \"weekly@sun 03:00\" (the Pi's local time), \"after 24 new hours of data\" or \"on drift\"; a machine.toml [retrain] when overrides it.",
    ),
    key(
        "retrain.min_gap_h",
        Kind::Float,
        "Hours after a scheduled retrain before new data or drift may queue another one for the same machine (0..=8760).",
    ),
    key(
        "retrain.promote",
        Kind::Str,
        "\"if_not_worse\": a scheduled retrain's model goes live only when it scores no worse than the live one on the same held-out rows (classification and regression; the others are not compared yet and go live); \"always\": it goes live like a person's.",
    ),
    key("data.max_file_mb", U64, "A machine's data file larger than this many MB (1..=1048576) is refused before it is read."),
    key("data.max_columns", USIZE, "A data file with more columns than this (2..=100000) is refused."),
    key(
        "data.max_line_kb",
        U64,
        "A line of a CSV file longer than this many KB (1..=1048576) is refused, so a file without line breaks is never read whole.",
    ),
    key("data.max_rows", U64, "Rows a machine may have at most (100..=1000000000), over all its files."),
    key(
        "data.grid",
        Kind::Str,
        "Training grid: \"auto\" aggregates a machine with more than grid_rows rows onto the finest step (1 s .. 1 h) that fits, \"off\" never aggregates, a step such as \"1 min\" aggregates any finer data onto it.",
    ),
    key("data.grid_rows", U64, "With grid set to \"auto\", machines with more rows than this (1000..=100000000) are aggregated."),
    key(
        "data.grid_stats",
        Kind::StrList,
        "What each grid step keeps of a sensor's readings, one column each: \"mean\" (required, keeps the sensor's name), \"min\", \"max\", \"std\", \"last\", \"count\".",
    ),
];

pub(super) fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.key == key)
}

pub(super) fn is_section(name: &str) -> bool {
    SECTIONS.iter().any(|(s, _)| *s == name)
}

pub(super) fn is_secret(key: &str) -> bool {
    spec(key).is_some_and(|s| s.secret)
}

/// The valid key a mistyped one most likely meant: the same leaf in another section (`capacity`
/// at the top level → `queue.capacity`), else the nearest by edit distance if it is close enough
/// to be a typo rather than a different word.
pub(super) fn suggest(unknown: &str) -> Option<&'static str> {
    let unknown = unknown.to_ascii_lowercase();
    let leaf = unknown.rsplit('.').next().unwrap_or(&unknown);
    if let Some(s) = KEYS.iter().find(|s| s.key.rsplit('.').next() == Some(leaf) && s.key != unknown) {
        return Some(s.key);
    }
    let (best, distance) = KEYS.iter().map(|s| (s.key, levenshtein(&unknown, s.key))).min_by_key(|(_, d)| *d)?;
    let tolerance = (unknown.chars().count() / 3).max(2);
    (distance <= tolerance).then_some(best)
}

/// For a mistyped section header (`[gaurd]`).
pub(super) fn suggest_section(unknown: &str) -> Option<&'static str> {
    let unknown = unknown.to_ascii_lowercase();
    let (best, distance) = SECTIONS.iter().map(|(s, _)| (*s, levenshtein(&unknown, s))).min_by_key(|(_, d)| *d)?;
    (distance <= 2).then_some(best)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}
