//! [`TestEngine`]: an engine on memory stores, a manual clock and a recording listener,
//! driven by [`Op`]s and read back as [`Row`]s.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use opendal::Operator;
use strata_request::{
    AlterKind, AlterRequest, ColumnSchema, CreateRequest, RegionId, RegionOptionChange,
    WriteRequest,
};
use strata_scheduler::ManualClock;
use strata_storage::testing::{FaultLayer, FaultPlan};
use strata_storage::{ObjectStoreConfig, ScanRequest};
use strata_wal::{
    AppendResponse, Entry, EntryStream, LogStore, LogStoreRef, MemoryLogStore, WalError,
};

use super::{CLOCK_START_MILLIS, Events, KitError, KitResult, Model, Op, Row, TableSchema};
use crate::{Engine, EngineBuilder, EngineConfig, ErrorKind};

/// A log store that outlives engine restarts: an engine's `stop` leaves it as it is for
/// the next engine (as a file WAL's directory outlives its process).
#[derive(Debug)]
struct SharedLog(LogStoreRef);

impl Default for SharedLog {
    fn default() -> Self {
        Self(Arc::new(MemoryLogStore::default()))
    }
}

#[async_trait::async_trait]
impl LogStore for SharedLog {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError> {
        self.0.append_batch(entries).await
    }
    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError> {
        self.0.read(region_id, start_entry_id)
    }
    async fn obsolete(&self, region_id: u64, entry_id: u64) -> Result<(), WalError> {
        self.0.obsolete(region_id, entry_id).await
    }
    async fn drop_region(&self, region_id: u64) -> Result<(), WalError> {
        self.0.drop_region(region_id).await
    }
    fn last_entry_id(&self, region_id: u64) -> Option<u64> {
        self.0.last_entry_id(region_id)
    }
    async fn stop(&self) -> Result<(), WalError> {
        Ok(())
    }
}

/// Builds a [`TestEngine`]: see [`TestEngine::builder`].
#[derive(Debug)]
pub struct TestEngineBuilder {
    schema: TableSchema,
    regions: usize,
    table_id: u32,
    config: EngineConfig,
    log: SharedLog,
}

impl TestEngineBuilder {
    /// Create every region with this schema (default: [`TableSchema::host_ts_v`]).
    pub fn schema(mut self, schema: TableSchema) -> Self {
        self.schema = schema;
        self
    }

    /// Create this many regions (default 3), numbered `0..regions` in [`Op`]s.
    pub fn regions(mut self, regions: usize) -> Self {
        self.regions = regions;
        self
    }

    /// The table id of the regions' ids (default 1024): region `i` is
    /// `RegionId::new(table_id, i)`.
    pub fn table_id(mut self, table_id: u32) -> Self {
        self.table_id = table_id;
        self
    }

    /// Log to this store instead of a [`MemoryLogStore`] (an embedder's own, to run it
    /// under the model). Every engine the test engine builds, across restarts, logs to
    /// it, so it must keep what it holds when an engine stops: the kit never calls its
    /// `stop`.
    pub fn log_store(mut self, log_store: LogStoreRef) -> Self {
        self.log = SharedLog(log_store);
        self
    }

