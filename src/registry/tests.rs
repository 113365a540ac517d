use super::*;
use crate::data::simulate::{FleetOptions, simulate_fleet};
use crate::ml::bundle;
use crate::ml::{Quality, TrainContext, TrainParams};
use std::sync::OnceLock;
use std::time::Duration;

const T: ModelType = ModelType::Anomaly;

/// One real model trained once and saved many times: saving, not training, is what is under test.
fn fixture() -> &'static Trained {
    static FIXTURE: OnceLock<Trained> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let opts = FleetOptions { out_dir: dir.path().to_path_buf(), machines: 1, rows: 3000, ..Default::default() };
        let fleet = simulate_fleet(&opts).unwrap();
        let table = crate::data::load_machine(dir.path(), &fleet[0].id).unwrap();
        let params = TrainParams { quality: Quality::Fast, threads: 1, ..Default::default() };
        crate::ml::train(T, &table, &params, &TrainContext::detached(Duration::from_secs(60), 1)).unwrap()
    })
}

fn trained() -> Trained {
    let t = fixture();
    Trained { payload: t.payload.clone(), report: t.report.clone(), fingerprint: t.fingerprint.clone() }
}

fn machine() -> MachineId {
    MachineId::parse("pump_1").unwrap()
}

fn save(reg: &Registry, job: &str) -> VersionInfo {
    reg.save(&machine(), &mut trained(), job).unwrap()
}

fn numbers(reg: &Registry) -> Vec<u32> {
    reg.versions("pump_1", T).unwrap().iter().map(|v| v.version).collect()
}

fn type_dir(state: &Path) -> PathBuf {
    state.join(MODELS_DIR).join("pump_1").join(T.as_str())
}

fn hidden_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect()
}

#[test]
fn versions_grow_and_old_ones_are_pruned() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    for (i, expected) in (1..=4).enumerate() {
        let info = save(&reg, &format!("job-{i}"));
        assert_eq!(info.version, expected);
        assert!(info.live);
        assert!(!info.oversize);
        assert_eq!(info.warning, None);
    }
    assert_eq!(numbers(&reg), [4, 3, 2]);
    assert!(!type_dir(state.path()).join("v1").exists());
    assert!(hidden_entries(&type_dir(state.path())).is_empty(), "no temp folders stay behind");

    let versions = reg.versions("pump_1", T).unwrap();
    assert_eq!(versions.iter().map(|v| v.live).collect::<Vec<_>>(), [true, false, false]);
    let live = reg.live("pump_1", T).unwrap().unwrap();
    assert_eq!(live, versions[0]);
    assert_eq!(live.job_id, "job-3");
    assert_eq!(live.machine_id, "pump_1");
    assert_eq!(live.model_type, T);
    assert!(live.size_bytes > 0);
    assert_eq!(live.headline["metric"], fixture().report.headline.metric.as_str());
    assert_eq!(live.trained_at, fixture().report.created_at);

    let report = reg.report("pump_1", T, None).unwrap();
    assert_eq!(report["model_size_bytes"].as_u64(), Some(live.size_bytes));
    assert!(reg.report("pump_1", T, Some(2)).is_ok());
    assert!(matches!(reg.report("pump_1", T, Some(1)), Err(RegistryError::NotFound { version: Some(1), .. })));
    let path = reg.model_path("pump_1", T, None).unwrap();
    assert!(path.ends_with("v4/model.mwm"));
    assert_eq!(fs::metadata(&path).unwrap().len(), live.size_bytes);
    assert_eq!(reg.machines().unwrap(), ["pump_1"]);
    assert!(reg.live("pump_1", ModelType::Regression).unwrap().is_none());
    assert!(matches!(reg.model_path("pump_1", ModelType::Regression, None), Err(RegistryError::NotFound { .. })));

    let meta: serde_json::Value = serde_json::from_slice(&fs::read(type_dir(state.path()).join("v4").join(META_FILE)).unwrap()).unwrap();
    assert_eq!(meta["version"], 4);
    assert_eq!(meta["job_id"], "job-3");
    assert_eq!(meta["oversize"], false);
}

