//! Scoped fan-out over a handful of jobs; results come back in job order so callers can merge deterministically.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::GbdtError;

/// Runs `f` on every job using up to `threads` threads and returns the results in job order.
///
/// Threads claim jobs one at a time from a shared counter instead of owning a fixed share: when another
/// process holds a core (common on a Pi that also serves), the calling thread simply does more of the
/// work rather than waiting on a descheduled worker.
pub(super) fn map_jobs<J, T, F>(jobs: Vec<J>, threads: usize, f: &F) -> Result<Vec<T>, GbdtError>
where
    J: Send,
    T: Send,
    F: Fn(J) -> T + Sync,
{
    let n = jobs.len();
    if threads <= 1 || n <= 1 {
        return Ok(jobs.into_iter().map(f).collect());
    }
    let slots: Vec<Mutex<Option<J>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    let results: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let run = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            let job = slot.lock().ok().and_then(|mut s| s.take());
            if let (Some(job), Some(out)) = (job, results.get(i)) {
                let value = f(job);
                if let Ok(mut o) = out.lock() {
                    *o = Some(value);
                }
            }
        }
    };
    let panicked = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads.min(n)).map(|_| s.spawn(run)).collect();
        run();
        // Join every handle before reporting, so a panicked worker never escalates into a scope panic.
        handles.into_iter().map(|h| h.join()).filter(Result::is_err).count()
    });
    if panicked > 0 {
        return Err(GbdtError::WorkerPanicked);
    }
    results.into_iter().map(|m| m.into_inner().ok().flatten().ok_or(GbdtError::WorkerPanicked)).collect()
}

/// Splits `0..n` items into at most `parts` contiguous ranges of near-equal total `weight`.
pub(super) fn balanced_ranges(weights: &[usize], parts: usize) -> Vec<std::ops::Range<usize>> {
    let n = weights.len();
    let parts = parts.clamp(1, n.max(1));
    let total: usize = weights.iter().sum();
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    let mut acc = 0usize;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        let done = out.len() + 1;
        // Close a range once it holds its proportional share, leaving at least one item per remaining range.
        if done < parts && acc * parts >= total * done && n - (i + 1) >= parts - done {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < n || out.is_empty() {
        out.push(start..n);
    }
    out
}

/// Rows below which one thread does the whole per-row pass: spawning costs more than the work.
const PARALLEL_MIN_ROWS: usize = 65_536;

/// Runs `f(first_row, rows)` over `out` cut into one run of rows per thread. Each row's result depends on that
/// row alone, so the output is the same for any thread count. Used for the per-round passes outside the
/// histograms (gradients, out-of-bag and validation scores), which otherwise leave the second core idle.
pub(super) fn for_row_chunks<T: Send>(out: &mut [T], threads: usize, f: &(dyn Fn(usize, &mut [T]) + Sync)) {
    if threads <= 1 || out.len() < PARALLEL_MIN_ROWS {
        f(0, out);
        return;
    }
    let per = out.len().div_ceil(threads);
    std::thread::scope(|s| {
        let mut chunks = out.chunks_mut(per).enumerate();
        let first = chunks.next();
        for (k, chunk) in chunks {
            s.spawn(move || f(k * per, chunk));
        }
        if let Some((_, chunk)) = first {
            f(0, chunk);
        }
    });
}
