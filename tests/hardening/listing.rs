//! Listing machines reads metadata, never a table: an anonymous listing of a folder with a 1 GB single-line
//! CSV once held 9.2 GB, a 75 MB CSV 881 MB, and a failing folder was re-read on every call. Caps refuse
//! early and name their setting; concurrent listings share one pass; failures are cached too.
use super::common::{Daemon, TOKEN, fleet, request};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

fn write_machine(data: &Path, id: &str, file: &str, body: &[u8]) {
    let dir = data.join("machines").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), body).unwrap();
}

fn listing(d: &Daemon, token: bool) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let headers: &[(&str, &str)] = if token { &[("Authorization", auth.as_str())] } else { &[] };
    let r = request(d.addr, "GET", "/api/ml/train/machines/available", None, headers);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["machines"].as_array().unwrap().iter().find(|m| m["machine_id"] == id).unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

fn summarised(d: &Daemon, id: &str) -> usize {
    d.log().lines().filter(|l| l.contains("summarised from metadata") && l.contains(id)).count()
}

/// Peak resident memory (VmHWM) of the daemon, MB.
fn peak_mb(d: &Daemon) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).unwrap_or(0.0)
        / 1024.0
}

#[test]
fn each_cap_refuses_early_and_names_its_setting() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    fleet(&data, 1, 500);
    let wide: String = (0..40).map(|i| format!("s{i},")).collect::<String>() + "timestamp\n";
    write_machine(&data, "wide", "train.csv", wide.as_bytes());
    // 1.5 MB without a line break: only the first 64 KB may be read.
    write_machine(&data, "oneline", "train.csv", &vec![b'7'; 3 << 19]);
    let many: String = std::iter::once("timestamp,v\n".to_string()).chain((0..3000).map(|i| format!("{i},1\n"))).collect();
    write_machine(&data, "many", "train.csv", many.as_bytes());
    write_machine(&data, "big", "train.csv", &vec![b'\n'; (2 << 20) + 1]);
    let daemon = Daemon::start(
        &data,
        &d.path().join("state"),
        &[
            ("MILLWRIGHT_DATA__MAX_COLUMNS", "20"),
            ("MILLWRIGHT_DATA__MAX_LINE_KB", "64"),
            ("MILLWRIGHT_DATA__MAX_ROWS", "2500"),
            ("MILLWRIGHT_DATA__MAX_FILE_MB", "2"),
        ],
    );
    for token in [true, false] {
        let list = listing(&daemon, token);
        for (id, setting) in
            [("wide", "data.max_columns"), ("oneline", "data.max_line_kb"), ("many", "data.max_rows"), ("big", "data.max_file_mb")]
        {
            let e = entry(&list, id)["error"].as_str().unwrap_or_default().to_string();
            assert!(e.contains(setting), "{id} (token {token}): {e}");
            assert_eq!(e.contains("train.csv"), token, "the file is named only to a client with the token: {e}");
        }
        let good = list["machines"].as_array().unwrap().iter().find(|m| m["rows"].as_u64().is_some()).unwrap();
        assert!(good["sensors"].as_u64().unwrap() > 3 && good["error"].is_null(), "{good}");
    }
    let r = daemon.post("/api/ml/train/batch", &json!({ "machine_id": "many", "model_types": ["anomaly"] }));
    assert_eq!(r.status, 422, "a submission is checked against the same caps: {}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("data.max_rows"), "{}", r.text());
    for id in ["wide", "oneline", "many", "big"] {
        assert_eq!(summarised(&daemon, id), 1, "{id}: a failure is cached until its files change");
    }
}

#[test]
fn concurrent_listings_share_one_streamed_pass_in_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let dir = data.join("machines/plant");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("train.csv")).unwrap());
    write!(f, "timestamp").unwrap();
    for s in 0..20 {
        write!(f, ",sensor_{s}").unwrap();
    }
    writeln!(f).unwrap();
    // 250,000 rows × 20 sensors at 1 min ≈ 40 MB: a load of it as text cells took hundreds of MB.
    for r in 0..250_000u64 {
        write!(f, "{}", 1_700_000_000 + r * 60).unwrap();
        for s in 0..20u64 {
            write!(f, ",{}.{:03}", 20 + s, (r * 7 + s * 13) % 1000).unwrap();
        }
        writeln!(f).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    let size_mb = std::fs::metadata(dir.join("train.csv")).unwrap().len() as f64 / 1e6;
    let daemon = Daemon::start(&data, &d.path().join("state"), &[]);
    let before = peak_mb(&daemon);
    let answers: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20).map(|_| s.spawn(|| listing(&daemon, false))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let growth = peak_mb(&daemon) - before;
    for a in &answers {
        let m = entry(a, "plant");
        assert_eq!((m["rows"].as_u64(), m["sensors"].as_u64(), m["interval_s"].as_f64()), (Some(250_000), Some(20), Some(60.0)), "{m}");
    }
    assert_eq!(summarised(&daemon, "plant"), 1, "20 concurrent listings of one machine make one pass");
    assert!(growth < 20.0, "listing a {size_mb:.0} MB CSV grew the daemon's peak memory by {growth:.1} MB");
    listing(&daemon, true);
    assert_eq!(summarised(&daemon, "plant"), 1, "served from the cache while the files are unchanged");
    // The resource guard sizes a submission from the same summaries: no second pass over the files.
    let r = daemon.post("/api/ml/train/batch", &json!({"machine_id": "plant", "model_types": ["anomaly"]}));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(summarised(&daemon, "plant"), 1, "the guard sized the job from the listing's summary");
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("train.csv"))
        .unwrap()
        .write_all(b"1715000000,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1\n")
        .unwrap();
    assert_eq!(entry(&listing(&daemon, false), "plant")["rows"], 250_001, "a changed file is summarised again");
    assert_eq!(summarised(&daemon, "plant"), 2);
}