#[test]
fn load_live_follows_saves_and_deletes() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 5, DEFAULT_WARN_SIZE_MB).unwrap();
    assert!(reg.load_live("pump_1", T).unwrap().is_none());
    save(&reg, "a");
    let (info, first) = reg.load_live("pump_1", T).unwrap().unwrap();
    assert_eq!(info.version, 1);
    let (_, again) = reg.load_live("pump_1", T).unwrap().unwrap();
    assert!(Arc::ptr_eq(&first, &again), "loaded once, then served from the cache");

    save(&reg, "b");
    let (info, second) = reg.load_live("pump_1", T).unwrap().unwrap();
    assert_eq!(info.version, 2);
    assert!(!Arc::ptr_eq(&first, &second));

    assert_eq!(reg.delete("pump_1", T, Some(2)).unwrap(), 1);
    let (info, _) = reg.load_live("pump_1", T).unwrap().unwrap();
    assert_eq!(info.version, 1);

    // A save by another process (a second registry on the same folder) is seen too.
    let other = Registry::open(state.path(), 5, DEFAULT_WARN_SIZE_MB).unwrap();
    assert_eq!(save(&other, "c").version, 3);
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0.version, 3);

    assert_eq!(reg.delete("pump_1", T, None).unwrap(), 2);
    assert!(reg.load_live("pump_1", T).unwrap().is_none());
    assert!(reg.live("pump_1", T).unwrap().is_none());
}

#[test]
fn numbers_are_never_reused() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    save(&reg, "a");
    save(&reg, "b");
    reg.delete("pump_1", T, Some(2)).unwrap();
    assert_eq!(save(&reg, "c").version, 3);
    reg.delete("pump_1", T, None).unwrap();
    let reopened = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    assert_eq!(save(&reopened, "d").version, 4);

    // Folders made without a counter (by hand, or by an older layout) still keep their numbers taken.
    fs::remove_file(type_dir(state.path()).join(COUNTER_FILE)).unwrap();
    assert_eq!(save(&reopened, "e").version, 5);
    fs::remove_file(type_dir(state.path()).join(COUNTER_FILE)).unwrap();
    reopened.delete("pump_1", T, Some(5)).unwrap();
    assert_eq!(save(&reopened, "f").version, 6);
}

#[test]
fn leftover_temp_folders_are_removed_on_open_and_never_listed() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    save(&reg, "a");
    let dir = type_dir(state.path());
    // An interrupted save looks complete inside; only its hidden name keeps it out.
    let dead = dir.join(".v2.tmp-999999999");
    fs::create_dir(&dead).unwrap();
    for f in [MODEL_FILE, REPORT_FILE, META_FILE] {
        fs::copy(dir.join("v1").join(f), dead.join(f)).unwrap();
    }
    fs::create_dir(dir.join(".v3.del.tmp-x")).unwrap();
    fs::write(dir.join(".next_version.tmp-999999999"), b"7").unwrap();
    assert_eq!(numbers(&reg), [1]);
    assert_eq!(reg.live("pump_1", T).unwrap().unwrap().version, 1);

    // One being written by another live process is left alone.
    let parent = std::os::unix::process::parent_id();
    let busy = dir.join(format!(".v9.tmp-{parent}"));
    fs::create_dir(&busy).unwrap();

    let reopened = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    let mut left = hidden_entries(&dir);
    left.sort();
    assert_eq!(left, [format!(".v9.tmp-{parent}")]);
    assert_eq!(numbers(&reopened), [1]);
}

#[test]
fn unreadable_version_folders_are_skipped() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 10, DEFAULT_WARN_SIZE_MB).unwrap();
    save(&reg, "a");
    save(&reg, "b");
    let dir = type_dir(state.path());
    fs::create_dir(dir.join("v7")).unwrap(); // no meta.json
    fs::create_dir(dir.join("v8")).unwrap();
    fs::write(dir.join("v8").join(META_FILE), b"{ garbage").unwrap();
    fs::create_dir(dir.join("v9")).unwrap(); // meta of another version
    fs::copy(dir.join("v1").join(META_FILE), dir.join("v9").join(META_FILE)).unwrap();
    fs::copy(dir.join("v1").join(MODEL_FILE), dir.join("v9").join(MODEL_FILE)).unwrap();
    fs::create_dir(dir.join("v01")).unwrap();
    fs::write(dir.join("v10"), b"a file, not a folder").unwrap();

    assert_eq!(numbers(&reg), [2, 1]);
    assert_eq!(reg.live("pump_1", T).unwrap().unwrap().version, 2);
    let (info, first) = reg.load_live("pump_1", T).unwrap().unwrap();
    assert_eq!(info.version, 2);
    let (_, again) = reg.load_live("pump_1", T).unwrap().unwrap();
    assert!(Arc::ptr_eq(&first, &again), "unreadable newer folders do not defeat the cache");
    assert!(matches!(reg.report("pump_1", T, Some(8)), Err(RegistryError::Corrupt { .. })));
    // Unreadable folders, and even stray files named like versions, still take their numbers.
    assert_eq!(save(&reg, "c").version, 11);
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0.version, 11);
}

