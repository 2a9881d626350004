//! `strata ingest`: TSBS cpu rows from `strata-workload` into the engine, with progress, a
//! clean stop on Ctrl-C, and a summary.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use strata_engine::{
    Clock, CreateRequest, Engine, EngineBuilder, ErrorKind, RegionId, SystemClock, WriteRequest,
};
use strata_workload::{CpuWorkload, WorkloadBatch};

use crate::EngineArgs;
use crate::metrics_server::MetricsServer;

/// The table id the TSBS `cpu` regions use.
pub(crate) const CPU_TABLE: u32 = 1024;
const PROGRESS_FILE: &str = "ingest-progress.json";

/// Arguments of `strata ingest`.
#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// Hosts (series) in the data set.
    #[arg(long, default_value_t = 4000)]
    hosts: usize,
    /// Epochs (10 s apart) to ingest in this run; hosts × epochs rows.
    #[arg(long, default_value_t = 9000)]
    epochs: u64,
    /// Rows per write request.
    #[arg(long, default_value_t = 3000)]
    batch_rows: usize,
    /// Regions of the cpu table; host i goes to region i % regions.
    #[arg(long, default_value_t = 4)]
    regions: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Seed of the generated values.
    #[arg(long, default_value_t = 123)]
    seed: u64,
    /// Serve the engine's metrics in Prometheus text format at
    /// `http://ADDR/metrics` while the run lasts (port 0: any free port; the address is
    /// printed).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Where the previous runs stopped, so a new run continues the series.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Progress {
    hosts: usize,
    regions: usize,
    seed: u64,
    /// The first epoch not yet (fully) ingested.
    next_epoch: u64,
}

