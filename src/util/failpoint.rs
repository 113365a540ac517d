//! Crash points: a test hook for the power-pull tests (`tests/power_pull.rs`), inert in production.
//!
//! A power cut or `kill -9` lands at a moment no test can aim at by timing alone: between writing a model's
//! temporary folder and renaming it, between renaming it and syncing its parent, between writing a job record
//! and flushing it. Each such moment calls [`hit`] with a fixed name. When the environment variable
//! `MILLWRIGHT_TEST_CRASH_AT` names that point, as `name` (its first hit) or `name:N` (its N-th hit, counted
//! from process start), the process calls [`std::process::abort`] there: no destructors run and nothing
//! buffered is flushed, which leaves the disk exactly as `kill -9` would.
//!
//! The variable uses the `MILLWRIGHT_TEST_` prefix because the config loader refuses every other unknown
//! `MILLWRIGHT_*` variable and ignores that one. It is read once; unset, [`hit`] is one atomic load and a
//! branch, so the points may sit on hot write paths.
//!
//! Points: `registry.before_rename`, `registry.after_rename` (the model registry's commit),
//! `fsx.before_rename` (inside `fsx::write_atomic`), `store.before_flush` and `store.after_flush` (the job
//! store's durability barrier).
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const ENV_VAR: &str = "MILLWRIGHT_TEST_CRASH_AT";

struct Armed {
    name: String,
    nth: u64,
    seen: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

/// `name` or `name:N` with N ≥ 1; anything else disarms, since crashing at a guessed point would mislead.
fn parse(spec: &str) -> Option<Armed> {
    let spec = spec.trim();
    let (name, nth) = match spec.rsplit_once(':') {
        Some((name, n)) => (name, n.parse::<u64>().ok().filter(|n| *n >= 1)?),
        None => (spec, 1),
    };
    (!name.is_empty()).then(|| Armed {
        name: name.to_string(),
        nth,
        seen: AtomicU64::new(0),
    })
}

fn armed() -> Option<&'static Armed> {
    ARMED
        .get_or_init(|| {
            let raw = std::env::var(ENV_VAR).ok()?;
            let armed = parse(&raw);
            if armed.is_none() {
                eprintln!(
                    "{ENV_VAR}={raw:?} is not `name` or `name:N` (N ≥ 1); no crash point is armed"
                );
            }
            armed
        })
        .as_ref()
}

/// Aborts the process if `MILLWRIGHT_TEST_CRASH_AT` names this point and this is the hit it counts to.
#[inline]
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name != name {
        return;
    }
    let n = a.seen.fetch_add(1, Ordering::SeqCst) + 1;
    if n == a.nth {
        // Written unbuffered before dying, so a test can tell this crash from an unplanned one.
        eprintln!("millwright: crash point {name} hit {n} time(s): aborting ({ENV_VAR})");
        std::process::abort();
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
    fn unset_never_fires() {
        // The test process never sets the variable, so every point is inert.
        hit("registry.before_rename");
        hit("store.after_flush");
    }
}
