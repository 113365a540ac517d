//! `MILLWRIGHT_*` overrides, applied to the file's table before it is deserialized so that the
//! environment goes through the same type checks and validation as the file.

use std::collections::HashMap;

use super::schema::{self, Kind};
use super::{ConfigError, ENV_PREFIX, Origin};

/// Variables with the prefix that belong to other parts of the program, not to the config:
/// `MILLWRIGHT_CONFIG` names the file, `MILLWRIGHT_LOG` is the log filter, `MILLWRIGHT_TEST_*` steer tests.
fn is_ignored(rest_upper: &str) -> bool {
    rest_upper == "LOG" || rest_upper == "CONFIG" || rest_upper.starts_with("TEST_")
}

/// The variable that sets `key` (`queue.capacity` → `MILLWRIGHT_QUEUE__CAPACITY`).
pub(super) fn var_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase())
}

/// Sets every overridden key in `table`; returns which variable set which key, so later errors
/// can name the variable instead of the file.
pub(super) fn apply(table: &mut toml::Table, env: &[(String, String)]) -> Result<HashMap<String, Origin>, ConfigError> {
    let mut origins = HashMap::new();
    for (name, raw) in env {
        let Some(rest) = strip_prefix_ignore_case(name, ENV_PREFIX) else {
            continue;
        };
        let rest_upper = rest.to_ascii_uppercase();
        if is_ignored(&rest_upper) {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let Some(spec) = schema::spec(&key) else {
            return Err(ConfigError::UnknownEnv { var: name.clone(), suggestion: schema::suggest(&key).map(str::to_string), key });
        };
        let (section, leaf) = match spec.key.split_once('.') {
            Some((s, l)) => (Some(s), l),
            None => (None, spec.key),
        };
        let target = match section {
            None => &mut *table,
            Some(s) => {
                let entry = table.entry(s.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry {
                    toml::Value::Table(t) => t,
                    // The file checker refuses a non-table section before we get here.
                    _ => continue,
                }
            }
        };
        // Empty means "not set": systemd's `Environment=MILLWRIGHT_AUTH__TOKEN=` is the usual way
        // to drop a value, and an empty string is never a useful value for any key.
        if raw.is_empty() {
            target.remove(leaf);
        } else {
            target.insert(leaf.to_string(), parse_value(spec.kind, raw));
        }
        origins.insert(spec.key.to_string(), Origin::Env(name.clone()));
    }
    Ok(origins)
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &name[prefix.len()..])
}

/// Text from the environment as the key's type, if it reads as one; otherwise a string, which
/// the type check then reports as `key = "text": expected ...`.
fn parse_value(kind: Kind, raw: &str) -> toml::Value {
    let text = raw.trim();
    let parsed = match kind {
        // Known string keys stay strings: a token or a node id may well be "123" or "true".
        Kind::Str | Kind::Path => None,
        Kind::Choice(_) => Some(toml::Value::String(text.to_ascii_lowercase())),
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Some(toml::Value::Boolean(false)),
            _ => None,
        },
        Kind::UInt { .. } => text.replace('_', "").parse::<i64>().ok().map(toml::Value::Integer),
        Kind::StrList => Some(toml::Value::Array(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| toml::Value::String(s.to_string())).collect(),
        )),
        Kind::Float => text
            .replace('_', "")
            .parse::<i64>()
            .map(|i| toml::Value::Float(i as f64))
            .ok()
            .or_else(|| text.parse::<f64>().ok().map(toml::Value::Float)),
    };
    parsed.unwrap_or_else(|| toml::Value::String(raw.to_string()))
}
