//! [`EventListener`]: test hooks, injected at construction; every method defaults to doing
//! nothing, and production engines install [`NoopListener`].

use std::fmt;

use async_trait::async_trait;
use strata_request::RegionId;

/// Told about worker events. Tests use it to wait for events instead of sleeping, and to
/// hold a flush in progress.
///
/// Implement it with `#[async_trait]` (re-exported as `strata_engine::async_trait`).
#[async_trait]
pub trait EventListener: Send + Sync + fmt::Debug + 'static {
    /// A batch of `requests` was taken off a worker's channel.
    fn on_recv_requests(&self, requests: usize) {
        let _ = requests;
    }

    /// Writes were stalled (memory over budget).
    fn on_write_stall(&self) {}

    /// A write was paced by the slowdown (memory over the slowdown threshold): it waits
    /// `delay` on the engine clock, without holding up its worker.
    fn on_write_delay(&self, delay: std::time::Duration) {
        let _ = delay;
    }

    /// A flush job of `region_id` starts writing (holding one of the
    /// `max_background_flushes` write permits); the job waits until this returns.
    async fn on_flush_begin(&self, region_id: RegionId) {
        let _ = region_id;
    }

    /// A background open (or create) of `region_id` starts its work — manifest, WAL
    /// replay — off the worker; it waits until this returns.
    async fn on_open_begin(&self, region_id: RegionId) {
        let _ = region_id;
    }

    /// A background change (`kind`: "alter", "truncate", "drop", "upgrade", "downgrade",
    /// "set writable", "sync") of `region_id` starts its work — manifest lock and I/O —
    /// off the worker; it waits until this returns.
    async fn on_change_begin(&self, region_id: RegionId, kind: &'static str) {
        let _ = (region_id, kind);
    }

    /// A background change of `region_id` was applied by its worker (or failed) and its
    /// caller answered.
    fn on_change_end(&self, region_id: RegionId, kind: &'static str) {
        let _ = (region_id, kind);
    }

    /// A flush of `region_id` was applied by its worker.
    fn on_flush_success(&self, region_id: RegionId) {
        let _ = region_id;
    }

    /// A flush of `region_id` failed.
    fn on_flush_failed(&self, region_id: RegionId) {
        let _ = region_id;
    }

    /// A compaction job of `region_id` starts; the job waits until this returns.
    async fn on_compaction_begin(&self, region_id: RegionId) {
        let _ = region_id;
    }

    /// A compaction job of `region_id` wrote its outputs and is about to commit; the job
    /// waits until this returns.
    async fn on_compaction_written(&self, region_id: RegionId) {
        let _ = region_id;
    }

    /// A DDL cancelled the running compaction of `region_id` and waits for it to end.
    fn on_compaction_cancel(&self, region_id: RegionId) {
        let _ = region_id;
    }

    /// A compaction of `region_id` ended: applied (`applied`), or failed, cancelled or
    /// discarded.
    fn on_compaction_end(&self, region_id: RegionId, applied: bool) {
        let _ = (region_id, applied);
    }

    /// The files of dropped region `region_id` were removed (`removed`) or removing them
    /// failed.
    fn on_later_drop_end(&self, region_id: RegionId, removed: bool) {
        let _ = (region_id, removed);
    }
}

/// The listener that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopListener;

#[async_trait]
impl EventListener for NoopListener {}
