use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::ml::Quality;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Defaults as `load` produces them with no `STATE_DIRECTORY` in its environment.
fn defaults() -> Config {
    Config { state_dir: PathBuf::from("state"), ..Config::default() }
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Loads `text` as a file with the given environment; never reads /etc.
fn load_text(text: &str, vars: &[(&str, &str)]) -> (Result<Config, ConfigError>, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, text);
    (load(Some(&path), &env(vars)), path)
}

fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load_with_default_path(None, Path::new("/nonexistent/millwright/config.toml"), &env(vars))
}

fn err_text(text: &str) -> (String, PathBuf) {
    let (result, path) = load_text(text, &[]);
    match result {
        Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
        Err(e) => (e.to_string(), path),
    }
}

fn full_config() -> Config {
    Config {
        listen: "127.0.0.1:9090".into(),
        data_dir: "/srv/millwright/data".into(),
        state_dir: "/var/lib/millwright".into(),
        log_level: "millwright=debug,warn".into(),
        queue: QueueConfig {
            capacity: 50,
            requeue_interrupted: false,
            retention: 10,
            shutdown: ShutdownPolicy::Cancel,
            shutdown_grace_s: 20,
        },
        models: ModelsConfig { keep_versions: 5, warn_size_mb: 123.5 },
        training: TrainingConfig { threads: 2, default_time_limit_s: 60.0, quality: Quality::Best, max_time_limit_s: 600.5 },
        auth: AuthConfig { required: false, token: None, token_file: Some("/etc/millwright/token".into()) },
        mqtt: MqttConfig {
            enabled: false,
            url: "mqtts://broker.local:8883".into(),
            username: Some("pi".into()),
            password: Some("hunter2".into()),
            password_file: None,
            ca_file: Some("/etc/ssl/ca.pem".into()),
            client_cert: Some("/etc/millwright/c.pem".into()),
            client_key: Some("/etc/millwright/c.key".into()),
            client_id: Some("mw-1".into()),
            keepalive_s: 10,
            base_topic: Some("plant/line1".into()),
            node_id: Some("pi-7".into()),
            homeassistant: true,
            accept_requests: false,
            discovery_prefix: "ha".into(),
            protocol: MqttProtocol::V311,
        },
        guard: GuardConfig {
            sysfs_root: "/tmp/fake".into(),
            temp_pause_c: 70.5,
            temp_resume_c: 60.0,
            pause_max_s: 100,
            memory_reserve_mb: 128,
            memory_abort_mb: 1024,
            wait_max_s: 30,
            disk_reserve_mb: 50,
            hot_threads: 2,
            poll_interval_s: 0.5,
        },
        http: HttpConfig {
            allowed_hosts: vec!["mill.example.com".into(), "pi-7.plant.lan".into()],
            header_timeout_s: 5.0,
            body_timeout_s: 30.5,
            idle_timeout_s: 12.0,
            max_connections: 100,
            body_memory_mb: 64,
        },
        fleet: FleetConfig { stale_data_h: 6.0, evaluate_interval_s: 30.0, alert_retention_days: 7.0, score_history_days: 90.0 },
        data: DataConfig {
            max_file_mb: 512,
            max_columns: 200,
            max_line_kb: 256,
            max_rows: 1_000_000,
            grid: "10 min".into(),
            grid_rows: 50_000,
            grid_stats: vec!["mean".into(), "max".into()],
        },
        readings: ReadingsConfig {
            enabled: false,
            future_tolerance_s: 30.0,
            order_tolerance_s: 5.5,
            compact_interval_s: 60.0,
            mqtt_topic: "plant/{machine}/{sensor}".into(),
            retain_days: 30.5,
            retain_mb_per_machine: 200,
            retain_mb_total: 0,
            create_machines: true,
        },
        retrain: RetrainConfig { default: "weekly@sun 03:00".into(), min_gap_h: 2.5, promote: "always".into() },
    }
}

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
    assert_eq!(load_env(&[]).unwrap(), defaults());
}

