//! A part's last sign of life, in whole seconds since the Unix epoch, for the systemd watchdog: the runner,
//! the HTTP server and the MQTT loop each keep one, and the watchdog pings only while all are recent.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Cloning shares the counter: the part beats on its clone, the watchdog reads its own. 0 = never beat.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    pub fn new() -> Heartbeat {
        Heartbeat::default()
    }

    /// Records a sign of life now.
    pub fn beat(&self) {
        self.0.store(epoch_secs(), Ordering::Relaxed);
    }

    /// Seconds since the epoch of the last beat; 0 when there was none.
    pub fn last(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The counter itself, for code that writes it directly (the training pause gate beats for a job it holds).
    pub fn shared(&self) -> Arc<AtomicU64> {
        self.0.clone()
    }
}

/// Now, in whole seconds since the Unix epoch (0 on a clock set before 1970).
pub fn epoch_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_counter() {
        let a = Heartbeat::new();
        let b = a.clone();
        assert_eq!(b.last(), 0, "never beat");
        a.beat();
        assert!(b.last() >= epoch_secs().saturating_sub(1) && b.last() > 0);
        a.shared().store(7, Ordering::Relaxed);
        assert_eq!(b.last(), 7);
    }
}
