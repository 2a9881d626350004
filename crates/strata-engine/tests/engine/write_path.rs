//! The write path's contracts: a WAL failure fails the whole batch with nothing applied,
//! invalid writes touch nothing, metrics count what happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use strata_engine::{EngineBuilder, ErrorKind, RegionId, WriteRequest};
use strata_wal::{AppendResponse, Entry, EntryStream, LogStore, MemoryLogStore, WalError};

use crate::common::*;

/// A memory log store whose appends fail while `fail` is set, refuse as `RecordTooLarge`
/// (as the file WAL does) what carries more than `max` bytes when it is set, and wait,
/// after `hold` is set, at the next append until `release` has a permit; with
/// `ignore_start` it misbehaves by reading every entry, whatever the start id. `stop`
/// leaves it usable, so several engine incarnations can share it.
#[derive(Debug)]
struct FailingLogStore {
    inner: MemoryLogStore,
    fail: AtomicBool,
    poison: AtomicBool,
    ignore_start: AtomicBool,
    /// Most bytes of entry data an append may carry (0: no limit).
    max: AtomicUsize,
    hold: AtomicBool,
    held: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
    /// Sizes of the appends refused as too large, in order.
    refused: std::sync::Mutex<Vec<usize>>,
}

impl Default for FailingLogStore {
    fn default() -> Self {
        Self {
            inner: MemoryLogStore::default(),
            fail: AtomicBool::new(false),
            poison: AtomicBool::new(false),
            ignore_start: AtomicBool::new(false),
            max: AtomicUsize::new(0),
            hold: AtomicBool::new(false),
            held: tokio::sync::Notify::new(),
            release: tokio::sync::Semaphore::new(0),
            refused: std::sync::Mutex::new(Vec::new()),
        }
    }
}

