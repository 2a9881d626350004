//! [`RegionCommitter`]: the one way anything commits to a region's manifest.
//!
//! It owns the region's manifest (behind its lock) and the region's state, and decides in
//! one place, under that lock, (1) whether a commit of a given [`CommitPurpose`] may happen
//! in the current state, and (2) what being fenced out means: another engine committed the
//! version first, so the region follows from now on. The state turns
//! [`RegionState::ReadOnly`] under the lock, before the caller — and whoever waits on it —
//! hears of the failure, so nobody sees the region lead after its commit was fenced.
//!
//! Flushes and compactions commit through the [`Committer`] trait (their test seam);
//! alter and truncate through [`RegionCommitter::change`]; role changes, writability,
//! close and drop set the state through [`RegionCommitter::set_state`]; upgrades, follower
//! syncs and open's sweep hold a [`CommitGuard`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use snafu::Snafu;
use strata_base::ErrorKind;
use strata_request::RegionId;

use super::state::{RegionState, StateCell};
use crate::manifest::{
    ManifestError, ManifestManager, RegionManifest, RegionMetaAction, RegionMetaActionList,
};

/// Why a commit is made; decides the states it may happen in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitPurpose {
    /// A flush's edit (the label says which kind of flush, for errors): while the region
    /// leads — writable, altering, or handing over (a hand-off flushes before it ends).
    Flush(&'static str),
    /// A compaction's edit: only while writable, and only while every file it removes is
    /// still live (a truncate or another edit may have removed one meanwhile).
    Compaction,
}

impl CommitPurpose {
    /// Whether a commit for this purpose may happen in `state`.
    fn allowed_in(self, state: RegionState) -> bool {
        match self {
            CommitPurpose::Flush(_) => matches!(
                state,
                RegionState::Writable | RegionState::Altering | RegionState::Downgrading
            ),
            CommitPurpose::Compaction => state == RegionState::Writable,
        }
    }

    fn describe(self) -> String {
        match self {
            CommitPurpose::Flush(reason) => format!("{reason} flush"),
            CommitPurpose::Compaction => "compaction".to_string(),
        }
    }
}

/// Why a commit did not happen. Cloneable: one failure answers every waiter.
#[derive(Debug, Snafu, Clone)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum CommitError {
    /// The region's state does not allow this commit; nothing was persisted.
    #[snafu(display("region {region_id} is {state}: a {purpose} may not commit"))]
    Refused {
        /// The region.
        region_id: RegionId,
        /// Its state when the commit was refused.
        state: RegionState,
        /// What tried to commit.
        purpose: String,
    },
    /// The edit removes a file that is no longer live; nothing was persisted.
    #[snafu(display("region {region_id}: the edit is stale: {reason}"))]
    Stale {
        /// The region.
        region_id: RegionId,
        /// Why.
        reason: String,
    },
    /// Another engine committed the version first (or past it): the region has a new
    /// leader and follows here from now on. Nothing was persisted — unless the manifest
    /// cannot tell ([`ManifestError::Superseded`]; [`CommitError::maybe_persisted`]).
    #[snafu(display("region {region_id}: fenced out, the region follows here now: {source}"))]
    Fenced {
        /// The region.
        region_id: RegionId,
        /// The manifest's error.
        source: Arc<ManifestError>,
    },
    /// The manifest could not persist the edit ([`CommitError::maybe_persisted`] says
    /// whether it may have landed anyway).
    #[snafu(display("region {region_id}: cannot persist the manifest edit: {source}"))]
    Manifest {
        /// The region.
        region_id: RegionId,
        /// The manifest's error.
        source: Arc<ManifestError>,
    },
}

