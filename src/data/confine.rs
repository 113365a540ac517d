//! Which files a machine may be read from. The daemon loads machines by id from the data folder; there every
//! file a folder names (the `machine.toml` itself, legacy-layout files, `[[files]]` paths and patterns,
//! `rul_at_end`, `[anomaly_windows]`) must lie inside the data folder once symlinks are resolved, or a
//! description could make the API read — and quote in its errors — any file the daemon can read (its own
//! token included). A folder the operator names on the command line (`millwright inspect-data examples/x`)
//! is trusted as given: the examples read the shared datasets beside the repository.
use super::error::DataError;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Confine {
    /// The data folder, canonical; `None` for a folder named on the command line.
    root: Option<PathBuf>,
}

impl Confine {
    pub fn anywhere() -> Confine {
        Confine { root: None }
    }

    /// Files must resolve into `data_dir` (itself resolved, so a data folder that is a symlink is fine).
    pub fn within(data_dir: &Path) -> Result<Confine, DataError> {
        let root = std::fs::canonicalize(data_dir).map_err(|e| DataError::io(data_dir, e))?;
        Ok(Confine { root: Some(root) })
    }

    /// Refuses `path` when it resolves outside the data folder. `setting` says what named the path and
    /// `named_in` where (the machine.toml or the machine folder), so the error points at the thing to fix.
    /// A path that does not resolve (missing file, dangling link) passes: reading it fails next with
    /// "not found", which quotes nothing.
    pub fn check(&self, path: &Path, setting: &str, named_in: &Path) -> Result<(), DataError> {
        let Some(root) = &self.root else { return Ok(()) };
        let Ok(resolved) = std::fs::canonicalize(path) else { return Ok(()) };
        if resolved.starts_with(root) {
            return Ok(());
        }
        Err(DataError::Outside {
            file: named_in.to_path_buf(),
            setting: setting.to_string(),
            path: path.to_path_buf(),
            resolved,
            root: root.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_passes_outside_and_links_out_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir_all(data.join("m")).unwrap();
        std::fs::write(data.join("m/a.csv"), "x").unwrap();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), data.join("m/link.csv")).unwrap();
        std::os::unix::fs::symlink(data.join("m/a.csv"), data.join("m/inner.csv")).unwrap();
        let c = Confine::within(&data).unwrap();
        let toml = data.join("m/machine.toml");
        c.check(&data.join("m/a.csv"), "path", &toml).unwrap();
        c.check(&data.join("m/inner.csv"), "path", &toml).unwrap();
        c.check(&data.join("m/../m/a.csv"), "path", &toml).unwrap();
        c.check(&data.join("m/missing.csv"), "path", &toml).unwrap();
        for bad in [data.join("m/link.csv"), data.join("m/../../secret"), PathBuf::from("/etc/passwd")] {
            let e = c.check(&bad, "[[files]] path", &toml).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, DataError::Outside { .. }), "{msg}");
            assert!(msg.contains("[[files]] path") && msg.contains("outside the data folder"), "{msg}");
        }
        // A folder named on the command line may read anything.
        Confine::anywhere().check(&data.join("m/link.csv"), "path", &toml).unwrap();
    }

    #[test]
    fn a_data_folder_reached_through_a_symlink_is_its_own_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("real/m")).unwrap();
        std::fs::write(d.path().join("real/m/a.csv"), "x").unwrap();
        std::os::unix::fs::symlink(d.path().join("real"), d.path().join("data")).unwrap();
        let c = Confine::within(&d.path().join("data")).unwrap();
        c.check(&d.path().join("data/m/a.csv"), "path", Path::new("m")).unwrap();
    }
}
