//! Type checking of the merged table against the key table, before serde sees it.
use std::collections::HashMap;
use std::path::Path;

use super::error::{ConfigError, Origin, origin_of};
use super::render::render_value;
use super::schema;

/// Checks each present value against its key's type before serde sees it, so a wrong type is
/// reported as `key = value: expected ...` (and a secret's value is not echoed).
pub(super) fn check_types(table: &mut toml::Table, origins: &HashMap<String, Origin>, file: Option<&Path>) -> Result<(), ConfigError> {
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
                if !options.contains(&s.as_str()) && !schema::is_old_name(spec.key, s) {
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