impl CommitError {
    /// The coarse kind: a refused or stale commit is a region-state error, a fenced one
    /// [`ErrorKind::Fenced`], a manifest failure the manifest error's own kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CommitError::Refused { .. } | CommitError::Stale { .. } => ErrorKind::RegionState,
            CommitError::Fenced { .. } => ErrorKind::Fenced,
            CommitError::Manifest { source, .. } => source.kind(),
        }
    }

    /// Whether the edit may be in the manifest despite the error (a failed object-store
    /// write may still have landed): only when it certainly is not may the caller delete
    /// the files the edit names.
    pub fn maybe_persisted(&self) -> bool {
        match self {
            CommitError::Manifest { source, .. } | CommitError::Fenced { source, .. } => {
                source.may_have_persisted()
            }
            _ => false,
        }
    }

    /// Whether another engine fenced this one out.
    pub fn is_fenced(&self) -> bool {
        matches!(self, CommitError::Fenced { .. })
    }

    /// One value of every variant — [`Fenced`](Self::Fenced) by both fenced manifest
    /// errors, [`Manifest`](Self::Manifest) with a retryable and a permanent one — for
    /// tests that walk every error (strata-engine's checks that its public error keeps
    /// each one's kind and retryability). Adding a variant fails to compile here until it
    /// is numbered, and then this panics until it has a sample.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn every_variant() -> Vec<Self> {
        let region_id = RegionId::new(1, 2);
        let manifest = |error| Arc::new(error);
        let samples = vec![
            CommitError::Refused {
                region_id,
                state: RegionState::ReadOnly,
                purpose: "compaction".into(),
            },
            CommitError::Stale {
                region_id,
                reason: "an input is gone".into(),
            },
            CommitError::Fenced {
                region_id,
                source: manifest(ManifestError::Fenced {
                    region_id,
                    version: 3,
                }),
            },
            CommitError::Fenced {
                region_id,
                source: manifest(ManifestError::Superseded {
                    region_id,
                    version: 3,
                }),
            },
            CommitError::Manifest {
                region_id,
                source: manifest(ManifestError::ObjectStore {
                    operation: "write delta",
                    path: "manifest/00000000000000000003.json".into(),
                    source: Box::new(
                        opendal::Error::new(opendal::ErrorKind::Unexpected, "reset")
                            .set_temporary(),
                    ),
                }),
            },
            CommitError::Manifest {
                region_id,
                source: manifest(ManifestError::Corrupted {
                    path: "manifest/00000000000000000002.json".into(),
                    reason: "bad crc".into(),
                }),
            },
        ];
        // No wildcard: a new variant must be numbered (and sampled) before this compiles.
        let variant = |error: &CommitError| match error {
            CommitError::Refused { .. } => 0,
            CommitError::Stale { .. } => 1,
            CommitError::Fenced { .. } => 2,
            CommitError::Manifest { .. } => 3,
        };
        let mut sampled = [false; 4];
        samples.iter().for_each(|e| sampled[variant(e)] = true);
        assert!(!sampled.contains(&false), "unsampled variants: {sampled:?}");
        samples
    }
}

/// Commits a flush's or compaction's edit — the seam flush and compaction jobs see.
/// [`RegionCommitter`] is the implementation; tests of those jobs may bring their own.
#[async_trait]
pub trait Committer: Send + Sync + 'static {
    /// Persists `actions` if the region may still commit for `purpose`; returns the new
    /// manifest version.
    async fn commit(
        &self,
        purpose: CommitPurpose,
        actions: RegionMetaActionList,
    ) -> Result<u64, CommitError>;
}

/// One region's manifest and state: every commit and every change of state goes through
/// it, under its manifest lock.
#[derive(Debug)]
pub struct RegionCommitter {
    region_id: RegionId,
    manifest: tokio::sync::Mutex<ManifestManager>,
    state: StateCell,
    /// Read-only because the embedder asked (`pause`): the one read-only that `resume`
    /// may end. A follower (by open, by request or by a fence) never is.
    paused: AtomicBool,
}

impl RegionCommitter {
    /// The committer of `manifest`'s region, starting in `state`.
    pub fn new(manifest: ManifestManager, state: RegionState) -> Self {
        Self {
            region_id: manifest.manifest().metadata().region_id(),
            manifest: tokio::sync::Mutex::new(manifest),
            state: StateCell::new(state),
            paused: AtomicBool::new(false),
        }
    }

