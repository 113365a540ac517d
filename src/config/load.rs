//! Reading the configuration: defaults, the file, the environment, type checks, then validation.
use std::path::{Path, PathBuf};

use super::check::check_types;
use super::error::{ConfigError, Origin};
use super::render::render_value;
use super::sections::{Config, default_state_dir};
use super::{CONFIG_PATH_VAR, DEFAULT_PATH, env, schema};

/// Loads the configuration: defaults, then the file, then `MILLWRIGHT_*` variables from `env`,
/// then [`Config::validate`].
///
/// `path` None reads `$MILLWRIGHT_CONFIG` (from `env`) if set, else [`DEFAULT_PATH`] if it
/// exists, else uses defaults. A path that was named (argument or variable) must exist.
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    load_with_default_path(path, Path::new(DEFAULT_PATH), env)
}

pub(super) fn load_with_default_path(path: Option<&Path>, default_path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
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
