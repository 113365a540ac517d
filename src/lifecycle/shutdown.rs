//! One shutdown signal, many listeners (HTTP, runner, MQTT, watchdog).
use std::sync::Arc;
use tokio::sync::watch;

/// Cloning shares the signal: a trigger on any clone wakes every waiter, also those that start waiting later.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, _) = watch::channel(false);
        Shutdown { tx: Arc::new(tx) }
    }

    pub fn trigger(&self) {
        // Not `send`: it drops the value when nobody is subscribed at that moment (a listener between two
        // waits), and the shutdown would be lost.
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trigger while nobody is subscribed (a listener between two waits) must still count.
    #[tokio::test]
    async fn a_trigger_reaches_waiters_before_and_after_it() {
        let s = Shutdown::new();
        // On this single-threaded runtime the task subscribes only once the test awaits: after the trigger.
        let late = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        assert!(!s.is_triggered());
        s.clone().trigger();
        assert!(s.is_triggered());
        let limit = std::time::Duration::from_secs(1);
        tokio::time::timeout(limit, late).await.expect("a waiter that subscribed after the trigger still wakes").unwrap();
        tokio::time::timeout(limit, s.wait()).await.expect("so does a new one");
    }
}
