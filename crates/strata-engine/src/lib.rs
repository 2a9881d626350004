//! Strata's public facade: an embeddable, region-sharded LSM write engine for time-series
//! data.
//!
//! - [`EngineBuilder`] → [`Engine`]: `create / open / close / drop_region / alter / write /
//!   flush / compact / truncate / set_writable / scan / scan_to_vec / count / region_stats
//!   / region_files / regions / list_regions / stop`; region roles (`open_as / set_role /
//!   upgrade / downgrade / sync / renew_lease`, see `docs/distributed.md`). Scans stream
//!   [`RecordBatchStream`], whose errors are this crate's [`Error`]. Examples:
//!   `quickstart`, `streaming_scan`, `deletes`, `metrics`, `s3` (`cargo run -p
//!   strata-engine --example <name>`).
//! - One read-write engine per data directory: it holds a [`DataDirLock`] (an OS file lock
//!   on `<data_home>/LOCK` naming its pid) while it runs; a second one fails with
//!   [`ErrorKind::Locked`]. [`EngineBuilder::read_only`] engines take no lock, change
//!   nothing on disk, and see a consistent prefix of what the writer committed — safe in
//!   another process while it writes.
//! - [`Engine::wal_recovery_report`]: what opening the WAL found (a torn tail, damaged
//!   ranges skipped under `recovery = "salvage"`).
//! - [`EngineConfig`]: TOML settings with human sizes (`"1GiB"`) and durations (`"30m"`),
//!   defaults that scale with the machine, validation that names the bad key;
//!   [`EXAMPLE_CONFIG`] is the commented example.
//! - [`Error`] with a coarse [`ErrorKind`]: [`Error::is_retryable`] says whether trying
//!   again later can help.
//! - Everything an embedder needs, re-exported, so this is the only Strata crate a
//!   downstream project depends on: the request vocabulary; the components the builder
//!   takes instead of the configured ones (log stores and their configs, the object-store
//!   config, the write-buffer manager, the clock, the listener); and the crates whose types
//!   appear in the API (`arrow_array`, `arrow_schema`, `opendal`, `prometheus`), so versions
//!   always match. `examples/downstream` builds an engine from this crate alone.
//!
//! Rows go through the WAL into memtables under one memory budget (writes stall over it
//! and are rejected at the reject limit), are flushed to sorted Parquet files, and are read
//! back merged and deduplicated (newest row per primary key and timestamp wins).
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
//! use strata_engine::{
//!     ColumnDataType, ColumnSchema, CreateRequest, EngineBuilder, EngineConfig, RegionId,
//!     RegionMetadataBuilder, RegionOptions, ScanRequest, WriteRequest,
//! };
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = EngineConfig::default();
//! config.data_home = dir.path().into();
//! let region = RegionId::new(1024, 0);
//! let metadata = RegionMetadataBuilder::new(region)
//!     .column(ColumnSchema::tag("host"))
//!     .column(ColumnSchema::timestamp("ts", ColumnDataType::TimestampMillisecond))
//!     .column(ColumnSchema::field("cpu", ColumnDataType::Float64))
//!     .build()?;
//!
//! let engine = EngineBuilder::new(config.clone()).build().await?;
//! engine.create(CreateRequest::new(metadata.clone())).await?;
//! let batch = RecordBatch::try_new(metadata.arrow_schema().clone(), vec![
//!     Arc::new(StringArray::from(vec!["a", "b"])),
//!     Arc::new(TimestampMillisecondArray::from(vec![1, 1])),
//!     Arc::new(Float64Array::from(vec![0.5, 0.7])),
//! ])?;
//! assert_eq!(engine.write(WriteRequest::put(region, batch)).await?, 2);
//! engine.flush(region).await?;
//! engine.stop().await?;
//!
//! // A new engine over the same directory: open the region and read the rows back.
//! let engine = EngineBuilder::new(config).build().await?;
//! engine.open(region).await?;
//! let rows: usize = engine.scan_to_vec(region, ScanRequest::default()).await?
//!     .iter().map(|b| b.num_rows()).sum();
//! assert_eq!(rows, 2);
//! engine.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Test kit
//!
//! With feature `testing`, the module `testing` holds what property tests of an embedding
//! need: a `TestEngine` (memory object store behind a fault plan, a memory log that
//! outlives restarts, a manual clock, a recording listener), the reference `Model` Strata's
//! own model test checks the engine against (last write wins, deletes, truncates, drops,
//! added fields, TTL), and proptest strategies for region schemas, write batches and
//! operation sequences — so `engine.run(&mut model, &ops)` inside a `proptest!` checks
//! every step. (Also the log-store conformance suite, `log_store_conformance`.)
//!
//! # Layering
//!
//! The top of the library stack: depends on `strata-worker` and the crates below it;
//! only the CLI, the benchmarks and the test suites depend on it.

mod config;
mod engine;
mod error;
mod lock;
mod roles;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    CompactionConfig, EXAMPLE_CONFIG, EngineConfig, SstConfig, WalCompression, WalConfig,
    WalProvider,
};
pub use engine::{Engine, EngineBuilder, RegionStats};
pub use error::{Error, ErrorKind, RecordBatchStream, Result};
pub use lock::{DataDirLock, LockError};
pub use roles::Downgraded;

// Requests and the region vocabulary.
pub use strata_request::{
    AffectedRows, AlterKind, AlterRequest, CloseRequest, ColumnDataType, ColumnSchema,
    CompactRequest, CreateRequest, DdlRequest, DropRequest, FlushRequest, OpType, OpenRequest,
    RegionId, RegionMetadata, RegionMetadataBuilder, RegionOptionChange, RegionOptions, RegionRole,
    SemanticType, SetRoleRequest, SetWritableRequest, SyncRequest, TruncateRequest, Value,
    WriteRequest,
};
pub use strata_storage::{FileId, FileMeta, RowCount, ScanOrder, ScanRequest, TimeRange};
// What a compaction did.
pub use strata_compaction::{CompactionStats, FileSetStats, WindowStats};
pub use strata_worker::{RegionState, WorkerError};

// Components an embedder can give the builder instead of the configured ones.
/// The attribute that implements this crate's async traits ([`LogStore`],
/// [`EventListener`]) for an embedder's own types: `#[strata_engine::async_trait]`.
pub use async_trait::async_trait;
pub use strata_buffer::{
    ReleaseNotifier, WriteBufferManager, WriteBufferManagerImpl, WriteBufferManagerRef,
};
pub use strata_scheduler::{
    Clock, ClockRef, Job, LocalScheduler, ManualClock, Scheduler, SchedulerError, SchedulerRef,
    Sleep, StopFuture, SystemClock,
};
pub use strata_storage::{DurableFsLayer, ObjectStoreConfig, ObjectStoreError, S3Config, Secret};
/// The [`LogStore`] conformance suite, for an embedder's own log store (feature
/// `testing`): implement its `Harness` and call its `check` from a test.
#[cfg(feature = "testing")]
pub use strata_wal::conformance as log_store_conformance;
pub use strata_wal::{
    AppendResponse, Entry, EntryStream, FileLogStore, FileLogStoreConfig, LogStore, LogStoreRef,
    MemoryLogStore, NoopLogStore, WalError,
};
pub use strata_worker::{EventListener, NoopListener};

// What opening the WAL reports.
pub use strata_wal::{
    LostEntries, LostRange, RecoveryMode, RecoveryReport, RegionLog, SyncPolicy, TruncatedTail,
};

// The crates whose types appear in this API, so an embedder uses exactly these versions.
pub use arrow_array;
pub use arrow_schema;
pub use opendal;
pub use prometheus;
