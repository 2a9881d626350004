//! Deleting files on the purge pool. [`PoolFilePurger`] deletes an SST removed from its
//! region (truncate, later compaction) once its last reader is done. [`Purges`]: which
//! dropped regions still have a background file purge running, so a create or open of
//! the same id waits for it (the purge must never delete the new region's files). Only
//! running purges are remembered: the map cannot grow with the number of drops over an
//! engine's life.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use opendal::Operator;
use strata_request::RegionId;
use strata_scheduler::{ClockRef, Job, SchedulerRef};
use strata_storage::{FileMeta, FilePurger, RegionFiles};
use tokio::sync::{Notify, watch};

/// Deletes removed SST files on the purge pool, once their last reader in this engine is
/// done and `lingering` has passed on the engine clock (so a reader in another process —
/// `strata scan` beside an ingest — that read an older manifest finds them for that long).
/// strata-storage's file handles call it. A deletion still lingering when the engine stops
/// does not happen; the next read-write open sweeps the file.
#[derive(Debug)]
pub(crate) struct PoolFilePurger {
    pub(crate) store: Operator,
    pub(crate) pool: SchedulerRef,
    pub(crate) clock: ClockRef,
    pub(crate) lingering: Duration,
}

impl FilePurger for PoolFilePurger {
    fn purge(&self, file: &FileMeta) {
        let files = RegionFiles::new(self.store.clone(), file.region_id);
        let file_id = file.file_id;
        let file = file.clone();
        let job: Job = Box::pin(async move {
            files.delete_removed(&file).await;
        });
        let pool = self.pool.clone();
        let schedule = move |job| {
            if let Err(error) = pool.schedule(job) {
                tracing::warn!(file = %file_id, %error, "cannot schedule deletion of a removed SST (the next open sweeps it)");
            }
        };
        if self.lingering.is_zero() {
            schedule(job);
            return;
        }
        let sleep = self.clock.sleep(self.lingering);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    sleep.await;
                    schedule(job);
                });
            }
            // No runtime (a version dropped outside one): delete now rather than never.
            Err(_) => schedule(job),
        }
    }
}

/// The running purges, by region: whether each is over, and how to hurry it (a purge
/// that waits out the lingering time for followers stops waiting when a create or open of
/// its id needs it done).
#[derive(Debug, Default)]
pub(crate) struct Purges {
    running: Mutex<HashMap<RegionId, Running>>,
}

/// A running purge as the waiters see it: whether it is over, and how to hurry it.
type Running = (watch::Receiver<bool>, Arc<Notify>);

/// A running purge's side: mark it finished (send `true`, or drop it); `hurry` is notified
/// when someone waits for it.
#[derive(Debug)]
pub(crate) struct PurgeHandle {
    pub(crate) done: watch::Sender<bool>,
    pub(crate) hurry: Arc<Notify>,
}

/// Whether a purge is over: it said so, or its job was dropped (unrun or finished).
fn finished(done: &watch::Receiver<bool>) -> bool {
    *done.borrow() || done.has_changed().is_err()
}

impl Purges {
    /// Registers a purge of `region_id`; the returned sender marks it finished (sending
    /// `true`, or being dropped). Forgets every purge that is over.
    pub(crate) fn start(&self, region_id: RegionId) -> PurgeHandle {
        let (done, pending) = watch::channel(false);
        let hurry = Arc::new(Notify::new());
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|_, (done, _)| !finished(done));
        running.insert(region_id, (pending, hurry.clone()));
        PurgeHandle { done, hurry }
    }

    /// Waits until no purge of `region_id`'s files is running, then forgets it.
    pub(crate) async fn wait(&self, region_id: RegionId) {
        let pending = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&region_id)
            .cloned();
        let Some((mut done, hurry)) = pending else {
            return;
        };
        // Stored if the purge does not wait yet: it will not wait at all.
        hurry.notify_one();
        // An error means the job was dropped unrun (pool stopping): nothing runs.
        let _ = done.wait_for(|finished| *finished).await;
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running
            .get(&region_id)
            .is_some_and(|(current, _)| current.same_channel(&done))
        {
            running.remove(&region_id);
        }
    }

    /// How many purges are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_running_purges_are_remembered() {
        let purges = Purges::default();
        for n in 0..100 {
            let handle = purges.start(RegionId::new(1, n));
            if n % 2 == 0 {
                handle.done.send_replace(true);
            }
            // Odd ones: the job dropped its sender (finished or never ran).
        }
        // Each start forgets what was over before it: only the last one can remain.
        assert!(purges.len() <= 1, "{} purges remembered", purges.len());
        let running = purges.start(RegionId::new(2, 0));
        assert_eq!(purges.len(), 1);
        running.done.send_replace(true);
        purges.wait(RegionId::new(2, 0)).await;
        assert_eq!(purges.len(), 0, "a waited-for purge is forgotten");
    }

    #[tokio::test]
    async fn a_wait_returns_only_once_the_purge_is_over() {
        let purges = std::sync::Arc::new(Purges::default());
        let region = RegionId::new(3, 1);
        let handle = purges.start(region);
        let waiter = tokio::spawn({
            let purges = purges.clone();
            async move { purges.wait(region).await }
        });
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        handle.done.send_replace(true);
        waiter.await.unwrap();
        purges.wait(RegionId::new(3, 2)).await; // no purge: returns at once
    }
}
