//! [`ReleaseNotifier`]: wakes every worker when write-buffer memory may have been released.

use std::sync::Arc;

use tokio::sync::watch;

/// A broadcast "memory was released" signal shared by the write-buffer manager and every
/// worker.
///
/// Each [`notify`](Self::notify) bumps a counter in a [`watch`] channel, so a subscriber that
/// was busy still sees that at least one release happened since it last looked (the signal
/// is level-triggered, never lost). Releases happen wherever the last reference to a memtable
/// drops — possibly outside any worker — which is why the signal is shared, not per worker.
#[derive(Debug, Clone)]
pub struct ReleaseNotifier {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for ReleaseNotifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ReleaseNotifier {
    /// A notifier nobody listens to yet.
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(0);
        Self { tx: Arc::new(tx) }
    }

    /// Signals every subscriber.
    pub fn notify(&self) {
        self.tx.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A receiver whose `changed()` resolves after the next [`notify`](Self::notify).
    ///
    /// The receiver starts with the current count marked as seen.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// How many notifications were sent so far.
    pub fn notifications(&self) -> u64 {
        *self.tx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_sees_a_notification_sent_while_it_was_busy() {
        let notifier = ReleaseNotifier::new();
        let mut a = notifier.subscribe();
        let mut b = notifier.clone().subscribe();
        assert!(!a.has_changed().unwrap());
        notifier.notify();
        notifier.notify();
        a.changed().await.unwrap();
        b.changed().await.unwrap();
        assert_eq!(*a.borrow_and_update(), 2);
        assert!(!a.has_changed().unwrap());
        assert_eq!(notifier.notifications(), 2);
    }
}