#[test]
fn tiny_limit_marks_the_model_oversize_everywhere() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 3, 0.001).unwrap();
    let mut tr = trained();
    let info = reg.save(&machine(), &mut tr, "job").unwrap();
    assert!(info.oversize);
    let warning = info.warning.clone().unwrap();
    assert!(warning.contains("over the 0.001 MB warning limit"), "{warning}");
    assert!(warning.starts_with("model is "), "{warning}");
    assert!(tr.report.warnings.contains(&warning));

    let dir = type_dir(state.path()).join("v1");
    let meta: serde_json::Value = serde_json::from_slice(&fs::read(dir.join(META_FILE)).unwrap()).unwrap();
    assert_eq!(meta["oversize"], true);
    assert_eq!(meta["warning"], warning.as_str());
    let report = reg.report("pump_1", T, Some(1)).unwrap();
    assert!(report["warnings"].as_array().unwrap().iter().any(|w| w == warning.as_str()));
    assert_eq!(reg.live("pump_1", T).unwrap().unwrap(), info);
}

#[test]
fn a_600_mb_model_is_over_the_default_limit() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    let dir = type_dir(state.path()).join("v1");
    fs::create_dir_all(&dir).unwrap();
    // Sparse: 600 MB long, next to nothing on disk.
    fs::File::create(dir.join(MODEL_FILE)).unwrap().set_len(600 << 20).unwrap();

    let (size, oversize, warning) = reg.check_size(&dir.join(MODEL_FILE));
    assert_eq!(size, 600 << 20);
    assert!(oversize);
    let warning = warning.unwrap();
    assert!(warning.starts_with("model is 600.0 MB, over the 500 MB warning limit: train with fewer trees"), "{warning}");

    assert!(reg.versions("pump_1", T).unwrap().is_empty(), "no meta.json yet");
    let info = reg.refresh_meta("pump_1", T, 1).unwrap();
    assert!(info.oversize && info.live);
    assert_eq!(info.size_bytes, 600 << 20);
    assert_eq!(info.warning.as_deref(), Some(warning.as_str()));
    assert_eq!(reg.versions("pump_1", T).unwrap(), [info]);

    let small = dir.join("small.bin");
    fs::write(&small, vec![0u8; 1000]).unwrap();
    assert_eq!(reg.check_size(&small), (1000, false, None));
    assert_eq!(reg.check_size(&dir.join("missing")), (0, false, None));
}

#[test]
fn invalid_machine_ids_are_refused() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    for bad in ["../etc", "..", "", "Pump", "a/b", "pump 1", "/abs"] {
        let refused = |r: Result<(), RegistryError>| assert!(matches!(r, Err(RegistryError::InvalidMachine(_))), "{bad:?}");
        refused(reg.live(bad, T).map(drop));
        refused(reg.versions(bad, T).map(drop));
        refused(reg.report(bad, T, None).map(drop));
        refused(reg.model_path(bad, T, Some(1)).map(drop));
        refused(reg.load_live(bad, T).map(drop));
        refused(reg.delete(bad, T, None).map(drop));
        refused(reg.refresh_meta(bad, T, 1).map(drop));
    }
    assert!(reg.machines().unwrap().is_empty());
    assert!(matches!(Registry::open(state.path(), 3, 0.0), Err(RegistryError::Config(_))));
    assert!(matches!(Registry::open(state.path(), 3, f64::NAN), Err(RegistryError::Config(_))));
}

#[test]
fn delete_one_version_or_all() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 5, DEFAULT_WARN_SIZE_MB).unwrap();
    for job in ["a", "b", "c"] {
        save(&reg, job);
    }
    assert_eq!(reg.delete("pump_1", T, Some(2)).unwrap(), 1);
    assert_eq!(numbers(&reg), [3, 1]);
    assert!(matches!(reg.delete("pump_1", T, Some(2)), Err(RegistryError::NotFound { version: Some(2), .. })));
    assert_eq!(reg.delete("pump_1", ModelType::Regression, None).unwrap(), 0);
    assert_eq!(reg.delete("pump_1", T, None).unwrap(), 2);
    assert!(numbers(&reg).is_empty());
    assert!(reg.machines().unwrap().is_empty());
    assert!(hidden_entries(&type_dir(state.path())).is_empty());
}

