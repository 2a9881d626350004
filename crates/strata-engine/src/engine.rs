//! [`EngineBuilder`] and [`Engine`].

use std::sync::Arc;

use arrow_array::RecordBatch;
use futures::TryStreamExt;
use opendal::Operator;
use prometheus::Registry;
use snafu::ResultExt;
use strata_buffer::WriteBufferManagerRef;
use strata_compaction::CompactionStats;
use strata_request::{
    AffectedRows, AlterRequest, CloseRequest, CreateRequest, DdlRequest, DropRequest, FlushRequest,
    OpenRequest, RegionId, RegionMetadata, RegionOptions, SetWritableRequest, TruncateRequest,
    WriteRequest,
};
use strata_scheduler::{ClockRef, SchedulerRef, SystemClock};
use strata_storage::{
    FileMeta, RegionFiles, RowCount, ScanRequest, StorageError, count, region_manifest_dir, scan,
};
use strata_wal::{FileLogStore, NoopLogStore, RecoveryReport};
use strata_worker::{
    EventListener, LogStoreRef, NoopListener, RegionState, WorkerError, WorkerGroup,
    WorkerGroupParts,
};

use crate::config::{EngineConfig, WalProvider};
use crate::error::{
    ConfigSnafu, Error, ErrorKind, Inner, ListRegionsSnafu, ObjectStoreSnafu, OpenWalSnafu,
    RecordBatchStream, Result, ScanSnafu,
};
use crate::lock::{DataDirLock, LockedLogStore};

/// Builds an [`Engine`] from a config and the components to use. Anything not given is
/// built from the config: the object store (`data_home` or `object_store`), the file WAL,
/// the system clock, a private metrics registry, no listener.
///
/// # One writer per data directory
///
/// A read-write engine (the default) locks its data directory before it reads or writes
/// anything: an OS file lock on `<data_home>/LOCK` holding the engine's pid (and on
/// `<wal dir>/LOCK` when the WAL lives outside `data_home`), released when the engine
/// stops or its process ends. A second read-write engine on the same directory — in this
/// process or another — fails at once with an error of kind
/// [`Locked`](crate::ErrorKind::Locked) naming the holder's pid. With SSTs on S3, the lock
/// still guards the local WAL; sharing an S3 root between engines is not guarded.
///
/// A [`read_only`](Self::read_only) engine takes no lock and changes nothing, so any
/// number of them may look at a directory while its writer runs.
pub struct EngineBuilder {
    config: EngineConfig,
    read_only: bool,
    lock: Option<DataDirLock>,
    store: Option<Operator>,
    log_store: Option<LogStoreRef>,
    clock: Option<ClockRef>,
    registry: Option<Registry>,
    listener: Option<Arc<dyn EventListener>>,
    write_buffer: Option<WriteBufferManagerRef>,
    flush_pool: Option<SchedulerRef>,
    purge_pool: Option<SchedulerRef>,
    compaction_pool: Option<SchedulerRef>,
}

