//! [`Region`]: one open region (its version, manifest and state) and [`RegionMap`], the
//! table of open regions shared by the workers and readers.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use strata_compaction::{CompactionCommitter, ManifestCompactionCommitter};
use strata_flush::{FlushCommitter, FlushReason, ManifestCommitter};
use strata_request::{RegionId, RegionRole};
use strata_storage::{ManifestManager, VersionControl, VersionControlData};

/// What a region currently accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegionState {
    /// Accepts writes, flushes and DDLs.
    Writable,
    /// Open for reads only: a follower ([`RegionRole::Follower`]), a region of a
    /// read-only engine, or one the embedder made read-only.
    ReadOnly,
    /// Handing the region over ([`RegionRole::Downgrading`]): new writes are refused,
    /// flushes still run and commit.
    Downgrading,
    /// A schema change is being persisted.
    Altering,
    /// Being dropped.
    Dropping,
    /// Being truncated.
    Truncating,
    /// Closed: the instance is no longer in the region map.
    Closed,
}

impl RegionState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => RegionState::Writable,
            1 => RegionState::ReadOnly,
            2 => RegionState::Altering,
            3 => RegionState::Dropping,
            4 => RegionState::Truncating,
            6 => RegionState::Downgrading,
            _ => RegionState::Closed,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            RegionState::Writable => 0,
            RegionState::ReadOnly => 1,
            RegionState::Altering => 2,
            RegionState::Dropping => 3,
            RegionState::Truncating => 4,
            RegionState::Closed => 5,
            RegionState::Downgrading => 6,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionState::Writable => "writable",
            RegionState::ReadOnly => "read-only",
            RegionState::Altering => "altering",
            RegionState::Dropping => "dropping",
            RegionState::Truncating => "truncating",
            RegionState::Closed => "closed",
            RegionState::Downgrading => "downgrading",
        }
    }

    /// The role a region in this state plays: the writable and transient states lead.
    pub fn role(self) -> RegionRole {
        match self {
            RegionState::ReadOnly | RegionState::Closed => RegionRole::Follower,
            RegionState::Downgrading => RegionRole::Downgrading,
            _ => RegionRole::Leader,
        }
    }
}

impl fmt::Display for RegionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A region's state cell. Changed only by the region's worker, and — for transitions that
/// must not interleave with a flush commit (close, drop, truncate, read-only) — while
/// holding the region's manifest lock, under which flush commits check it.
#[derive(Debug)]
pub(crate) struct StateCell(AtomicU8);

impl StateCell {
    fn new(state: RegionState) -> Self {
        Self(AtomicU8::new(state.as_u8()))
    }

    pub(crate) fn get(&self) -> RegionState {
        RegionState::from_u8(self.0.load(Ordering::Acquire))
    }

    pub(crate) fn set(&self, state: RegionState) {
        self.0.store(state.as_u8(), Ordering::Release);
    }
}

/// What a fenced-out commit does to the region, under the manifest lock: it follows.
fn fence(state: Arc<StateCell>) -> impl Fn() + Send + Sync + 'static {
    move || state.set(RegionState::ReadOnly)
}

/// One open region.
pub struct Region {
    region_id: RegionId,
    pub(crate) version_control: Arc<VersionControl>,
    pub(crate) manifest: Arc<tokio::sync::Mutex<ManifestManager>>,
    pub(crate) state: Arc<StateCell>,
    pub(crate) committer: Arc<dyn FlushCommitter>,
    pub(crate) compaction_committer: Arc<dyn CompactionCommitter>,
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
            .field("state", &self.state.get())
            .finish_non_exhaustive()
    }
}

impl Region {
    /// A region over `manifest` and `version_control` in `state`; `now_millis` counts as its
    /// last flush (for the periodic flush).
    pub(crate) fn new(
        version_control: Arc<VersionControl>,
        manifest: Arc<tokio::sync::Mutex<ManifestManager>>,
        state: RegionState,
        now_millis: i64,
    ) -> Self {
        let region_id = version_control.current().version().metadata().region_id();
        let state = Arc::new(StateCell::new(state));
        let check_state = state.clone();
        // A flush may commit only while the region is writable: never after it was closed,
        // dropped or truncated, or made read-only (another owner may write the manifest).
        let committer =
            ManifestCommitter::new(
                manifest.clone(),
                move |reason: FlushReason| match check_state.get() {
                    RegionState::Writable | RegionState::Altering | RegionState::Downgrading => {
                        Ok(())
                    }
                    other => Err(format!("region is {other} ({reason} flush)")),
                },
            )
            .with_on_fenced(fence(state.clone()));
        let check_state = state.clone();
        // A compaction may commit only while the region is writable.
        let compaction_committer =
            ManifestCompactionCommitter::new(manifest.clone(), move || match check_state.get() {
                RegionState::Writable => Ok(()),
                other => Err(format!("region is {other}")),
            })
            .with_on_fenced(fence(state.clone()));
        Self {
            region_id,
            version_control,
            manifest,
            state,
            committer: Arc::new(committer),
            compaction_committer: Arc::new(compaction_committer),
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
        self.state.get()
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
        self.manifest.lock().await.manifest().manifest_version()
    }

    /// The epoch of the region's leader as this engine's manifest state knows it.
    pub async fn leader_epoch(&self) -> u64 {
        self.manifest.lock().await.manifest().leader_epoch()
    }

    /// When its last flush failed, if it failed after the last success.
    pub(crate) fn flush_failed_millis(&self) -> Option<i64> {
        let millis = self.flush_failed_millis.load(Ordering::Relaxed);
        (millis != i64::MIN).then_some(millis)
    }

    pub(crate) fn set_flush_failed_millis(&self, millis: i64) {
        self.flush_failed_millis.store(millis, Ordering::Relaxed);
    }

    /// Sets the state while holding the manifest lock, so no flush commit interleaves.
    pub(crate) async fn set_state_locked(&self, state: RegionState) {
        let _manifest = self.manifest.lock().await;
        self.state.set(state);
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
