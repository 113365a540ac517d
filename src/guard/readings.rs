//! What the guard reads about the device: SoC temperature, Raspberry Pi throttling, memory (system, process,
//! systemd cgroup), free disk and the SD card's write counter. Everything comes from files under one root
//! folder (`guard.sysfs_root`) so tests can fake a Pi; sysinfo is used only when that root is the real "/".
//! A reading that is not available (a VM, a container, a laptop) is `None`, never an error.
use super::throttle::Throttle;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MB: f64 = 1024.0 * 1024.0;

/// Plausible SoC temperatures; zones outside (a disconnected sensor reads -273 °C or 0) are ignored.
const PLAUSIBLE_C: std::ops::RangeInclusive<f64> = -40.0..=150.0;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Readings {
    /// The hottest thermal zone, °C.
    pub temperature_c: Option<f64>,
    /// Where it came from: `thermal_zone0`, or `sysinfo: <label>`.
    pub temperature_source: Option<String>,
    pub throttle: Option<Throttle>,
    /// The `rpi_volt` hwmon's under-voltage alarm (newer Pi kernels).
    pub under_voltage_alarm: Option<bool>,
    pub memory: Memory,
    pub disks: Vec<Disk>,
    /// Sectors written to the SD card since boot (`/sys/block/mmcblk0/stat` field 7).
    pub sd_write_sectors: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Memory {
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    /// The daemon's own resident memory.
    pub rss_bytes: Option<u64>,
    pub cgroup: Option<Cgroup>,
}

/// The systemd unit's cgroup v2 memory numbers: the limits systemd actually enforces.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cgroup {
    pub path: String,
    pub max_bytes: Option<u64>,
    pub high_bytes: Option<u64>,
    pub current_bytes: Option<u64>,
    /// `memory.events`: low, high, max, oom, oom_kill counters.
    pub events: BTreeMap<String, u64>,
}

impl Cgroup {
    /// The tighter of memory.high (reclaim pressure) and memory.max (OOM kill).
    pub fn limit_bytes(&self) -> Option<u64> {
        [self.max_bytes, self.high_bytes].into_iter().flatten().min()
    }
}

impl Memory {
    /// The most memory the daemon could ever have: physical memory, or the unit's cgroup limit if lower.
    pub fn ceiling_bytes(&self) -> Option<u64> {
        [self.total_bytes, self.cgroup.as_ref().and_then(Cgroup::limit_bytes)].into_iter().flatten().min()
    }

    /// Memory a new job can take now: what the system has available, or what is left under the cgroup limit.
    pub fn headroom_bytes(&self) -> Option<u64> {
        let in_cgroup = self.cgroup.as_ref().and_then(|c| Some(c.limit_bytes()?.saturating_sub(c.current_bytes?)));
        [self.available_bytes, in_cgroup].into_iter().flatten().min()
    }