    /// Changes the engine config. The kit's starts from the defaults with two workers, a
    /// 1 MiB write buffer, files removed by compactions deleted at once (the manual clock
    /// would never let them linger out), automatic compactions after every other flush
    /// and row groups of 4 rows (so files are written in time slices). `data_home` is a
    /// temporary directory (holding the lock only: files and log live in memory) and is
    /// set by [`build`](Self::build).
    pub fn configure(mut self, change: impl FnOnce(&mut EngineConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// Builds the engine and creates the regions. Must be called inside a tokio runtime.
    pub async fn build(self) -> KitResult<TestEngine> {
        let setup = |detail: String| KitError::Unexpected {
            op: "build the test engine".into(),
            detail,
        };
        let dir = tempfile::tempdir().map_err(|e| setup(format!("temporary directory: {e}")))?;
        let faults = Arc::new(FaultPlan::default());
        let store = ObjectStoreConfig::Memory
            .build()
            .map_err(|e| setup(format!("memory object store: {e}")))?
            .layer(FaultLayer::new(faults.clone()));
        let mut config = self.config;
        config.data_home = dir.path().to_path_buf();
        let mut test = TestEngine {
            engine: None,
            region_ids: (0..self.regions)
                .map(|i| RegionId::new(self.table_id, i as u32))
                .collect(),
            exists: vec![false; self.regions],
            schema: self.schema,
            config,
            store,
            log: Arc::new(self.log),
            clock: Arc::new(ManualClock::new(CLOCK_START_MILLIS)),
            faults,
            events: Arc::new(Events::default()),
            _dir: dir,
        };
        test.start().await?;
        for region in 0..self.regions {
            test.create(region).await?;
        }
        Ok(test)
    }
}

/// An [`Engine`] for property tests: a memory object store behind a [`FaultPlan`], a
/// memory log that outlives restarts, a [`ManualClock`] starting at
/// [`CLOCK_START_MILLIS`] and a recording listener ([`Events`]); its regions all have one
/// [`TableSchema`]. [`apply`](Self::apply) runs an [`Op`], [`rows`](Self::rows) reads a
/// region back, [`check`](Self::check) compares it with a [`Model`].
///
/// With faults injected ([`faults`](Self::faults)), operations that touch the object
/// store may fail: [`apply`](Self::apply) returns the engine's error, and what the model
/// is told is the test's call (a failed flush or compaction changes nothing a reader
/// sees: tell it nothing, as the kit's own fault test does). Puts and deletes reach the
/// log and the memtables only, so faults do not fail them directly.
#[derive(Debug)]
pub struct TestEngine {
    /// `None` only while a restart builds the next engine.
    engine: Option<Engine>,
    region_ids: Vec<RegionId>,
    /// Per region: whether it exists (created, not dropped since).
    exists: Vec<bool>,
    schema: TableSchema,
    config: EngineConfig,
    store: Operator,
    log: Arc<SharedLog>,
    clock: Arc<ManualClock>,
    faults: Arc<FaultPlan>,
    events: Arc<Events>,
    _dir: tempfile::TempDir,
}

impl TestEngine {
    /// A builder: three regions of [`TableSchema::host_ts_v`] by default.
    pub fn builder() -> TestEngineBuilder {
        let mut config = EngineConfig {
            num_workers: 2,
            global_write_buffer_size: bytesize::ByteSize::mib(1),
            removed_file_lingering: Duration::ZERO,
            ..EngineConfig::default()
        };
        config.compaction.trigger_file_num = 2;
        config.sst.row_group_size = 4;
        TestEngineBuilder {
            schema: TableSchema::host_ts_v(),
            regions: 3,
            table_id: 1024,
            config,
            log: SharedLog::default(),
        }
    }

    /// A fresh [`Model`] of this engine as built: its schema, its region count, the clock
    /// at its start.
    pub fn model(&self) -> Model {
        Model::new(self.schema.clone(), self.region_ids.len())
    }

    /// The engine (the current one: a restart replaces it).
    ///
    /// # Panics
    ///
    /// Only if called while a restart that failed left no engine (after
    /// [`apply`](Self::apply) returned that error), where a test would fail anyway.
    pub fn engine(&self) -> &Engine {
        match &self.engine {
            Some(engine) => engine,
            None => panic!("the test engine's last restart failed: no engine to use"),
        }
    }

    /// The engine, or an error if a failed restart left none.
    fn live(&self) -> KitResult<&Engine> {
        self.engine.as_ref().ok_or_else(|| KitError::Unexpected {
            op: "use the engine".into(),
            detail: "the last restart failed: there is no engine".into(),
        })
    }

    /// The manual clock every engine of this test engine runs on.
    pub fn clock(&self) -> &Arc<ManualClock> {
        &self.clock
    }

    /// The fault plan of the object store: inject faults with it, `clear` it to stop.
    pub fn faults(&self) -> &Arc<FaultPlan> {
        &self.faults
    }

    /// The events the engines' workers reported.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// The memory object store (behind the fault layer).
    pub fn store(&self) -> &Operator {
        &self.store
    }

    /// The schema regions are created with.
    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    /// How many regions there are (existing or dropped).
    pub fn regions(&self) -> usize {
        self.region_ids.len()
    }

    /// The id of region `region`, or [`KitError::Invalid`] past the last one.
    pub fn region_id(&self, region: usize) -> KitResult<RegionId> {
        self.region_ids
            .get(region)
            .copied()
            .ok_or_else(|| KitError::Invalid {
                detail: format!(
                    "region #{region}: the engine has {} regions",
                    self.region_ids.len()
                ),
            })
    }

    /// Whether region `region` exists (created and not dropped since).
    pub fn exists(&self, region: usize) -> bool {
        self.exists.get(region).copied().unwrap_or(false)
    }

    /// Runs `op` on the engine (see [`Op`] for operations on regions that do not exist;
    /// empty puts and deletes are skipped). An error is the engine failing the
    /// operation, or answering other than the kit expects.
    pub async fn apply(&mut self, op: &Op) -> KitResult<()> {
        if let Some(region) = op.region() {
            self.region_id(region)?;
        }
        match op {
            Op::Put { rows, .. } if rows.is_empty() => Ok(()),
            Op::Delete { keys, .. } if keys.is_empty() => Ok(()),
            Op::Put { region, rows } => {
                let request =
                    WriteRequest::put(self.region_id(*region)?, self.schema.put_batch(rows)?);
                let result = self.live()?.write(request).await;
                self.answered(*region, op, result)
            }
            Op::Delete { region, keys } => {
                let batch = self.schema.delete_batch(keys)?;
                let request = WriteRequest::delete(self.region_id(*region)?, batch);
                let result = self.live()?.write(request).await;
                self.answered(*region, op, result)
            }
            Op::Flush { region } => {
                let result = self.live()?.flush(self.region_id(*region)?).await;
                self.answered(*region, op, result)
            }
            Op::Compact { region } => {
                let result = self.live()?.compact(self.region_id(*region)?).await;
                self.answered(*region, op, result)
            }
            Op::Truncate { region } => {
                let result = self.live()?.truncate(self.region_id(*region)?).await;
                self.answered(*region, op, result)
            }
            Op::AddField { region, .. } | Op::SetTtl { region, .. } => {
                self.alter(*region, op).await
            }
            Op::AdvanceClock { by } => {
                self.clock.advance(*by);
                Ok(())
            }
            Op::Reopen { region } if self.exists(*region) => {
                let id = self.region_id(*region)?;
                let engine = self.live()?;
                let result = match engine.close(id).await {
                    Ok(()) => engine.open(id).await,
                    Err(e) => Err(e),
                };
                self.answered(*region, op, result)
            }
            Op::Restart => self.restart().await,
            Op::Drop { region } if self.exists(*region) => {
                let result = self.live()?.drop_region(self.region_id(*region)?).await;
                self.answered(*region, op, result)?;
                self.exists[*region] = false;
                Ok(())
            }
            Op::Create { region } if !self.exists(*region) => self.create(*region).await,
            Op::Reopen { .. } | Op::Drop { .. } | Op::Create { .. } => Ok(()),
        }
    }

    /// The rows a full scan of region `region` returns, decoded with the region's current
    /// schema.
    pub async fn rows(&self, region: usize) -> KitResult<Vec<Row>> {
        let id = self.region_id(region)?;
        let failed = |source| KitError::Engine {
            op: format!("scan #{region}"),
            source,
        };
        let engine = self.live()?;
        let metadata = engine.region_metadata(id).map_err(failed)?;
        let batches = engine
            .scan_to_vec(id, ScanRequest::default())
            .await
            .map_err(failed)?;
        let mut rows = Vec::new();
        for batch in &batches {
            rows.extend(super::schema::decode(&metadata, batch)?);
        }
        Ok(rows)
    }

    /// Compares every region with `model`: a region the model has dropped must not be
    /// open; the others must have the model's fields and return the model's rows, in
    /// order (less what the model cannot decide: [`Model::settled`]).
    pub async fn check(&self, model: &Model) -> KitResult<()> {
        if model.regions() != self.regions() {
            return Err(KitError::Invalid {
                detail: format!(
                    "the model has {} regions, the engine {}",
                    model.regions(),
                    self.regions()
                ),
            });
        }
        for region in 0..self.regions() {
            let mismatch = |detail: String| KitError::Mismatch { region, detail };
            let id = self.region_id(region)?;
            if !model.exists(region) {
                match self.live()?.region_stats(id) {
                    Err(e) if e.kind() == ErrorKind::RegionNotFound => continue,
                    Err(e) => {
                        return Err(mismatch(format!("dropped, but asking for it fails: {e}")));
                    }
                    Ok(_) => {
                        return Err(mismatch("dropped in the model, open in the engine".into()));
                    }
                }
            }
            let metadata = self
                .engine()
                .region_metadata(id)
                .map_err(|e| mismatch(format!("exists in the model; the engine says: {e}")))?;
            let fields: Vec<String> = metadata.field_columns().map(|c| c.name.clone()).collect();
            if fields != model.field_names(region) {
                return Err(mismatch(format!(
                    "fields {fields:?}, the model's {:?}",
                    model.field_names(region)
                )));
            }
            let actual = model.settled(region, self.rows(region).await?);
            let expected = model.rows(region);
            if actual != expected {
                return Err(mismatch(diff(&actual, &expected)));
            }
        }
        Ok(())
    }

    /// Applies each of `ops` to this engine and to `model`, checking every region after
    /// each step; an error names the step and the operations up to it.
    pub async fn run(&mut self, model: &mut Model, ops: &[Op]) -> KitResult<()> {
        for (step, op) in ops.iter().enumerate() {
            let result = match self.apply(op).await {
                Ok(()) => {
                    model.apply(op);
                    self.check(model).await
                }
                Err(e) => Err(e),
            };
            result.map_err(|source| KitError::Step {
                step,
                history: ops[..=step].to_vec(),
                source: Box::new(source),
            })?;
        }
        Ok(())
    }

    /// Stops the engine (the log, store and clock stay, for [`Op::Restart`]).
    pub async fn stop(&self) -> KitResult<()> {
        match &self.engine {
            Some(engine) => engine.stop().await.map_err(|source| KitError::Engine {
                op: "stop the engine".into(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Builds an engine over the shared parts.
    async fn start(&mut self) -> KitResult<()> {
        let engine = EngineBuilder::new(self.config.clone())
            .object_store(self.store.clone())
            .log_store(self.log.clone())
            .clock(self.clock.clone())
            .listener(self.events.clone())
            .build()
            .await
            .map_err(|source| KitError::Engine {
                op: "build the engine".into(),
                source,
            })?;
        self.engine = Some(engine);
        Ok(())
    }

    /// Stops the engine, builds the next one and opens every existing region.
    async fn restart(&mut self) -> KitResult<()> {
        self.stop().await?;
        self.engine = None;
        self.start().await?;
        for region in 0..self.regions() {
            if self.exists(region) {
                let result = self.live()?.open(self.region_id(region)?).await;
                self.answered(region, &Op::Restart, result)?;
            }
        }
        Ok(())
    }

    async fn create(&mut self, region: usize) -> KitResult<()> {
        let id = self.region_id(region)?;
        let request = CreateRequest::new(self.schema.metadata(id)?);
        self.live()?
            .create(request)
            .await
            .map_err(|source| KitError::Engine {
                op: Op::Create { region }.to_string(),
                source,
            })?;
        self.exists[region] = true;
        Ok(())
    }

    /// An [`Op::AddField`] or [`Op::SetTtl`].
    async fn alter(&self, region: usize, op: &Op) -> KitResult<()> {
        let id = self.region_id(region)?;
        let metadata = match self.exists(region) {
            true => Some(
                self.live()?
                    .region_metadata(id)
                    .map_err(|source| KitError::Engine {
                        op: op.to_string(),
                        source,
                    })?,
            ),
            false => None,
        };
        let kind = match op {
            Op::AddField {
                name, data_type, ..
            } => AlterKind::AddColumns {
                columns: vec![ColumnSchema::field(name.clone(), *data_type)],
            },
            Op::SetTtl { ttl, .. } => AlterKind::SetOptions {
                changes: vec![RegionOptionChange::Ttl(*ttl)],
            },
            _ => {
                return Err(KitError::Invalid {
                    detail: format!("{op} is not an alter"),
                });
            }
        };
        let schema_version = metadata.as_ref().map_or(0, |m| m.schema_version());
        let request = AlterRequest::new(id, schema_version, kind);
        let result = self.live()?.alter(request).await;
        let taken = match (op, &metadata) {
            (Op::AddField { name, .. }, Some(metadata)) => metadata.column_by_name(name).is_some(),
            _ => false,
        };
        if taken {
            return refused(op, result, ErrorKind::InvalidRequest);
        }
        self.answered(region, op, result)
    }

    /// What the engine answered `op` on `region`: success where the region exists, a
    /// refusal with [`ErrorKind::RegionNotFound`] where it does not.
    fn answered<T>(&self, region: usize, op: &Op, result: crate::Result<T>) -> KitResult<()> {
        if self.exists(region) {
            return result.map(drop).map_err(|source| KitError::Engine {
                op: op.to_string(),
                source,
            });
        }
        refused(op, result, ErrorKind::RegionNotFound)
    }
}

/// `Ok` if `result` is an error of `kind`.
fn refused<T>(op: &Op, result: crate::Result<T>, kind: ErrorKind) -> KitResult<()> {
    match result {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(KitError::Unexpected {
            op: op.to_string(),
            detail: format!("expected an error of kind {kind:?}, got: {e}"),
        }),
        Ok(_) => Err(KitError::Unexpected {
            op: op.to_string(),
            detail: format!("expected an error of kind {kind:?}, it succeeded"),
        }),
    }
}

/// How `actual` (the engine's rows) differs from `expected` (the model's).
fn diff(actual: &[Row], expected: &[Row]) -> String {
    let mut out = format!(
        "the engine returned {} rows, the model has {}",
        actual.len(),
        expected.len()
    );
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    let _ = write!(out, "; they differ from row {first}");
    for (name, rows) in [("engine", actual), ("model", expected)] {
        let _ = write!(out, "\n  {name}:");
        for row in rows.iter().skip(first.saturating_sub(2)).take(12) {
            let _ = write!(out, "\n    {row}");
        }
    }
    out
}