#[test]
fn keep_versions_zero_still_keeps_the_live_one() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 0, DEFAULT_WARN_SIZE_MB).unwrap();
    save(&reg, "a");
    save(&reg, "b");
    assert_eq!(numbers(&reg), [2]);
}

/// Writes half the bundle, then fails as a full disk does; every other file is written for real.
fn disk_fills_during_the_bundle(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if path.ends_with(MODEL_FILE) {
        fs::write(path, &bytes[..bytes.len() / 2])?;
        return Err(io::Error::from_raw_os_error(28));
    }
    fsx::write_atomic(path, bytes)
}

#[test]
fn a_full_disk_keeps_the_previous_version_live() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    save(&reg, "a");
    let before = reg.load_live("pump_1", T).unwrap().unwrap();

    let err = reg.save_with(&machine(), &mut trained(), "full", disk_fills_during_the_bundle, SaveAs::Live).unwrap_err();
    assert!(matches!(err, RegistryError::DiskFull { ref path, .. } if path.ends_with(MODEL_FILE)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("disk full") && text.contains("previous model version stays live"), "{text}");
    assert!(hidden_entries(&type_dir(state.path())).is_empty(), "the temp folder is removed");
    assert_eq!(numbers(&reg), [1]);
    let after = reg.load_live("pump_1", T).unwrap().unwrap();
    assert_eq!(after.0, before.0);

    // The failed attempt used up its number; the next save does not reuse it.
    assert_eq!(save(&reg, "b").version, 3);
}

/// The model files are written by the registry, so its errors carry the `io::Error` itself: a full disk is
/// told from its kind or errno, and any other failure keeps the error and the file it happened to.
#[test]
fn write_errors_keep_their_io_source() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    let storage_full: WriteFile = |path, bytes| {
        if path.ends_with(REPORT_FILE) { Err(io::ErrorKind::StorageFull.into()) } else { fsx::write_atomic(path, bytes) }
    };
    let err = reg.save_with(&machine(), &mut trained(), "a", storage_full, SaveAs::Live).unwrap_err();
    assert!(matches!(err, RegistryError::DiskFull { ref path, .. } if path.ends_with(REPORT_FILE)), "{err:?}");

    let denied: WriteFile = |_, _| Err(io::ErrorKind::PermissionDenied.into());
    let err = reg.save_with(&machine(), &mut trained(), "b", denied, SaveAs::Live).unwrap_err();
    let RegistryError::Io { path, source } = &err else { panic!("{err:?}") };
    assert!(path.ends_with(MODEL_FILE), "{}", path.display());
    assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
    let chained = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<io::Error>());
    assert_eq!(chained.map(io::Error::kind), Some(io::ErrorKind::PermissionDenied));
    assert!(numbers(&reg).is_empty());
    assert!(hidden_entries(&type_dir(state.path())).is_empty());
}

/// A version's model file is the bundle `Trained` hands out: same bytes, the training data's fingerprint in
/// its header, and the size `bundle_size` computes without building it.
#[test]
fn the_saved_file_is_the_trained_bundle() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 3, DEFAULT_WARN_SIZE_MB).unwrap();
    let mut tr = trained();
    let info = reg.save(&machine(), &mut tr, "job").unwrap();
    let bytes = fs::read(type_dir(state.path()).join("v1").join(MODEL_FILE)).unwrap();
    assert_eq!(bytes, tr.bundle().unwrap());
    assert_eq!(info.size_bytes, bytes.len() as u64);
    assert_eq!(tr.bundle_size().unwrap(), bytes.len() as u64);
    assert_eq!(tr.report.model_size_bytes, bytes.len() as u64);
    let (header, _) = bundle::decode(&bytes).unwrap();
    assert_eq!(header.data_fingerprint, fixture().fingerprint);
    assert_eq!(fixture().fingerprint.len(), 16);
    let report = reg.report("pump_1", T, Some(1)).unwrap();
    assert_eq!(report["model_size_bytes"], bytes.len() as u64);
}

