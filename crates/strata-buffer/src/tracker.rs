//! [`AllocTracker`]: charges one memtable's memory to the write buffer, exactly once each way.

use std::fmt;
use std::sync::Mutex;

use crate::manager::WriteBufferManagerRef;

/// Tracks one memtable's memory: charge on allocation, "being freed" on freeze, released on
/// drop — each exactly once, whatever order the calls race in.
///
/// - [`on_allocation`](Self::on_allocation) after each write: `reserve_mem(bytes)`.
/// - [`done_allocating`](Self::done_allocating) when the memtable is frozen, at most once:
///   `schedule_free_mem(total)`. Bytes charged after that are moved at once, so they never
///   count as mutable.
/// - `Drop` (the last reference to the memtable is gone): `done_allocating` if it has not
///   happened, then `free_mem(total)`, which wakes every worker.
pub struct AllocTracker {
    manager: Option<WriteBufferManagerRef>,
    state: Mutex<TrackerState>,
}

#[derive(Debug, Default)]
struct TrackerState {
    bytes_allocated: usize,
    done_allocating: bool,
}

impl fmt::Debug for AllocTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("AllocTracker")
            .field("bytes_allocated", &state.bytes_allocated)
            .field("done_allocating", &state.done_allocating)
            .finish()
    }
}

impl AllocTracker {
    /// A tracker charging `manager`, or only counting when `None`.
    pub fn new(manager: Option<WriteBufferManagerRef>) -> Self {
        Self {
            manager,
            state: Mutex::new(TrackerState::default()),
        }
    }

    /// Records `bytes` more memory.
    pub fn on_allocation(&self, bytes: usize) {
        let mut state = self.lock();
        state.bytes_allocated = state.bytes_allocated.saturating_add(bytes);
        if let Some(manager) = &self.manager {
            manager.reserve_mem(bytes);
            if state.done_allocating {
                manager.schedule_free_mem(bytes);
            }
        }
    }

    /// Marks the memtable frozen; only the first call has an effect.
    pub fn done_allocating(&self) {
        let mut state = self.lock();
        Self::finish_allocating(&self.manager, &mut state);
    }

    /// Total bytes recorded so far.
    pub fn bytes_allocated(&self) -> usize {
        self.lock().bytes_allocated
    }

    /// Whether [`done_allocating`](Self::done_allocating) has happened.
    pub fn is_done_allocating(&self) -> bool {
        self.lock().done_allocating
    }

