//! [`WriteBufferManager`] and its implementation, [`WriteBufferManagerImpl`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::{IntGauge, Registry};
use snafu::{ResultExt, Snafu, ensure};

use crate::notifier::ReleaseNotifier;

/// Errors building a write-buffer manager.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum BufferError {
    /// The budget is zero or the reject size is below it.
    #[snafu(display(
        "invalid write buffer limits: global_write_buffer_size = {global} bytes must be > 0 and global_write_buffer_reject_size = {reject} bytes must be >= it"
    ))]
    InvalidLimits {
        /// The budget.
        global: usize,
        /// The reject size.
        reject: usize,
    },
    /// A metric could not be registered (for example, registered twice on one registry).
    #[snafu(display("cannot register write buffer metric {name}: {source}"))]
    RegisterMetric {
        /// Metric name.
        name: &'static str,
        /// Prometheus' complaint.
        source: prometheus::Error,
    },
}

/// Accounts memtable memory against one global budget and says when to flush, stall or
/// reject (modelled on RocksDB's write buffer manager).
///
/// Memory moves through three calls, each made once per allocation by an
/// [`AllocTracker`](crate::AllocTracker):
/// [`reserve_mem`](Self::reserve_mem) when a memtable grows (counted as *used* and
/// *mutable*), [`schedule_free_mem`](Self::schedule_free_mem) when it is frozen (no longer
/// mutable, still used until flushed), [`free_mem`](Self::free_mem) when it is dropped
/// (no longer used; wakes every worker).
///
/// The limits are soft: a write is admitted on the usage seen before it, so one batch can
/// overshoot the budget; the next one stalls.
pub trait WriteBufferManager: Send + Sync + fmt::Debug {
    /// Whether workers should flush more regions: mutable memory ≥ half the budget.
    ///
    /// Frozen memory is not counted: it is already being flushed, and a flush in flight
    /// frees it. A budget full of frozen memory stalls writes (see
    /// [`should_stall`](Self::should_stall)) without asking for more flushes — otherwise
    /// one long flush would make every following write batch flush the next small region.
    /// Frozen memtables that no flush is writing (their flush failed) are the workers' to
    /// flush again: only they know which flushes are in flight.
    fn should_flush_engine(&self) -> bool;

    /// Whether new writes must wait: all memtable memory ≥ the budget.
    fn should_stall(&self) -> bool;

    /// Whether new writes must be refused: memtable memory plus `stalled_bytes` (requests
    /// already waiting) ≥ the reject size.
    fn should_reject(&self, stalled_bytes: usize) -> bool;

    /// Charges `bytes` of new mutable memtable memory.
    fn reserve_mem(&self, bytes: usize);

    /// Moves `bytes` from mutable to "being flushed" (a memtable was frozen).
    fn schedule_free_mem(&self, bytes: usize);

    /// Releases `bytes` of memtable memory and notifies every worker.
    fn free_mem(&self, bytes: usize);

    /// All memtable memory (mutable + frozen), in bytes.
    fn memory_usage(&self) -> usize;

    /// Mutable memtable memory, in bytes.
    fn mutable_usage(&self) -> usize;

    /// Engine-full flushes pick regions until usage falls below this (half the budget).
    fn flush_limit(&self) -> usize;

    /// The notifier [`free_mem`](Self::free_mem) fires: every worker subscribes to it, to
    /// retry its stalled writes and check whether the engine is full.
    fn notifier(&self) -> &ReleaseNotifier;
}

/// Shared handle to a write-buffer manager.
pub type WriteBufferManagerRef = Arc<dyn WriteBufferManager>;

/// The global write buffer: two counters and three thresholds.
///
/// | condition | threshold |
/// |---|---|
/// | flush | mutable ≥ budget / 2 |
/// | stall | used ≥ budget |
/// | reject | used + stalled ≥ reject size (default 2 × budget) |
///
/// Memory already being flushed (frozen) does not ask for more flushes; the deadlock where
/// frozen memtables whose flush failed fill the budget is the workers' to break (they
/// flush frozen memtables no flush is writing whenever writes stall).
#[derive(Debug)]
pub struct WriteBufferManagerImpl {
    global_size: usize,
    reject_size: usize,
    mutable_limit: usize,
    /// Mutable + frozen memtable bytes.
    used: AtomicUsize,
    /// Mutable memtable bytes.
    active: AtomicUsize,
    notifier: ReleaseNotifier,
    metrics: Option<BufferMetrics>,
}

