//! Building a [`Region`] from its manifest and replaying its WAL.

use std::sync::Arc;

use futures::StreamExt;
use strata_request::{RegionId, RegionMetadata, RegionOptions, RegionRole};
use strata_storage::{
    Committer, ManifestManager, RegionCommitter, RegionFiles, StorageError, Version, VersionControl,
};

use crate::error::{Result, WorkerError};
use crate::purges::PoolFilePurger;
use crate::region::{Region, RegionState};
use crate::wal_entry;
use crate::worker::Shared;

/// Most times a read-only open starts over because the WAL moved on under it.
const READ_ONLY_OPEN_ATTEMPTS: usize = 20;

pub(crate) fn storage_error(region_id: RegionId) -> impl FnOnce(StorageError) -> WorkerError {
    move |source| WorkerError::Storage {
        region_id,
        source: Arc::new(source),
    }
}

fn manifest_error(
    region_id: RegionId,
) -> impl FnOnce(strata_storage::ManifestError) -> WorkerError {
    move |source| WorkerError::Manifest {
        region_id,
        source: Arc::new(source),
    }
}

impl Shared {
    /// The region's objects in the store.
    pub(crate) fn region_files(&self, region_id: RegionId) -> RegionFiles {
        RegionFiles::new(self.store.clone(), region_id)
    }

    /// Whether a drop of the region started (its marker exists).
    pub(crate) async fn is_dropping(&self, region_id: RegionId) -> Result<bool> {
        self.region_files(region_id)
            .is_dropping()
            .await
            .map_err(storage_error(region_id))
    }

    /// Deletes every file of the region, the drop marker last (so a crash midway leaves
    /// a marker and the next open finishes the job).
    pub(crate) async fn purge_region_files(&self, region_id: RegionId) -> Result<()> {
        self.region_files(region_id)
            .purge()
            .await
            .map_err(storage_error(region_id))
    }

    /// Creates the region's manifest (version 0) and an empty region.
    pub(crate) async fn create_region(
        &self,
        metadata: RegionMetadata,
        options: RegionOptions,
    ) -> Result<Arc<Region>> {
        let region_id = metadata.region_id();
        // Entries of an earlier region with this id (whose drop could not remove them)
        // must not be replayed into the new one.
        if self.log_store.last_entry_id(region_id.as_u64()).is_some() {
            self.log_store
                .drop_region(region_id.as_u64())
                .await
                .map_err(|source| WorkerError::Wal {
                    source: Arc::new(source),
                })?;
        }
        let manifest = ManifestManager::create(
            self.store.clone(),
            metadata,
            options,
            self.config.manifest.clone(),
        )
        .await
        .map_err(manifest_error(region_id))?;
        self.region_from_manifest(manifest, false, RegionRole::Leader)
            .await
    }

