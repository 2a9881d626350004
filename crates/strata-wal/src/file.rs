//! [`FileLogStore`]: a durable log in a local directory.

mod format;
mod index;
mod recovery;
mod report;
mod salvage;
mod segments;
mod writer;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use futures::StreamExt;
use prometheus::Registry;
use snafu::ResultExt;
use strata_base::{ClockRef, SystemClock};
use tokio::sync::oneshot;

use crate::config::{FileLogStoreConfig, RecoveryMode};
use crate::error::{IoSnafu, WalError};
use crate::metrics::WalMetrics;
use crate::store::{AppendResponse, Entry, EntryStream, LogStore};
use format::{EntryRef, FRAME_HEADER_LEN, Payload};
use index::{Index, RecordLoc, Segment};
use recovery::Access;
pub use report::{LostEntries, LostRange, RecoveryReport, RegionLog, TruncatedTail};
use segments::FreeSegments;
use writer::{Command, Writer};

/// A lock file an engine may keep in the WAL directory; the log ignores it.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Path of segment `seq` in `dir`.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// State shared by the store handle and its writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) index: Mutex<Index>,
    pub(crate) metrics: Option<WalMetrics>,
    /// Appends submitted and not yet answered (see the writer's group gathering).
    pub(crate) in_flight: AtomicUsize,
}

/// Counts one append as in flight until dropped (also when its future is cancelled).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A durable, group-committing write-ahead log in one directory.
///
/// The directory holds numbered segment files (`00000000000000000001.wal`, ...) of
/// checksummed records; one writer thread commits concurrent appends from every worker
/// as one group with at most one sync (see [`SyncPolicy`](crate::SyncPolicy)). Opening scans the
/// segments, rebuilds an in-memory index (so reading one region touches only its records),
/// and handles a torn tail as [`RecoveryMode`](crate::RecoveryMode) says; what it found is
/// in [`recovery_report`](Self::recovery_report). Segments are deleted once every entry
/// in them is obsolete, oldest first — or kept and reused as later segments
/// ([`recycle_segments`](FileLogStoreConfig::recycle_segments)).
///
/// A log has one writer: [`open`](Self::open) it in one process at a time (the engine
/// holds a lock file for that). Any number of [`open_read_only`](Self::open_read_only)
/// readers may look at it meanwhile, even while the writer appends, rotates and reuses
/// segments: they change nothing on disk and see the log up to its last committed group.
///
/// Linux/Unix only (positional reads).
pub struct FileLogStore {
    dir: PathBuf,
    max_record_size: u64,
    read_only: bool,
    clock: ClockRef,
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Command>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    report: RecoveryReport,
}

impl std::fmt::Debug for FileLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLogStore")
            .field("dir", &self.dir)
            .field("stopped", &self.stopped.load(Ordering::Acquire))
            .finish()
    }
}

impl FileLogStore {
    /// Opens (creating if needed) the log in `dir` as its one writer, on the system clock.
    /// With a `registry`, publishes the `strata_wal_*` metrics on it.
    pub fn open(
        dir: impl AsRef<Path>,
        config: FileLogStoreConfig,
        registry: Option<&Registry>,
    ) -> Result<Self, WalError> {
        Self::open_with_clock(dir, config, registry, Arc::new(SystemClock))
    }

    /// [`open`](Self::open), reading time (group-commit waits, sync intervals, append
    /// latencies) from `clock`.
    ///
    /// Damaged bytes are handled as the config's [`RecoveryMode`](crate::RecoveryMode)
    /// says; under `Salvage`, an open that skipped anything starts a new segment, so no
    /// group is ever appended after damaged bytes.
    pub fn open_with_clock(
        dir: impl AsRef<Path>,
        config: FileLogStoreConfig,
        registry: Option<&Registry>,
        clock: ClockRef,
    ) -> Result<Self, WalError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let metrics = registry.map(WalMetrics::register).transpose()?;
        let recovered = recovery::recover(&dir, &config, Access::ReadWrite)?;
        let mut report = recovered.report;
        let mut index = recovered.index;
        let prune = config.recovery != RecoveryMode::Strict;
        let mut free = FreeSegments::new(
            &dir,
            config.effective_recycle_segments(),
            recovered.free,
            prune,
        )?;
        let active = match recovered.last {
            Some((segment, end)) if report.lost.is_empty() => segments::open_active(segment, end)?,
            last => {
                // Above every kept file's old number (so none of its bytes can verify), and
                // above the last segment (whose damaged bytes are never appended after).
                let after = last.map_or(0, |(segment, _)| segment.seq);
                let active = free.next_segment(free.max_seq().max(after) + 1)?;
                index.add_segment(active.segment.clone());
                active
            }
        };
        for segment in index.take_reclaimable(active.segment.seq) {
            free.reclaim(segment)?;
            report.reclaimed_segments += 1;
        }
        tracing::info!(
            dir = %dir.display(),
            segments = report.segments,
            records = report.records,
            entries = report.entries,
            truncated = report.truncated.is_some(),
            lost_ranges = report.lost.len(),
            kept_for_reuse = free.len(),
            "WAL opened"
        );
        let shared = Arc::new(Shared {
            index: Mutex::new(index),
            metrics,
            in_flight: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            config: config.clone(),
            clock: clock.clone(),
            shared: shared.clone(),
            active,
            unsynced_since: None,
            poisoned: None,
            buf: Vec::new(),
            free,
        };
        let thread = std::thread::Builder::new()
            .name("strata-wal-writer".into())
            .spawn(move || writer.run(rx))
            .context(IoSnafu {
                operation: "start WAL writer thread",
                path: dir.clone(),
            })?;
        Ok(Self {
            dir,
            max_record_size: config.max_record_size,
            read_only: false,
            clock,
            shared,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            stopped: AtomicBool::new(false),
            report,
        })
    }

