//! Text data through the real loader (`load_machine_dir`): seed-layout CSVs, CSVs described by a fixed
//! `machine.toml` in each delimiter and role variant, and a fuzzed `machine.toml` over fuzzed files.
//!
//! Input: byte 0 picks the mode (and byte 1 the variant); the rest is split on `\n%%\n` into files.
//! A loaded table must be internally consistent: every per-row column as long as the timestamps, since
//! training indexes them together and would panic later, far from the file that caused it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millwright::data::{MachineToml, Table, load_machine_dir, summarize};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SEP: &[u8] = b"\n%%\n";

/// Fixed descriptions, so mutations of the data (not of the TOML) reach the role and split logic.
const DESCRIBED: &[&str] = &[
    "[[files]]\npath = \"a.csv\"\n",
    "[[files]]\npath = \"a.csv\"\ndelimiter = \";\"\n[columns]\ntimestamp = \"t\"\nlabel = \"failure\"\n",
    "[[files]]\npath = \"a.csv\"\ndelimiter = \"tab\"\n[columns]\nunit = \"unit\"\nrul_from_end = true\nstep_seconds = 60.0\ntimestamp = \"cycle\"\n",
    "[[files]]\npath = \"a.csv\"\ndelimiter = \"whitespace\"\nheader = false\nnames = [\"unit\", \"cycle\", \"s1\", \"s2\"]\nrul_at_end = \"b.csv\"\n[columns]\nunit = \"unit\"\ntimestamp = \"cycle\"\nstep_seconds = 1.0\n",
    "[[files]]\npath = \"a.csv\"\ndelimiter = \"|\"\n[columns]\ncategorical = { type = [\"L\", \"M\", \"H\"] }\nignore = [\"id\"]\nrul = \"rul\"\n",
    "[[files]]\npath = \"*.csv\"\nfile_is_life = true\n[columns]\nanomaly = \"anomaly\"\n",
    "[[files]]\npath = \"a.csv\"\nsplit = \"healthy\"\n[[files]]\npath = \"b.csv\"\nsplit = \"test\"\n[columns]\nanomaly = \"anomaly\"\nlabel = \"changepoint\"\n",
    "[[files]]\npath = \"a.csv\"\n[anomaly_windows]\npath = \"b.csv\"\nkey = \"w\"\n[columns]\nsensors = [\"value\"]\n",
];

fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        // Under TMPDIR, which .ci/fuzz.sh points into fuzz/target so nothing is left behind elsewhere.
        let p = std::env::temp_dir().join(format!("millwright-fuzz-data-{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("fuzz scratch dir");
        p
    })
}

/// A fresh machine folder for this input.
fn machine_dir() -> PathBuf {
    let dir = root().join("m1");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fuzz machine dir");
    dir
}

fn parts(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < max {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// Keeps a fuzzed description inside the scratch folder: the operator writes machine.toml and may name
/// any file, but the fuzzer must not read /proc or the rest of the disk.
fn stays_inside(toml: &MachineToml) -> bool {
    let ok = |p: &str| !p.starts_with('/') && !p.starts_with('\\') && !p.contains("..") && !p.contains(':');
    toml.files.iter().all(|f| ok(&f.path) && f.rul_at_end.as_deref().is_none_or(ok))
        && toml.anomaly_windows.as_ref().is_none_or(|w| ok(&w.path))
}

fn check(t: &Table) {
    let n = t.timestamps.len();
    assert!(n >= 2, "a table of {n} rows was accepted");
    assert_eq!(t.life.len(), n, "life column length");
    for s in &t.sensors {
        assert_eq!(s.values.len(), n, "sensor {} length", s.name);
    }
    for (name, col) in [("label", &t.label), ("rul", &t.rul), ("anomaly", &t.anomaly)] {
        if let Some(c) = col {
            assert_eq!(c.len(), n, "{name} column length");
        }
    }
    if let Some(s) = &t.given_split {
        assert_eq!(s.len(), n, "split column length");
    }
    let _ = summarize(t);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let dir = machine_dir();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).expect("fuzz write");
    match mode % 3 {
        // The seed layout: train, then optional val and test.
        0 => {
            for (name, body) in ["train.csv", "val.csv", "test.csv"].iter().zip(parts(rest, 3)) {
                write(name, body);
            }
        }
        // A fixed description over fuzzed files.
        1 => {
            let Some((&variant, rest)) = rest.split_first() else { return };
            write("machine.toml", DESCRIBED[variant as usize % DESCRIBED.len()].as_bytes());
            let p = parts(rest, 2);
            write("a.csv", p[0]);
            if let Some(b) = p.get(1) {
                write("b.csv", b);
            }
        }
        // A fuzzed description over fuzzed files (seed-layout names and described ones).
        _ => {
            let p = parts(rest, 3);
            if let Ok(desc) = MachineToml::parse(&String::from_utf8_lossy(p[0]))
                && !stays_inside(&desc)
            {
                return;
            }
            write("machine.toml", p[0]);
            for (name, body) in [["train.csv", "a.csv"], ["b.csv", "val.csv"]].iter().zip(&p[1..]) {
                write(name[0], body);
                write(name[1], body);
            }
        }
    }
    if let Ok(table) = load_machine_dir(&dir) {
        check(&table);
    }
});
