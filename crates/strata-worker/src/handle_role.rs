//! Region roles: leader, downgrading, follower; upgrades, follower syncs and fencing.
//!
//! A role is a [`RegionState`]: `Writable` (and the transient DDL states) lead,
//! `Downgrading` hands over, `ReadOnly` follows. Every change is made under the region's
//! manifest lock, under which flush and compaction commits check the state, so no commit
//! interleaves with a change of role; the lock and the manifest I/O are taken on a task
//! (see `changes.rs`), never on the worker.

use std::sync::Arc;

use strata_request::{RegionId, RegionRole, SetRoleRequest, SyncRequest};
use strata_storage::{RegionMetaAction, RegionMetaActionList};

/// Most times an upgrade re-reads the manifest and tries again when the current leader
/// commits a version first.
const UPGRADE_ATTEMPTS: usize = 8;

use crate::changes::Change;
use crate::error::{Result, WorkerError};
use crate::region::{Region, RegionState};
use crate::request::ReplyTx;
use crate::worker::{RegionWorkerLoop, Shared};

impl RegionWorkerLoop {
    /// Changes the region's role (see [`SetRoleRequest`]).
    pub(crate) fn handle_set_role(&mut self, request: SetRoleRequest, sender: ReplyTx) {
        let region_id = request.region_id;
        let Some((region, sender)) = self.region_in_state(
            region_id,
            &[
                RegionState::Writable,
                RegionState::Downgrading,
                RegionState::ReadOnly,
            ],
            "change its role",
            sender,
        ) else {
            return;
        };
        let from = region.state();
        let to = request.role;
        match (from, to) {
            (RegionState::Writable, RegionRole::Leader)
            | (RegionState::Downgrading, RegionRole::Downgrading) => sender.send(Ok(0)),
            (RegionState::ReadOnly, RegionRole::Follower) => {
                // Made read-only by `set_writable(false)` or not, it follows now: only an
                // upgrade makes it lead again.
                region.committer.forget_pause();
                sender.send(Ok(0));
            }
            // A follower taking over, or a hand-off rolled back (another engine may have
            // led meanwhile: the same checks and a new epoch either way).
            (RegionState::ReadOnly | RegionState::Downgrading, RegionRole::Leader) => {
                let shared = self.shared.clone();
                self.start_change(region_id, "upgrade", sender, async move {
                    shared.upgrade(&region, request.last_entry_id).await?;
                    tracing::info!(%region_id, from = %from.role(), %to, "region role changed");
                    Ok(Change::Upgraded)
                });
            }
            (RegionState::ReadOnly, RegionRole::Downgrading) => {
                sender.send(Err(WorkerError::RegionState {
                    region_id,
                    state: from,
                    operation: "downgrade (a follower leads nothing)",
                }));
            }
            (_, role) => {
                let target = match role {
                    RegionRole::Downgrading => RegionState::Downgrading,
                    _ => RegionState::ReadOnly,
                };
                // Under the manifest lock, which a running flush commit may hold a while.
                self.start_change(region_id, "downgrade", sender, async move {
                    region.committer.set_state(target).await;
                    tracing::info!(%region_id, from = %from.role(), %to, "region role changed");
                    Ok(Change::StateSet {
                        target,
                        not_leader: true,
                    })
                });
            }
        }
    }

    /// A flush, compaction or change of `region_id` failed with `error` (of `kind`): if
    /// another engine fenced it out, the region follows from now on. Its memtables stay
    /// (scans still see them here until a sync installs the new leader's state) and its
    /// rows stay in this engine's WAL; its stalled writes fail `NotLeader`.
    pub(crate) fn after_failed_commit(
        &mut self,
        region_id: RegionId,
        kind: strata_base::ErrorKind,
        error: &dyn std::fmt::Display,
    ) {
        if kind != strata_base::ErrorKind::Fenced {
            return;
        }
        let Some(region) = self.regions.get(&region_id).cloned() else {
            return;
        };
        // The committer already made it follow, under the manifest lock, before anyone
        // heard of the failure; the region may even lead again by now (an upgrade the
        // caller sent on hearing it, handled before this notification): leave the state.
        tracing::warn!(%region_id, %error, "fenced out by another engine");
        if region.state() == RegionState::ReadOnly {
            self.fail_stalled_not_leader(region_id, RegionState::ReadOnly);
        }
    }

    pub(crate) fn fail_stalled_not_leader(&mut self, region_id: RegionId, state: RegionState) {
        self.stalled.fail_region(
            region_id,
            &WorkerError::NotLeader {
                region_id,
                why: format!("the region is {state} here"),
            },
        );
        self.update_gauges();
    }

