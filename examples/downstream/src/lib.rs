//! A downstream project's use of Strata, through `strata-engine` alone: it builds an engine
//! with its own log store (a memory log that counts appends) and its own event listener
//! (counting flushes), creates a region, writes, flushes, scans, and handles errors by
//! their kind. `cargo run -p strata-example-downstream` prints what happened; the test
//! checks it. `tests/property.rs` checks the engine — also with `CountingLog` as its log —
//! against Strata's reference model with the test kit (`strata_engine::testing`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_engine::arrow_array::{
    Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use strata_engine::{
    AppendResponse, ColumnDataType, ColumnSchema, CreateRequest, EngineBuilder, EngineConfig,
    Entry, EntryStream, ErrorKind, EventListener, LogStore, MemoryLogStore, ObjectStoreConfig,
    RegionId, RegionMetadataBuilder, ScanRequest, WalError, WriteRequest,
};

/// A log store of our own: Strata's memory log, counting appends.
#[derive(Debug, Default)]
pub struct CountingLog {
    inner: MemoryLogStore,
    appends: AtomicU64,
}

#[strata_engine::async_trait]
impl LogStore for CountingLog {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError> {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.inner.append_batch(entries).await
    }

    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError> {
        self.inner.read(region_id, start_entry_id)
    }

    async fn obsolete(&self, region_id: u64, entry_id: u64) -> Result<(), WalError> {
        self.inner.obsolete(region_id, entry_id).await
    }

    async fn drop_region(&self, region_id: u64) -> Result<(), WalError> {
        self.inner.drop_region(region_id).await
    }

    fn last_entry_id(&self, region_id: u64) -> Option<u64> {
        self.inner.last_entry_id(region_id)
    }

    async fn stop(&self) -> Result<(), WalError> {
        self.inner.stop().await
    }
}

/// A listener of our own: counts successful flushes.
#[derive(Debug, Default)]
pub struct FlushCounter {
    flushes: AtomicU64,
}

#[strata_engine::async_trait]
impl EventListener for FlushCounter {
    fn on_flush_success(&self, _region_id: RegionId) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the run saw.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// Rows a scan returned.
    pub rows: usize,
    /// Appends our log store took.
    pub appends: u64,
    /// Flushes our listener heard of.
    pub flushes: u64,
    /// The kind of a write to a region that does not exist.
    pub missing_region: ErrorKind,
    /// The kind of a second read-write engine on the same directory.
    pub second_engine: ErrorKind,
}

/// The example's errors: the engine's, or its own.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds an engine on `dir` with the custom parts, and exercises it.
pub async fn run(dir: &Path) -> Result<Report, BoxError> {
    let mut config = EngineConfig::default();
    config.data_home = dir.to_path_buf();
    config.object_store = Some(ObjectStoreConfig::Memory);
    let log = Arc::new(CountingLog::default());
    let listener = Arc::new(FlushCounter::default());
    let engine = EngineBuilder::new(config.clone())
        .log_store(log.clone())
        .listener(listener.clone())
        .build()
        .await?;

    let region = RegionId::new(7, 0);
    let metadata = RegionMetadataBuilder::new(region)
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("cpu", ColumnDataType::Float64))
        .build()?;
    engine.create(CreateRequest::new(metadata.clone())).await?;
    let batch = RecordBatch::try_new(
        metadata.arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(TimestampMillisecondArray::from(vec![1, 1, 2])),
            Arc::new(Float64Array::from(vec![0.5, 0.7, 0.9])),
        ],
    )?;
    engine
        .write(WriteRequest::put(region, batch.clone()))
        .await?;
    engine.flush(region).await?;
    let rows = engine
        .scan_to_vec(region, ScanRequest::default())
        .await?
        .iter()
        .map(RecordBatch::num_rows)
        .sum();

    // Errors are handled by their kind.
    let missing_region = match engine
        .write(WriteRequest::put(RegionId::new(7, 9), batch))
        .await
    {
        Err(e) => e.kind(),
        Ok(_) => ErrorKind::Internal,
    };
    let second_engine = match EngineBuilder::new(config).build().await {
        Err(e) => e.kind(),
        Ok(engine) => {
            engine.stop().await?;
            ErrorKind::Internal
        }
    };
    engine.stop().await?;
    Ok(Report {
        rows,
        appends: log.appends.load(Ordering::Relaxed),
        flushes: listener.flushes.load(Ordering::Relaxed),
        missing_region,
        second_engine,
    })
}
