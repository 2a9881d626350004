//! [`Events`]: a listener that records what the engine's workers tell it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use strata_request::RegionId;
use strata_worker::EventListener;
use tokio::sync::watch;

/// One worker event, as [`EventListener`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Writes were stalled (memory over budget).
    WriteStall,
    /// A write was paced by the slowdown.
    WriteDelay(Duration),
    /// A flush job starts writing.
    FlushBegin(RegionId),
    /// A flush was applied.
    FlushSuccess(RegionId),
    /// A flush failed.
    FlushFailed(RegionId),
    /// A background open or create starts.
    OpenBegin(RegionId),
    /// A background change (`kind`: "alter", "truncate", "drop", ...) starts.
    ChangeBegin(RegionId, &'static str),
    /// A background change was applied (or failed) and its caller answered.
    ChangeEnd(RegionId, &'static str),
    /// A compaction job starts.
    CompactionBegin(RegionId),
    /// A compaction job wrote its outputs and is about to commit.
    CompactionWritten(RegionId),
    /// A DDL cancelled the running compaction.
    CompactionCancel(RegionId),
    /// A compaction ended: applied (`true`), or failed, cancelled or discarded.
    CompactionEnd(RegionId, bool),
    /// The files of a dropped region were removed (`true`) or removing them failed.
    LaterDropEnd(RegionId, bool),
}

/// The recording [`EventListener`] of a [`TestEngine`](super::TestEngine) (one for all
/// the engines it builds across restarts): every event in order, and a way to wait for
/// one instead of sleeping.
#[derive(Debug)]
pub struct Events {
    log: Mutex<Vec<Event>>,
    requests: AtomicU64,
    /// Bumped on every event, so waiters look again.
    changed: watch::Sender<u64>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            log: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            changed: watch::Sender::new(0),
        }
    }
}

impl Events {
    /// Every event recorded so far (since the last [`take`](Self::take)), in order.
    pub fn all(&self) -> Vec<Event> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The events recorded so far, forgetting them.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many recorded events `matches` accepts.
    pub fn count(&self, matches: impl Fn(&Event) -> bool) -> usize {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter().filter(|e| matches(e)).count()
    }

    /// How many requests the workers took off their channels (not recorded as events).
    pub fn requests_received(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Waits until `done` holds for the recorded events (at once if it already does).
    /// There is no time limit: the test runner's is the one that ends a wait for an event
    /// that never comes.
    pub async fn wait_for(&self, done: impl Fn(&[Event]) -> bool) {
        let mut changed = self.changed.subscribe();
        loop {
            if done(&self.log.lock().unwrap_or_else(PoisonError::into_inner)) {
                return;
            }
            // The sender lives in `self`, so it cannot be dropped while we wait.
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    fn record(&self, event: Event) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[async_trait]
impl EventListener for Events {
    fn on_recv_requests(&self, requests: usize) {
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
    }

    fn on_write_stall(&self) {
        self.record(Event::WriteStall);
    }

    fn on_write_delay(&self, delay: Duration) {
        self.record(Event::WriteDelay(delay));
    }

    async fn on_flush_begin(&self, region_id: RegionId) {
        self.record(Event::FlushBegin(region_id));
    }

    async fn on_open_begin(&self, region_id: RegionId) {
        self.record(Event::OpenBegin(region_id));
    }

    async fn on_change_begin(&self, region_id: RegionId, kind: &'static str) {
        self.record(Event::ChangeBegin(region_id, kind));
    }

    fn on_change_end(&self, region_id: RegionId, kind: &'static str) {
        self.record(Event::ChangeEnd(region_id, kind));
    }

    fn on_flush_success(&self, region_id: RegionId) {
        self.record(Event::FlushSuccess(region_id));
    }

    fn on_flush_failed(&self, region_id: RegionId) {
        self.record(Event::FlushFailed(region_id));
    }

    async fn on_compaction_begin(&self, region_id: RegionId) {
        self.record(Event::CompactionBegin(region_id));
    }

    async fn on_compaction_written(&self, region_id: RegionId) {
        self.record(Event::CompactionWritten(region_id));
    }

    fn on_compaction_cancel(&self, region_id: RegionId) {
        self.record(Event::CompactionCancel(region_id));
    }

    fn on_compaction_end(&self, region_id: RegionId, applied: bool) {
        self.record(Event::CompactionEnd(region_id, applied));
    }

    fn on_later_drop_end(&self, region_id: RegionId, removed: bool) {
        self.record(Event::LaterDropEnd(region_id, removed));
    }
}
