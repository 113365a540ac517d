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