#[test]
fn state_dir_defaults_to_first_systemd_state_directory() {
    let c = load_env(&[("STATE_DIRECTORY", "/var/lib/millwright:/var/lib/other")]).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/millwright"));
    let c = load_env(&[("STATE_DIRECTORY", "/var/lib/a"), ("MILLWRIGHT_STATE_DIR", "/x")]).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/x"));
}

#[test]
fn full_file_round_trips() {
    let full = full_config();
    full.validate().unwrap();
    let text = toml::to_string(&full).unwrap();
    let (loaded, _) = load_text(&text, &[]);
    assert_eq!(loaded.unwrap(), full);
}

#[test]
fn partial_file_keeps_other_defaults_and_accepts_integer_floats() {
    let (loaded, _) = load_text("[queue]\ncapacity = 4\n[guard]\ntemp_pause_c = 80\n", &[]);
    let c = loaded.unwrap();
    assert_eq!(c.queue.capacity, 4);
    assert_eq!(c.guard.temp_pause_c, 80.0);
    assert_eq!(c.queue.retention, 200);
    assert_eq!(c.mqtt, MqttConfig::default());
}

#[test]
fn print_default_parses_back_to_defaults() {
    let text = print_default();
    let (loaded, _) = load_text(&text, &[]);
    assert_eq!(loaded.unwrap(), defaults());
    // Every key is mentioned, with its documentation line.
    for spec in schema::KEYS {
        let leaf = spec.key.rsplit('.').next().unwrap();
        assert!(text.contains(&format!("{leaf} =")), "{} missing from template", spec.key);
        assert!(text.contains(spec.doc), "doc of {} missing", spec.key);
    }
    for (section, _) in schema::SECTIONS {
        assert!(text.contains(&format!("[{section}]")));
    }
    // The commented examples are themselves valid: uncommenting them must parse.
    let uncommented: String = text
        .lines()
        .filter_map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.contains("MILLWRIGHT_") => Some(rest),
            Some(_) => None,
            None => Some(l),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let table: toml::Table = uncommented.parse().unwrap();
    assert!(table["mqtt"].get("password").is_some());
}

#[test]
fn key_table_lists_exactly_the_fields_of_config() {
    fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) => flatten(&key, t, out),
                _ => {
                    out.insert(key);
                }
            }
        }
    }
    let mut full = full_config();
    full.auth.token = Some("t".into());
    full.mqtt.password_file = Some("/p".into());
    let table = toml::Table::try_from(&full).unwrap();
    let mut fields = BTreeSet::new();
    flatten("", &table, &mut fields);
    let keys: BTreeSet<String> = schema::KEYS.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(fields, keys);
}

#[test]
fn env_overrides_nested_keys_of_every_type() {
    let c = load_env(&[
        ("MILLWRIGHT_LISTEN", "127.0.0.1:1234"),
        ("MILLWRIGHT_DATA_DIR", "/data"),
        ("MILLWRIGHT_QUEUE__CAPACITY", "32"),
        ("MILLWRIGHT_QUEUE__SHUTDOWN", "FINISH_SAFE_POINT"),
        ("MILLWRIGHT_MQTT__ENABLED", "false"),
        ("MILLWRIGHT_MQTT__HOMEASSISTANT", "1"),
        ("MILLWRIGHT_MQTT__URL", "mqtts://example.org:8883"),
        ("MILLWRIGHT_GUARD__TEMP_PAUSE_C", "71.5"),
        ("MILLWRIGHT_GUARD__TEMP_RESUME_C", "60"),
        ("MILLWRIGHT_TRAINING__QUALITY", "fast"),
        // Case-insensitive names.
        ("millwright_models__keep_versions", "7"),
        ("Millwright_Guard__Hot_Threads", "3"),
    ])
    .unwrap();
    assert_eq!(c.listen, "127.0.0.1:1234");
    assert_eq!(c.data_dir, PathBuf::from("/data"));
    assert_eq!(c.queue.capacity, 32);
    assert_eq!(c.queue.shutdown, ShutdownPolicy::FinishSafePoint);
    assert!(!c.mqtt.enabled);
    assert!(c.mqtt.homeassistant);
    assert_eq!(c.mqtt.url, "mqtts://example.org:8883");
    assert_eq!(c.guard.temp_pause_c, 71.5);
    assert_eq!(c.guard.temp_resume_c, 60.0);
    assert_eq!(c.training.quality, Quality::Fast);
    assert_eq!(c.models.keep_versions, 7);
    assert_eq!(c.guard.hot_threads, 3);
}