    /// Installs newer manifest versions on a follower (a leader's manifest is already the
    /// newest, or it would have been fenced), in the background.
    pub(crate) fn handle_sync(&mut self, request: SyncRequest, sender: ReplyTx) {
        let region_id = request.region_id;
        let Some(region) = self.regions.get(&region_id).cloned() else {
            sender.send(Err(WorkerError::RegionNotFound { region_id }));
            return;
        };
        let shared = self.shared.clone();
        self.start_change(region_id, "sync", sender, async move {
            let (version, changed) = shared.sync_region(&region).await?;
            if version < request.at_least_version {
                return Err(WorkerError::ManifestBehind {
                    region_id,
                    version,
                    wanted: request.at_least_version,
                });
            }
            Ok(Change::Synced { changed })
        });
    }
}

impl Shared {
    /// Follower → leader: the newest manifest, the catch-up check, a new leader epoch
    /// committed (fencing the previous leader out), then writable.
    ///
    /// When no other engine committed since this one last held the manifest and its
    /// memtables hold rows (a leadership paused by `set_role`), memtables and counters
    /// stay. Otherwise the version is rebuilt from the manifest (with a purger: a leader
    /// deletes what it removes): rows this engine held in memory from an earlier, fenced
    /// leadership are dropped — they stay in its WAL under entry ids the new epoch
    /// declares void.
    pub(crate) async fn upgrade(
        &self,
        region: &Arc<Region>,
        last_entry_id: Option<u64>,
    ) -> Result<()> {
        let region_id = region.region_id();
        let manifest_error = |source| WorkerError::Manifest {
            region_id,
            source: Arc::new(source),
        };
        let mut manifest = region.committer.lock().await;
        let current = region.version_control.current();
        let mut changed = false;
        let mut attempt = 0;
        let (epoch, base, keep) = loop {
            attempt += 1;
            changed |= manifest.sync().await.map_err(manifest_error)?;
            let flushed = manifest.manifest().flushed_entry_id();
            if let Some(last_entry_id) = last_entry_id
                && flushed < last_entry_id
            {
                return Err(WorkerError::NotCaughtUp {
                    region_id,
                    flushed_entry_id: flushed,
                    last_entry_id,
                });
            }
            // Unflushed rows of this engine's own, unbroken leadership stay replayable:
            // their entries are above `flushed`. Otherwise every entry id this engine's WAL
            // or any leader used so far is declared void, and new entries go after them.
            let keep = !changed && !current.version().memtables().is_empty();
            let local = self.log_store.last_entry_id(region_id.as_u64());
            let base = if keep {
                flushed
            } else {
                flushed.max(local.unwrap_or(0)).max(current.last_entry_id())
            };
            let epoch = manifest.manifest().leader_epoch() + 1;
            let took_over = manifest
                .commit(RegionMetaActionList::one(RegionMetaAction::Leader {
                    epoch,
                    last_entry_id: base,
                }))
                .await;
            match took_over {
                Ok(_) => break (epoch, base, keep),
                // The current leader committed meanwhile (a flush or compaction of its
                // own): read that too and try again; it cannot win forever. (The
                // committer made the region follow; it stays so if every attempt loses.)
                Err(error) if error.is_fenced() && attempt < UPGRADE_ATTEMPTS => {
                    tracing::debug!(%region_id, attempt, "an upgrade lost a manifest version to the current leader; retrying");
                }
                Err(error) => return Err(error.into()),
            }
        };
        if !keep {
            let dropped = current.version().memtables().total_usage();
            if dropped > 0 {
                tracing::warn!(%region_id, bytes = dropped, "dropping rows of an earlier, fenced leadership from memory (they stay in this engine's WAL)");
            }
            let version = self.version_from_manifest(manifest.manifest(), true)?;
            region
                .version_control
                .install(version, manifest.manifest().committed_sequence(), base);
        } else {
            self.attach_purger(region.version_control.current().version());
        }
        manifest.set_state(RegionState::Writable);
        drop(manifest);
        tracing::info!(%region_id, epoch, base, "took the region over as its leader");
        Ok(())
    }

    /// Brings a follower's version up to the newest manifest; returns the manifest version
    /// and whether a new version was installed.
    async fn sync_region(&self, region: &Arc<Region>) -> Result<(u64, bool)> {
        let region_id = region.region_id();
        let mut manifest = region.committer.lock().await;
        let mut changed = false;
        if region.state() == RegionState::ReadOnly {
            changed = manifest
                .sync()
                .await
                .map_err(|source| WorkerError::Manifest {
                    region_id,
                    source: Arc::new(source),
                })?;
            if changed {
                let version = self.version_from_manifest(manifest.manifest(), false)?;
                region.version_control.install(
                    version,
                    manifest.manifest().committed_sequence(),
                    0,
                );
            }
        }
        Ok((manifest.manifest().manifest_version(), changed))
    }
}