    /// Opens the region from its manifest and WAL; `None` if it has no manifest.
    ///
    /// Read-only, a replay that finds a WAL segment reclaimed under it (the log's writer
    /// in another process flushed those entries meanwhile) starts over from the manifest,
    /// whose flushed entry id then covers them: the region is a consistent prefix of what
    /// the writer committed.
    pub(crate) async fn open_region(
        &self,
        region_id: RegionId,
        skip_wal_replay: bool,
        role: RegionRole,
    ) -> Result<Option<Arc<Region>>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .open_region_once(region_id, skip_wal_replay, role)
                .await
            {
                Err(WorkerError::Wal { source })
                    if self.config.read_only
                        && attempt < READ_ONLY_OPEN_ATTEMPTS
                        && matches!(source.as_ref(), strata_wal::WalError::Reclaimed { .. }) =>
                {
                    tracing::debug!(%region_id, attempt, error = %source, "the WAL moved on under a read-only open; reading the manifest again");
                }
                result => return result,
            }
        }
    }

    async fn open_region_once(
        &self,
        region_id: RegionId,
        skip_wal_replay: bool,
        role: RegionRole,
    ) -> Result<Option<Arc<Region>>> {
        let manifest =
            ManifestManager::open(self.store.clone(), region_id, self.config.manifest.clone())
                .await
                .map_err(manifest_error(region_id))?;
        match manifest {
            Some(manifest) => Ok(Some(
                self.region_from_manifest(manifest, skip_wal_replay, role)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// A version with empty memtables from `manifest`; a leader's (`purge`) deletes the
    /// files it removes once no reader holds them, a follower's never deletes anything.
    pub(crate) fn version_from_manifest(
        &self,
        manifest: &strata_storage::RegionManifest,
        purge: bool,
    ) -> Result<Version> {
        let region_id = manifest.metadata().region_id();
        let version = Version::from_manifest(manifest, Some(self.write_buffer.clone())).map_err(
            |source| WorkerError::Storage {
                region_id,
                source: Arc::new(source),
            },
        )?;
        if purge {
            self.attach_purger(&version);
        }
        Ok(version)
    }

    /// Files `version` removes are deleted on the purge pool once no reader holds them
    /// (and the lingering time passed).
    pub(crate) fn attach_purger(&self, version: &Version) {
        version.file_tracker().set_purger(Arc::new(PoolFilePurger {
            store: self.store.clone(),
            pool: self.purge_pool.clone(),
            clock: self.clock.clone(),
            lingering: self.config.removed_file_lingering,
        }));
    }

    async fn region_from_manifest(
        &self,
        manifest: ManifestManager,
        skip_wal_replay: bool,
        role: RegionRole,
    ) -> Result<Arc<Region>> {
        let region_id = manifest.manifest().metadata().region_id();
        let follower = role == RegionRole::Follower;
        let version = self.version_from_manifest(manifest.manifest(), !follower)?;
        let flushed_entry_id = version.flushed_entry_id();
        let version_control = Arc::new(VersionControl::new(version));
        if follower {
            // A follower reads the shared store only: the WAL is the leader's business,
            // and nothing is swept, obsoleted or deleted.
            let committer = Arc::new(RegionCommitter::new(manifest, RegionState::ReadOnly));
            return Ok(Arc::new(Region::new(
                version_control,
                committer,
                self.clock.now_millis(),
            )));
        }
        // Replay may flush midway (read-write opens only): through this committer, which
        // the region then owns. Writable meanwhile — nothing else reaches the region yet —
        // and read-only afterwards in a read-only engine.
        let committer = Arc::new(RegionCommitter::new(manifest, RegionState::Writable));
        if skip_wal_replay {
            // Later appends must still get ids above whatever the log holds.
            if let Some(last) = self.log_store.last_entry_id(region_id.as_u64()) {
                let data = version_control.current();
                version_control.set_sequence_and_entry_id(
                    data.committed_sequence(),
                    last.max(data.last_entry_id()),
                );
            }
        } else {
            let flushes = (!self.config.read_only).then(|| committer.clone() as Arc<dyn Committer>);
            self.replay(&version_control, region_id, flushed_entry_id, flushes)
                .await?;
        }
        if self.config.read_only {
            committer.set_state(RegionState::ReadOnly).await;
        } else {
            // SSTs the manifest does not name: outputs of a flush or compaction that crashed
            // before its commit, removed files whose deletion a restart cut short.
            self.region_files(region_id)
                .sweep_unreferenced(committer.lock().await.manifest().files())
                .await;
            // Up to what the manifest covers now: replay may have flushed.
            let flushed_entry_id = version_control.current().version().flushed_entry_id();
            if let Err(error) = self
                .log_store
                .obsolete(region_id.as_u64(), flushed_entry_id)
                .await
            {
                tracing::warn!(%region_id, %error, "cannot obsolete flushed WAL entries on open");
            }
        }
        Ok(Arc::new(Region::new(
            version_control,
            committer,
            self.clock.now_millis(),
        )))
    }

    /// Whether a replay should flush now: the region's mutable memtable reached half its
    /// own write-buffer limit (as a write would trigger), or the engine is past its flush
    /// threshold and this memtable holds at least an eighth of it (so regions opened
    /// while memory is high flush in a few larger files, not in many small ones).
    fn replay_should_flush(&self, version_control: &VersionControl) -> bool {
        let data = version_control.current();
        let version = data.version();
        let usage = version.memtables().mutable().stats().estimated_bytes;
        if usage == 0 {
            return false;
        }
        let region_limit = match version.options().write_buffer_size {
            Some(size) => usize::try_from(size).unwrap_or(usize::MAX),
            None => self.config.default_region_write_buffer_size,
        };
        if region_limit > 0 && usage >= region_limit / 2 {
            return true;
        }
        let engine = self.write_buffer.flush_limit();
        self.write_buffer.memory_usage() >= engine && usage >= engine / 8
    }

    /// Flushes what the replay put in the memtable so far, on the opening task, and
    /// applies the edit (the flushed memtable's memory is released with it).
    async fn flush_during_replay(
        &self,
        version_control: &VersionControl,
        region_id: RegionId,
        committer: &dyn Committer,
    ) -> Result<()> {
        version_control.freeze_mutable();
        let snapshot = version_control.current();
        let (edit, memtables) = strata_flush::flush_snapshot(
            &self.flush_context,
            region_id,
            strata_flush::FlushReason::Replay,
            &snapshot,
            committer,
        )
        .await
        .map_err(|source| WorkerError::Flush { source })?;
        version_control.apply_edit(&edit, &memtables);
        if let Some(metrics) = &self.flush_context.metrics {
            metrics.request(strata_flush::FlushReason::Replay);
        }
        tracing::info!(%region_id, files = edit.files_to_add.len(), flushed_entry_id = ?edit.flushed_entry_id, "flushed during WAL replay");
        Ok(())
    }

    /// Replays entries after `flushed_entry_id` into the memtable with their original
    /// sequences.
    ///
    /// With `flushes` (read-write opens), the memtable is flushed through it whenever it
    /// passes the flush threshold ([`replay_should_flush`](Self::replay_should_flush)), so
    /// a WAL larger than the memory budget opens within it.
    async fn replay(
        &self,
        version_control: &VersionControl,
        region_id: RegionId,
        flushed_entry_id: u64,
        flushes: Option<Arc<dyn Committer>>,
    ) -> Result<()> {
        let wal_error = |source| WorkerError::Wal {
            source: Arc::new(source),
        };
        let mut stream = self
            .log_store
            .read(region_id.as_u64(), flushed_entry_id + 1)
            .map_err(wal_error)?;
        let (mut entries, mut rows) = (0u64, 0u64);
        while let Some(chunk) = stream.next().await {
            for entry in chunk.map_err(wal_error)? {
                if entry.entry_id <= flushed_entry_id {
                    if !self.config.allow_stale_entries {
                        return Err(WorkerError::StaleEntry {
                            region_id,
                            entry_id: entry.entry_id,
                            flushed_entry_id,
                        });
                    }
                    tracing::warn!(%region_id, entry_id = entry.entry_id, flushed_entry_id, "replaying a stale WAL entry");
                }
                let data = version_control.current();
                let memtable = data.version().memtables().mutable().clone();
                let mut committed = data.committed_sequence();
                for mutation in wal_entry::decode(region_id, entry.entry_id, &entry.data)? {
                    // Entries are in the schema they were written with; the alter that
                    // changed it flushed first, so only the current schema appears here,
                    // but the batch is still checked like a write.
                    let request = strata_request::WriteRequest::new(
                        region_id,
                        mutation.op_type,
                        mutation.batch,
                    );
                    let batch = request
                        .validate(data.version().metadata())
                        .map_err(|source| WorkerError::CorruptWalEntry {
                            region_id,
                            entry_id: entry.entry_id,
                            reason: format!("does not fit the region schema: {source}"),
                        })?;
                    memtable
                        .write(&batch, mutation.op_type, mutation.first_sequence)
                        .map_err(|source| WorkerError::Storage {
                            region_id,
                            source: Arc::new(source),
                        })?;
                    let last = mutation.first_sequence + batch.num_rows() as u64;
                    committed = committed.max(last.saturating_sub(1));
                    rows += batch.num_rows() as u64;
                }
                version_control
                    .set_sequence_and_entry_id(committed, entry.entry_id.max(data.last_entry_id()));
                entries += 1;
                if let Some(committer) = &flushes
                    && self.replay_should_flush(version_control)
                {
                    self.flush_during_replay(version_control, region_id, committer.as_ref())
                        .await?;
                }
            }
        }
        tracing::info!(%region_id, entries, rows, flushed_entry_id, "WAL replayed");
        Ok(())
    }
}