impl EngineBuilder {
    /// A builder for `config`.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            read_only: false,
            lock: None,
            store: None,
            log_store: None,
            clock: None,
            registry: None,
            listener: None,
            write_buffer: None,
            flush_pool: None,
            purge_pool: None,
            compaction_pool: None,
        }
    }

    /// Open read-only: nothing on disk is created, written, cut, renamed or deleted — not
    /// the WAL, not a manifest, not an SST, not the lock file — and no lock is taken, so
    /// it is safe beside the directory's writer in another process.
    ///
    /// Writes and every DDL but open and close fail with an error of kind
    /// [`ReadOnly`](crate::ErrorKind::ReadOnly). Opening a region reads its manifest and
    /// replays the WAL (as of the engine's build) up to its last committed group, never
    /// taking the group a live writer is writing for damage; if the writer flushed and
    /// reused WAL segments meanwhile, the open starts over from the newer manifest. So
    /// each opened region is a consistent prefix of what the writer committed, fixed from
    /// then on (scans see that snapshot; rows written later need a new engine). Replayed
    /// rows stay in memory (nothing flushes), however large the budget says memtables may
    /// grow. A local data directory must exist.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Run under these locks instead of taking them in [`build`](Self::build): for tools
    /// that worked on the directory under the lock before building the engine. They must
    /// lock this config's `data_home`; a read-only engine drops them.
    pub fn lock(mut self, lock: DataDirLock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Use this object store instead of the configured one.
    pub fn object_store(mut self, store: Operator) -> Self {
        self.store = Some(store);
        self
    }

    /// Use this log store instead of the configured one.
    pub fn log_store(mut self, log_store: LogStoreRef) -> Self {
        self.log_store = Some(log_store);
        self
    }

    /// Use this clock (tests pass a `ManualClock`).
    pub fn clock(mut self, clock: ClockRef) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Register metrics on this registry. A registry holds one engine's metrics: an
    /// engine built again in the same process needs a fresh registry (or the old metrics
    /// unregistered), or the build fails with an already-registered error.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Tell this listener about worker events (tests).
    pub fn listener(mut self, listener: Arc<dyn EventListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Use this write-buffer manager (tests force flushes and stalls with one); it signals
    /// its own [`notifier`](strata_buffer::WriteBufferManager::notifier) when memory is
    /// released.
    pub fn write_buffer_manager(mut self, manager: WriteBufferManagerRef) -> Self {
        self.write_buffer = Some(manager);
        self
    }

    /// Run flush jobs on this pool instead of one of 2 × `max_background_flushes` workers
    /// (engines that share a pool, tests that control one); SST writes stay bounded by
    /// `max_background_flushes` either way.
    pub fn flush_pool(mut self, pool: SchedulerRef) -> Self {
        self.flush_pool = Some(pool);
        self
    }

    /// Run file deletions (dropped regions) on this pool instead of one of
    /// `max_background_purges` workers.
    pub fn purge_pool(mut self, pool: SchedulerRef) -> Self {
        self.purge_pool = Some(pool);
        self
    }

    /// Run compaction jobs on this pool instead of one of `compaction.max_background_compactions`
    /// workers (tests that control when jobs run).
    pub fn compaction_pool(mut self, pool: SchedulerRef) -> Self {
        self.compaction_pool = Some(pool);
        self
    }

    /// Validates the config, locks the data directory (read-write engines), opens the WAL
    /// and object store, starts the workers. Must be called inside a tokio runtime.
    pub async fn build(self) -> Result<Engine> {
        let config = self.config;
        config.validate()?;
        let read_only = self.read_only;
        let locks = match self.lock {
            _ if read_only => Vec::new(),
            Some(lock) if lock.data_home() != config.data_home => {
                return ConfigSnafu {
                    reason: format!(
                        "the lock given to the builder holds {}, not data_home {}",
                        lock.data_home().display(),
                        config.data_home.display()
                    ),
                }
                .fail()?;
            }
            Some(lock) => lock.locks,
            None => DataDirLock::acquire(&config)?.locks,
        };
        let store = match self.store {
            Some(store) => store,
            None if read_only => config
                .object_store_config()
                .build_read_only()
                .context(ObjectStoreSnafu)?,
            None => config
                .object_store_config()
                .build()
                .context(ObjectStoreSnafu)?,
        };
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let custom_log_store = self.log_store.clone();
        let mut wal_report = None;
        let log_store: LogStoreRef = match self.log_store {
            Some(log_store) => log_store,
            None => match config.wal.provider {
                WalProvider::Noop => Arc::new(NoopLogStore::default()),
                WalProvider::File => {
                    let dir = config.wal_dir();
                    let file_config = config.wal.file_config();
                    let registry = self.registry.clone();
                    let wal_clock = clock.clone();
                    let store = tokio::task::spawn_blocking(move || match read_only {
                        true => FileLogStore::open_read_only(dir, file_config),
                        false => FileLogStore::open_with_clock(
                            dir,
                            file_config,
                            registry.as_ref(),
                            wal_clock,
                        ),
                    })
                    .await
                    .map_err(|e| WorkerError::Start {
                        reason: e.to_string(),
                    })?
                    .context(OpenWalSnafu)?;
                    wal_report = Some(store.recovery_report().clone());
                    Arc::new(store)
                }
            },
        };
        let log_store: LogStoreRef = if read_only {
            log_store
        } else {
            Arc::new(LockedLogStore::new(log_store, locks))
        };
        let mut worker_config = config.worker_config();
        worker_config.read_only = read_only;
        // No WAL: a region's memtables are the only copy of its rows until flushed.
        let no_wal = custom_log_store.is_none() && config.wal.provider == WalProvider::Noop;
        worker_config.flush_on_close = no_wal;
        let group = WorkerGroup::start(WorkerGroupParts {
            config: worker_config,
            store,
            log_store: log_store.clone(),
            clock: clock.clone(),
            registry: self.registry,
            listener: self.listener.unwrap_or_else(|| Arc::new(NoopListener)),
            write_buffer: self.write_buffer,
            flush_pool: self.flush_pool,
            purge_pool: self.purge_pool,
            compaction_pool: self.compaction_pool,
        })?;
        let group = Arc::new(group);
        let follower_poll = (!read_only && !config.follower_sync_interval.is_zero()).then(|| {
            crate::roles::spawn_follower_poll(
                group.clone(),
                clock.clone(),
                config.follower_sync_interval,
            )
        });
        Ok(Engine {
            group,
            follower_poll,
            clock,
            log_store,
            config,
            wal_report,
            flush_before_stop: no_wal && !read_only,
        })
    }
}

/// Progress and size of one open region.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionStats {
    /// The region.
    pub region_id: RegionId,
    /// Its state.
    pub state: RegionState,
    /// Its role on this engine (from its state).
    pub role: strata_request::RegionRole,
    /// Schema version.
    pub schema_version: u64,
    /// Estimated bytes of all its memtables.
    pub memtable_bytes: usize,
    /// Frozen memtables waiting for (or retrying) a flush.
    pub immutable_memtables: usize,
    /// SST files.
    pub num_files: usize,
    /// Total SST bytes.
    pub file_bytes: u64,
    /// Rows in SST files (before deduplication across files).
    pub file_rows: u64,
    /// Last sequence whose rows are visible.
    pub committed_sequence: u64,
    /// Last WAL entry written or replayed.
    pub last_entry_id: u64,
    /// WAL entries up to this are in SST files.
    pub flushed_entry_id: u64,
    /// Rows up to this sequence are in SST files.
    pub flushed_sequence: u64,
}

