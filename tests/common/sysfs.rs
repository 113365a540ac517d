//! Fake /sys and /proc files under `guard.sysfs_root`, the way the resource guard's tests drive temperature
//! and memory. Used by tests/guard.rs, tests/mqtt.rs and tests/hardening/{watchdog,store}.rs.
use std::path::{Path, PathBuf};

/// One temporary folder with a fleet of one machine, the state folder and a fake sysfs root.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub state: PathBuf,
    pub root: PathBuf,
}

impl Bench {
    pub fn new(rows: usize) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let (data, state, root) = (dir.path().join("data"), dir.path().join("state"), dir.path().join("sysroot"));
        std::fs::create_dir_all(&root).unwrap();
        super::fleet(&data, 1, rows);
        Bench { dir, data, state, root }
    }

    /// The settings that point the guard at the fake root, read every 0.2 s.
    pub fn guard_env(&self) -> [(&'static str, &str); 2] {
        [("MILLWRIGHT_GUARD__SYSFS_ROOT", self.root.to_str().unwrap()), ("MILLWRIGHT_GUARD__POLL_INTERVAL_S", "0.2")]
    }
}

pub fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    // Written whole and renamed, so the daemon never reads half a file.
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
}

pub fn set_temp(root: &Path, celsius: f64) {
    // Rounded: 55.3 * 1000.0 is a hair below 55300 in floating point.
    put(root, "sys/class/thermal/thermal_zone0/temp", &format!("{}\n", (celsius * 1000.0).round() as i64));
}

pub fn set_meminfo(root: &Path, total_mb: u64, available_mb: u64) {
    put(
        root,
        "proc/meminfo",
        &format!(
            "MemTotal:       {} kB\nMemFree:        {} kB\nMemAvailable:   {} kB\n",
            total_mb * 1024,
            available_mb * 1024,
            available_mb * 1024
        ),
    );
}
