//! Values as people see them: in error messages (as they would be written in the file, secrets as `***`) and
//! in the summary of the effective configuration.
use std::path::Path;

use super::schema;
use super::sections::Config;

/// A value as it would be written in the file; secrets become `***`.
pub(super) fn render_value(key: &str, value: &toml::Value) -> String {
    if schema::is_secret(key) {
        return "***".into();
    }
    match value {
        // Display of a table is multi-line; a summary reads better in an error.
        toml::Value::Table(_) => "a table".into(),
        other => other.to_string(),
    }
}

pub(super) fn render_str(key: &str, s: &str) -> String {
    render_value(key, &toml::Value::String(s.to_string()))
}

pub(super) fn render_path(key: &str, p: &Path) -> String {
    render_str(key, &p.to_string_lossy())
}

pub(super) fn render_f64(f: f64) -> String {
    toml::Value::Float(f).to_string()
}

impl Config {
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