#[test]
fn string_keys_stay_strings_even_when_they_look_like_numbers() {
    let c = load_env(&[
        ("MILLWRIGHT_AUTH__TOKEN", "12345678901234567"),
        ("MILLWRIGHT_MQTT__NODE_ID", "42"),
        ("MILLWRIGHT_MQTT__USERNAME", "true"),
        ("MILLWRIGHT_MQTT__PASSWORD", "1.5"),
    ])
    .unwrap();
    assert_eq!(c.auth.token.as_deref(), Some("12345678901234567"));
    assert_eq!(c.mqtt.node_id.as_deref(), Some("42"));
    assert_eq!(c.mqtt.username.as_deref(), Some("true"));
    assert_eq!(c.mqtt.password.as_deref(), Some("1.5"));
}

#[test]
fn env_wins_over_file_and_empty_unsets() {
    let (loaded, _) = load_text(
        "listen = \"127.0.0.1:1\"\n[queue]\ncapacity = 3\n[mqtt]\nnode_id = \"filenode\"\n",
        &[("MILLWRIGHT_QUEUE__CAPACITY", "9"), ("MILLWRIGHT_MQTT__NODE_ID", "")],
    );
    let c = loaded.unwrap();
    assert_eq!(c.queue.capacity, 9);
    assert_eq!(c.mqtt.node_id, None);
    assert_eq!(c.listen, "127.0.0.1:1");
}

#[test]
fn the_training_grid_is_read_from_file_and_environment() {
    let (loaded, _) =
        load_text("[data]\ngrid = \"10 min\"\ngrid_stats = [\"mean\", \"max\", \"max\"]\n", &[("MILLWRIGHT_DATA__GRID_ROWS", "5000")]);
    let g = loaded.unwrap().data.grid_setting();
    assert_eq!((g.choice, g.max_rows), (crate::data::grid::GridChoice::Every(600.0), 5000));
    let (msg, _) = err_text("[data]\ngrid = \"sometimes\"");
    assert!(msg.contains("\"1 min\"") && msg.contains("auto"), "the refusal says what to write: {msg}");
}

#[test]
fn non_config_variables_are_ignored() {
    let c = load_env(&[("MILLWRIGHT_LOG", "debug"), ("MILLWRIGHT_TEST_SLOW", "1"), ("PATH", "/usr/bin"), ("MILLWRIGHTX", "1")]).unwrap();
    assert_eq!(c, defaults());
}

#[test]
fn millwright_config_names_the_file_when_no_path_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[queue]\ncapacity = 5\n");
    let c = load_with_default_path(None, Path::new("/nonexistent"), &env(&[("MILLWRIGHT_CONFIG", path.to_str().unwrap())])).unwrap();
    assert_eq!(c.queue.capacity, 5);
    let err = load_env(&[("MILLWRIGHT_CONFIG", "/nonexistent/x.toml")]).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err}");
}

#[test]
fn default_path_is_read_when_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "log_level = \"debug\"\n");
    let c = load_with_default_path(None, &path, &[]).unwrap();
    assert_eq!(c.log_level, "debug");
}