#[strata_engine::async_trait]
impl LogStore for FailingLogStore {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError> {
        if self.hold.swap(false, Ordering::SeqCst) {
            self.held.notify_one();
            drop(self.release.acquire().await);
        }
        if self.poison.load(Ordering::SeqCst) {
            return Err(WalError::Poisoned {
                reason: "an injected sync failure".into(),
            });
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(WalError::Io {
                operation: "append (injected)",
                path: "memory".into(),
                source: Arc::new(std::io::Error::other("injected")),
            });
        }
        let max = self.max.load(Ordering::SeqCst);
        let size = entries.iter().map(|e| e.data.len()).sum();
        if max > 0 && size > max {
            self.refused.lock().unwrap().push(size);
            return Err(WalError::RecordTooLarge { size, max });
        }
        self.inner.append_batch(entries).await
    }
    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError> {
        let start = if self.ignore_start.load(Ordering::SeqCst) {
            0
        } else {
            start_entry_id
        };
        self.inner.read(region_id, start)
    }
    async fn obsolete(&self, region_id: u64, entry_id: u64) -> Result<(), WalError> {
        if self.ignore_start.load(Ordering::SeqCst) {
            return Ok(()); // keeps the entries, so reads can return stale ones
        }
        self.inner.obsolete(region_id, entry_id).await
    }
    async fn drop_region(&self, region_id: u64) -> Result<(), WalError> {
        self.inner.drop_region(region_id).await
    }
    fn last_entry_id(&self, region_id: u64) -> Option<u64> {
        self.inner.last_entry_id(region_id)
    }
    async fn stop(&self) -> Result<(), WalError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_wal_fails_writes_as_needing_a_reopen_not_a_retry() {
    let env = TestEnv::new();
    let wal = Arc::new(FailingLogStore::default());
    let engine = EngineBuilder::new(env.config())
        .log_store(wal.clone())
        .build()
        .await
        .unwrap();
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    wal.poison.store(true, Ordering::SeqCst);
    let error = engine
        .write(WriteRequest::put(region, rows(0..2, 1000, 1.0)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NeedsReopen, "{error}");
    assert!(!error.is_retryable(), "a retry loop must not spin on it");
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_failure_fails_every_write_of_the_batch_and_nothing_reaches_memtables() {
    let env = TestEnv::new();
    let wal = Arc::new(FailingLogStore::default());
    let engine = Arc::new(
        EngineBuilder::new(env.config())
            .log_store(wal.clone())
            .build()
            .await
            .unwrap(),
    );
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..2, 1000, 1.0).await;
    wal.fail.store(true, Ordering::SeqCst);
    let mut writes = Vec::new();
    for i in 0..8 {
        let engine = engine.clone();
        writes.push(tokio::spawn(async move {
            engine
                .write(WriteRequest::put(region, rows(10 + i..11 + i, 1000, 1.0)))
                .await
        }));
    }
    for write in writes {
        let error = within("write", write).await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Wal, "{error}");
        assert!(error.is_retryable());
    }
    let stats = engine.region_stats(region).unwrap();
    assert_eq!((stats.committed_sequence, stats.last_entry_id), (2, 1));
    assert_eq!(
        scan(&engine, region).await.len(),
        2,
        "no failed row is visible"
    );
    wal.fail.store(false, Ordering::SeqCst);
    put(&engine, region, 2..3, 1000, 1.0).await;
    let stats = engine.region_stats(region).unwrap();
    assert_eq!((stats.committed_sequence, stats.last_entry_id), (3, 2));
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_writes_are_refused_before_the_wal_and_change_nothing() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..2, 1000, 1.0).await;
    let other_schema = arrow_array::RecordBatch::try_from_iter([(
        "unknown",
        Arc::new(arrow_array::Int64Array::from(vec![1])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let error = engine
        .write(WriteRequest::put(region, other_schema))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    assert!(!error.is_retryable());
    let empty = rows(0..0, 1, 1.0);
    let error = engine
        .write(WriteRequest::put(region, empty))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    let stats = engine.region_stats(region).unwrap();
    assert_eq!((stats.committed_sequence, stats.last_entry_id), (2, 1));
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_rows_regions_stalls_and_waits_on_the_given_registry() {
    let env = TestEnv::new();
    let registry = prometheus::Registry::new();
    let engine = Arc::new(
        EngineBuilder::new(env.config())
            .registry(registry.clone())
            .write_buffer_manager(env.buffer.clone())
            .listener(Arc::new(Installed(env.listener.clone())))
            .build()
            .await
            .unwrap(),
    );
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..5, 1000, 1.0).await;
    env.buffer.force_stall.store(true, Ordering::SeqCst);
    let writer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .write(WriteRequest::put(region, rows(5..6, 1000, 1.0)))
                .await
        })
    };
    env.listener
        .wait_for("stall", 1, |l| count(&l.stalls))
        .await;
    env.buffer.force_stall.store(false, Ordering::SeqCst);
    env.notifier.notify();
    within("stalled write", writer).await.unwrap().unwrap();
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| {
                label.is_none_or(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == k && l.value() == v)
                })
            })
            .map(|m| {
                m.get_counter().get_value()
                    + m.get_gauge().get_value()
                    + m.get_histogram().get_sample_count() as f64
            })
            .sum()
    };
    assert_eq!(value("strata_write_rows_total", Some(("type", "put"))), 6.0);
    assert_eq!(value("strata_write_stall_total", None), 1.0);
    assert_eq!(
        value("strata_write_stalling", None),
        0.0,
        "nothing stalled now"
    );
    assert_eq!(value("strata_region_count", None), 1.0);
    assert!(value("strata_request_wait_seconds", None) >= 3.0);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_an_entry_at_or_below_the_flushed_id_fails_unless_allowed() {
    let env = TestEnv::new();
    let wal = Arc::new(FailingLogStore::default());
    wal.ignore_start.store(true, Ordering::SeqCst);
    let region = RegionId::new(1, 0);
    let build = |allow: bool| {
        let wal = wal.clone();
        let mut config = env.config();
        config.allow_stale_entries = allow;
        async move {
            EngineBuilder::new(config)
                .log_store(wal)
                .build()
                .await
                .unwrap()
        }
    };
    let engine = build(false).await;
    create(&engine, region).await;
    put(&engine, region, 0..3, 1000, 1.0).await;
    engine.flush(region).await.unwrap();
    put(&engine, region, 3..5, 1000, 1.0).await;
    engine.stop().await.unwrap();

    let engine = build(false).await;
    let error = engine.open(region).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    assert!(error.to_string().contains("allow_stale_entries"), "{error}");
    engine.stop().await.unwrap();

    let engine = build(true).await;
    engine.open(region).await.unwrap();
    assert_eq!(
        scan(&engine, region).await.len(),
        5,
        "stale rows deduplicate"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_mixing_compressed_and_plain_entries_replays_every_row() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 0);
    for (i, compression) in [
        strata_engine::WalCompression::Zstd,
        strata_engine::WalCompression::None,
        strata_engine::WalCompression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let mut config = env.config();
        config.wal.compression = compression;
        let engine = env.engine_with(config).await;
        if i == 0 {
            create(&engine, region).await;
        } else {
            engine.open(region).await.unwrap();
        }
        put(&engine, region, i * 10..i * 10 + 10, 1000, 1.0).await;
        assert_eq!(scan(&engine, region).await.len(), (i + 1) * 10);
        engine.stop().await.unwrap();
    }
}