/// The engine: regions sharded over workers, a WAL, memtables under one memory budget,
/// SST files on an object store.
///
/// Every call is answered exactly once, also when the engine stops meanwhile (then with
/// an error of kind [`Stopped`](crate::ErrorKind::Stopped)).
#[derive(Debug)]
pub struct Engine {
    group: Arc<WorkerGroup>,
    /// The background follower poll (read-write engines with a poll interval).
    follower_poll: Option<tokio::task::JoinHandle<()>>,
    clock: ClockRef,
    log_store: LogStoreRef,
    config: EngineConfig,
    wal_report: Option<RecoveryReport>,
    /// No WAL (`wal.provider = "noop"`): memtables are the only copy of acknowledged rows,
    /// so `stop` flushes them first.
    flush_before_stop: bool,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(poll) = &self.follower_poll {
            poll.abort();
        }
    }
}

impl Engine {
    /// The config the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Whether the engine was built [`read_only`](EngineBuilder::read_only).
    pub fn is_read_only(&self) -> bool {
        self.group.is_read_only()
    }

    /// What opening the file WAL found: a torn tail cut (or, read-only, left), damaged
    /// ranges skipped under `recovery = "salvage"`, what each region holds. `None` for a
    /// no-op or custom log store.
    pub fn wal_recovery_report(&self) -> Option<&RecoveryReport> {
        self.wal_report.as_ref()
    }

    /// Creates a region (idempotent for an existing region with the same schema).
    pub async fn create(&self, request: CreateRequest) -> Result<()> {
        self.ddl(DdlRequest::Create(request)).await.map(drop)
    }

    /// Opens a region, replaying its WAL.
    pub async fn open(&self, region_id: RegionId) -> Result<()> {
        self.open_with(OpenRequest::leader(region_id)).await
    }

    /// Opens a region with options.
    pub async fn open_with(&self, request: OpenRequest) -> Result<()> {
        self.ddl(DdlRequest::Open(request)).await.map(drop)
    }

    /// Closes a region (its unflushed rows stay in the WAL).
    pub async fn close(&self, region_id: RegionId) -> Result<()> {
        self.ddl(DdlRequest::Close(CloseRequest::new(region_id)))
            .await
            .map(drop)
    }

    /// Drops a region; its files are removed in the background.
    pub async fn drop_region(&self, region_id: RegionId) -> Result<()> {
        self.ddl(DdlRequest::Drop(DropRequest::new(region_id)))
            .await
            .map(drop)
    }

    /// Alters a region's schema or options.
    pub async fn alter(&self, request: AlterRequest) -> Result<()> {
        self.ddl(DdlRequest::Alter(request)).await.map(drop)
    }

    /// Writes rows; resolves once they are durable per the WAL's sync policy and visible
    /// to scans. Returns the number of rows written.
    pub async fn write(&self, request: WriteRequest) -> Result<AffectedRows> {
        Ok(self.group.write(request).await?)
    }

    /// Flushes a region's memtables to SST files; resolves when the flush is applied.
    pub async fn flush(&self, region_id: RegionId) -> Result<()> {
        self.ddl(DdlRequest::Flush(FlushRequest::new(region_id)))
            .await
            .map(drop)
    }