#[test]
fn unknown_key_in_file_is_refused_with_a_suggestion() {
    let (msg, path) = err_text("[queue]\ncapacty = 3\n");
    assert_eq!(msg, format!("unknown key \"queue.capacty\" in {} (did you mean \"queue.capacity\"?)", path.display()));
    let (msg, _) = err_text("capacity = 3\n");
    assert!(msg.contains("did you mean \"queue.capacity\"?"), "{msg}");
    let (msg, _) = err_text("[mqtt]\npasword = \"x\"\n");
    assert!(msg.contains("did you mean \"mqtt.password\"?"), "{msg}");
    let (msg, _) = err_text("[nonsense]\nzzzzzzzz = 1\n");
    assert!(msg.contains("unknown key \"nonsense\""), "{msg}");
    assert!(!msg.contains("did you mean"), "{msg}");
    let (msg, _) = err_text("[gaurd]\ntemp_pause_c = 70\n");
    assert!(msg.contains("unknown key \"gaurd\"") && msg.contains("did you mean \"guard\"?"), "{msg}");
}

#[test]
fn unknown_env_variable_is_refused_with_a_suggestion() {
    let err = load_env(&[("MILLWRIGHT_QUEUE__CAPACTY", "3")]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("MILLWRIGHT_QUEUE__CAPACTY"), "{msg}");
    assert!(msg.contains("did you mean queue.capacity"), "{msg}");
    assert!(msg.contains("MILLWRIGHT_QUEUE__CAPACITY"), "{msg}");
    // A single underscore between section and key is the likeliest slip.
    let msg = load_env(&[("MILLWRIGHT_GUARD_TEMP_PAUSE_C", "70")]).unwrap_err().to_string();
    assert!(msg.contains("guard.temp_pause_c"), "{msg}");
    // A section alone is not a key.
    assert!(load_env(&[("MILLWRIGHT_QUEUE", "3")]).is_err());
}

#[test]
fn wrong_types_name_key_value_and_expectation() {
    let (msg, path) = err_text("[queue]\ncapacity = \"lots\"\n");
    assert_eq!(msg, format!("config {}: queue.capacity = \"lots\": expected an integer", path.display()));
    let (msg, _) = err_text("[mqtt]\nenabled = \"yes please\"\n");
    assert!(msg.contains("mqtt.enabled = \"yes please\": expected true or false"), "{msg}");
    let (msg, _) = err_text("listen = 8080\n");
    assert!(msg.contains("listen = 8080: expected a string"), "{msg}");
    let (msg, _) = err_text("queue = 3\n");
    assert!(msg.contains("queue = 3: expected a section"), "{msg}");

    let err = load_env(&[("MILLWRIGHT_QUEUE__CAPACITY", "lots")]).unwrap_err().to_string();
    assert_eq!(err, "environment variable MILLWRIGHT_QUEUE__CAPACITY: queue.capacity = \"lots\": expected an integer");
    let err = load_env(&[("MILLWRIGHT_MQTT__ENABLED", "maybe")]).unwrap_err().to_string();
    assert!(err.contains("mqtt.enabled = \"maybe\": expected true or false"), "{err}");
}

#[test]
fn secrets_are_not_echoed_in_errors() {
    let (msg, _) = err_text("[auth]\ntoken = 123456\n");
    assert!(msg.contains("auth.token = ***"), "{msg}");
    assert!(!msg.contains("123456"), "{msg}");
    let (msg, _) = err_text("[auth]\ntoken = \"has space\"\n");
    assert!(!msg.contains("has space"), "{msg}");
}

#[test]
fn capacity_zero_message_has_file_key_value_and_fix() {
    let (msg, path) = err_text("[queue]\ncapacity = 0\n");
    assert_eq!(
        msg,
        format!("config {}: queue.capacity = 0 is invalid: must be between 1 and 10000 (the number of jobs that may wait)", path.display())
    );
}

