use super::*;
use crate::data::Split;
use std::collections::BTreeSet;

const ROWS: usize = 5_000;

fn options(dir: &Path, machines: usize, rows: usize, seed: u64) -> FleetOptions {
    FleetOptions { out_dir: dir.to_path_buf(), machines, seed, rows, interval_s: 3600.0, format: Format::Parquet, min_sensors: 0 }
}

/// The in-memory history of every default machine, for the physics checks.
fn default_fleet_data(rows: usize, seed: u64) -> Vec<(&'static Family, MachineData)> {
    (0..catalogue().len())
        .map(|i| {
            let (model, family) = model_of(i).unwrap();
            (family, generate(model, family, rows, 3600.0, machine_seed(seed, i)))
        })
        .collect()
}

fn nan_mean(xs: &[f64]) -> f64 {
    let (sum, n) = xs.iter().filter(|v| !v.is_nan()).fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// Mean of a sensor over the first and the last 10 % of a life.
fn ends_of_life(values: &[f64], life: &Life) -> (f64, f64) {
    let tenth = (life.rows / 10).max(1);
    let r = life.range();
    (nan_mean(&values[r.start..r.start + tenth]), nan_mean(&values[r.end - tenth..r.end]))
}

/// Readings minus what load alone explains (a quadratic in load fitted on the first fifth of every life,
/// where wear has barely started), so a trend is judged at equal duty the way an engineer trends it.
fn load_adjusted(values: &[f64], load: &[f64], lives: &[Life]) -> Vec<f64> {
    let rows: Vec<usize> = lives.iter().flat_map(|l| l.start..l.start + l.rows / 5).filter(|&r| !values[r].is_nan()).collect();
    let basis = |x: f64| [1.0, x, x * x];
    let (mut xtx, mut xty) = ([[0.0; 3]; 3], [0.0; 3]);
    for &r in &rows {
        let b = basis(load[r]);
        for i in 0..3 {
            xty[i] += b[i] * values[r];
            for j in 0..3 {
                xtx[i][j] += b[i] * b[j];
            }
        }
    }
    let coef = solve3(xtx, xty);
    values.iter().zip(load).map(|(v, x)| v - basis(*x).iter().zip(&coef).map(|(b, c)| b * c).sum::<f64>()).collect()
}

// Gaussian elimination reads best with indices.
#[allow(clippy::needless_range_loop)]
fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> [f64; 3] {
    for i in 0..3 {
        a[i][i] += 1e-9;
        for k in i + 1..3 {
            let f = a[k][i] / a[i][i];
            for j in 0..3 {
                a[k][j] -= f * a[i][j];
            }
            b[k] -= f * b[i];
        }
    }
    let mut x = [0.0; 3];
    for i in (0..3).rev() {
        x[i] = (b[i] - (i + 1..3).map(|j| a[i][j] * x[j]).sum::<f64>()) / a[i][i];
    }
    x
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = a.iter().zip(b).filter(|(x, y)| !x.is_nan() && !y.is_nan()).map(|(x, y)| (*x, *y)).collect();
    let n = pairs.len() as f64;
    let (ma, mb) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let cov: f64 = pairs.iter().map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = pairs.iter().map(|(x, _)| (x - ma).powi(2)).sum();
    let vb: f64 = pairs.iter().map(|(_, y)| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn autocorrelation(xs: &[f64], lag: usize) -> f64 {
    correlation(&xs[..xs.len() - lag], &xs[lag..])
}

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for machine in std::fs::read_dir(dir.join("machines")).unwrap() {
        let machine = machine.unwrap().path();
        for f in std::fs::read_dir(&machine).unwrap() {
            let f = f.unwrap().path();
            let name = format!("{}/{}", machine.file_name().unwrap().to_string_lossy(), f.file_name().unwrap().to_string_lossy());
            files.push((name, std::fs::read(&f).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn families_are_complete_and_consistent() {
    assert!(families().len() >= 6);
    for f in families() {
        assert!((6..=12).contains(&f.sensors.len()), "{}: {} sensors", f.name, f.sensors.len());
        assert!(f.modes.len() >= 2, "{}", f.name);
        let names: BTreeSet<&str> = f.sensors.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), f.sensors.len(), "{}: duplicate sensor names", f.name);
        for m in f.modes {
            assert!(names.contains(m.signature), "{}/{}: signature {}", f.name, m.name, m.signature);
            assert!(m.effects.iter().any(|e| e.sensor == m.signature), "{}/{}: signature unaffected", f.name, m.name);
            for e in m.effects {
                assert!(names.contains(e.sensor), "{}/{}: unknown sensor {}", f.name, m.name, e.sensor);
            }
        }
    }
    for m in catalogue() {
        assert!(family(m.family).is_some(), "{}", m.slug);
    }
}

#[test]
fn ids_are_valid_unique_and_cover_every_family() {
    let ids: Vec<String> = (0..35).map(machine_id).collect();
    for id in &ids {
        MachineId::parse(id).unwrap();
    }
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
    assert_eq!(ids[0], "motor_siemens_1la7_001");
    assert_eq!(ids[10], "motor_siemens_1la7_011");
    let covered: BTreeSet<&str> = (0..10).map(|i| model_of(i).unwrap().1.name).collect();
    assert_eq!(covered.len(), families().len());
}

#[test]
fn same_seed_same_bytes_and_machine_k_independent_of_fleet_size() {
    let (a, b, c, d) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    simulate_fleet(&options(a.path(), 3, 3_000, 7)).unwrap();
    simulate_fleet(&options(b.path(), 3, 3_000, 7)).unwrap();
    simulate_fleet(&options(c.path(), 3, 3_000, 8)).unwrap();
    simulate_fleet(&options(d.path(), 1, 3_000, 7)).unwrap();
    let (fa, fb, fc, fd) = (read_all(a.path()), read_all(b.path()), read_all(c.path()), read_all(d.path()));
    assert_eq!(fa.len(), 3 * 4, "train, val, test and machine.toml per machine");
    assert!(fa == fb, "same seed must give byte-identical files");
    let differs = fa.iter().zip(&fc).filter(|(x, y)| x.0.ends_with(".parquet") && x.1 != y.1).count();
    assert_eq!(differs, 9, "another seed must change every data file");
    assert!(fd.iter().all(|f| fa.contains(f)), "machine 0 must not depend on the fleet size");
}

#[test]
fn rul_counts_down_each_life_to_zero() {
    for interval_s in [3600.0, 600.0] {
        let (model, family) = model_of(3).unwrap();
        let d = generate(model, family, ROWS, interval_s, 11);
        let dt_h = interval_s / 3600.0;
        assert_eq!(d.lives.iter().map(|l| l.rows).sum::<usize>(), ROWS);
        assert!(d.lives.len() >= 6, "{} lives", d.lives.len());
        for life in &d.lives {
            let rul = &d.rul[life.range()];
            assert_eq!(*rul.last().unwrap(), 0.0);
            assert!(rul.windows(2).all(|w| (w[0] - w[1] - dt_h).abs() < 1e-9));
            assert!((d.wear[life.range()].last().unwrap() - 1.0).abs() < 1e-12, "every life ends at failure");
            assert!(d.wear[life.start] >= 0.0 && d.wear[life.start] <= 0.3);
        }
        assert!(d.timestamps.windows(2).all(|w| w[1] - w[0] == interval_s));
        assert_eq!(d.timestamps[0], START_EPOCH_S);
    }
}

#[test]
fn bearing_wear_raises_vibration_superlinearly() {
    let mut checked = 0;
    for (family, d) in default_fleet_data(ROWS, 3) {
        for life in &d.lives {
            let mode = &family.modes[life.mode];
            if mode.name != "bearing_wear" {
                continue;
            }
            let k = family.sensor_index(mode.signature).unwrap();
            let (first, last) = ends_of_life(&d.sensors[k], life);
            assert!(last > 1.5 * first, "{} {}: vibration {first:.2} → {last:.2}", family.name, mode.signature);
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} bearing-wear lives");
}

#[test]
fn overheating_lives_heat_up() {
    const OVERHEATING: [&str; 5] = ["cooling_loss", "cooler_fouling", "cooler_failure", "insulation_breakdown", "lubrication_loss"];
    let mut checked = 0;
    for (family, d) in default_fleet_data(ROWS, 4) {
        for life in &d.lives {
            let mode = &family.modes[life.mode];
            if !OVERHEATING.contains(&mode.name) {
                continue;
            }
            let k = family.sensor_index(mode.signature).unwrap();
            assert_eq!(family.sensors[k].kind, Kind::Temperature);
            let adjusted = load_adjusted(&d.sensors[k], &d.load, &d.lives);
            let (first, last) = ends_of_life(&adjusted, life);
            assert!(last > first + 5.0, "{} {} {}: {first:.1} → {last:.1} °C", family.name, mode.name, mode.signature);
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} overheating lives");
}

#[test]
fn every_failure_mode_moves_its_signature_the_right_way() {
    for (family, d) in default_fleet_data(ROWS, 5) {
        for life in &d.lives {
            let mode = &family.modes[life.mode];
            let k = family.sensor_index(mode.signature).unwrap();
            let rises = mode.effects.iter().filter(|e| e.sensor == mode.signature).map(|e| e.size).sum::<f64>() > 0.0;
            let adjusted = load_adjusted(&d.sensors[k], &d.load, &d.lives);
            let (first, last) = ends_of_life(&adjusted, life);
            let moved = if rises { last - first } else { first - last };
            let noise = family.sensors[k].noise.max(1e-9);
            assert!(moved > 2.0 * noise, "{} {} {}: {first:.3} → {last:.3}", family.name, mode.name, mode.signature);
        }
    }
}

#[test]
fn load_regimes_move_current_without_wear() {
    for i in [0, 3, 5] {
        let (model, family) = model_of(i).unwrap();
        let d = generate(model, family, ROWS, 3600.0, 21);
        let k = family.sensors.iter().position(|s| s.kind == Kind::Current).unwrap();
        // Early in each life wear barely changes, so what moves the current there is the regime.
        let early: Vec<usize> = d.lives.iter().flat_map(|l| l.start..l.start + l.rows / 3).collect();
        let current: Vec<f64> = early.iter().map(|&r| d.sensors[k][r]).collect();
        let load: Vec<f64> = early.iter().map(|&r| d.load[r]).collect();
        let r = correlation(&current, &load);
        assert!(r > 0.9, "{}: corr(current, load) = {r:.3}", family.name);
        let switches = d.load.windows(2).filter(|w| (w[0] - w[1]).abs() > 0.15).count();
        let mean_dwell_h = ROWS as f64 / switches.max(1) as f64;
        assert!((3.0..=150.0).contains(&mean_dwell_h), "{}: regimes last {mean_dwell_h:.1} h on average", family.name);
    }
}

#[test]
fn temperatures_follow_the_daily_cycle() {
    for i in [0, 5, 6] {
        let (model, family) = model_of(i).unwrap();
        let d = generate(model, family, 6_000, 3600.0, 9);
        let k = family.sensors.iter().position(|s| s.kind == Kind::Temperature).unwrap();
        let (lag12, lag24) = (autocorrelation(&d.sensors[k], 12), autocorrelation(&d.sensors[k], 24));
        assert!(lag24 > lag12 + 0.05, "{} {}: acf(24) {lag24:.3} vs acf(12) {lag12:.3}", family.name, family.sensors[k].name);
        let (a12, a24) = (autocorrelation(&d.ambient, 12), autocorrelation(&d.ambient, 24));
        assert!(a24 > 0.0 && a12 < a24 - 0.3, "ambient acf(12) {a12:.3}, acf(24) {a24:.3}");
    }
}

#[test]
fn dropouts_are_rare_and_readings_physical() {
    for (family, d) in default_fleet_data(ROWS, 6) {
        let cells: usize = d.sensors.iter().map(Vec::len).sum();
        let missing: usize = d.sensors.iter().map(|c| c.iter().filter(|v| v.is_nan()).count()).sum();
        let share = missing as f64 / cells as f64;
        assert!(missing > 0 && share < 0.01, "{}: {:.3} % missing", family.name, share * 100.0);
        assert!(d.rul.iter().chain(&d.timestamps).all(|v| v.is_finite()));
        for (spec, values) in family.sensors.iter().zip(&d.sensors) {
            let present = values.iter().filter(|v| !v.is_nan());
            match spec.kind {
                Kind::Temperature => assert!(present.clone().all(|v| (-20.0..200.0).contains(v)), "{}", spec.name),
                Kind::PowerFactor => assert!(present.clone().all(|v| (0.0..=1.0).contains(v)), "{}", spec.name),
                _ => assert!(present.clone().all(|v| *v >= 0.0), "{}", spec.name),
            }
        }
    }
}

#[test]
fn splits_are_chronological_with_two_lives_per_file() {
    let lives = |lengths: &[usize]| -> Vec<Life> {
        let mut start = 0;
        lengths
            .iter()
            .map(|&rows| {
                start += rows;
                Life { start: start - rows, rows, mode: 0, initial_wear: 0.0 }
            })
            .collect()
    };
    assert_eq!(assign_splits(&lives(&[10])), [Split::Train]);
    assert_eq!(assign_splits(&lives(&[10, 10])), [Split::Train, Split::Test]);
    assert_eq!(assign_splits(&lives(&[10, 10, 10])), [Split::Train, Split::Val, Split::Test]);
    for n in 6..40 {
        let lengths: Vec<usize> = (0..n).map(|i| 300 + (i * 397) % 1200).collect();
        let splits = assign_splits(&lives(&lengths));
        assert!(splits.windows(2).all(|w| (w[0] as u8) <= (w[1] as u8)), "chronological");
        for s in [Split::Train, Split::Val, Split::Test] {
            assert!(splits.iter().filter(|x| **x == s).count() >= 2, "{n} lives: {splits:?}");
        }
        if n >= 20 {
            let total: usize = lengths.iter().sum();
            let train: usize = lengths.iter().zip(&splits).filter(|(_, s)| **s == Split::Train).map(|(l, _)| l).sum();
            let share = train as f64 / total as f64;
            assert!((0.62..0.78).contains(&share), "{n} lives: train share {share:.2}");
        }
    }
}

#[test]
fn written_machines_load_back_with_every_life() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = simulate_fleet(&options(dir.path(), 2, 6_000, 13)).unwrap();
    assert_eq!(fleet.len(), 2);
    for m in &fleet {
        let folder = dir.path().join("machines").join(&m.id);
        let text = std::fs::read_to_string(folder.join("machine.toml")).unwrap();
        assert!(!text.contains("[columns]") && !text.contains("files"), "{text}");
        let desc = crate::data::MachineToml::parse(&text).unwrap();
        assert!(desc.files.is_empty());
        assert_eq!(desc.lives.len(), m.lives);
        assert_eq!(desc.lives.iter().map(|l| l.rows).sum::<usize>(), m.rows);
        assert_eq!(desc.units.len(), m.sensors);
        assert_eq!(desc.machine.family.as_deref(), Some(m.family.as_str()));
        assert!(desc.machine.manufacturer.is_some() && desc.machine.model.is_some());
        for split in ["train", "val", "test"] {
            let in_file: Vec<usize> = desc.lives.iter().filter(|l| l.split == split).map(|l| l.index).collect();
            assert!(in_file.len() >= 2, "{split}: {in_file:?}");
            assert_eq!(in_file, (0..in_file.len()).collect::<Vec<_>>());
        }

        let table = crate::data::load_machine_dir(&folder).unwrap();
        assert_eq!(table.n_rows(), m.rows);
        assert_eq!(table.n_lives(), m.lives, "the loader finds lives where rul jumps up");
        assert_eq!(table.sensors.len(), m.sensors);
        assert!(table.given_split.is_some());
        assert_eq!(table.interval_s, 3600.0);
        assert_eq!(table.meta.family.as_deref(), Some(m.family.as_str()));
        let rul = table.rul.as_ref().unwrap();
        for (_, rows) in table.life_ranges() {
            assert_eq!(rul[rows.end - 1], 0.0);
        }
    }
    assert!(std::fs::read_dir(dir.path().join("machines")).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
}

#[test]
fn csv_output_loads_and_rewriting_replaces_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), 1, 1_000, 5);
    opts.format = Format::Csv;
    simulate_fleet(&opts).unwrap();
    opts.seed = 6;
    let fleet = simulate_fleet(&opts).unwrap();
    let folder = dir.path().join("machines").join(&fleet[0].id);
    let table = crate::data::load_machine_dir(&folder).unwrap();
    assert_eq!(table.n_rows(), 1_000);
    assert_eq!(table.n_lives(), fleet[0].lives);
    assert!(table.timestamps[0] == START_EPOCH_S);
    assert_eq!(std::fs::read_dir(dir.path().join("machines")).unwrap().count(), 1);
}

#[test]
fn refuses_unusable_options() {
    let dir = tempfile::tempdir().unwrap();
    assert!(simulate_fleet(&options(dir.path(), 1, 10, 1)).is_err());
    let mut opts = options(dir.path(), 1, 1_000, 1);
    for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        opts.interval_s = bad;
        assert!(simulate_fleet(&opts).is_err(), "{bad}");
    }
    assert!(simulate_fleet(&options(dir.path(), 0, 1_000, 1)).unwrap().is_empty());
}

/// Only meaningful in release: `cargo test --release --lib data::simulate -- --ignored --nocapture`.
#[test]
#[ignore]
fn default_fleet_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FleetOptions { out_dir: dir.path().to_path_buf(), ..FleetOptions::default() };
    let t0 = std::time::Instant::now();
    let fleet = simulate_fleet(&opts).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    for m in &fleet {
        println!("{:<40} {:<11} {:>7} rows {:>3} sensors {:>3} lives", m.id, m.family, m.rows, m.sensors, m.lives);
    }
    println!("default fleet: {} machines in {secs:.2} s", fleet.len());
    assert_eq!(fleet.len(), 10);
    assert!(fleet.iter().all(|m| m.rows == 50_000));
}
