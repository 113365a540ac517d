//! Loading real datasets through their `machine.toml`, the legacy layout in both formats, and every bad-data error.
use millwright::data::write::{Format, OutTable, write_table};
use millwright::data::{self, DataError, Split};
use std::path::{Path, PathBuf};

fn example(name: &str) -> Option<PathBuf> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    if !shared.is_dir() {
        eprintln!("skipping: {} is absent (the shared datasets sit beside the repository)", shared.display());
        return None;
    }
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name))
}

#[test]
fn cmapss_fd001_train_and_test_with_rul_file() {
    let Some(dir) = example("cmapss-fd001") else { return };
    let t = data::load_machine_dir(&dir).unwrap();
    let split = t.given_split.as_ref().unwrap();
    let train: Vec<usize> = (0..t.n_rows()).filter(|&i| split[i] == Split::Train).collect();
    assert_eq!(train.len(), 20_631);
    assert_eq!(t.n_rows() - train.len(), 13_096);
    assert_eq!(t.n_lives(), 200, "100 train engines + 100 test engines, kept apart");
    assert_eq!(t.sensors.len(), 24, "3 settings + 21 sensors; unit and cycle are not inputs");
    let rul = t.rul.as_ref().unwrap();
    // Run to failure: every train engine ends at RUL 0; the first test engine ends at RUL_FD001's first value, 112.
    let ranges = t.life_ranges();
    for (_, r) in ranges.iter().take(100) {
        assert_eq!(rul[r.end - 1], 0.0);
    }
    let first_test = &ranges[100].1;
    assert_eq!(rul[first_test.end - 1], 112.0);
    assert_eq!(rul[first_test.end - 2], 113.0);
}

#[test]
fn ai4i_2020_rows_and_failures() {
    let Some(dir) = example("ai4i2020") else { return };
    let t = data::load_machine_dir(&dir).unwrap();
    assert_eq!(t.n_rows(), 10_000);
    assert_eq!(t.label_positives(), Some(339));
    let names = t.sensor_names();
    assert!(names.contains(&"Type") && names.contains(&"Torque [Nm]"));
    for dropped in ["UDI", "Product ID", "Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF"] {
        assert!(!names.contains(&dropped), "{dropped} must not be an input");
    }
    assert_eq!(t.split_hint.method, data::SplitMethod::Stratified);
}

#[test]
fn skab_valve1_with_anomaly_column_and_healthy_reference() {
    let Some(dir) = example("skab-valve1") else { return };
    let t = data::load_machine_dir(&dir).unwrap();
    assert_eq!(t.sources.len(), 17, "anomaly-free + valve1/0..15");
    assert_eq!(t.n_lives(), 17);
    assert_eq!(t.sensors.len(), 8);
    let anomaly = t.anomaly.as_ref().unwrap();
    let split = t.given_split.as_ref().unwrap();
    let healthy = (0..t.n_rows()).filter(|&i| split[i] == Split::Healthy).count();
    assert_eq!(healthy, 9_405);
    assert!((0..t.n_rows()).filter(|&i| split[i] == Split::Healthy).all(|i| anomaly[i] == 0.0));
    let positives = anomaly.iter().filter(|a| **a == 1.0).count();
    assert!(positives > 1_000, "valve1 has labelled anomalies, got {positives}");
    assert_eq!(t.interval_s, 1.0);
}

#[test]
fn nab_ambient_temperature_with_windows() {
    let Some(dir) = example("nab-ambient-temperature") else { return };
    let t = data::load_machine_dir(&dir).unwrap();
    assert_eq!(t.n_rows(), 7_267);
    assert_eq!(t.interval_s, 3600.0);
    let flagged = t.anomaly.as_ref().unwrap().iter().filter(|a| **a == 1.0).count();
    assert!(flagged > 300 && flagged < 1_500, "two labelled windows, got {flagged} rows");
}

fn legacy_machine(dir: &Path, format: Format) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, start, n) in [("train", 0, 60), ("val", 60, 20), ("test", 80, 20)] {
        let ts: Vec<f64> = (start..start + n).map(|i| 1_700_000_000.0 + i as f64 * 3600.0).collect();
        // Two lives per file: RUL counts down and resets.
        let rul: Vec<f64> = (0..n).map(|i| ((n / 2) - 1 - (i % (n / 2))) as f64).collect();
        let temp: Vec<f64> = (0..n).map(|i| if i == 3 { f64::NAN } else { 40.0 + i as f64 * 0.1 }).collect();
        let vib: Vec<f64> = (0..n).map(|i| 1.0 + (i % 7) as f64).collect();
        let t = OutTable { timestamps: &ts, columns: vec![("rul", &rul), ("bearing_temp_C", &temp), ("rms_velocity_mm_s", &vib)] };
        write_table(&dir.join(format!("{name}.{}", format.extension())), &t, format).unwrap();
    }
}