#[test]
fn each_invalid_value_is_refused_naming_its_key() {
    let cases: &[(&str, &str)] = &[
        ("[queue]\ncapacity = 10001", "queue.capacity"),
        ("[queue]\ncapacity = -1", "queue.capacity"),
        ("[queue]\nretention = 0", "queue.retention"),
        ("[queue]\nshutdown = \"later\"", "queue.shutdown"),
        ("[models]\nkeep_versions = 0", "models.keep_versions"),
        ("[models]\nwarn_size_mb = -5.0", "models.warn_size_mb"),
        ("[models]\nwarn_size_mb = nan", "models.warn_size_mb"),
        ("[training]\nquality = \"great\"", "training.quality"),
        ("[training]\ndefault_time_limit_s = 20000", "training.default_time_limit_s"),
        ("[training]\nmax_time_limit_s = 0", "training.max_time_limit_s"),
        ("listen = \"localhost:8080\"", "listen"),
        ("listen = \"8080\"", "listen"),
        ("log_level = \"infoo\"", "log_level"),
        ("data_dir = \"\"", "data_dir"),
        ("[auth]\ntoken = \"\"", "auth.token"),
        ("[auth]\ntoken = \"abc\"\ntoken_file = \"/t\"", "auth.token_file"),
        ("[mqtt]\nurl = \"http://broker:1883\"", "mqtt.url"),
        ("[mqtt]\nurl = \"broker:1883\"", "mqtt.url"),
        ("[mqtt]\nurl = \"mqtt://\"", "mqtt.url"),
        ("[mqtt]\nurl = \"mqtt://broker:0\"", "mqtt.url"),
        ("[mqtt]\nurl = \"mqtt://u:p@broker:1883\"", "mqtt.url"),
        ("[mqtt]\npassword = \"p\"", "mqtt.username"),
        ("[mqtt]\nusername = \"u\"\npassword = \"p\"\npassword_file = \"/p\"", "mqtt.password_file"),
        ("[mqtt]\nca_file = \"/ca.pem\"", "mqtt.ca_file"),
        ("[mqtt]\nurl = \"mqtts://b:8883\"\nclient_cert = \"/c.pem\"", "mqtt.client_cert"),
        ("[mqtt]\nkeepalive_s = 70000", "mqtt.keepalive_s"),
        ("[mqtt]\nbase_topic = \"plant/#\"", "mqtt.base_topic"),
        ("[mqtt]\nnode_id = \"my pi\"", "mqtt.node_id"),
        ("[mqtt]\ndiscovery_prefix = \"\"", "mqtt.discovery_prefix"),
        ("[guard]\ntemp_resume_c = 75.0", "guard.temp_resume_c"),
        ("[guard]\ntemp_pause_c = 60.0", "guard.temp_resume_c"),
        ("[guard]\ntemp_pause_c = nan", "guard.temp_pause_c"),
        ("[guard]\ntemp_pause_c = -10.0", "guard.temp_pause_c"),
        ("[guard]\ntemp_resume_c = -1.0", "guard.temp_resume_c"),
        ("[guard]\nhot_threads = 0", "guard.hot_threads"),
        ("[guard]\npoll_interval_s = 0.0", "guard.poll_interval_s"),
        ("[guard]\npoll_interval_s = inf", "guard.poll_interval_s"),
        ("[guard]\nmemory_reserve_mb = -256", "guard.memory_reserve_mb"),
        ("[http]\nheader_timeout_s = 0.0", "http.header_timeout_s"),
        ("[http]\nheader_timeout_s = nan", "http.header_timeout_s"),
        ("[http]\nbody_timeout_s = 4000", "http.body_timeout_s"),
        ("[http]\nidle_timeout_s = -1.0", "http.idle_timeout_s"),
        ("[http]\nmax_connections = 4", "http.max_connections"),
        ("[http]\nmax_connections = 100000", "http.max_connections"),
        ("[http]\nbody_memory_mb = 4", "http.body_memory_mb"),
        ("[data]\ngrid = \"sometimes\"", "data.grid"),
        ("[data]\ngrid = \"0.5 s\"", "data.grid"),
        ("[data]\ngrid_rows = 10", "data.grid_rows"),
        ("[data]\ngrid_stats = [\"std\"]", "data.grid_stats"),
        ("[data]\ngrid_stats = [\"mean\", \"median\"]", "data.grid_stats"),
    ];
    for (text, key) in cases {
        let (msg, path) = err_text(text);
        let expected_prefix = format!("config {}: {key} = ", path.display());
        assert!(msg.starts_with(&expected_prefix), "{text:?} gave {msg:?}, wanted prefix {expected_prefix:?}");
    }
}

