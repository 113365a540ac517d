//! Fake /sys and /proc files under `guard.sysfs_root`, the way the resource guard's tests drive temperature
//! and memory. Used by tests/guard.rs and tests/hardening/{watchdog,store}.rs.
use std::path::Path;

pub fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    // Written whole and renamed, so the daemon never reads half a file.
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
}

pub fn set_temp(root: &Path, celsius: f64) {
    put(root, "sys/class/thermal/thermal_zone0/temp", &format!("{}\n", (celsius * 1000.0) as i64));
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
