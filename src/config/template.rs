//! The commented default config file, generated from the key table and `Config::default()` so
//! that it cannot drift from the code (a test parses it back).

use super::schema::{KEYS, KeySpec, SECTIONS};
use super::{Config, DEFAULT_PATH};

const HEADER: &str = "\
# millwright configuration.
#
# Read from the path given on the command line, else $MILLWRIGHT_CONFIG, else
# /etc/millwright/config.toml (when it exists). Every key is optional: the values below are the
# defaults, and lines that are commented out have no fixed default (see each comment).
#
# Any key can also be set by environment variable, which wins over this file:
# MILLWRIGHT_<KEY>, with __ between a section and its key, e.g.
#   MILLWRIGHT_LISTEN=127.0.0.1:8080
#   MILLWRIGHT_QUEUE__CAPACITY=32
#   MILLWRIGHT_MQTT__ENABLED=false
# An empty value unsets the key. MILLWRIGHT_CONFIG, MILLWRIGHT_LOG and MILLWRIGHT_TEST_* are not
# config keys; any other unknown MILLWRIGHT_ variable stops the daemon, to catch typos.
";

/// A commented config file with every key, its default and when to change it. Parsing it back
/// with [`super::load`] gives `Config::default()` (with `state_dir` from the environment).
pub fn print_default() -> String {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let mut out = String::from(HEADER);
    out.push_str(&format!("# (This file's usual place: {DEFAULT_PATH}.)\n"));

    let top_level = KEYS.iter().filter(|s| !s.key.contains('.'));
    out.push('\n');
    for spec in top_level {
        write_key(&mut out, spec, spec.key, defaults.get(spec.key));
    }
    for (section, doc) in SECTIONS {
        out.push_str(&format!("\n# {doc}\n[{section}]\n"));
        let values = defaults.get(*section).and_then(toml::Value::as_table);
        for spec in KEYS.iter().filter(|s| s.key.split_once('.').is_some_and(|(s, _)| s == *section)) {
            let leaf = spec.key.split_once('.').map_or(spec.key, |(_, l)| l);
            write_key(&mut out, spec, leaf, values.and_then(|t| t.get(leaf)));
        }
    }
    out
}

fn write_key(out: &mut String, spec: &KeySpec, leaf: &str, default: Option<&toml::Value>) {
    out.push_str(&format!("# {}\n", spec.doc));
    match (spec.example, default) {
        // Keys whose default is computed at start-up or absent are shown commented out, so
        // that copying the file does not pin them.
        (Some(example), _) => out.push_str(&format!("# {example}\n")),
        (None, Some(value)) => out.push_str(&format!("{leaf} = {value}\n")),
        (None, None) => out.push_str(&format!("# {leaf} =\n")),
    }
}