#[derive(Debug)]
struct BufferMetrics {
    used: IntGauge,
    mutable: IntGauge,
}

impl WriteBufferManagerImpl {
    /// A manager with a `global_size`-byte budget that rejects at `reject_size` bytes and
    /// signals releases on `notifier`.
    pub fn new(
        global_size: usize,
        reject_size: usize,
        notifier: ReleaseNotifier,
    ) -> Result<Self, BufferError> {
        ensure!(
            global_size > 0 && reject_size >= global_size,
            InvalidLimitsSnafu {
                global: global_size,
                reject: reject_size,
            }
        );
        Ok(Self {
            global_size,
            reject_size,
            mutable_limit: global_size / 2,
            used: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            notifier,
            metrics: None,
        })
    }

    /// Publishes `strata_write_buffer_bytes` (all memtable memory),
    /// `strata_write_buffer_mutable_bytes` and `strata_write_buffer_limit_bytes` on `registry`.
    pub fn with_metrics(mut self, registry: &Registry) -> Result<Self, BufferError> {
        let gauge = |name: &'static str, help: &str| -> Result<IntGauge, BufferError> {
            let gauge = IntGauge::new(name, help).context(RegisterMetricSnafu { name })?;
            registry
                .register(Box::new(gauge.clone()))
                .context(RegisterMetricSnafu { name })?;
            Ok(gauge)
        };
        let used = gauge(
            "strata_write_buffer_bytes",
            "Memtable memory (mutable and frozen) charged to the write buffer.",
        )?;
        let mutable = gauge(
            "strata_write_buffer_mutable_bytes",
            "Mutable memtable memory charged to the write buffer.",
        )?;
        let limit = gauge(
            "strata_write_buffer_limit_bytes",
            "The write buffer budget (global_write_buffer_size).",
        )?;
        limit.set(saturating_i64(self.global_size));
        used.set(saturating_i64(self.memory_usage()));
        mutable.set(saturating_i64(self.mutable_usage()));
        self.metrics = Some(BufferMetrics { used, mutable });
        Ok(self)
    }

    /// The budget in bytes.
    pub fn global_size(&self) -> usize {
        self.global_size
    }

    /// The reject size in bytes.
    pub fn reject_size(&self) -> usize {
        self.reject_size
    }

    fn publish(&self) {
        if let Some(m) = &self.metrics {
            m.used
                .set(saturating_i64(self.used.load(Ordering::Relaxed)));
            m.mutable
                .set(saturating_i64(self.active.load(Ordering::Relaxed)));
        }
    }
}

/// Subtracts `bytes` from `counter`, clamping at zero. Underflow means an accounting bug
/// elsewhere; it is logged rather than allowed to wrap into a huge usage that stalls forever.
fn saturating_sub(counter: &AtomicUsize, bytes: usize, what: &str) {
    let previous = counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(v.saturating_sub(bytes))
        })
        .unwrap_or_else(|v| v);
    if previous < bytes {
        tracing::warn!(
            counter = what,
            previous,
            bytes,
            "write buffer accounting underflow clamped to zero"
        );
    }
}

