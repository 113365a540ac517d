//! Locks that outlive a panic.

/// Locks `m`, taking it over from a thread that panicked while holding it: every lock this is used for
/// guards data that a panic cannot leave half-changed (whole values are swapped in under it), so the
/// alternative — every later caller panicking too — would only spread one failure to the whole daemon.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
