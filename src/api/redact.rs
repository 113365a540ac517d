//! What anonymous readers do not see: where the daemon keeps its state and data on disk. Answers built for
//! a logged-in client (health, with the guard's and other parts' facts merged in) pass through [`paths`]
//! before they go to anyone else.
use serde_json::Value;
use std::path::Path;

/// Keys whose value is a location on disk.
const PATH_KEYS: &[&str] = &["path", "folder", "data_dir", "state_dir"];
const HIDDEN: &str = "(hidden: log in to see paths)";

/// The spellings of a folder a message may contain: as configured (when absolute) and resolved.
pub fn spellings(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if dir.is_absolute() {
        out.push(dir.display().to_string());
    }
    if let Ok(c) = std::fs::canonicalize(dir) {
        out.push(c.display().to_string());
    }
    // Longest first, so a folder is not half-replaced by a shorter spelling of its parent.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Drops path-valued keys and replaces the known folders inside any text.
pub fn paths(v: &mut Value, folders: &[String]) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !PATH_KEYS.contains(&k.as_str()));
            for child in map.values_mut() {
                paths(child, folders);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| paths(i, folders)),
        Value::String(s) => {
            for f in folders.iter().filter(|f| f.len() > 1) {
                if s.contains(f.as_str()) {
                    *s = s.replace(f.as_str(), HIDDEN);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_keys_go_and_folders_in_text_are_hidden() {
        let mut v = json!({
            "guard": {
                "disk": [{ "role": "state", "path": "/var/lib/millwright", "free_mb": 5 }],
                "memory": { "cgroup": { "path": "/system.slice/millwright.service", "max_bytes": 1 } },
                "reason": "not enough disk space: 5 MB free for the data folder /srv/data/x, and ...",
            },
            "data_dir": "/srv/data",
            "status": "ok",
        });
        paths(&mut v, &["/srv/data/x".into(), "/srv/data".into()]);
        assert_eq!(v["guard"]["disk"][0], json!({ "role": "state", "free_mb": 5 }));
        assert!(v["guard"]["memory"]["cgroup"].get("path").is_none());
        assert!(v.get("data_dir").is_none());
        let reason = v["guard"]["reason"].as_str().unwrap();
        assert!(!reason.contains("/srv") && reason.contains("log in"), "{reason}");
        assert_eq!(v["status"], "ok");
    }

    #[test]
    fn spellings_are_absolute_and_longest_first() {
        let d = tempfile::tempdir().unwrap();
        let s = spellings(d.path());
        assert!(!s.is_empty() && s.iter().all(|p| p.starts_with('/')));
        assert!(spellings(Path::new("relative/not-there")).is_empty());
    }
}
