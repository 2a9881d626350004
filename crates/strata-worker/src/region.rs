//! [`Region`]: one open region (its version, and its manifest and state behind the
//! region's [`RegionCommitter`]) and [`RegionMap`], the table of open regions shared by
//! the workers and readers.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use strata_request::RegionId;
pub use strata_storage::RegionState;
use strata_storage::{RegionCommitter, VersionControl, VersionControlData};

/// One open region.
pub struct Region {
    region_id: RegionId,
    pub(crate) version_control: Arc<VersionControl>,
    /// The manifest and the state: every commit and every change of state goes through it.
    pub(crate) committer: Arc<RegionCommitter>,
    last_flush_millis: AtomicI64,
    /// The leader lease's end in clock milliseconds (`i64::MAX`: no lease).
    lease_until_millis: AtomicI64,
    /// When its last flush failed (`i64::MIN`: never), to back off automatic retries.
    flush_failed_millis: AtomicI64,
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("region_id", &self.region_id)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Region {
    /// A region over `committer` (its manifest and state) and `version_control`;
    /// `now_millis` counts as its last flush (for the periodic flush).
    pub(crate) fn new(
        version_control: Arc<VersionControl>,
        committer: Arc<RegionCommitter>,
        now_millis: i64,
    ) -> Self {
        Self {
            region_id: committer.region_id(),
            version_control,
            committer,
            last_flush_millis: AtomicI64::new(now_millis),
            lease_until_millis: AtomicI64::new(i64::MAX),
            flush_failed_millis: AtomicI64::new(i64::MIN),
        }
    }

    /// The region's id.
    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// Its current state.
    pub fn state(&self) -> RegionState {
        self.committer.state()
    }

    /// A snapshot of its version and progress counters (what a scan reads).
    pub fn snapshot(&self) -> VersionControlData {
        self.version_control.current()
    }

    /// When it last flushed (or was opened), in clock milliseconds.
    pub fn last_flush_millis(&self) -> i64 {
        self.last_flush_millis.load(Ordering::Relaxed)
    }

    pub(crate) fn set_last_flush_millis(&self, millis: i64) {
        self.last_flush_millis.store(millis, Ordering::Relaxed);
        self.flush_failed_millis.store(i64::MIN, Ordering::Relaxed);
    }

    /// Sets the leader lease's end (clock milliseconds; `i64::MAX` for none): from then
    /// on, writes fail `NotLeader` until the lease is renewed.
    pub fn set_lease_until_millis(&self, millis: i64) {
        self.lease_until_millis.store(millis, Ordering::Release);
    }

    /// When the leader lease ends, if one is set.
    pub fn lease_until_millis(&self) -> Option<i64> {
        let millis = self.lease_until_millis.load(Ordering::Acquire);
        (millis != i64::MAX).then_some(millis)
    }

    /// The manifest version its state is at (waits for a running manifest commit).
    pub async fn manifest_version(&self) -> u64 {
        self.committer.lock().await.manifest().manifest_version()
    }

    /// The epoch of the region's leader as this engine's manifest state knows it.
    pub async fn leader_epoch(&self) -> u64 {
        self.committer.lock().await.manifest().leader_epoch()
    }

    /// When its last flush failed, if it failed after the last success.
    pub(crate) fn flush_failed_millis(&self) -> Option<i64> {
        let millis = self.flush_failed_millis.load(Ordering::Relaxed);
        (millis != i64::MIN).then_some(millis)
    }

    pub(crate) fn set_flush_failed_millis(&self, millis: i64) {
        self.flush_failed_millis.store(millis, Ordering::Relaxed);
    }
}

/// Open regions by id, shared by all workers (each mutates only its own regions) and by
/// readers, which look regions up without going through a worker.
#[derive(Debug, Default, Clone)]
pub struct RegionMap {
    regions: Arc<RwLock<HashMap<RegionId, Arc<Region>>>>,
}

impl RegionMap {
    /// The region, if open.
    pub fn get(&self, region_id: RegionId) -> Option<Arc<Region>> {
        self.read().get(&region_id).cloned()
    }

    /// Every open region.
    pub fn list(&self) -> Vec<Arc<Region>> {
        self.read().values().cloned().collect()
    }

    /// Number of open regions.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no region is open.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    pub(crate) fn insert(&self, region: Arc<Region>) {
        self.regions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(region.region_id(), region);
    }

    pub(crate) fn remove(&self, region_id: RegionId) -> Option<Arc<Region>> {
        self.regions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&region_id)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<RegionId, Arc<Region>>> {
        self.regions.read().unwrap_or_else(PoisonError::into_inner)
    }
}