    /// Opens the log in `dir` for reading only: nothing on disk is created, cut, renamed
    /// or deleted, and appends, obsoletes and drops fail with [`WalError::ReadOnly`]. A
    /// missing directory is an empty log.
    ///
    /// Safe beside the log's writer in another process: the log is read up to its last
    /// committed group (the group being written is reported as
    /// [`truncated`](RecoveryReport::truncated) with `cut: false`, never as damage), and a
    /// read that the writer's rotation, reclamation or reuse of a segment disturbed is done
    /// again. Damage is handled as the config's [`RecoveryMode`](crate::RecoveryMode)
    /// says (`Salvage` reports what it would skip). Reads of entries whose segment the
    /// writer reclaimed meanwhile fail with [`WalError::Reclaimed`]: those entries are
    /// obsolete, so the caller reads its state again.
    pub fn open_read_only(
        dir: impl AsRef<Path>,
        config: FileLogStoreConfig,
    ) -> Result<Self, WalError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let recovered = recovery::recover(&dir, &config, Access::ReadOnly)?;
        tracing::debug!(
            dir = %dir.display(),
            segments = recovered.report.segments,
            records = recovered.report.records,
            "WAL opened read-only"
        );
        Ok(Self {
            dir,
            max_record_size: config.max_record_size,
            read_only: true,
            clock: Arc::new(SystemClock),
            shared: Arc::new(Shared {
                index: Mutex::new(recovered.index),
                metrics: None,
                in_flight: AtomicUsize::new(0),
            }),
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            stopped: AtomicBool::new(false),
            report: recovered.report,
        })
    }

    /// Whether the log was opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// What opening the log found (segments, records, a torn tail, salvaged damage, what
    /// each region holds).
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The regions the log knows (entries or obsolete marks), ascending — for tools that
    /// list what a log holds.
    pub fn regions(&self) -> Vec<u64> {
        self.lock_index().regions()
    }

    /// Number of segment files currently kept.
    pub fn segment_count(&self) -> usize {
        self.lock_index().segment_count()
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.shared
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a command to the writer and waits for its answer.
    async fn submit<T>(
        &self,
        operation: &'static str,
        make: impl FnOnce(oneshot::Sender<Result<T, WalError>>) -> Command,
    ) -> Result<T, WalError> {
        if self.read_only {
            return Err(WalError::ReadOnly { operation });
        }
        let (reply, answer) = oneshot::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = tx.as_ref().ok_or(WalError::Stopped)?;
            tx.send(make(reply)).map_err(|_| WalError::Stopped)?;
        }
        answer.await.map_err(|_| WalError::Stopped)?
    }

    fn join_writer(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("WAL writer thread panicked");
        }
    }
}

