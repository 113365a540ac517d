//! A stable, random id per install (`STATE_DIR/instance_id`), published in `bridge/state`, `bridge/info`,
//! `bridge/health` and every response, so two daemons on one base topic can tell each other apart even
//! when their node ids (host names) and client ids are the same.
use std::path::Path;

pub const FILE: &str = "instance_id";

/// Reads the install's id, or makes one and stores it. A state folder that cannot hold it costs only the
/// id's stability across restarts (logged), never the start.
pub fn load_or_create(state_dir: &Path) -> String {
    let path = state_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_valid(text.trim()) => return text.trim().to_string(),
        Ok(_) => tracing::warn!(path = %path.display(), "MQTT: the instance id file is damaged; writing a new one"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "MQTT: cannot read the instance id; writing a new one"),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    if let Err(e) = write_atomically(&path, &id) {
        tracing::warn!(path = %path.display(), error = %e, instance_id = %id, "MQTT: cannot store the instance id; this run uses a new one that will change at the next start");
    }
    id
}

/// What an id looks like when it was written by us (or set by hand): a safe, short token.
pub fn is_valid(id: &str) -> bool {
    (8..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A crash mid-write leaves the old file or none, never half an id (which would read as a twin).
fn write_atomically(path: &Path, id: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(id.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_made_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let first = load_or_create(d.path());
        assert!(is_valid(&first), "{first}");
        assert_eq!(load_or_create(d.path()), first);
        assert!(!d.path().join("instance_id.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_replaced_and_an_unwritable_folder_still_gives_an_id() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE), "x/\n").unwrap();
        let id = load_or_create(d.path());
        assert!(is_valid(&id));
        assert_eq!(std::fs::read_to_string(d.path().join(FILE)).unwrap(), id);
        let gone = d.path().join("no/such/folder");
        assert!(is_valid(&load_or_create(&gone)));
        assert!(!is_valid("short") && !is_valid("a+b#c/d-efgh") && is_valid("raspberry-pi_01"));
    }
}
