//! Test support (feature `testing`): [`ForcedWriteBuffer`], a real write-buffer manager
//! whose flush, stall and reject decisions a test can force on, so the write path's
//! reactions to memory pressure are tested without filling memory.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::{ReleaseNotifier, WriteBufferManager, WriteBufferManagerImpl};

/// A [`WriteBufferManagerImpl`] whose decisions can be forced on; every accounting call
/// goes to the real manager, so its counters stay true.
#[derive(Debug)]
pub struct ForcedWriteBuffer {
    inner: WriteBufferManagerImpl,
    /// `should_flush_engine` answers yes while set.
    pub force_flush: AtomicBool,
    /// `should_stall` answers yes while set.
    pub force_stall: AtomicBool,
    /// `should_reject` answers yes while set.
    pub force_reject: AtomicBool,
    /// The most memtable memory ever charged.
    peak: AtomicUsize,
}

impl ForcedWriteBuffer {
    /// Wraps `inner`, nothing forced.
    pub fn new(inner: WriteBufferManagerImpl) -> Self {
        Self {
            inner,
            force_flush: AtomicBool::new(false),
            force_stall: AtomicBool::new(false),
            force_reject: AtomicBool::new(false),
            peak: AtomicUsize::new(0),
        }
    }

    /// The most memtable memory (`memory_usage`) ever charged.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

impl WriteBufferManager for ForcedWriteBuffer {
    fn should_flush_engine(&self) -> bool {
        self.force_flush.load(Ordering::SeqCst) || self.inner.should_flush_engine()
    }
    fn should_stall(&self) -> bool {
        self.force_stall.load(Ordering::SeqCst) || self.inner.should_stall()
    }
    fn should_reject(&self, stalled_bytes: usize) -> bool {
        self.force_reject.load(Ordering::SeqCst) || self.inner.should_reject(stalled_bytes)
    }
    fn reserve_mem(&self, bytes: usize) {
        self.inner.reserve_mem(bytes);
        self.peak
            .fetch_max(self.inner.memory_usage(), Ordering::SeqCst);
    }
    fn schedule_free_mem(&self, bytes: usize) {
        self.inner.schedule_free_mem(bytes);
    }
    fn free_mem(&self, bytes: usize) {
        self.inner.free_mem(bytes);
    }
    fn memory_usage(&self) -> usize {
        self.inner.memory_usage()
    }
    fn mutable_usage(&self) -> usize {
        self.inner.mutable_usage()
    }
    fn flush_limit(&self) -> usize {
        self.inner.flush_limit()
    }
    fn notifier(&self) -> &ReleaseNotifier {
        self.inner.notifier()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_decisions_turn_on_and_off_while_accounting_stays_real() {
        let buffer = ForcedWriteBuffer::new(
            WriteBufferManagerImpl::new(1 << 20, 2 << 20, ReleaseNotifier::new()).unwrap(),
        );
        assert!(!buffer.should_stall() && !buffer.should_reject(0));
        buffer.force_stall.store(true, Ordering::SeqCst);
        buffer.force_reject.store(true, Ordering::SeqCst);
        assert!(buffer.should_stall() && buffer.should_reject(0));
        buffer.reserve_mem(100);
        assert_eq!(buffer.peak(), 100);
        assert_eq!(buffer.memory_usage(), 100);
        buffer.force_stall.store(false, Ordering::SeqCst);
        assert!(!buffer.should_stall());
    }
}
