//! Strata's write-buffer accounting: one global memtable budget shared by every region.
//!
//! - [`WriteBufferManager`] (implemented by [`WriteBufferManagerImpl`]) holds two counters —
//!   all memtable memory and mutable memtable memory — and answers the three questions the
//!   write path asks: flush? stall? reject?
//! - [`AllocTracker`] is owned by each memtable and moves its bytes through *charged* →
//!   *being freed* (frozen) → *released* (dropped), each step exactly once.
//! - [`ReleaseNotifier`] fires on every release, waking every worker so stalled writes are
//!   retried even when memory is freed outside any worker (e.g. the last scan of a flushed
//!   memtable ends).
//!
//! # Features
//!
//! - `testing`: `testing::ForcedWriteBuffer`, a real manager whose flush, stall and reject
//!   decisions a test can force on.
//!
//! # Layering
//!
//! A leaf crate: it **must never depend on any other Strata crate**. Memtables (in
//! `strata-storage`) and workers (in `strata-worker`) depend on it.

mod manager;
mod notifier;
mod tracker;

pub use manager::{BufferError, WriteBufferManager, WriteBufferManagerImpl, WriteBufferManagerRef};
pub use notifier::ReleaseNotifier;
pub use tracker::AllocTracker;

#[cfg(feature = "testing")]
pub mod testing;