#[test]
fn invalid_env_values_name_the_variable() {
    let err = load_env(&[("MILLWRIGHT_GUARD__TEMP_PAUSE_C", "nan")]).unwrap_err().to_string();
    assert!(err.starts_with("environment variable MILLWRIGHT_GUARD__TEMP_PAUSE_C: guard.temp_pause_c = nan is invalid"), "{err}");
    let err = load_env(&[("MILLWRIGHT_QUEUE__CAPACITY", "0")]).unwrap_err().to_string();
    assert!(err.contains("MILLWRIGHT_QUEUE__CAPACITY: queue.capacity = 0 is invalid"), "{err}");
    let err = load_env(&[("MILLWRIGHT_MQTT__URL", "ws://x")]).unwrap_err().to_string();
    assert!(err.contains("MILLWRIGHT_MQTT__URL: mqtt.url = \"ws://x\" is invalid"), "{err}");
}

#[test]
fn validate_without_origin_still_names_key() {
    let mut c = Config::default();
    c.models.keep_versions = 0;
    let err = c.validate().unwrap_err();
    assert_eq!(err.key(), Some("models.keep_versions"));
    assert!(err.to_string().starts_with("models.keep_versions = 0 is invalid: "), "{err}");
}

#[test]
fn accepted_variants() {
    for url in ["mqtt://127.0.0.1:1883", "mqtts://broker.example.org", "mqtt://[::1]:1883", "MQTT://host/"] {
        let mut c = defaults();
        c.mqtt.url = url.into();
        c.validate().unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    for listen in ["[::]:8080", "127.0.0.1:0"] {
        let mut c = defaults();
        c.listen = listen.into();
        c.validate().unwrap();
    }
    assert_eq!(defaults().listen_addr().unwrap().port(), 8080);
}

#[test]
fn missing_explicit_file_is_an_error() {
    let err = load(Some(Path::new("/nonexistent/millwright.toml")), &[]).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }));
    assert!(err.to_string().contains("/nonexistent/millwright.toml"), "{err}");
}