    /// Compacts a region now: merges every window that is not one run yet, drops files
    /// (and rows) past the region's TTL. Resolves when the edit is applied — at once when
    /// there is nothing to compact; after the running compaction (and then its own) when
    /// one runs — with what its own compaction did: files, rows and bytes removed and
    /// written, in total and per time window (empty when there was nothing to do). Inputs
    /// are deleted once no scan holds them.
    pub async fn compact(&self, region_id: RegionId) -> Result<CompactionStats> {
        Ok(self.group.compact(region_id).await?)
    }

    /// Removes every row of a region.
    pub async fn truncate(&self, region_id: RegionId) -> Result<()> {
        self.ddl(DdlRequest::Truncate(TruncateRequest::new(region_id)))
            .await
            .map(drop)
    }

    /// Makes a leading region read-only (`false`: writes, flushes and compactions are
    /// refused), or a region made read-only that way writable again (`true`). A follower —
    /// opened as one, made one by [`set_role`](Self::set_role), or fenced out by another
    /// engine's commit — is refused (kind `RegionState`): only
    /// [`upgrade`](Self::upgrade) makes it lead.
    pub async fn set_writable(&self, region_id: RegionId, writable: bool) -> Result<()> {
        self.ddl(DdlRequest::SetWritable(SetWritableRequest::new(
            region_id, writable,
        )))
        .await
        .map(drop)
    }

    /// Runs any DDL request.
    pub async fn ddl(&self, request: DdlRequest) -> Result<AffectedRows> {
        Ok(self.group.ddl(request).await?)
    }

    /// Scans a snapshot of the region taken now: rows merged and deduplicated, in
    /// (primary key, timestamp) order. The stream's errors are this crate's [`Error`]
    /// (naming the region), so `?` works on them as on the call itself.
    pub async fn scan(
        &self,
        region_id: RegionId,
        request: ScanRequest,
    ) -> Result<RecordBatchStream> {
        let region = self.open_region(region_id)?;
        let snapshot = region.snapshot();
        // Rows past the region's TTL are never returned, whether or not a compaction has
        // removed them yet.
        let cutoff = snapshot.version().ttl_cutoff(self.clock.now_millis());
        let request = request.alive_from(cutoff);
        let stream = scan(self.group.store(), &snapshot, request)
            .await
            .context(ScanSnafu { region_id })?;
        Ok(Box::pin(stream.map_err(move |source| {
            Error::from(Inner::Scan { region_id, source })
        })))
    }

    /// How many rows [`scan`](Self::scan) with `request` returns (its projection is
    /// ignored), without building them: files no other source overlaps in time are
    /// counted from the manifest where it records their delete markers; the rest is
    /// merged and deduplicated from keys, timestamps, sequences and op types only, groups
    /// of sources that do not overlap in time in parallel ([`strata_storage::count`]).
    pub async fn count(&self, region_id: RegionId, request: ScanRequest) -> Result<RowCount> {
        let region = self.open_region(region_id)?;
        let snapshot = region.snapshot();
        let cutoff = snapshot.version().ttl_cutoff(self.clock.now_millis());
        let request = request.alive_from(cutoff);
        Ok(count(self.group.store(), &snapshot, request)
            .await
            .context(ScanSnafu { region_id })?)
    }

    /// Scans into memory (convenient for small regions and tests).
    pub async fn scan_to_vec(
        &self,
        region_id: RegionId,
        request: ScanRequest,
    ) -> Result<Vec<RecordBatch>> {
        self.scan(region_id, request).await?.try_collect().await
    }

    /// Progress and size of an open region.
    pub fn region_stats(&self, region_id: RegionId) -> Result<RegionStats> {
        let region = self.open_region(region_id)?;
        let data = region.snapshot();
        let version = &data.version();
        Ok(RegionStats {
            region_id,
            state: region.state(),
            role: region.state().role(),
            schema_version: version.metadata().schema_version(),
            memtable_bytes: version.memtables().total_usage(),
            immutable_memtables: version.memtables().immutables().len(),
            num_files: version.all_files().count(),
            file_bytes: version.all_files().map(|f| f.file_size).sum(),
            file_rows: version.all_files().map(|f| f.num_rows).sum(),
            committed_sequence: data.committed_sequence(),
            last_entry_id: data.last_entry_id(),
            flushed_entry_id: version.flushed_entry_id(),
            flushed_sequence: version.flushed_sequence(),
        })
    }

    /// The SST files of an open region (both levels), as its current version holds them.
    pub fn region_files(&self, region_id: RegionId) -> Result<Vec<FileMeta>> {
        let region = self.open_region(region_id)?;
        let data = region.snapshot();
        Ok(data.version().all_files().cloned().collect())
    }