    fn finish_allocating(manager: &Option<WriteBufferManagerRef>, state: &mut TrackerState) {
        if state.done_allocating {
            return;
        }
        state.done_allocating = true;
        if let Some(manager) = manager {
            manager.schedule_free_mem(state.bytes_allocated);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        // The state is two plain integers: a panic while holding the lock cannot leave it
        // inconsistent, so a poisoned lock is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for AllocTracker {
    fn drop(&mut self) {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::finish_allocating(&self.manager, state);
        if let Some(manager) = &self.manager {
            manager.free_mem(state.bytes_allocated);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::manager::{WriteBufferManager, WriteBufferManagerImpl};
    use crate::notifier::ReleaseNotifier;

    fn manager() -> Arc<WriteBufferManagerImpl> {
        Arc::new(WriteBufferManagerImpl::new(1 << 20, 2 << 20, ReleaseNotifier::new()).unwrap())
    }

    #[test]
    fn charge_freeze_drop_moves_memory_through_each_state_once() {
        let m = manager();
        let t = AllocTracker::new(Some(m.clone()));
        t.on_allocation(100);
        t.on_allocation(50);
        assert_eq!((m.memory_usage(), m.mutable_usage()), (150, 150));
        t.done_allocating();
        t.done_allocating();
        assert_eq!((m.memory_usage(), m.mutable_usage()), (150, 0));
        assert_eq!(m.notifier().notifications(), 0);
        drop(t);
        assert_eq!((m.memory_usage(), m.mutable_usage()), (0, 0));
        assert_eq!(m.notifier().notifications(), 1);
    }

    #[test]
    fn dropping_an_unfrozen_tracker_releases_everything() {
        let m = manager();
        let t = AllocTracker::new(Some(m.clone()));
        t.on_allocation(64);
        drop(t);
        assert_eq!((m.memory_usage(), m.mutable_usage()), (0, 0));
    }

    #[test]
    fn allocation_after_freeze_is_never_counted_as_mutable() {
        let m = manager();
        let t = AllocTracker::new(Some(m.clone()));
        t.on_allocation(10);
        t.done_allocating();
        t.on_allocation(5);
        assert_eq!((m.memory_usage(), m.mutable_usage()), (15, 0));
        drop(t);
        assert_eq!(m.memory_usage(), 0);
    }

    #[test]
    fn a_tracker_without_manager_only_counts() {
        let t = AllocTracker::new(None);
        t.on_allocation(7);
        t.done_allocating();
        assert_eq!(t.bytes_allocated(), 7);
        assert!(t.is_done_allocating());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Spawn,
        Charge { tracker: usize, bytes: usize },
        Freeze { tracker: usize },
        Drop { tracker: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => Just(Op::Spawn),
            4 => (any::<usize>(), 0usize..10_000).prop_map(|(tracker, bytes)| Op::Charge { tracker, bytes }),
            1 => any::<usize>().prop_map(|tracker| Op::Freeze { tracker }),
            1 => any::<usize>().prop_map(|tracker| Op::Drop { tracker }),
        ]
    }

    proptest! {
        /// Random charge / freeze / drop over many trackers: the manager's counters always
        /// equal the model's, `used >= mutable`, every drop notifies, and all returns to zero.
        #[test]
        fn counters_match_the_model_and_return_to_zero(ops in proptest::collection::vec(op(), 1..200)) {
            let m = manager();
            // (tracker, model bytes, model frozen)
            let mut live: Vec<(AllocTracker, usize, bool)> = Vec::new();
            let mut drops = 0u64;
            for op in ops {
                match op {
                    Op::Spawn => live.push((AllocTracker::new(Some(m.clone())), 0, false)),
                    Op::Charge { tracker, bytes } if !live.is_empty() => {
                        let i = tracker % live.len();
                        live[i].0.on_allocation(bytes);
                        live[i].1 += bytes;
                    }
                    Op::Freeze { tracker } if !live.is_empty() => {
                        let i = tracker % live.len();
                        live[i].0.done_allocating();
                        live[i].2 = true;
                    }
                    Op::Drop { tracker } if !live.is_empty() => {
                        live.swap_remove(tracker % live.len());
                        drops += 1;
                    }
                    _ => {}
                }
                let used: usize = live.iter().map(|t| t.1).sum();
                let mutable: usize = live.iter().filter(|t| !t.2).map(|t| t.1).sum();
                prop_assert_eq!(m.memory_usage(), used);
                prop_assert_eq!(m.mutable_usage(), mutable);
                prop_assert!(m.memory_usage() >= m.mutable_usage());
                prop_assert_eq!(m.notifier().notifications(), drops);
            }
            drops += live.len() as u64;
            live.clear();
            prop_assert_eq!(m.memory_usage(), 0);
            prop_assert_eq!(m.mutable_usage(), 0);
            prop_assert_eq!(m.notifier().notifications(), drops);
        }
    }

    #[test]
    fn concurrent_charges_and_a_racing_freeze_balance_exactly() {
        let m = manager();
        let t = Arc::new(AllocTracker::new(Some(m.clone())));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        t.on_allocation(3);
                    }
                })
            })
            .collect();
        t.done_allocating();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(m.memory_usage(), 12_000);
        assert_eq!(m.mutable_usage(), 0);
        drop(t);
        assert_eq!(m.memory_usage(), 0);
    }
}