    pub fn json(&self) -> serde_json::Value {
        let mb = |b: Option<u64>| b.map(|b| (b as f64 / MB).round());
        serde_json::json!({
            "total_mb": mb(self.total_bytes),
            "available_mb": mb(self.available_bytes),
            "daemon_rss_mb": mb(self.rss_bytes),
            "ceiling_mb": mb(self.ceiling_bytes()),
            "headroom_mb": mb(self.headroom_bytes()),
            "cgroup": self.cgroup.as_ref().map(|c| serde_json::json!({
                "path": c.path,
                "max_mb": mb(c.max_bytes),
                "high_mb": mb(c.high_bytes),
                "current_mb": mb(c.current_bytes),
                "events": c.events,
            })),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Disk {
    /// `state` (models, job store) or `data` (machine files).
    pub role: &'static str,
    pub path: PathBuf,
    pub free_bytes: Option<u64>,
}

/// Takes readings; keeps the sysinfo handles between polls (they are costly to build).
pub struct Probe {
    root: PathBuf,
    /// The real system: sysinfo may be consulted.
    live: bool,
    folders: Vec<(&'static str, PathBuf)>,
    system: Option<sysinfo::System>,
    components: Option<sysinfo::Components>,
}

impl Probe {
    pub fn new(root: &Path, state_dir: &Path, data_dir: &Path) -> Probe {
        let live = root == Path::new("/");
        Probe {
            root: root.to_path_buf(),
            live,
            folders: vec![("state", state_dir.to_path_buf()), ("data", data_dir.to_path_buf())],
            system: if live { sysinfo::System::new().ok() } else { None },
            components: None,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    pub fn read(&mut self) -> Readings {
        let (temperature_c, temperature_source) = match self.hottest_zone() {
            Some((t, src)) => (Some(t), Some(src)),
            None => match self.sysinfo_temperature() {
                Some((t, src)) => (Some(t), Some(src)),
                None => (None, None),
            },
        };
        Readings {
            temperature_c,
            temperature_source,
            throttle: read_text(&self.path("sys/devices/platform/soc/soc:firmware/get_throttled")).and_then(|s| Throttle::parse(&s)),
            under_voltage_alarm: self.rpi_volt_alarm(),
            memory: self.memory(),
            disks: self.folders.iter().map(|(role, path)| Disk { role, path: path.clone(), free_bytes: free_space(path) }).collect(),
            sd_write_sectors: read_text(&self.path("sys/block/mmcblk0/stat")).and_then(|s| s.split_whitespace().nth(6)?.parse().ok()),
        }
    }

    fn hottest_zone(&self) -> Option<(f64, String)> {
        let dir = self.path("sys/class/thermal");
        let mut best: Option<(f64, String)> = None;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("thermal_zone") {
                continue;
            }
            let Some(milli) = read_text(&entry.path().join("temp")).and_then(|s| s.parse::<i64>().ok()) else { continue };
            let c = milli as f64 / 1000.0;
            if PLAUSIBLE_C.contains(&c) && best.as_ref().is_none_or(|(b, _)| c > *b) {
                best = Some((c, name));
            }
        }
        best
    }

    fn sysinfo_temperature(&mut self) -> Option<(f64, String)> {
        if !self.live {
            return None;
        }
        match &mut self.components {
            Some(c) => c.refresh(false),
            None => self.components = sysinfo::Components::new_with_refreshed_list().ok(),
        }
        self.components
            .as_ref()?
            .iter()
            .filter_map(|c| Some((f64::from(c.temperature()?), c.label().to_string())))
            .filter(|(t, _)| PLAUSIBLE_C.contains(t))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(t, label)| (t, format!("sysinfo: {label}")))
    }

    fn rpi_volt_alarm(&self) -> Option<bool> {
        let dir = self.path("sys/class/hwmon");
        std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
            let hw = e.path();
            if read_text(&hw.join("name"))? != "rpi_volt" {
                return None;
            }
            Some(read_text(&hw.join("in0_lcrit_alarm"))?.parse::<u8>().ok()? != 0)
        })
    }

    fn memory(&mut self) -> Memory {
        let (total_bytes, available_bytes) = match (&mut self.system, self.live) {
            (Some(sys), true) => {
                sys.refresh_memory();
                let (t, a) = (sys.total_memory(), sys.available_memory());
                (Some(t).filter(|&t| t > 0), Some(a).filter(|_| t > 0))
            }
            _ => read_text(&self.path("proc/meminfo")).map(|s| meminfo(&s)).unwrap_or((None, None)),
        };
        Memory { total_bytes, available_bytes, rss_bytes: crate::util::rss_bytes(), cgroup: self.cgroup() }
    }

    fn cgroup(&self) -> Option<Cgroup> {
        let own = read_text(&self.path("proc/self/cgroup"))?;
        // cgroup v2 has one line "0::/path"; hybrid systems list the v1 controllers beside it.
        let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim().trim_start_matches('/').to_string();
        let mounts = [self.path("sys/fs/cgroup"), self.path("sys/fs/cgroup/unified")];
        let dir = mounts.iter().map(|m| m.join(&rel)).find(|d| d.join("memory.current").is_file())?;
        let limit = |f: &str| read_text(&dir.join(f)).filter(|s| s != "max").and_then(|s| s.parse().ok());
        let events = read_text(&dir.join("memory.events"))
            .map(|s| {
                s.lines().filter_map(|l| l.split_once(' ')).filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?))).collect()
            })
            .unwrap_or_default();
        Some(Cgroup {
            path: format!("/{rel}"),
            max_bytes: limit("memory.max"),
            high_bytes: limit("memory.high"),
            current_bytes: limit("memory.current"),
            events,
        })
    }
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// (MemTotal, MemAvailable) in bytes from /proc/meminfo's kB lines.
fn meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// Free space for an unprivileged writer on the file system holding `path` (or its nearest existing parent,
/// since the data folder may not exist yet).
pub fn free_space(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let existing = if existing.as_os_str().is_empty() { Path::new(".") } else { existing };
    fs2::available_space(existing).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn hottest_zone_wins_and_implausible_zones_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "sys/class/thermal/thermal_zone0/temp", "61234\n");
        write(d.path(), "sys/class/thermal/thermal_zone1/temp", "77000\n");
        write(d.path(), "sys/class/thermal/thermal_zone2/temp", "-273150\n");
        write(d.path(), "sys/class/thermal/cooling_device0/temp", "99000\n");
        let r = Probe::new(d.path(), d.path(), d.path()).read();
        assert_eq!(r.temperature_c, Some(77.0));
        assert_eq!(r.temperature_source.as_deref(), Some("thermal_zone1"));
    }

    #[test]
    fn nothing_to_read_is_unknown_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        let r = Probe::new(d.path(), d.path(), &d.path().join("not/yet")).read();
        assert_eq!((r.temperature_c, r.throttle, r.under_voltage_alarm, r.sd_write_sectors), (None, None, None, None));
        assert_eq!((r.memory.total_bytes, r.memory.available_bytes, r.memory.cgroup.clone()), (None, None, None));
        assert!(r.disks.iter().all(|d| d.free_bytes.is_some()), "free space is read from the nearest existing folder");
    }

    #[test]
    fn meminfo_cgroup_hwmon_and_sd_counter_are_read() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        write(root, "proc/meminfo", "MemTotal:        3884000 kB\nMemFree:  100 kB\nMemAvailable:    1000000 kB\n");
        write(root, "proc/self/cgroup", "0::/system.slice/millwright.service\n");
        let cg = "sys/fs/cgroup/system.slice/millwright.service";
        write(root, &format!("{cg}/memory.max"), "1073741824\n");
        write(root, &format!("{cg}/memory.high"), "max\n");
        write(root, &format!("{cg}/memory.current"), "536870912\n");
        write(root, &format!("{cg}/memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        write(root, "sys/class/hwmon/hwmon0/name", "cpu_thermal\n");
        write(root, "sys/class/hwmon/hwmon1/name", "rpi_volt\n");
        write(root, "sys/class/hwmon/hwmon1/in0_lcrit_alarm", "1\n");
        write(root, "sys/block/mmcblk0/stat", "  4190   1393  311750   2203   1201   1622  52472   9570  0  5880  11773  0 0 0 0\n");
        let r = Probe::new(root, root, root).read();
        assert_eq!(r.memory.total_bytes, Some(3_884_000 * 1024));
        assert_eq!(r.memory.available_bytes, Some(1_000_000 * 1024));
        let c = r.memory.cgroup.clone().unwrap();
        assert_eq!((c.max_bytes, c.high_bytes, c.current_bytes), (Some(1 << 30), None, Some(1 << 29)));
        assert_eq!(c.events.get("oom_kill"), Some(&1));
        assert_eq!(c.path, "/system.slice/millwright.service");
        assert_eq!(r.memory.ceiling_bytes(), Some(1 << 30), "the cgroup limit is tighter than physical memory");
        assert_eq!(r.memory.headroom_bytes(), Some(1 << 29), "only 512 MiB are left under memory.max");
        assert_eq!(r.under_voltage_alarm, Some(true));
        assert_eq!(r.sd_write_sectors, Some(52472));
    }
}