    /// The compaction time window of an open region, once recorded (by its first flush
    /// or compaction); `None` before.
    pub fn compaction_window(&self, region_id: RegionId) -> Result<Option<std::time::Duration>> {
        let region = self.open_region(region_id)?;
        let data = region.snapshot();
        Ok(data
            .version()
            .compaction_window_secs()
            .map(std::time::Duration::from_secs))
    }

    /// The schema of an open region.
    pub fn region_metadata(&self, region_id: RegionId) -> Result<Arc<RegionMetadata>> {
        let region = self.open_region(region_id)?;
        Ok(region.snapshot().version().metadata().clone())
    }

    /// The open region `region_id`, or `RegionNotFound`.
    pub(crate) fn open_region(&self, region_id: RegionId) -> Result<Arc<strata_worker::Region>> {
        Ok(self
            .group
            .regions()
            .get(region_id)
            .ok_or(WorkerError::RegionNotFound { region_id })?)
    }

    /// The options of an open region (as created, then altered).
    pub fn region_options(&self, region_id: RegionId) -> Result<RegionOptions> {
        let region = self.open_region(region_id)?;
        Ok(region.snapshot().version().options().clone())
    }

    /// Ids of the open regions, sorted.
    pub fn regions(&self) -> Vec<RegionId> {
        let mut ids: Vec<RegionId> = self
            .group
            .regions()
            .list()
            .iter()
            .map(|r| r.region_id())
            .collect();
        ids.sort();
        ids
    }

    /// The regions the engine's object store holds — open on this engine or not (the open
    /// ones: [`regions`](Self::regions)), ascending: every region directory with a
    /// manifest, less the regions being dropped. What a start-up that opens every region
    /// iterates.
    pub async fn list_regions(&self) -> Result<Vec<RegionId>> {
        let store = self.group.store();
        let listed = strata_storage::list_regions(store)
            .await
            .map_err(|source| StorageError::ObjectStore {
                operation: "list regions",
                path: "regions/".to_string(),
                source: Box::new(source),
            })
            .context(ListRegionsSnafu)?;
        let mut regions = Vec::with_capacity(listed.len());
        for region_id in listed {
            let files = RegionFiles::new(store.clone(), region_id);
            if files.is_dropping().await.context(ListRegionsSnafu)? {
                continue;
            }
            let manifest = format!("{}/", region_manifest_dir(region_id));
            let has_manifest = store
                .list(&manifest)
                .await
                .map_err(|source| StorageError::ObjectStore {
                    operation: "list manifest",
                    path: manifest,
                    source: Box::new(source),
                })
                .context(ListRegionsSnafu)?
                .iter()
                .any(|entry| !entry.metadata().is_dir());
            if has_manifest {
                regions.push(region_id);
            }
        }
        Ok(regions)
    }

    /// Flushes every region holding rows in memory (no WAL: they exist nowhere else).
    async fn flush_all_before_stop(&self) -> Result<()> {
        for region_id in self.regions() {
            let holds_rows = self
                .region_stats(region_id)
                .is_ok_and(|stats| stats.memtable_bytes > 0);
            if !holds_rows {
                continue;
            }
            if let Err(error) = self.flush(region_id).await {
                if error.kind() == ErrorKind::Stopped {
                    // Stopped already (a second stop): nothing more can be flushed.
                    return Ok(());
                }
                return Err(Inner::UnflushedAtStop {
                    region_id,
                    source: Box::new(error),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Memtable bytes across all regions.
    pub fn memory_usage(&self) -> usize {
        self.group.memory_usage()
    }

    /// Stops the engine: running flushes finish, pending requests are answered with a
    /// `Stopped` error, the WAL is stopped, and the data directory is unlocked. Idempotent.
    ///
    /// What survives, by WAL provider:
    /// - `file` (and any log store given to the builder): every acknowledged row — rows
    ///   not yet flushed stay in the WAL and are replayed at the next open (under
    ///   `sync = always` also across a power loss; under `never` across a process exit).
    /// - `noop`: the memtables are the only copy, so `stop` first flushes every region
    ///   holding rows; if one cannot be flushed (made read-only, the store failing) the
    ///   engine does **not** stop and the error names the region — make it flushable and
    ///   stop again, or exit the process knowingly dropping those rows.
    pub async fn stop(&self) -> Result<()> {
        if self.flush_before_stop {
            self.flush_all_before_stop().await?;
        }
        if let Some(poll) = &self.follower_poll {
            poll.abort();
        }
        self.group.stop().await?;
        if let Err(error) = self.log_store.stop().await {
            tracing::debug!(%error, "WAL stop");
        }
        Ok(())
    }
}