#[tokio::test]
async fn an_append_mode_region_keeps_every_row_duplicates_included_through_flush_and_reopen() {
    let env = TestEnv::new();
    let append = RegionId::new(1024, 0);
    let normal = RegionId::new(1024, 1);
    let engine = env.engine().await;
    for (region, append_mode) in [(append, true), (normal, false)] {
        engine
            .create(
                strata_engine::CreateRequest::new(metadata(region))
                    .options(strata_engine::RegionOptions::default().append_mode(append_mode)),
            )
            .await
            .unwrap();
    }
    // The same (host, ts) written three times, twice before a flush, once after.
    for region in [append, normal] {
        put(&engine, region, 0..4, 7, 1.0).await;
        put(&engine, region, 0..4, 7, 2.0).await;
    }
    assert_eq!(
        rows_of(&engine, append).await,
        8,
        "duplicates kept in memtables"
    );
    assert_eq!(rows_of(&engine, normal).await, 4);
    for region in [append, normal] {
        engine.flush(region).await.unwrap();
        put(&engine, region, 0..4, 7, 3.0).await;
    }
    assert_eq!(
        rows_of(&engine, append).await,
        12,
        "kept through the flush too"
    );
    assert_eq!(rows_of(&engine, normal).await, 4);
    // The newest of each key comes first within its duplicates.
    let batches = engine
        .scan_to_vec(append, strata_engine::ScanRequest::default())
        .await
        .unwrap();
    let cpu: Vec<f64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("cpu")
                .unwrap()
                .as_primitive::<arrow_array::types::Float64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(&cpu[..3], &[3.0, 2.0, 1.0], "host0 at ts 7, newest first");
    engine.stop().await.unwrap();
    drop(engine);
    let engine = env.engine().await;
    engine.open(append).await.unwrap();
    engine.open(normal).await.unwrap();
    assert_eq!(rows_of(&engine, append).await, 12, "and through a reopen");
    assert_eq!(rows_of(&engine, normal).await, 4);
    engine.stop().await.unwrap();
}

async fn rows_of(engine: &strata_engine::Engine, region: RegionId) -> usize {
    engine
        .scan_to_vec(region, strata_engine::ScanRequest::default())
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_too_large_for_the_wal_fails_alone_and_the_rest_of_its_batch_goes_on() {
    let env = TestEnv::new();
    let wal = Arc::new(FailingLogStore::default());
    wal.max.store(64 << 10, Ordering::SeqCst);
    let open = || {
        EngineBuilder::new(env.config())
            .log_store(wal.clone())
            .build()
    };
    let engine = Arc::new(open().await.unwrap());
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    // The worker waits in the WAL on a first write while three more queue behind it, so
    // they reach the WAL as one batch: small, too large, small.
    wal.hold.store(true, Ordering::SeqCst);
    let first = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .write(WriteRequest::put(region, rows(0..1, 1_000, 1.0)))
                .await
        }
    });
    within("the held append", wal.held.notified()).await;
    let small_a = engine.write(WriteRequest::put(region, rows(0..10, 2_000, 2.0)));
    let large = engine.write(WriteRequest::put(region, rows(0..20_000, 3_000, 3.0)));
    let small_c = engine.write(WriteRequest::put(region, rows(0..10, 4_000, 4.0)));
    tokio::pin!(small_a, large, small_c);
    // One poll each puts them on the worker's channel.
    assert!(futures::poll!(&mut small_a).is_pending());
    assert!(futures::poll!(&mut large).is_pending());
    assert!(futures::poll!(&mut small_c).is_pending());
    wal.release.add_permits(1);
    within("first", first).await.unwrap().unwrap();
    assert_eq!(within("a", small_a).await.unwrap(), 10);
    let error = within("large", large).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("max_record_size"), "{error}");
    assert_eq!(within("c", small_c).await.unwrap(), 10);
    // The batch was refused whole first (all three), then the large write alone.
    let refused = wal.refused.lock().unwrap().clone();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0] > refused[1], "{refused:?}");
    assert_eq!(rows_of(&engine, region).await, 21);
    // What was acknowledged is in the WAL: a reopen replays exactly that.
    engine.stop().await.unwrap();
    let engine = open().await.unwrap();
    engine.open(region).await.unwrap();
    assert_eq!(rows_of(&engine, region).await, 21);
    engine.stop().await.unwrap();
}