#[test]
fn syntax_errors_keep_file_and_line() {
    let (msg, path) = err_text("[queue]\ncapacity = = 3\n");
    assert!(msg.starts_with(&format!("config {}: ", path.display())), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn summary_hides_password_and_token() {
    let mut c = full_config();
    c.auth.token = Some("s3cret-token".into());
    let summary = c.summary();
    let text = summary.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("s3cret-token"), "{text}");
    assert_eq!(summary["mqtt"]["password"], "***");
    assert_eq!(summary["auth"]["token"], "***");
    assert_eq!(summary["queue"]["capacity"], 50);
    // Unset secrets are not invented.
    let plain = defaults().summary();
    assert!(plain["auth"].get("token").is_none());
}

#[test]
fn a_token_shorter_than_16_characters_is_refused_without_echoing_it() {
    let (msg, _) = err_text("[auth]\ntoken = \"short-secret\"\n");
    assert!(msg.contains("auth.token = ***") && msg.contains("at least 16 characters"), "{msg}");
    assert!(!msg.contains("short-secret"), "{msg}");
    let e = load_env(&[("MILLWRIGHT_AUTH__TOKEN", "abc")]).unwrap_err();
    assert!(e.to_string().contains("MILLWRIGHT_AUTH__TOKEN"), "{e}");
    load_env(&[("MILLWRIGHT_AUTH__TOKEN", "0123456789abcdef")]).unwrap();
}

#[test]
fn allowed_hosts_from_file_and_environment() {
    let (loaded, _) = load_text("[http]\nallowed_hosts = [\"mill.example.com\", \"*\"]\n", &[]);
    assert_eq!(loaded.unwrap().http.allowed_hosts, ["mill.example.com", "*"]);
    let c = load_env(&[("MILLWRIGHT_HTTP__ALLOWED_HOSTS", " a.example , b.example,")]).unwrap();
    assert_eq!(c.http.allowed_hosts, ["a.example", "b.example"]);
    let (msg, _) = err_text("[http]\nallowed_hosts = [\"http://mill.example.com:8080\"]\n");
    assert!(msg.contains("http.allowed_hosts") && msg.contains("no scheme, port or path"), "{msg}");
    let (msg, _) = err_text("[http]\nallowed_hosts = \"mill.example.com\"\n");
    assert!(msg.contains("http.allowed_hosts") && msg.contains("a list of strings"), "{msg}");
    let (msg, _) = err_text("[http]\nallowed_hosts = [1]\n");
    assert!(msg.contains("a list of strings"), "{msg}");
}

/// The choices the messages and the template list are exactly the names the enums read and write.
#[test]
fn choice_lists_match_the_enums() {
    let read = |v: &str| toml::Value::String(v.into());
    for name in SHUTDOWN_POLICIES {
        let p: ShutdownPolicy = read(name).try_into().unwrap();
        assert_eq!(toml::Value::try_from(p).unwrap().as_str(), Some(*name));
    }
    for name in QUALITIES {
        let q: Quality = read(name).try_into().unwrap();
        assert_eq!(toml::Value::try_from(q).unwrap().as_str(), Some(*name));
    }
}

/// `queue.shutdown = "finish_safe_point"` promised a save point that never existed: it is read as the old name
/// of "cancel", does the same, and is warned about; the messages offer only the current names.
#[test]
fn the_old_shutdown_name_still_loads_and_is_warned_about() {
    let (c, _) = load_text("[queue]\nshutdown = \"finish_safe_point\"\n", &[]);
    let c = c.unwrap();
    assert_eq!(c.queue.shutdown, ShutdownPolicy::FinishSafePoint);
    assert!(!c.queue.shutdown.requeues());
    let notes = c.deprecations();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("queue.shutdown = \"finish_safe_point\" is an old name of \"cancel\""), "{notes:?}");
    assert_eq!(c.summary()["queue"]["shutdown"], "finish_safe_point", "the summary shows what was written");

    let (c, _) = load_text("[queue]\nshutdown = \"cancel\"\n", &[]);
    let c = c.unwrap();
    assert_eq!(c.queue.shutdown, ShutdownPolicy::Cancel);
    assert!(!c.queue.shutdown.requeues() && c.deprecations().is_empty());
    assert!(defaults().queue.shutdown.requeues() && defaults().deprecations().is_empty());

    let (msg, _) = err_text("[queue]\nshutdown = \"later\"\n");
    assert!(msg.ends_with("must be one of \"cancel_and_requeue\", \"cancel\""), "{msg}");
}

#[test]
fn mqtt_urls_split_into_tls_host_and_port() {
    let broker = |url: &str| MqttConfig { url: url.into(), ..Default::default() }.broker();
    let b = |tls, host: &str, port| Broker { tls, host: host.into(), port };
    assert_eq!(broker("mqtt://127.0.0.1:1884").unwrap(), b(false, "127.0.0.1", 1884));
    assert_eq!(broker("mqtts://broker.local").unwrap(), b(true, "broker.local", 8883));
    assert_eq!(broker("MQTT://host/").unwrap(), b(false, "host", 1883));
    assert_eq!(broker("mqtt://[::1]:1883").unwrap(), b(false, "::1", 1883));
    for bad in ["http://x", "mqtt://x:0", "mqtt://x:", "mqtt://", "mqtt://[::1", "mqtt://u@x"] {
        let e = broker(bad).unwrap_err();
        assert_eq!(e.key(), Some("mqtt.url"), "{bad}: {e}");
    }
}
