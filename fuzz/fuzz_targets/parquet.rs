//! Parquet bytes through the real loader: the input is a machine's `train.parquet` in the seed layout
//! (seeded with files the simulator writes, so mutations reach the row and column decoding).
//! A loaded table must be internally consistent (see data_loaders.rs).
//!
//! The parquet crate asserts on some malformed files, and so do the crates and the std code it calls
//! (`bytes` slicing, a `Vec` past its capacity); `read_parquet` catches those and answers with a format error.
//! libFuzzer's panic hook would abort on them before the catch, so panics raised outside this project's own
//! code are let through to it; a panic in millwright's code, and any unwind that escapes, is still a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millwright::data::{Caps, load_machine_dir_within, summarize};
use std::path::PathBuf;
use std::sync::OnceLock;

/// libFuzzer's -malloc_limit_mb needs a sanitizer's malloc hooks, which this build has none of, and its RSS
/// limit is checked once a second, so a large allocation freed quickly passes unseen (peaks of 1.9 GB were
/// reported with no input saved). One allocation of more than this aborts here instead: libFuzzer saves the
/// input as a crash.
const MAX_ALLOCATION: usize = 256 << 20;

struct Bounded;

/// Says why before aborting: libFuzzer reports only "deadly signal". Written without allocating.
fn too_big(size: usize) -> ! {
    use std::io::Write;
    let mut line = [0u8; 96];
    let mut cursor = std::io::Cursor::new(&mut line[..]);
    let _ = write!(cursor, "one allocation of {size} bytes, over the fuzz bound of {MAX_ALLOCATION}\n");
    let end = usize::try_from(cursor.position()).unwrap_or(0);
    let _ = std::io::stderr().write_all(&line[..end]);
    std::process::abort();
}

// SAFETY: every call is forwarded unchanged to the system allocator; the only addition is the abort.
unsafe impl std::alloc::GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            too_big(layout.size());
        }
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            too_big(layout.size());
        }
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            too_big(new_size);
        }
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

fn machine_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Under TMPDIR, which .ci/fuzz.sh points into fuzz/target so nothing is left behind elsewhere.
        let p = std::env::temp_dir().join(format!("millwright-fuzz-parquet-{}", std::process::id())).join("m1");
        std::fs::create_dir_all(&p).expect("fuzz scratch dir");
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Registry crates are under <cargo home>/registry/src/, std under /rustc/<hash>/library/.
            let theirs = info.location().is_some_and(|l| {
                let f = l.file();
                f.contains("/registry/src/") || f.starts_with("/rustc/") || f.starts_with("library/")
            });
            if !theirs {
                abort(info);
            }
        }));
        p
    })
}

/// Run-length encoding lets a few kB of Parquet hold millions of honest rows in hundreds of columns, so what
/// loading may take is bounded by `data.max_rows` and `data.max_columns` (50 million and 1,000 by default),
/// not by the file's size. The target runs under caps that fit libFuzzer's 2 GB limit and are far above the
/// seeds' sizes (about 100 rows, 8 columns): what is hunted is memory the caps do not bound (such as the
/// 1.85 GB page buffer a 23-byte varint claimed, found once the allocation bound below was in place).
const MAX_ROWS: usize = 10_000;
const MAX_COLUMNS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let dir = machine_dir();
    std::fs::write(dir.join("train.parquet"), data).expect("fuzz write");
    if let Ok(t) = load_machine_dir_within(dir, &Caps { max_rows: MAX_ROWS, max_columns: MAX_COLUMNS, ..Caps::default() }) {
        let n = t.timestamps.len();
        assert!(n <= MAX_ROWS, "{n} rows loaded past the cap of {MAX_ROWS}");
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
        let _ = summarize(&t);
    }
});