#[async_trait::async_trait]
impl LogStore for FileLogStore {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(WalError::Stopped);
        }
        if self.read_only {
            return Err(WalError::ReadOnly {
                operation: "append",
            });
        }
        if entries.is_empty() {
            return Ok(AppendResponse::default());
        }
        let data_len = entries.iter().map(|e| e.data.len()).sum();
        let payload = format::encode_entries(
            entries.iter().map(|e| EntryRef {
                region_id: e.region_id,
                entry_id: e.entry_id,
                data: &e.data,
            }),
            data_len,
        );
        if payload.len() as u64 > self.max_record_size {
            return Err(WalError::RecordTooLarge {
                size: payload.len(),
                max: usize::try_from(self.max_record_size).unwrap_or(usize::MAX),
            });
        }
        let ids = entries.iter().map(|e| (e.region_id, e.entry_id)).collect();
        let submitted = self.clock.now();
        let _in_flight = InFlight::new(&self.shared.in_flight);
        self.submit("append", |reply| Command::Append {
            ids,
            payload,
            submitted,
            reply,
        })
        .await
    }

    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(WalError::Stopped);
        }
        let plan = self.lock_index().plan_read(region_id, start_entry_id);
        let min_id = plan.min_id;
        let read_only = self.read_only;
        let stream = futures::stream::iter(plan.records)
            .then(move |record| async move {
                let path = record.segment.path.clone();
                tokio::task::spawn_blocking(move || {
                    let read = read_record(&record, region_id, min_id);
                    match read {
                        Err(_) if read_only && reclaimed(&record.segment) => {
                            Err(WalError::Reclaimed {
                                path: record.segment.path.clone(),
                            })
                        }
                        read => read,
                    }
                })
                .await
                .map_err(|e| WalError::Io {
                    operation: "read task",
                    path,
                    source: Arc::new(std::io::Error::other(e.to_string())),
                })?
            })
            .filter(|chunk| {
                std::future::ready(!matches!(chunk, Ok(entries) if entries.is_empty()))
            });
        Ok(Box::pin(stream))
    }

    async fn obsolete(&self, region_id: u64, entry_id: u64) -> Result<(), WalError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(WalError::Stopped);
        }
        self.submit("obsolete entries", |reply| Command::Obsolete {
            region_id,
            entry_id,
            reply,
        })
        .await
    }

    async fn drop_region(&self, region_id: u64) -> Result<(), WalError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(WalError::Stopped);
        }
        self.submit("drop a region", |reply| Command::Drop { region_id, reply })
            .await
    }

    fn last_entry_id(&self, region_id: u64) -> Option<u64> {
        self.lock_index().last_id(region_id)
    }

    async fn stop(&self) -> Result<(), WalError> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Err(WalError::Stopped);
        }
        let (reply, answer) = oneshot::channel();
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .map(|tx| tx.send(Command::Stop { reply }).is_ok())
            .unwrap_or(false);
        let result = if sent {
            answer.await.unwrap_or(Err(WalError::Stopped))
        } else {
            Ok(())
        };
        self.join_writer();
        result
    }
}

impl Drop for FileLogStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish its queue, sync, and exit.
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.join_writer();
    }
}

/// Whether `segment`'s path no longer names the file this log opened (the writer renamed
/// it away to reclaim or reuse it, or deleted it).
fn reclaimed(segment: &Segment) -> bool {
    match (segment.file.metadata(), std::fs::metadata(&segment.path)) {
        (Ok(ours), Ok(now)) => ours.ino() != now.ino() || ours.dev() != now.dev(),
        (Ok(_), Err(e)) => e.kind() == std::io::ErrorKind::NotFound,
        (Err(_), _) => false,
    }
}

/// Reads one record and returns `region_id`'s entries in it with id ≥ `min_id`.
fn read_record(record: &RecordLoc, region_id: u64, min_id: u64) -> Result<Vec<Entry>, WalError> {
    let segment = &record.segment;
    let corruption = |reason: &str| WalError::Corruption {
        path: segment.path.clone(),
        offset: record.offset,
        reason: reason.to_string(),
    };
    let mut buf = vec![0u8; FRAME_HEADER_LEN + record.len as usize];
    segment
        .file
        .read_exact_at(&mut buf, record.offset)
        .context(IoSnafu {
            operation: "read segment",
            path: segment.path.clone(),
        })?;
    let mut header = [0u8; FRAME_HEADER_LEN];
    header.copy_from_slice(&buf[..FRAME_HEADER_LEN]);
    let (len, crc) = format::decode_frame_header(&header);
    if len != record.len {
        return Err(corruption(
            "record length changed on disk since it was indexed",
        ));
    }
    let payload = Bytes::from(buf).slice(FRAME_HEADER_LEN..);
    if format::record_crc(segment.seq, &payload) != crc {
        return Err(corruption("record checksum mismatch"));
    }
    match format::decode_payload(&payload).map_err(corruption)? {
        Payload::Entries(entries) => Ok(entries
            .into_iter()
            .filter(|e| e.region_id == region_id && e.entry_id >= min_id)
            .map(|e| Entry {
                region_id,
                entry_id: e.entry_id,
                data: e.data,
            })
            .collect()),
        _ => Err(corruption("indexed record is not an entries record")),
    }
}
