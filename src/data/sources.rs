//! Recognising a folder's files: the legacy layout by file names, or the `[[files]]` of a `machine.toml`.
use super::confine::Confine;
use super::describe::{FileSpec, MachineToml};
use super::error::DataError;
use super::table::Split;
use std::path::{Path, PathBuf};

/// One file to read, with the description that applies to it.
pub struct SourceFile {
    pub path: PathBuf,
    pub spec: FileSpec,
    pub split: Option<Split>,
    pub origin: Origin,
}

/// Where a file's rows come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The machine's history as the operator put it there.
    History,
    /// Readings the daemon took in, compacted into `live/`: timestamp and sensors only, continuing the
    /// machine's last life (it is the one still running).
    Live,
}

/// How strictly a file's columns are matched against the description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    History,
    /// Reference data known to be normal: it may lack the ground-truth columns.
    Healthy,
    /// Compacted readings: only [`LIVE_TIME`] and sensors.
    Live,
}

impl SourceFile {
    pub fn kind(&self) -> FileKind {
        match (self.origin, self.split) {
            (Origin::Live, _) => FileKind::Live,
            (Origin::History, Some(Split::Healthy)) => FileKind::Healthy,
            (Origin::History, _) => FileKind::History,
        }
    }
}

pub use super::live::{LIVE_DIR, LIVE_TIME};

/// The compacted readings in `<dir>/live/`, oldest first (their names start with their first time,
/// zero-padded, so the name order is the time order). `split` is theirs when the history has a given split.
pub fn live_files(dir: &Path, split: Option<Split>, confine: &Confine) -> Result<Vec<SourceFile>, DataError> {
    let live = dir.join(LIVE_DIR);
    if !live.is_dir() {
        return Ok(Vec::new());
    }
    confine.check(&live, "the compacted readings folder", dir)?;
    let (kept, _covered) = super::live::uncovered(super::live::live_files(dir)?);
    let mut out = Vec::new();
    for f in kept {
        confine.check(&f.path, "a compacted readings file", dir)?;
        out.push(SourceFile { path: f.path, spec: FileSpec::default(), split, origin: Origin::Live });
    }
    Ok(out)
}

/// The legacy layout (the files the replaced Python stack wrote): `train` is required; `val` and `test` are optional; Parquet wins over CSV.
pub fn legacy_files(dir: &Path) -> Option<(Vec<SourceFile>, &'static str)> {
    let mut out = Vec::new();
    let mut format = "csv";
    for (name, split) in [("train", Split::Train), ("val", Split::Val), ("test", Split::Test)] {
        let found = ["parquet", "csv"].into_iter().map(|ext| (ext, dir.join(format!("{name}.{ext}")))).find(|(_, p)| p.is_file());
        if let Some((ext, path)) = found {
            if split == Split::Train {
                format = ext;
            }
            out.push(SourceFile { path, spec: FileSpec::default(), split: Some(split), origin: Origin::History });
        }
    }
    (out.first().is_some_and(|f| f.split == Some(Split::Train))).then_some((out, format))
}

pub fn described_files(dir: &Path, toml_path: &Path, desc: &MachineToml, confine: &Confine) -> Result<Vec<SourceFile>, DataError> {
    let describe = |message: String| DataError::Describe { file: toml_path.to_path_buf(), message };
    let mut out = Vec::new();
    for spec in &desc.files {
        let split = match &spec.split {
            Some(s) => {
                Some(Split::parse(s).ok_or_else(|| describe(format!("split {s:?} of {}: use train, val, test or healthy", spec.path)))?)
            }
            None => None,
        };
        let pattern = dir.join(&spec.path);
        let setting = format!("[[files]] path = {:?}", spec.path);
        // A pattern's folder is listed before any file is checked: it must not be a way to probe outside.
        if spec.path.contains('*') {
            confine.check(pattern.parent().unwrap_or(dir), &setting, toml_path)?;
        }
        let paths = expand(&pattern).map_err(describe)?;
        for p in &paths {
            confine.check(p, &setting, toml_path)?;
        }
        out.extend(paths.into_iter().map(|path| SourceFile { path, spec: spec.clone(), split, origin: Origin::History }));
    }
    let with_split = out.iter().filter(|f| f.split.is_some()).count();
    if with_split != 0 && with_split != out.len() {
        return Err(describe("some files have a `split` and others do not: give every file a split, or none".into()));
    }
    Ok(out)
}

/// Expands a `*` in the last path component; other components are literal.
fn expand(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !name.contains('*') {
        return if pattern.is_file() { Ok(vec![pattern.to_path_buf()]) } else { Err(format!("file not found: {}", pattern.display())) };
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| tidy(&e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| wildcard_match(&name, &n.to_string_lossy())))
        .collect();
    found.sort_by_key(|p| natural_key(p));
    if found.is_empty() {
        return Err(format!("no file matches {}", pattern.display()));
    }
    Ok(found)
}

/// `examples/x/../../../shared/a.csv` reads better as an absolute path in messages.
fn tidy(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// `2.csv` sorts before `10.csv`.
fn natural_key(p: &Path) -> (u64, String) {
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let digits: String = stem.chars().take_while(char::is_ascii_digit).collect();
    (digits.parse().unwrap_or(u64::MAX), stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_natural_order() {
        assert!(wildcard_match("*.csv", "10.csv"));
        assert!(wildcard_match("a*b*.txt", "a1b2.txt"));
        assert!(!wildcard_match("*.csv", "x.parquet"));
        let d = tempfile::tempdir().unwrap();
        for n in ["10.csv", "2.csv", "1.csv", "x.txt"] {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        let got: Vec<String> =
            expand(&d.path().join("*.csv")).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(got, ["1.csv", "2.csv", "10.csv"]);
    }
}
