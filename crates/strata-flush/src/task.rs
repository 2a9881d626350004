//! [`RegionFlushTask`]: a flush request and the waiters it must answer.

use strata_request::{AffectedRows, OutputTx, RegionId};

use crate::error::FlushError;
use crate::reason::FlushReason;

/// Answers one caller of a flush.
pub type FlushWaiter<E> = OutputTx<AffectedRows, E>;

/// A flush to run for one region, with everyone waiting for it.
///
/// Each waiter is answered exactly once: by [`on_success`](Self::on_success), by
/// [`on_failure`](Self::on_failure), or — if the task is dropped unanswered (its job was
/// dropped by a stopping pool) — with [`FlushError::Dropped`].
pub struct RegionFlushTask<E: From<FlushError> + Send + 'static> {
    region_id: RegionId,
    reason: FlushReason,
    waiters: Vec<FlushWaiter<E>>,
}

impl<E: From<FlushError> + Send + 'static> std::fmt::Debug for RegionFlushTask<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionFlushTask")
            .field("region_id", &self.region_id)
            .field("reason", &self.reason)
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

impl<E: From<FlushError> + Send + 'static> RegionFlushTask<E> {
    /// A task with no waiters yet.
    pub fn new(region_id: RegionId, reason: FlushReason) -> Self {
        Self {
            region_id,
            reason,
            waiters: Vec::new(),
        }
    }

    /// The region.
    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// Why the flush runs.
    pub fn reason(&self) -> FlushReason {
        self.reason
    }

    /// Number of waiters.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Adds a waiter, if there is one.
    pub fn push_waiter(&mut self, waiter: Option<FlushWaiter<E>>) {
        self.waiters.extend(waiter);
    }

    /// Takes over `other`'s waiters (the reasons are treated as equivalent).
    pub fn merge(&mut self, mut other: RegionFlushTask<E>) {
        self.waiters.append(&mut other.waiters);
    }

    /// Answers every waiter with success.
    pub fn on_success(mut self) {
        for waiter in self.waiters.drain(..) {
            waiter.send(Ok(0));
        }
    }

    /// Answers every waiter with `error`.
    pub fn on_failure(mut self, error: FlushError) {
        for waiter in self.waiters.drain(..) {
            waiter.send(Err(E::from(error.clone())));
        }
    }
}

impl<E: From<FlushError> + Send + 'static> Drop for RegionFlushTask<E> {
    fn drop(&mut self) {
        let region_id = self.region_id;
        for waiter in self.waiters.drain(..) {
            waiter.send(Err(E::from(FlushError::Dropped { region_id })));
        }
    }
}