/// A tmpfs mounted over a folder for one test, lazily unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None when this process may not mount (not root): the caller says so and skips.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let status = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).status();
        status.is_ok_and(|s| s.success()).then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` with one file, then frees `keep` bytes of it again.
fn fill_leaving(path: &Path, keep: u64) {
    use std::io::Write;
    let mut f = fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    let err = loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(28), "filling stopped for another reason: {err}");
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(keep)).unwrap();
    f.sync_all().unwrap();
}

/// The real thing behind `a_full_disk_keeps_the_previous_version_live`: a small file system that runs out while
/// the bundle is written. The kernel's ENOSPC reaches the registry as an `io::Error`, so the save fails as
/// DiskFull naming the model file, leaves nothing behind, and the previous version stays live.
#[test]
fn a_file_system_that_fills_during_the_bundle_is_disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&state, "2m") else {
        eprintln!("skipping: mounting a small tmpfs needs root (CI runs as root)");
        return;
    };
    let reg = Registry::open(&state, 3, DEFAULT_WARN_SIZE_MB).unwrap();
    save(&reg, "a");
    let before = reg.load_live("pump_1", T).unwrap().unwrap();
    let bundle_len = trained().bundle().unwrap().len() as u64;
    assert!(bundle_len > 64 * 1024, "the bundle must not fit in what is left: {bundle_len} bytes");

    let filler = state.join("filler");
    fill_leaving(&filler, 32 * 1024);
    let err = reg.save(&machine(), &mut trained(), "full").unwrap_err();
    assert!(matches!(err, RegistryError::DiskFull { ref path, .. } if path.ends_with(MODEL_FILE)), "{err:?}");
    assert!(hidden_entries(&type_dir(&state)).is_empty(), "the temp folder is removed");
    assert_eq!(numbers(&reg), [1]);
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0, before.0);

    fs::remove_file(&filler).unwrap();
    assert_eq!(save(&reg, "b").version, 3);
}

#[test]
fn a_pinned_version_answers_survives_pruning_and_a_live_save_or_unpin_releases_it() {
    let state = tempfile::tempdir().unwrap();
    let reg = Registry::open(state.path(), 2, DEFAULT_WARN_SIZE_MB).unwrap();
    save(&reg, "a");
    save(&reg, "b");
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0.version, 2);
    // A roll-back: v1 answers, is live in the listing, and the cached v2 is not served any more.
    assert!(reg.pin("pump_1", T, 1, "v2 raised false alarms").unwrap().live);
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0.version, 1);
    let live: Vec<(u32, bool)> = reg.versions("pump_1", T).unwrap().iter().map(|v| (v.version, v.live)).collect();
    assert_eq!(live, [(2, false), (1, true)]);
    assert_eq!(reg.pinned("pump_1", T).unwrap().unwrap().by, PinBy::Person);
    // A challenger kept beside the pinned one: saved, not live, and pruning (2 kept) spares the pinned v1.
    let kept = reg.save_as(&machine(), &mut trained(), "c", SaveAs::KeepLive { reason: "worse".into() }).unwrap();
    assert_eq!((kept.version, kept.live), (3, false));
    assert_eq!(numbers(&reg), [3, 2, 1], "the pinned version is never pruned");
    assert_eq!(reg.live("pump_1", T).unwrap().unwrap().version, 1);
    assert_eq!(reg.pinned("pump_1", T).unwrap().unwrap().by, PinBy::Person, "a person's pin stays theirs");
    // A pin survives a restart.
    drop(reg);
    let reg = Registry::open(state.path(), 2, DEFAULT_WARN_SIZE_MB).unwrap();
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0.version, 1);
    // Unpinned: the newest answers again.
    assert_eq!(reg.unpin("pump_1", T).unwrap().map(|p| p.version), Some(1));
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0.version, 3);
    assert_eq!(reg.unpin("pump_1", T).unwrap(), None);
    // A worse challenger with no pin pins the live one; a version that goes live removes that pin.
    let kept = reg.save_as(&machine(), &mut trained(), "d", SaveAs::KeepLive { reason: "worse".into() }).unwrap();
    assert!(!kept.live);
    let pin = reg.pinned("pump_1", T).unwrap().unwrap();
    assert_eq!((pin.version, pin.by, pin.reason.as_str()), (3, PinBy::Challenger, "worse"));
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0.version, 3);
    assert!(save(&reg, "e").live);
    assert_eq!(reg.pinned("pump_1", T).unwrap(), None);
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0.version, 5);
    // Pinning a version that is not there is refused.
    assert!(matches!(reg.pin("pump_1", T, 99, "x"), Err(RegistryError::NotFound { .. })));
    // A pin whose version was deleted is ignored.
    reg.pin("pump_1", T, 4, "x").unwrap();
    reg.delete("pump_1", T, Some(4)).unwrap();
    assert_eq!(reg.load_live("pump_1", T).unwrap().unwrap().0.version, 5);
}
