//! Region roles on a shared object store: open as leader or follower, downgrade, upgrade,
//! sync, leases — the calls an embedder's metadata service uses to move a region from one
//! engine to another. See `docs/distributed.md` for the protocol and its failure model.

use std::sync::Arc;
use std::time::Duration;

use strata_request::{DdlRequest, OpenRequest, RegionId, RegionRole, SetRoleRequest, SyncRequest};
use strata_scheduler::ClockRef;
use strata_worker::{RegionState, WorkerGroup};

use crate::engine::Engine;
use crate::error::Result;

/// What a graceful downgrade leaves behind: the new leader's upgrade checks that the
/// manifest it reads covers `last_entry_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Downgraded {
    /// The last WAL entry this engine wrote for the region (all of it is flushed).
    pub last_entry_id: u64,
    /// The manifest version holding that flush.
    pub manifest_version: u64,
}

impl Engine {
    /// Opens a region in `role`: as [`Leader`](RegionRole::Leader) like
    /// [`open`](Self::open) (WAL replayed, writable), or as a
    /// [`Follower`](RegionRole::Follower): read-only from the object store, no WAL, never
    /// deleting a file; [`sync`](Self::sync) (or the background poll,
    /// `follower_sync_interval`) installs what the leader commits. A region is not opened
    /// as `Downgrading`: that is a step of a running leader ([`downgrade`](Self::downgrade)).
    pub async fn open_as(&self, region_id: RegionId, role: RegionRole) -> Result<()> {
        self.open_with(OpenRequest::new(region_id, role)).await
    }

    /// Changes a region's role at once (see [`SetRoleRequest`]): to `Leader` from a
    /// follower it takes the region over — newest manifest, a new leader epoch committed
    /// before its first write (the old leader's next commit then fails `Fenced`). Use
    /// [`upgrade`](Self::upgrade) to check the old leader's last entry id on the way.
    pub async fn set_role(&self, region_id: RegionId, role: RegionRole) -> Result<()> {
        self.set_role_checked(region_id, role, None).await
    }

    /// Follower → leader, after checking that the manifest covers the old leader's
    /// `last_entry_id` (from its [`downgrade`](Self::downgrade)); otherwise the region
    /// stays a follower and the error (kind `RegionState`, retryable) says how far it is.
    pub async fn upgrade(&self, region_id: RegionId, last_entry_id: Option<u64>) -> Result<()> {
        self.set_role_checked(region_id, RegionRole::Leader, last_entry_id)
            .await
    }

    async fn set_role_checked(
        &self,
        region_id: RegionId,
        role: RegionRole,
        last_entry_id: Option<u64>,
    ) -> Result<()> {
        self.ddl(DdlRequest::SetRole(SetRoleRequest::new(
            region_id,
            role,
            last_entry_id,
        )))
        .await
        .map(drop)
    }

    /// The graceful first half of a hand-off: the region stops taking writes (they fail
    /// `NotLeader`, retryable), every write already acknowledged is flushed and committed,
    /// and the region stays `Downgrading` (reads go on; [`set_role`](Self::set_role) to
    /// `Leader` rolls back, to `Follower` or [`close`](Self::close) finishes). The
    /// returned `last_entry_id` goes to the new leader's [`upgrade`](Self::upgrade).
    pub async fn downgrade(&self, region_id: RegionId) -> Result<Downgraded> {
        self.set_role(region_id, RegionRole::Downgrading).await?;
        self.flush(region_id).await?;
        let region = self.open_region(region_id)?;
        Ok(Downgraded {
            last_entry_id: region.snapshot().last_entry_id(),
            manifest_version: region.manifest_version().await,
        })
    }

    /// Installs the manifest versions other engines committed on a follower; fails
    /// (kind `RegionState`, retryable) while the manifest is older than
    /// `at_least_version`. On a leader only the check runs. Returns the version reached.
    pub async fn sync(&self, region_id: RegionId, at_least_version: u64) -> Result<u64> {
        self.ddl(DdlRequest::Sync(SyncRequest::new(
            region_id,
            at_least_version,
        )))
        .await?;
        let region = self.open_region(region_id)?;
        Ok(region.manifest_version().await)
    }

    /// Grants the region's leadership on this engine until `until_millis` on the engine's
    /// clock: from then on writes fail `NotLeader` until renewed again. Without a lease
    /// (the default) leadership does not lapse. An embedder's metadata service renews it
    /// and takes the region over elsewhere only after the lease plus a margin passed.
    pub fn renew_lease(&self, region_id: RegionId, until_millis: i64) -> Result<()> {
        let region = self.open_region(region_id)?;
        region.set_lease_until_millis(until_millis);
        Ok(())
    }

    /// The region's role on this engine.
    pub fn region_role(&self, region_id: RegionId) -> Result<RegionRole> {
        let region = self.open_region(region_id)?;
        Ok(region.state().role())
    }

    /// The leader epoch of the region as this engine's manifest state records it.
    pub async fn leader_epoch(&self, region_id: RegionId) -> Result<u64> {
        let region = self.open_region(region_id)?;
        Ok(region.leader_epoch().await)
    }
}

/// The background follower poll: every `interval` of the engine clock, each read-only
/// region of the engine syncs its manifest (one listing when nothing is new).
pub(crate) fn spawn_follower_poll(
    group: Arc<WorkerGroup>,
    clock: ClockRef,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            clock.sleep_until(clock.now() + interval).await;
            for region in group.regions().list() {
                if region.state() != RegionState::ReadOnly {
                    continue;
                }
                let region_id = region.region_id();
                let request = DdlRequest::Sync(SyncRequest::new(region_id, 0));
                if let Err(error) = group.ddl(request).await {
                    tracing::warn!(%region_id, %error, "follower sync failed; retrying at the next poll");
                }
            }
        }
    })
}
