//! Small shared helpers: a seeded PRNG, timestamp parsing, atomic file writes and a loopback HTTP client.
pub mod failpoint;
pub mod fsx;
pub mod histogram;
pub mod http_client;
pub mod rng;
pub mod sync;
pub mod time;

/// Peak resident memory of this process so far (VmHWM), in bytes; None where /proc is absent.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Hands memory freed by a big piece of work (a training job, a pass over a machine's files) back to the
/// system: glibc keeps freed heap in its per-thread arenas, so an idle daemon would otherwise stay at its
/// last job's peak for months.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Malloc arenas the process may use: glibc's default is eight per core, and each thread then keeps its own;
/// memory a training job freed stays scattered among them and `malloc_trim` cannot hand it back.
const MALLOC_ARENAS: i32 = 2;
/// Blocks from this size on are mapped on their own and returned when freed; glibc's default threshold grows
/// with every large block freed, after which a job's big buffers stay in the heap. With both settings an idle
/// daemon after one 4-model training of a 50,000-row machine holds +3.4–3.9 MB, with glibc's defaults +34–37 MB
/// (`cargo test --test load after_a_training -- --nocapture`); the training's time is unchanged.
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Caps the allocator's arenas (see [`MALLOC_ARENAS`]) unless `MALLOC_ARENA_MAX` says otherwise. Call before
/// any thread starts.
pub fn limit_allocator_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets one of the allocator's own parameters; no thread has allocated yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Current resident memory (VmRSS), in bytes.
pub fn rss_bytes() -> Option<u64> {
    proc_status_kb("VmRSS:").map(|kb| kb * 1024)
}

fn proc_status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The message a caught panic carried (`panic!` with a literal or a formatted string), for error reports.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}