fn saturating_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl WriteBufferManager for WriteBufferManagerImpl {
    fn should_flush_engine(&self) -> bool {
        self.mutable_usage() >= self.mutable_limit
    }

    fn should_stall(&self) -> bool {
        self.memory_usage() >= self.global_size
    }

    fn should_reject(&self, stalled_bytes: usize) -> bool {
        self.memory_usage().saturating_add(stalled_bytes) >= self.reject_size
    }

    fn reserve_mem(&self, bytes: usize) {
        // `used` first, so a concurrent reader never sees mutable > used.
        self.used.fetch_add(bytes, Ordering::AcqRel);
        self.active.fetch_add(bytes, Ordering::AcqRel);
        self.publish();
    }

    fn schedule_free_mem(&self, bytes: usize) {
        saturating_sub(&self.active, bytes, "mutable");
        self.publish();
    }

    fn free_mem(&self, bytes: usize) {
        saturating_sub(&self.used, bytes, "used");
        self.publish();
        self.notifier.notify();
    }

    fn memory_usage(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn mutable_usage(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn flush_limit(&self) -> usize {
        self.mutable_limit
    }

    fn notifier(&self) -> &ReleaseNotifier {
        &self.notifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(global: usize) -> WriteBufferManagerImpl {
        WriteBufferManagerImpl::new(global, global * 2, ReleaseNotifier::new()).unwrap()
    }

    #[test]
    fn mutable_limit_is_half_the_budget() {
        assert_eq!(manager(1000).flush_limit(), 500);
    }

    #[test]
    fn flushes_when_mutable_reaches_half() {
        let m = manager(1000);
        m.reserve_mem(499);
        assert!(!m.should_flush_engine());
        m.reserve_mem(1);
        assert!(m.should_flush_engine());
        assert!(!m.should_stall());
    }

    #[test]
    fn frozen_memory_filling_the_budget_stalls_without_asking_for_more_flushes() {
        // All memory frozen (being flushed), mutable below half: writes stall, and the
        // flushes in flight, not new ones, free the memory.
        let m = manager(1000);
        m.reserve_mem(1000);
        m.schedule_free_mem(1000);
        assert_eq!(m.mutable_usage(), 0);
        assert!(!m.should_flush_engine());
        assert!(m.should_stall());
        m.free_mem(600);
        assert!(!m.should_flush_engine());
        assert!(!m.should_stall());
    }

    #[test]
    fn rejects_when_usage_plus_stalled_reaches_the_reject_size() {
        let m = manager(1000);
        m.reserve_mem(1000);
        assert!(!m.should_reject(999));
        assert!(m.should_reject(1000));
        assert!(m.should_reject(usize::MAX), "no overflow");
    }

    #[test]
    fn only_free_mem_notifies() {
        let m = manager(1000);
        m.reserve_mem(10);
        m.schedule_free_mem(10);
        assert_eq!(m.notifier().notifications(), 0);
        m.free_mem(10);
        assert_eq!(m.notifier().notifications(), 1);
    }

    #[test]
    fn underflow_clamps_to_zero() {
        let m = manager(1000);
        m.reserve_mem(5);
        m.free_mem(50);
        m.schedule_free_mem(50);
        assert_eq!(m.memory_usage(), 0);
        assert_eq!(m.mutable_usage(), 0);
    }

    #[test]
    fn rejects_invalid_limits() {
        let n = ReleaseNotifier::new;
        assert!(WriteBufferManagerImpl::new(0, 0, n()).is_err());
        let err = WriteBufferManagerImpl::new(100, 99, n()).unwrap_err();
        assert!(err.to_string().contains("must be >= it"), "{err}");
        assert!(WriteBufferManagerImpl::new(100, 100, n()).is_ok());
    }

    #[test]
    fn metrics_follow_the_counters() {
        let registry = Registry::new();
        let m = manager(1000).with_metrics(&registry).unwrap();
        m.reserve_mem(300);
        m.schedule_free_mem(100);
        let value = |name: &str| {
            registry
                .gather()
                .iter()
                .find(|f| f.name() == name)
                .map(|f| f.get_metric()[0].get_gauge().get_value())
                .unwrap()
        };
        assert_eq!(value("strata_write_buffer_bytes"), 300.0);
        assert_eq!(value("strata_write_buffer_mutable_bytes"), 200.0);
        assert_eq!(value("strata_write_buffer_limit_bytes"), 1000.0);
        let again = manager(1000).with_metrics(&registry).unwrap_err();
        assert!(
            again.to_string().contains("strata_write_buffer_bytes"),
            "{again}"
        );
    }
}