    /// The region.
    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// The region's state (without waiting for the lock: it may change right after).
    pub fn state(&self) -> RegionState {
        self.state.get()
    }

    /// Holds the manifest lock: no commit and no change of state interleaves until the
    /// guard is dropped.
    pub async fn lock(&self) -> CommitGuard<'_> {
        CommitGuard {
            region_id: self.region_id,
            manifest: self.manifest.lock().await,
            state: &self.state,
            paused: &self.paused,
        }
    }

    /// Sets the state under the lock (a running commit finishes first).
    pub async fn set_state(&self, state: RegionState) {
        self.lock().await.set_state(state);
    }

    /// Makes a writable region read-only because the embedder asked; only such a region
    /// comes back with [`resume`](Self::resume).
    pub async fn pause(&self) -> Result<(), CommitError> {
        let mut guard = self.lock().await;
        match guard.state() {
            RegionState::Writable => {
                guard.set_state(RegionState::ReadOnly);
                self.paused.store(true, Ordering::Release);
                Ok(())
            }
            RegionState::ReadOnly => Ok(()),
            state => RefusedSnafu {
                region_id: self.region_id,
                state,
                purpose: "change to read-only".to_string(),
            }
            .fail(),
        }
    }

    /// Makes a region the embedder [paused](Self::pause) writable again. Any other
    /// read-only region — a follower by open, by request or by a fence — is refused: only
    /// an upgrade makes it lead (it checks the newest manifest and commits a new epoch).
    pub async fn resume(&self) -> Result<(), CommitError> {
        let mut guard = self.lock().await;
        match guard.state() {
            RegionState::Writable => Ok(()),
            RegionState::ReadOnly if self.paused.load(Ordering::Acquire) => {
                guard.set_state(RegionState::Writable);
                Ok(())
            }
            state => RefusedSnafu {
                region_id: self.region_id,
                state,
                purpose: "change to writable (only a region made read-only by set_writable(false) comes back that way; a follower takes the region over with an upgrade)".to_string(),
            }
            .fail(),
        }
    }

    /// The region follows by request: a later [`resume`](Self::resume) must not make it
    /// lead.
    pub fn forget_pause(&self) {
        self.paused.store(false, Ordering::Release);
    }

    /// Marks the region closed without the lock, for an engine that stops: nothing of it
    /// commits afterwards, and a commit running now is abandoned with its job.
    pub fn mark_closed(&self) {
        self.state.set(RegionState::Closed);
    }

    /// Persists a change of a writable region (alter, truncate): the region is in
    /// `transient` state while the manifest is written, then writable again if the
    /// change is persisted or failed for any other reason than a fence, and a follower
    /// if another engine fenced it out.
    pub async fn change(
        &self,
        transient: RegionState,
        action: RegionMetaAction,
    ) -> Result<u64, CommitError> {
        let mut guard = self.lock().await;
        guard.set_state(transient);
        let committed = guard.commit(RegionMetaActionList::one(action)).await;
        if !matches!(committed, Err(CommitError::Fenced { .. })) {
            guard.set_state(RegionState::Writable);
        }
        committed
    }
}

#[async_trait]
impl Committer for RegionCommitter {
    async fn commit(
        &self,
        purpose: CommitPurpose,
        actions: RegionMetaActionList,
    ) -> Result<u64, CommitError> {
        let mut guard = self.lock().await;
        let state = guard.state();
        if !purpose.allowed_in(state) {
            return RefusedSnafu {
                region_id: self.region_id,
                state,
                purpose: purpose.describe(),
            }
            .fail();
        }
        if purpose == CommitPurpose::Compaction {
            guard.check_inputs_live(&actions)?;
        }
        guard.commit(actions).await
    }
}

/// The manifest lock of one region, held: read the manifest, sync it, commit, set the
/// state — nothing else commits or changes the state meanwhile.
#[derive(Debug)]
pub struct CommitGuard<'a> {
    region_id: RegionId,
    manifest: tokio::sync::MutexGuard<'a, ManifestManager>,
    state: &'a StateCell,
    paused: &'a AtomicBool,
}