fn read_progress(dir: &Path) -> Result<Option<Progress>, String> {
    let path = dir.join(PROGRESS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            format!(
                "{}: {e} (delete it to start the series over)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Replaces the progress file durably: a temporary file written and synced, renamed over
/// the old one, the directory synced — so a power loss leaves the old or the new progress,
/// never an empty or missing file.
fn write_progress(dir: &Path, progress: &Progress) -> Result<(), String> {
    use std::io::Write;
    let path = dir.join(PROGRESS_FILE);
    let tmp = dir.join(format!("{PROGRESS_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(progress).map_err(|e| e.to_string())?;
    std::fs::File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &path))
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Longest a rejected write is retried before the run fails.
const REJECTED_RETRY_FOR: Duration = Duration::from_secs(60);

/// Writes `batch`; a write rejected because memory is over the reject limit (retryable:
/// flushes free it) is tried again after a short pause, for up to a minute.
async fn write_retrying(
    engine: &Engine,
    region: RegionId,
    batch: arrow_array::RecordBatch,
    retried: &AtomicU64,
) -> Result<usize, strata_engine::Error> {
    let clock = SystemClock;
    let started = SystemClock.now();
    let mut pause = Duration::from_millis(5);
    loop {
        match engine.write(WriteRequest::put(region, batch.clone())).await {
            Err(e)
                if e.kind() == ErrorKind::WriteRejected
                    && SystemClock.elapsed(started) < REJECTED_RETRY_FOR =>
            {
                retried.fetch_add(1, Ordering::Relaxed);
                clock.sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// Opens the cpu regions that exist, creates the others — all at once (the engine replays
/// up to `max_background_opens` WALs in parallel, off its workers).
async fn open_or_create(engine: &Engine, workload: &CpuWorkload) -> Result<(), String> {
    let regions = (0..workload.regions())
        .map(|number| RegionId::new(CPU_TABLE, u32::try_from(number).unwrap_or(u32::MAX)));
    let opened = futures::future::join_all(regions.map(|region_id| async move {
        match engine.open(region_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::RegionNotFound => engine
                .create(CreateRequest::new(workload.region_metadata(region_id)))
                .await
                .map_err(|e| format!("cannot create region {region_id}: {e}")),
            Err(e) => Err(format!(
                "cannot open region {region_id}: {}",
                crate::open_error(&e, engine.config())
            )),
        }
    }))
    .await;
    opened.into_iter().collect()
}

/// Progress output: a bar on a terminal, plain lines every 5 s otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    last_line: Instant,
    started: Instant,
}

impl Reporter {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} rows ({rate}) eta {eta}",
            ) {
                bar.set_style(style.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&readable_rate(state.per_sec()));
                    },
                ));
            }
            bar
        });
        Self {
            bar,
            last_line: SystemClock.now(),
            started: SystemClock.now(),
        }
    }

    fn update(&mut self, rows: u64, total: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(rows),
            None if SystemClock.elapsed(self.last_line) >= Duration::from_secs(5) => {
                self.last_line = SystemClock.now();
                let secs = SystemClock.elapsed(self.started).as_secs_f64().max(1e-9);
                eprintln!(
                    "ingest: {rows}/{total} rows ({})",
                    readable_rate(rows as f64 / secs)
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Ctrl-C, listened for from the moment it is installed.
struct Interrupt {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn install() -> Result<Self, String> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| format!("cannot listen for Ctrl-C: {e}"))?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A rate of rows per second as people read it: `876 K rows/s`, `1.2 M rows/s`.
fn readable_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec < 1_000.0 {
        format!("{:.0} rows/s", per_sec.max(0.0))
    } else if per_sec < 1_000_000.0 {
        format!("{:.0} K rows/s", per_sec / 1_000.0)
    } else {
        format!("{:.1} M rows/s", per_sec / 1_000_000.0)
    }
}

/// What went wrong, if anything, in one message: the first failed write (or else the
/// final flush's or the engine stop's failure) with how many rows were acknowledged
/// before it, then whatever failed after it.
fn failure_summary(
    write: Option<String>,
    flush: Option<String>,
    stop: Option<String>,
    acknowledged: u64,
) -> Option<String> {
    let mut failures = write.iter().chain(&flush).chain(&stop);
    let first = failures.next()?;
    let mut message = if write.is_some() {
        format!("{first} ({acknowledged} rows were acknowledged before it")
    } else {
        format!("{first} ({acknowledged} rows were acknowledged")
    };
    message.push_str("; the WAL holds them for the next open)");
    for later in failures {
        message.push_str("; then ");
        message.push_str(later);
    }
    Some(message)
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn metric_sum(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_counter().get_value())
        .sum()
}

pub(crate) async fn run(args: IngestArgs) -> Result<(), String> {
    if args.hosts == 0 || args.regions == 0 || args.writers == 0 || args.batch_rows == 0 {
        return Err("--hosts, --regions, --writers and --batch-rows must be positive".into());
    }
    let config = args.engine.engine_config()?;
    let data_dir = config.data_home.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let start_epoch = match read_progress(&data_dir)? {
        Some(p) if p.hosts == args.hosts && p.regions == args.regions && p.seed == args.seed => {
            p.next_epoch
        }
        Some(p) => {
            return Err(format!(
                "{} holds a series of {} hosts in {} regions (seed {}); pass the same --hosts, --regions and --seed to continue it, or use another --data-dir",
                data_dir.display(),
                p.hosts,
                p.regions,
                p.seed
            ));
        }
        None => 0,
    };
    let workload = CpuWorkload::new(args.hosts, args.epochs)
        .with_regions(args.regions)
        .with_batch_rows(args.batch_rows)
        .with_seed(args.seed)
        .with_start_epoch(start_epoch);
    workload.validate().map_err(|e| e.to_string())?;

    let registry = prometheus::Registry::new();
    let engine = Arc::new(
        EngineBuilder::new(config.clone())
            .registry(registry.clone())
            .build()
            .await
            .map_err(|e| crate::open_error(&e, &config))?,
    );
    let metrics = match args.metrics_addr {
        Some(addr) => Some(MetricsServer::start(addr, registry.clone()).await?),
        None => None,
    };
    // Installed before the "opened" line, so a Ctrl-C from then on stops cleanly.
    let mut interrupt = Interrupt::install()?;
    let opened = SystemClock.now();
    open_or_create(&engine, &workload).await?;
    eprintln!(
        "strata ingest: {} hosts × {} epochs from epoch {start_epoch} into {} regions of table {CPU_TABLE} under {} (WAL sync {}); opened in {:.1}s",
        args.hosts,
        args.epochs,
        args.regions,
        data_dir.display(),
        config.wal.sync,
        SystemClock.elapsed(opened).as_secs_f64()
    );
    if let Some(server) = &metrics {
        eprintln!("strata ingest: metrics at http://{}/metrics", server.addr());
    }

    // A generator thread feeds batches to the writers through a small queue.
    let (tx, rx) = async_channel::bounded::<WorkloadBatch>(args.writers * 2);
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let (workload, stop) = (workload.clone(), stop.clone());
        std::thread::spawn(move || -> Result<(), String> {
            for batch in workload.batches().map_err(|e| e.to_string())? {
                if stop.load(Ordering::Relaxed) || tx.send_blocking(batch).is_err() {
                    break;
                }
            }
            Ok(())
        })
    };
    let acked = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let longest_write = Arc::new(AtomicU64::new(0));
    let peak_memtables = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..args.writers {
        let (engine, rx, acked, longest) = (
            engine.clone(),
            rx.clone(),
            acked.clone(),
            longest_write.clone(),
        );
        let retried = retried.clone();
        writers.push(tokio::spawn(async move {
            while let Ok(batch) = rx.recv().await {
                let region = RegionId::new(CPU_TABLE, u32::try_from(batch.region).unwrap_or(0));
                let started = SystemClock.now();
                let rows = write_retrying(&engine, region, batch.batch, &retried)
                    .await
                    .map_err(|e| format!("write to region {region}: {e}"))?;
                longest.fetch_max(
                    u64::try_from(SystemClock.elapsed(started).as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                acked.fetch_add(rows as u64, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    drop(rx);

    let total = workload.total_rows();
    let mut reporter = Reporter::new(total);
    let started = SystemClock.now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut interrupted = false;
    while writers.iter().any(|w| !w.is_finished()) {
        tokio::select! {
            _ = tick.tick() => {
                peak_memtables.fetch_max(engine.memory_usage(), Ordering::Relaxed);
                reporter.update(acked.load(Ordering::Relaxed), total);
            }
            () = interrupt.recv(), if !interrupted => {
                interrupted = true;
                stop.store(true, Ordering::Relaxed);
                eprintln!("\nstrata ingest: interrupted; waiting for in-flight writes");
            }
        }
    }
    reporter.finish();
    let elapsed = SystemClock.elapsed(started);
    let mut first_error = None;
    for writer in writers {
        if let Err(e) = writer.await.map_err(|e| e.to_string()).and_then(|r| r) {
            first_error.get_or_insert(e);
            stop.store(true, Ordering::Relaxed);
        }
    }
    if let Ok(Err(e)) = generator.join() {
        first_error.get_or_insert(e);
    }
    let rows = acked.load(Ordering::Relaxed);

    // The series continues after the last epoch every region fully has (batches are
    // epoch-major, so everything before it was acknowledged).
    let hosts = args.hosts as u64;
    let done_epochs = rows / hosts;
    if interrupted || first_error.is_none() {
        write_progress(
            &data_dir,
            &Progress {
                hosts: args.hosts,
                regions: args.regions,
                seed: args.seed,
                next_epoch: start_epoch + done_epochs,
            },
        )?;
    }
    // Flushed even after a failed write, so what was acknowledged lands in SSTs; a flush
    // failure does not hide the write's error or the acknowledged count.
    let flushed = SystemClock.now();
    let mut flush_error = None;
    for number in 0..args.regions {
        let region = RegionId::new(CPU_TABLE, u32::try_from(number).unwrap_or(0));
        if let Err(e) = engine.flush(region).await {
            flush_error.get_or_insert(format!("flush region {region}: {e}"));
        }
    }
    let flush_time = SystemClock.elapsed(flushed);
    let (mut files, mut sst_bytes, mut sst_rows) = (0, 0, 0);
    for number in 0..args.regions {
        let region = RegionId::new(CPU_TABLE, u32::try_from(number).unwrap_or(0));
        if let Ok(stats) = engine.region_stats(region) {
            files += stats.num_files;
            sst_bytes += stats.file_bytes;
            sst_rows += stats.file_rows;
        }
    }
    let wal_on_disk = dir_size(&config.wal_dir());
    let wal_written = metric_sum(&registry, "strata_wal_bytes_total") as u64;
    let stalls = metric_sum(&registry, "strata_write_stall_total");
    let flushes = metric_sum(&registry, "strata_flush_requests_total");
    let stopped = engine
        .stop()
        .await
        .map_err(|e| format!("stop the engine: {e}"));
    if let Some(message) = failure_summary(first_error, flush_error, stopped.err(), rows) {
        return Err(message);
    }

    let per_row = |bytes: u64, rows: u64| bytes as f64 / rows.max(1) as f64;
    outln!(
        "strata ingest: done{}",
        if interrupted { " (interrupted)" } else { "" }
    );
    outln!("  rows acknowledged   {rows}");
    outln!(
        "  ingest rate         {:.0} rows/s over {:.1}s",
        rows as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed.as_secs_f64()
    );
    outln!("  final flush         {:.2}s", flush_time.as_secs_f64());
    outln!(
        "  WAL                 {} written ({:.1} B/row); {} on disk (segments the flushes made obsolete are deleted or kept for reuse)",
        bytesize::ByteSize(wal_written),
        per_row(wal_written, rows),
        bytesize::ByteSize(wal_on_disk)
    );
    outln!(
        "  SST files           {files} files, {} ({:.1} B/row over {sst_rows} rows)",
        bytesize::ByteSize(sst_bytes),
        per_row(sst_bytes, sst_rows)
    );
    outln!(
        "  stalls              {stalls:.0} stalled requests; longest write {:.1} ms",
        longest_write.load(Ordering::Relaxed) as f64 / 1000.0
    );
    outln!("  flushes requested   {flushes:.0}");
    let retried = retried.load(Ordering::Relaxed);
    if retried > 0 {
        outln!("  rejected, retried   {retried} writes (memory was over the reject limit)");
    }
    outln!(
        "  peak memtables      {} (budget {})",
        bytesize::ByteSize(peak_memtables.load(Ordering::Relaxed) as u64),
        config.global_write_buffer_size
    );
    outln!(
        "  next run continues  at epoch {}",
        start_epoch + done_epochs
    );
    outln!(
        "look at the data:    strata scan --data-dir {}{} --region {CPU_TABLE}.0 --limit 10",
        data_dir.display(),
        args.engine.repeated_flags()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{failure_summary, readable_rate};

    #[test]
    fn a_failed_write_is_reported_first_with_the_acknowledged_rows_and_later_failures_after_it() {
        assert_eq!(failure_summary(None, None, None, 7), None);
        let write = Some("write to region 1024.0: disk full".to_string());
        let flush = Some("flush region 1024.0: disk full".to_string());
        let stop = Some("stop the engine: WAL poisoned".to_string());
        assert_eq!(
            failure_summary(write.clone(), flush.clone(), stop.clone(), 1200).unwrap(),
            "write to region 1024.0: disk full (1200 rows were acknowledged before it; the WAL \
             holds them for the next open); then flush region 1024.0: disk full; then stop the \
             engine: WAL poisoned"
        );
        assert_eq!(
            failure_summary(None, flush, None, 5).unwrap(),
            "flush region 1024.0: disk full (5 rows were acknowledged; the WAL holds them for \
             the next open)"
        );
        assert!(
            failure_summary(write, None, None, 0)
                .unwrap()
                .contains("0 rows")
        );
    }

    #[test]
    fn rates_read_as_people_say_them() {
        assert_eq!(readable_rate(876_211.188_6), "876 K rows/s");
        assert_eq!(readable_rate(1_234_567.0), "1.2 M rows/s");
        assert_eq!(readable_rate(999.4), "999 rows/s");
        assert_eq!(readable_rate(f64::NAN), "0 rows/s");
    }
}
