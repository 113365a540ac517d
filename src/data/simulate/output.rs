//! Writing one simulated machine in the legacy layout: `train/val/test` files split chronologically by life,
//! plus a `machine.toml` with display metadata, units and what ended each life.
use super::engine::{Life, MachineData};
use super::families::{Family, Model};
use crate::data::describe::LifeInfo;
use crate::data::write::{Format, OutTable, write_table};
use crate::data::{DataError, MachineMeta, MachineToml, Split};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Chronological split by life: about 70 % of rows to train, 15 % to val, 15 % to test, never cutting a life.
/// With 6 or more lives every file gets at least 2, so validation and test both see complete failures.
pub fn assign_splits(lives: &[Life]) -> Vec<Split> {
    let n = lives.len();
    let (train, val) = match n {
        0 => return Vec::new(),
        1 => (1, 0),
        2 => (1, 0),
        _ => {
            let floor = if n >= 6 { 2 } else { 1 };
            let cut2 = boundary_near(lives, 0.85).clamp(floor * 2, n - floor);
            let cut1 = boundary_near(lives, 0.70).clamp(floor, cut2 - floor);
            (cut1, cut2 - cut1)
        }
    };
    (0..n)
        .map(|i| match i {
            i if i < train => Split::Train,
            i if i < train + val => Split::Val,
            _ => Split::Test,
        })
        .collect()
}

/// How many leading lives end closest to `fraction` of all rows.
fn boundary_near(lives: &[Life], fraction: f64) -> usize {
    let total: usize = lives.iter().map(|l| l.rows).sum();
    let target = fraction * total as f64;
    let mut end = 0usize;
    let mut best = (f64::INFINITY, 0);
    for (i, life) in lives.iter().enumerate() {
        end += life.rows;
        let distance = (end as f64 - target).abs();
        if distance < best.0 {
            best = (distance, i + 1);
        }
    }
    best.1
}

pub fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Val => "val",
        Split::Test => "test",
        Split::Healthy => "healthy",
    }
}

pub struct MachineFiles<'a> {
    pub id: &'a str,
    pub serial: usize,
    pub model: &'a Model,
    pub family: &'a Family,
    pub data: &'a MachineData,
    pub format: Format,
}

/// Builds the folder beside its final place and swaps it in whole, so a loader never sees half a machine.
pub fn write_machine(machines_dir: &Path, m: &MachineFiles<'_>) -> Result<(), DataError> {
    let final_dir = machines_dir.join(m.id);
    let tmp_dir = machines_dir.join(format!(".{}.tmp", m.id));
    let old_dir = machines_dir.join(format!(".{}.old", m.id));
    remove_if_present(&tmp_dir)?;
    std::fs::create_dir_all(&tmp_dir).map_err(|e| DataError::io(&tmp_dir, e))?;
    let written = write_contents(&tmp_dir, m);
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp_dir);
        return written;
    }
    remove_if_present(&old_dir)?;
    if final_dir.exists() {
        std::fs::rename(&final_dir, &old_dir).map_err(|e| DataError::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| DataError::io(&final_dir, e))?;
    remove_if_present(&old_dir)
}

fn remove_if_present(dir: &Path) -> Result<(), DataError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataError::io(dir, e)),
        _ => Ok(()),
    }
}

fn write_contents(dir: &Path, m: &MachineFiles<'_>) -> Result<(), DataError> {
    let splits = assign_splits(&m.data.lives);
    for split in [Split::Train, Split::Val, Split::Test] {
        let rows = split_rows(&m.data.lives, &splits, split);
        if rows.is_empty() {
            continue;
        }
        let path = dir.join(format!("{}.{}", split_name(split), m.format.extension()));
        write_split(&path, m, rows)?;
    }
    let desc = machine_toml(m, &splits);
    let path = dir.join("machine.toml");
    let text = toml_text(&desc).map_err(|message| DataError::Describe { file: path.clone(), message })?;
    std::fs::write(&path, text).map_err(|e| DataError::io(&path, e))
}

/// Lives of one split are consecutive, so its rows are one range.
fn split_rows(lives: &[Life], splits: &[Split], split: Split) -> std::ops::Range<usize> {
    let mut mine = lives.iter().zip(splits).filter(|(_, s)| **s == split).map(|(l, _)| l.range());
    let first = mine.next();
    let last = mine.next_back();
    match (first, last) {
        (Some(a), Some(b)) => a.start..b.end,
        (Some(a), None) => a,
        _ => 0..0,
    }
}

fn write_split(path: &Path, m: &MachineFiles<'_>, rows: std::ops::Range<usize>) -> Result<(), DataError> {
    let d = m.data;
    let mut columns: Vec<(&str, &[f64])> = vec![("rul", &d.rul[rows.clone()])];
    for (spec, values) in m.family.sensors.iter().zip(&d.sensors) {
        columns.push((spec.name, &values[rows.clone()]));
    }
    for (name, values) in &d.extra {
        columns.push((name, &values[rows.clone()]));
    }
    write_table(path, &OutTable { timestamps: &d.timestamps[rows], columns }, m.format)
}

pub fn machine_toml(m: &MachineFiles<'_>, splits: &[Split]) -> MachineToml {
    let meta = MachineMeta {
        name: Some(format!("{} {} #{:03}", m.model.manufacturer, m.model.model, m.serial)),
        manufacturer: Some(m.model.manufacturer.to_string()),
        model: Some(m.model.model.to_string()),
        family: Some(m.family.name.to_string()),
    };
    let units: BTreeMap<String, String> = m.family.sensors.iter().map(|s| (s.name.to_string(), s.unit.to_string())).collect();
    let mut index_in_file: BTreeMap<&str, usize> = BTreeMap::new();
    let lives = m
        .data
        .lives
        .iter()
        .zip(splits)
        .map(|(life, split)| {
            let counter = index_in_file.entry(split_name(*split)).or_insert(0);
            let index = *counter;
            *counter += 1;
            LifeInfo {
                split: split_name(*split).to_string(),
                index,
                rows: life.rows,
                failure_mode: m.family.modes.get(life.mode).map_or("unknown", |f| f.name).to_string(),
                initial_wear: (life.initial_wear * 1000.0).round() / 1000.0,
            }
        })
        .collect();
    MachineToml { machine: meta, units, lives, ..MachineToml::default() }
}

/// Only the sections the simulator fills: serialising the whole description would also print empty
/// `files` and `[columns]` defaults, which read as if the folder were described rather than in the legacy layout.
#[derive(Serialize)]
struct LegacyToml<'a> {
    machine: &'a MachineMeta,
    units: &'a BTreeMap<String, String>,
    lives: &'a [LifeInfo],
}

pub fn toml_text(desc: &MachineToml) -> Result<String, String> {
    let view = LegacyToml { machine: &desc.machine, units: &desc.units, lives: &desc.lives };
    let body = toml::to_string_pretty(&view).map_err(|e| e.to_string())?;
    Ok(format!("# Written by `millwright simulate`: a simulated machine in the legacy layout (train/val/test).\n\n{body}"))
}
