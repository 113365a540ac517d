//! Crash and hang points: test hooks for the power-pull and watchdog tests, inert in production.
//!
//! A power cut or `kill -9` lands at a moment no test can aim at by timing alone: between writing a model's
//! temporary folder and renaming it, between renaming it and syncing its parent, between writing a job record
//! and flushing it. Each such moment calls [`hit`] with a fixed name. When the environment variable
//! `MILLWRIGHT_TEST_CRASH_AT` names that point, as `name` (its first hit) or `name:N` (its N-th hit, counted
//! from process start), the process calls [`std::process::abort`] there: no destructors run and nothing
//! buffered is flushed, which leaves the disk exactly as `kill -9` would.
//!
//! The variable uses the `MILLWRIGHT_TEST_` prefix because the config loader refuses every other unknown
//! `MILLWRIGHT_*` variable and ignores that one. It is read once; unset, [`hit`] is two atomic loads and
//! branches, so the points may sit on hot write paths.
//!
//! A thread that is alive but stuck (a deadlock, a syscall that never returns) is the other fault no timing
//! can produce on demand. `MILLWRIGHT_TEST_HANG_AT` names a point the same way; the thread that reaches it
//! sleeps there for good while the rest of the process runs on (`tests/hardening/watchdog.rs` proves that
//! the systemd watchdog then stops pinging).
//!
//! Points: `registry.before_rename`, `registry.after_rename` (the model registry's commit),
//! `fsx.before_rename` (inside `fsx::write_atomic`), `store.before_flush` and `store.after_flush` (the job
//! store's durability barrier), `store.backup_before_rename` (the job store's backup), `runner.idle` (each
//! turn of the job runner's loop, about every 500 ms while it waits for work).
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const ENV_VAR: &str = "MILLWRIGHT_TEST_CRASH_AT";
pub const HANG_ENV_VAR: &str = "MILLWRIGHT_TEST_HANG_AT";

struct Armed {
    name: String,
    nth: u64,
    seen: AtomicU64,
}

impl Armed {
    /// True on exactly the hit this point counts to.
    fn fires(&self, name: &str) -> bool {
        self.name == name && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.nth
    }
}

static CRASH: OnceLock<Option<Armed>> = OnceLock::new();
static HANG: OnceLock<Option<Armed>> = OnceLock::new();

/// `name` or `name:N` with N ≥ 1; anything else disarms, since crashing at a guessed point would mislead.
fn parse(spec: &str) -> Option<Armed> {
    let spec = spec.trim();
    let (name, nth) = match spec.rsplit_once(':') {
        Some((name, n)) => (name, n.parse::<u64>().ok().filter(|n| *n >= 1)?),
        None => (spec, 1),
    };
    (!name.is_empty()).then(|| Armed { name: name.to_string(), nth, seen: AtomicU64::new(0) })
}

fn armed(cell: &'static OnceLock<Option<Armed>>, var: &str) -> Option<&'static Armed> {
    cell.get_or_init(|| {
        let raw = std::env::var(var).ok()?;
        let armed = parse(&raw);
        if armed.is_none() {
            eprintln!("{var}={raw:?} is not `name` or `name:N` (N ≥ 1); no point is armed");
        }
        armed
    })
    .as_ref()
}

/// Aborts the process if `MILLWRIGHT_TEST_CRASH_AT` names this point and this is the hit it counts to;
/// sleeps for good if `MILLWRIGHT_TEST_HANG_AT` does.
#[inline]
pub fn hit(name: &str) {
    if let Some(a) = armed(&CRASH, ENV_VAR)
        && a.fires(name)
    {
        // Written unbuffered before dying, so a test can tell this crash from an unplanned one.
        eprintln!("millwright: crash point {name} hit {} time(s): aborting ({ENV_VAR})", a.nth);
        std::process::abort();
    }
    if let Some(a) = armed(&HANG, HANG_ENV_VAR)
        && a.fires(name)
    {
        eprintln!("millwright: hang point {name} hit {} time(s): this thread sleeps for good ({HANG_ENV_VAR})", a.nth);
        loop {
            // park may return spuriously; the thread must stay stuck.
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_and_an_optional_count() {
        let a = parse("registry.before_rename").unwrap();
        assert_eq!((a.name.as_str(), a.nth), ("registry.before_rename", 1));
        let a = parse("store.after_flush:7").unwrap();
        assert_eq!((a.name.as_str(), a.nth), ("store.after_flush", 7));
        assert!(parse("store.after_flush:0").is_none());
        assert!(parse("store.after_flush:x").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn a_point_fires_on_its_nth_hit_only() {
        let a = parse("runner.idle:3").unwrap();
        let fired: Vec<bool> = (0..5).map(|_| a.fires("runner.idle")).collect();
        assert_eq!(fired, [false, false, true, false, false]);
        assert!(!parse("runner.idle").unwrap().fires("store.after_flush"));
    }

    #[test]
    fn unset_never_fires() {
        // The test process never sets the variable, so every point is inert.
        hit("registry.before_rename");
        hit("store.after_flush");
    }
}
