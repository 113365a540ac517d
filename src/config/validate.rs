//! The checks on values and on the relations between them, section by section. [`load`](super::load) runs
//! them; code that changes a `Config` calls [`Config::validate`] again.
use std::net::SocketAddr;

use super::error::{ConfigError, invalid};
use super::render::{render_f64, render_path, render_str};
use super::schema;
use super::sections::{Config, DataConfig, FleetConfig, GuardConfig, HttpConfig, MqttConfig, ReadingsConfig, RetrainConfig};

const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

impl Config {
    /// Settings written under an old name that still works, each with what to write instead; the daemon
    /// logs them at start.
    pub fn deprecations(&self) -> Vec<String> {
        let summary = self.summary();
        schema::OLD_NAMES
            .iter()
            .filter(|o| o.key.split('.').try_fold(&summary, |v, part| v.get(part)).and_then(|v| v.as_str()) == Some(o.old))
            .map(|o| {
                format!("{} = \"{}\" is an old name of \"{}\" and does the same ({}); write \"{}\"", o.key, o.old, o.new, o.why, o.new)
            })
            .collect()
    }

    /// Checks values and the relations between them. [`load`](super::load) calls it; call it again after
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
        self.fleet.validate()?;
        self.data.validate()?;
        self.readings.validate()?;
        self.retrain.validate()?;
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
        let tls = self.broker()?.tls;
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

/// `mqtt.url` taken apart; the one place it is parsed (validation and the MQTT bridge both ask for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    /// `mqtts://`.
    pub tls: bool,
    /// Without the brackets of an IPv6 literal.
    pub host: String,
    /// As written, else 1883 (8883 with TLS).
    pub port: u16,
}

impl MqttConfig {
    /// The broker `mqtt.url` names, or why it names none.
    pub fn broker(&self) -> Result<Broker, ConfigError> {
        parse_mqtt_url(&self.url)
    }
}

fn parse_mqtt_url(url: &str) -> Result<Broker, ConfigError> {
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
    let port = match port {
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad("the port must be a number between 1 and 65535")),
        },
        None if tls => 8883,
        None => 1883,
    };
    Ok(Broker { tls, host: host.to_string(), port })
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

impl RetrainConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Err(why) = crate::retrain::When::parse(&self.default) {
            return Err(invalid("retrain.default", render_str("retrain.default", &self.default), why));
        }
        if crate::jobs::Promote::parse(&self.promote).is_none() {
            return Err(invalid("retrain.promote", render_str("retrain.promote", &self.promote), "must be \"if_not_worse\" or \"always\""));
        }
        if !(self.min_gap_h.is_finite() && (0.0..=8760.0).contains(&self.min_gap_h)) {
            return Err(invalid("retrain.min_gap_h", render_f64(self.min_gap_h), "must be between 0 and 8760 hours"));
        }
        Ok(())
    }
}

impl FleetConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value, lo, hi, unit) in [
            ("fleet.stale_data_h", self.stale_data_h, 0.1, 8760.0, "hours"),
            ("fleet.evaluate_interval_s", self.evaluate_interval_s, 5.0, 3600.0, "seconds"),
            ("fleet.alert_retention_days", self.alert_retention_days, 1.0, 3650.0, "days"),
            ("fleet.score_history_days", self.score_history_days, 1.0, 3650.0, "days"),
        ] {
            if !(value.is_finite() && (lo..=hi).contains(&value)) {
                return Err(invalid(key, render_f64(value), format!("must be between {lo} and {hi} {unit}")));
            }
        }
        Ok(())
    }
}

impl ReadingsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value, lo, hi) in [
            ("readings.future_tolerance_s", self.future_tolerance_s, 0.0, 86_400.0),
            ("readings.order_tolerance_s", self.order_tolerance_s, 0.0, 3_600.0),
            ("readings.compact_interval_s", self.compact_interval_s, 10.0, 86_400.0),
        ] {
            if !(value.is_finite() && (lo..=hi).contains(&value)) {
                return Err(invalid(key, render_f64(value), format!("must be between {lo} and {hi} seconds")));
            }
        }
        if !(self.retain_days.is_finite() && (0.0..=36_500.0).contains(&self.retain_days)) {
            return Err(invalid("readings.retain_days", render_f64(self.retain_days), "must be between 0 (no limit) and 36500 days"));
        }
        for (key, value) in
            [("readings.retain_mb_per_machine", self.retain_mb_per_machine), ("readings.retain_mb_total", self.retain_mb_total)]
        {
            if value > 1 << 30 {
                return Err(invalid(key, value.to_string(), "must be between 0 (no limit) and 1073741824 MB"));
            }
        }
        if !self.mqtt_topic.is_empty()
            && let Err(why) = crate::ingest::ReadingsTopic::parse(&self.mqtt_topic, "base")
        {
            return Err(invalid("readings.mqtt_topic", render_str("readings.mqtt_topic", &self.mqtt_topic), why));
        }
        Ok(())
    }
}

impl DataConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value, min, max, what) in [
            ("data.max_file_mb", self.max_file_mb, 1, 1 << 20, "MB"),
            ("data.max_columns", self.max_columns as u64, 2, 100_000, "columns (a time column and a sensor at least)"),
            ("data.max_line_kb", self.max_line_kb, 1, 1 << 20, "KB"),
            ("data.max_rows", self.max_rows, 100, 1_000_000_000, "rows"),
            ("data.grid_rows", self.grid_rows, 1000, 100_000_000, "rows"),
        ] {
            if !(min..=max).contains(&value) {
                return Err(invalid(key, value.to_string(), format!("must be between {min} and {max} {what}")));
            }
        }
        crate::data::grid::GridChoice::parse(&self.grid).map_err(|e| invalid("data.grid", self.grid.clone(), e))?;
        let stats: Vec<_> = self.grid_stats.iter().filter_map(|s| crate::data::grid::GridStat::parse(s)).collect();
        crate::data::grid::check_stats(&stats).map_err(|e| invalid("data.grid_stats", format!("{:?}", self.grid_stats), e))?;
        for s in &self.grid_stats {
            if crate::data::grid::GridStat::parse(s).is_none() {
                return Err(invalid(
                    "data.grid_stats",
                    s.clone(),
                    "each entry is one of \"mean\", \"min\", \"max\", \"std\", \"last\", \"count\"",
                ));
            }
        }
        Ok(())
    }
}