#[test]
fn legacy_layout_in_csv_and_parquet_reads_the_same() {
    let d = tempfile::tempdir().unwrap();
    let mut tables = Vec::new();
    for format in [Format::Csv, Format::Parquet] {
        let data_dir = d.path().join(format.extension());
        legacy_machine(&data_dir.join("machines/pump_a_001"), format);
        let t = data::load_machine(&data_dir, "pump_a_001").unwrap();
        assert_eq!(t.layout, data::Layout::Legacy { format: format.extension().into() });
        assert_eq!(t.n_rows(), 100);
        assert_eq!(t.n_lives(), 6, "RUL resets mark lives");
        assert!(t.lives_known);
        assert_eq!(t.sensor_names(), ["bearing_temp_C", "rms_velocity_mm_s"]);
        assert_eq!(t.sensors[0].unit, "°C");
        assert!(t.sensors[0].values[3].is_nan(), "an empty cell is a missing reading");
        assert_eq!(t.interval_s, 3600.0);
        let split = t.given_split.clone().unwrap();
        assert_eq!(split.iter().filter(|s| **s == Split::Val).count(), 20);
        tables.push(t);
    }
    assert_eq!(tables[0].timestamps, tables[1].timestamps);
    assert_eq!(tables[0].rul, tables[1].rul);
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), body).unwrap();
}