impl CommitGuard<'_> {
    /// The manifest's current state.
    pub fn manifest(&self) -> &RegionManifest {
        self.manifest.manifest()
    }

    /// The region's state.
    pub fn state(&self) -> RegionState {
        self.state.get()
    }

    /// Sets the region's state (a pause the embedder asked for is forgotten).
    pub fn set_state(&mut self, state: RegionState) {
        self.paused.store(false, Ordering::Release);
        self.state.set(state);
    }

    /// Reads what other engines committed since (see [`ManifestManager::sync`]).
    pub async fn sync(&mut self) -> Result<bool, ManifestError> {
        self.manifest.sync().await
    }

    /// Waits for the background removal of old manifest files to end.
    pub async fn wait_for_cleanup(&mut self) {
        self.manifest.wait_for_cleanup().await;
    }

    /// Persists `actions` whatever the state; a fence turns the region follower before
    /// this returns.
    pub async fn commit(&mut self, actions: RegionMetaActionList) -> Result<u64, CommitError> {
        let region_id = self.region_id;
        match self.manifest.update(actions).await {
            Ok(version) => Ok(version),
            Err(error) if error.is_fenced() => {
                self.set_state(RegionState::ReadOnly);
                tracing::warn!(%region_id, %error, "fenced out by another engine: the region follows here now");
                Err(CommitError::Fenced {
                    region_id,
                    source: Arc::new(error),
                })
            }
            Err(error) => Err(CommitError::Manifest {
                region_id,
                source: Arc::new(error),
            }),
        }
    }

    /// Refuses an edit that removes a file the manifest no longer names.
    fn check_inputs_live(&self, actions: &RegionMetaActionList) -> Result<(), CommitError> {
        let live = self.manifest.manifest().files();
        let gone = actions.actions.iter().find_map(|action| match action {
            RegionMetaAction::Edit(edit) => edit
                .files_to_remove
                .iter()
                .find(|id| !live.contains_key(id)),
            _ => None,
        });
        match gone {
            Some(gone) => StaleSnafu {
                region_id: self.region_id,
                reason: format!(
                    "input {gone} is no longer live (a truncate or another edit removed it)"
                ),
            }
            .fail(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use opendal::Operator;
    use strata_request::{
        ColumnDataType, ColumnSchema, RegionMetadataBuilder, RegionOptionChange, RegionOptions,
    };

    use super::*;
    use crate::manifest::{ManifestConfig, RegionEdit};
    use crate::sst::{FileId, FileMeta};

    const REGION: RegionId = RegionId::new(3, 3);

    async fn manifest(store: &Operator) -> ManifestManager {
        let metadata = RegionMetadataBuilder::new(REGION)
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .build()
            .unwrap();
        ManifestManager::create(
            store.clone(),
            metadata,
            RegionOptions::default(),
            ManifestConfig::default(),
        )
        .await
        .unwrap()
    }

    fn store() -> Operator {
        Operator::new(opendal::services::Memory::default()).unwrap()
    }

    fn file() -> FileMeta {
        crate::testing::file_meta(REGION)
    }

    fn edit(add: Vec<FileMeta>, remove: Vec<FileId>) -> RegionMetaActionList {
        RegionMetaActionList::one(RegionMetaAction::Edit(RegionEdit {
            files_to_add: add,
            files_to_remove: remove,
            flushed_entry_id: Some(1),
            ..RegionEdit::default()
        }))
    }

    fn ttl_change(manifest: &RegionManifest) -> RegionMetaAction {
        RegionMetaAction::Change {
            metadata: manifest.metadata().clone(),
            options: manifest
                .options()
                .with_changes(&[RegionOptionChange::Ttl(Some(
                    std::time::Duration::from_secs(60),
                ))]),
        }
    }

    #[tokio::test]
    async fn each_purpose_commits_only_in_the_states_that_allow_it_and_a_refusal_persists_nothing()
    {
        let committer = RegionCommitter::new(manifest(&store()).await, RegionState::Writable);
        let flush = CommitPurpose::Flush("manual");
        committer.commit(flush, edit(vec![], vec![])).await.unwrap();
        for (state, flushes, compacts) in [
            (RegionState::Writable, true, true),
            (RegionState::Downgrading, true, false),
            (RegionState::Altering, true, false),
            (RegionState::ReadOnly, false, false),
            (RegionState::Truncating, false, false),
            (RegionState::Dropping, false, false),
            (RegionState::Closed, false, false),
        ] {
            committer.set_state(state).await;
            let before = committer.lock().await.manifest().manifest_version();
            for (purpose, allowed) in [(flush, flushes), (CommitPurpose::Compaction, compacts)] {
                let result = committer.commit(purpose, edit(vec![], vec![])).await;
                match result {
                    Ok(_) => assert!(allowed, "{purpose:?} committed while {state}"),
                    Err(error) => {
                        assert!(!allowed, "{purpose:?} refused while {state}: {error}");
                        assert!(matches!(error, CommitError::Refused { .. }), "{error}");
                        assert_eq!(error.kind(), ErrorKind::RegionState);
                        assert!(!error.maybe_persisted());
                    }
                }
            }
            let after = committer.lock().await.manifest().manifest_version();
            assert_eq!(after - before, u64::from(flushes) + u64::from(compacts));
        }
    }

    #[tokio::test]
    async fn a_compaction_whose_inputs_are_no_longer_live_is_stale_and_persists_nothing() {
        let committer = RegionCommitter::new(manifest(&store()).await, RegionState::Writable);
        let live = file();
        committer
            .commit(
                CommitPurpose::Flush("manual"),
                edit(vec![live.clone()], vec![]),
            )
            .await
            .unwrap();
        let gone = file();
        let error = committer
            .commit(
                CommitPurpose::Compaction,
                edit(vec![file()], vec![gone.file_id]),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, CommitError::Stale { .. }), "{error}");
        assert!(!error.maybe_persisted());
        assert_eq!(committer.lock().await.manifest().manifest_version(), 1);
        committer
            .commit(
                CommitPurpose::Compaction,
                edit(vec![file()], vec![live.file_id]),
            )
            .await
            .unwrap();
        let guard = committer.lock().await;
        assert!(!guard.manifest().files().contains_key(&live.file_id));
        assert_eq!(guard.manifest().files().len(), 1);
    }

    #[tokio::test]
    async fn a_fenced_commit_of_any_kind_leaves_the_region_a_follower() {
        let shared = store();
        let ours = RegionCommitter::new(manifest(&shared).await, RegionState::Writable);
        let theirs = || async {
            let mut rival =
                ManifestManager::open(shared.clone(), REGION, ManifestConfig::default())
                    .await
                    .unwrap()
                    .unwrap();
            // Not our bytes: an identical delta would count as our own retried create.
            rival.update(edit(vec![file()], vec![])).await.unwrap();
        };

        theirs().await;
        let error = ours
            .commit(CommitPurpose::Flush("manual"), edit(vec![], vec![]))
            .await
            .unwrap_err();
        assert!(error.is_fenced(), "{error}");
        assert_eq!(error.kind(), ErrorKind::Fenced);
        assert_eq!(ours.state(), RegionState::ReadOnly);

        // A change (alter, truncate) fenced out must not leave the region writable.
        {
            let mut guard = ours.lock().await;
            guard.sync().await.unwrap();
            guard.set_state(RegionState::Writable);
        }
        theirs().await;
        let change = ttl_change(ours.lock().await.manifest());
        let error = ours
            .change(RegionState::Altering, change.clone())
            .await
            .unwrap_err();
        assert!(error.is_fenced(), "{error}");
        assert_eq!(ours.state(), RegionState::ReadOnly);

        // A change that commits, or fails for another reason, ends writable.
        {
            let mut guard = ours.lock().await;
            guard.sync().await.unwrap();
            guard.set_state(RegionState::Writable);
        }
        ours.change(RegionState::Altering, change).await.unwrap();
        assert_eq!(ours.state(), RegionState::Writable);
    }
}