fn load_err(files: &[(&str, &str)]) -> String {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("machines/m1");
    for (name, body) in files {
        write(&m, name, body);
    }
    match data::load_machine(d.path(), "m1") {
        Ok(_) => panic!("expected an error for {files:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_data_gets_precise_errors() {
    let msg = load_err(&[("train.csv", "timestamp,temp_C\n2024-01-01T00:00:00Z,20\n2024-01-01T01:00:00Z,hot\n")]);
    assert!(msg.contains("train.csv") && msg.contains("row 3") && msg.contains("temp_C") && msg.contains("hot"), "{msg}");

    let msg = load_err(&[("train.csv", "timestamp,temp_C\n2024-01-01T02:00:00Z,20\n2024-01-01T01:00:00Z,21\n")]);
    assert!(msg.contains("row 3") && msg.contains("not after"), "{msg}");

    let msg = load_err(&[("train.csv", "timestamp,rul\n2024-01-01T00:00:00Z,5\n2024-01-01T01:00:00Z,4\n")]);
    assert!(msg.contains("no sensor columns"), "{msg}");

    let msg = load_err(&[("train.csv", "timestamp,temp_C,vib\n2024-01-01T00:00:00Z,20,\n2024-01-01T01:00:00Z,21,NaN\n")]);
    assert!(msg.contains("\"vib\"") && msg.contains("no values"), "{msg}");

    let msg = load_err(&[("train.csv", "timestamp,temp_C\n2024-01-01T00:00:00Z,20\n")]);
    assert!(msg.contains("only 1 row"), "{msg}");

    let msg = load_err(&[("train.csv", "timestamp,temp_C\nnot-a-date,20\n2024-01-01T01:00:00Z,21\n")]);
    assert!(msg.contains("row 2") && msg.contains("timestamp"), "{msg}");

    let msg = load_err(&[("notes.txt", "hello")]);
    assert!(msg.contains("no machine data found"), "{msg}");

    let msg = load_err(&[("train.parquet", "this is not parquet")]);
    assert!(msg.contains("train.parquet") && msg.contains("Parquet"), "{msg}");

    let msg = load_err(&[("machine.toml", "[columns]\nbogus = 1\n"), ("train.csv", "timestamp,t\n1,2\n2,3\n")]);
    assert!(msg.contains("machine.toml") && msg.contains("bogus"), "{msg}");

    let msg =
        load_err(&[("machine.toml", "[[files]]\npath = \"x.csv\"\n[columns]\nlabel = \"fail\"\n"), ("x.csv", "timestamp,t\n1,2\n2,3\n")]);
    assert!(msg.contains("x.csv") && msg.contains("\"fail\""), "{msg}");
}

#[test]
fn machine_ids_are_validated_before_touching_the_disk() {
    let d = tempfile::tempdir().unwrap();
    for bad in ["../etc", "a/b", "%2e%2e", "a+b", "a#b", "UPPER", ""] {
        assert!(matches!(data::load_machine(d.path(), bad), Err(DataError::InvalidMachineId { .. })), "{bad}");
    }
    assert!(matches!(data::load_machine(d.path(), "nope"), Err(DataError::UnknownMachine { .. })));
}

#[test]
fn described_table_with_whitespace_and_explicit_names() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("machines/press");
    write(
        &m,
        "machine.toml",
        r#"
[machine]
name = "Press 7"
family = "hydraulic"
[[files]]
path = "runs.txt"
delimiter = "whitespace"
header = false
names = ["unit", "cycle", "pressure", "junk"]
[columns]
timestamp = "cycle"
step_seconds = 60
unit = "unit"
rul_from_end = true
ignore = ["junk"]
[units]
pressure = "bar"
"#,
    );
    write(&m, "runs.txt", "1 1 10.0 0\n1 2 10.5 0  \n1 3 11.0 0\n2 1 9.0 0\n2 2 9.5 0\n");
    let t = data::load_machine(d.path(), "press").unwrap();
    assert_eq!(t.display_name(), "Press 7");
    assert_eq!(t.sensor_names(), ["pressure"]);
    assert_eq!(t.sensors[0].unit, "bar");
    assert_eq!(t.n_lives(), 2);
    assert_eq!(t.interval_s, 60.0);
    let rul = t.rul.unwrap();
    assert!((rul[0] - 2.0 * 60.0 / 3600.0).abs() < 1e-9, "two steps of a minute before the end, in hours: {}", rul[0]);
    assert_eq!(rul[2], 0.0);
}

#[test]
fn the_default_demo_fleet_loads_quickly() {
    let d = tempfile::tempdir().unwrap();
    let opts = millwright::data::simulate::FleetOptions { out_dir: d.path().to_path_buf(), ..Default::default() };
    let t0 = std::time::Instant::now();
    let fleet = millwright::data::simulate::simulate_fleet(&opts).unwrap();
    let simulated = t0.elapsed();
    let t0 = std::time::Instant::now();
    let all = data::list_machines(d.path()).unwrap();
    let loaded = t0.elapsed();
    eprintln!("default fleet: simulated {} machines in {simulated:?}, loaded them in {loaded:?}", fleet.len());
    assert_eq!(all.len(), 10);
    for (id, t) in &all {
        let t = t.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!((45_000..=55_000).contains(&t.n_rows()), "{id}: {} rows", t.n_rows());
        assert!(t.n_lives() >= 20, "{id}: {} lives", t.n_lives());
    }
    if !cfg!(debug_assertions) {
        assert!(loaded < std::time::Duration::from_secs(2), "loading took {loaded:?}");
        assert!(simulated < std::time::Duration::from_secs(10), "simulating took {simulated:?}");
    }
}

/// Two million 1 s readings of 20 sensors are 384 MB as a table. Put onto the training grid as they are read,
/// the whole `train` (load, then the anomaly model) stays under 40 % of that: the test fails when loading
/// holds the readings whole.
#[test]
fn a_long_one_second_history_trains_without_ever_holding_its_readings() {
    let d = tempfile::tempdir().unwrap();
    let opts = data::simulate::FleetOptions {
        out_dir: d.path().to_path_buf(),
        machines: 1,
        rows: 2_000_000,
        interval_s: 1.0,
        min_sensors: 20,
        ..Default::default()
    };
    let sim = data::simulate::simulate_machine(0, &opts).unwrap();
    assert_eq!(sim.sensors, 20);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_millwright"))
        .args(["train", &sim.id, "--models", "anomaly", "--threads", "1"])
        .arg("--data-dir")
        .arg(d.path())
        .env_clear()
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let peak_mb: f64 = stdout
        .lines()
        .find_map(|l| l.split_once("peak RSS ")?.1.strip_suffix(" MB")?.parse().ok())
        .unwrap_or_else(|| panic!("no peak in {stdout}"));
    let table_mb = 2_000_000.0 * (20.0 + 4.0) * 8.0 / 1e6;
    println!("peak RSS {peak_mb} MB, the readings as a table {table_mb} MB");
    assert!(peak_mb < 0.4 * table_mb, "peak RSS {peak_mb} MB: the readings were held ({table_mb} MB as a table)");
    assert!(stderr.contains("about 2000000 readings at 1 s aggregated onto 30 s steps"), "{stderr}");
}
