//! WAL append throughput: `FileLogStore` with 1, 2 and 8 concurrent appenders, entry sizes
//! 1 KiB / 64 KiB / 1 MiB, `sync = always` and `never`, next to a raw baseline measured in
//! the same run (the same bytes written to a plain file with one fdatasync per write, one
//! writer), and, at 64 KiB, the physical references for group commit (whole 512 KiB groups
//! per fdatasync, appended and into pre-written blocks). Each case runs twice: on a fresh
//! log (every segment a new file the writes append to) and in the steady state of a log
//! whose regions keep obsoleting what they flushed (every segment a reused reclaimed file,
//! see `recycle_segments`). Prints a Markdown section; `cargo xtask bench` writes it to
//! `docs/benchmarks.md`.
//!
//! `STRATA_BENCH_DIR` picks the scratch directory (default `target/bench-scratch`, on the
//! same disk as the repository).

// Measures wall time: that is the point of a benchmark or a measuring example.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::disallowed_methods
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_wal::{Entry, FileLogStore, FileLogStoreConfig, LogStore, SyncPolicy};

const KIB: usize = 1024;
const SIZES: [(usize, usize); 3] = [(KIB, 3_000), (64 * KIB, 4_000), (1024 * KIB, 200)];
const APPENDERS: [usize; 3] = [1, 2, 8];
/// Alternating rounds measuring the group-commit headline ratio again.
const HEADLINE_ROUNDS: usize = 5;
/// Segment size of the steady-state log (the default).
const STEADY_SEGMENT: u64 = 128 << 20;
/// Each appender of the steady-state log obsoletes its entries about this many bytes
/// behind its newest one (as a region obsoletes what a flush persisted).
const STEADY_LAG: usize = 1 << 20;

/// Which log the WAL cases append to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Log {
    /// A new log: every segment is a new file, and every write appends to it.
    Fresh,
    /// A log in its steady state: regions obsolete what they flushed, reclaimed segment
    /// files are kept and reused, and every segment the measurement writes is reused.
    Steady,
}

impl Log {
    fn label(self) -> &'static str {
        match self {
            Log::Fresh => "FileLogStore, fresh log",
            Log::Steady => "FileLogStore, reused segments",
        }
    }
}

struct Measured {
    entries: usize,
    bytes: usize,
    elapsed: Duration,
    syncs: f64,
    latencies: Vec<Duration>,
    /// Segment files the measured appends created (a steady-state log creates none).
    new_files: usize,
}

impl Measured {
    fn per_sec(&self, n: f64) -> f64 {
        n / self.elapsed.as_secs_f64()
    }
    fn mb_per_sec(&self) -> f64 {
        self.per_sec(self.bytes as f64) / 1e6
    }
    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

fn scratch() -> PathBuf {
    let dir = std::env::var("STRATA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-scratch")
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One writer, `count` writes of `size` bytes, fdatasync after each.
fn raw_baseline(dir: &Path, size: usize, count: usize) -> Measured {
    let path = dir.join("raw-baseline.bin");
    let mut file = std::fs::File::create(&path).unwrap();
    let measured = synced_writes(&mut file, size, count, |file, buf, _| {
        file.write_all(buf).unwrap();
    });
    drop(file);
    std::fs::remove_file(&path).unwrap();
    measured
}

/// One writer, `count` positional writes of `size` bytes into a file whose blocks were
/// written (zero-filled and synced) beforehand, fdatasync after each. Overwriting written
/// blocks changes no file-system metadata, so each fdatasync skips the journal commit that
/// an append needs: this is what a log with pre-written segments could reach;
/// `FileLogStore` does not pre-write (see `docs/benchmarks.md`).
fn raw_prewritten(dir: &Path, size: usize, count: usize) -> Measured {
    use std::os::unix::fs::FileExt;
    let path = dir.join("raw-prewritten.bin");
    let mut file = std::fs::File::create(&path).unwrap();
    let zeros = vec![0u8; size];
    for _ in 0..count {
        file.write_all(&zeros).unwrap();
    }
    file.sync_all().unwrap();
    let measured = synced_writes(&mut file, size, count, |file, buf, i| {
        file.write_all_at(buf, (i * size) as u64).unwrap();
    });
    drop(file);
    std::fs::remove_file(&path).unwrap();
    measured
}

/// Times `count` calls of `write` (with a `size`-byte buffer and the call's index), each
/// followed by an fdatasync of `file`.
fn synced_writes(
    file: &mut std::fs::File,
    size: usize,
    count: usize,
    mut write: impl FnMut(&mut std::fs::File, &[u8], usize),
) -> Measured {
    let buf = vec![0xA5u8; size];
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let t = Instant::now();
        write(file, &buf, i);
        file.sync_data().unwrap();
        latencies.push(t.elapsed());
    }
    Measured {
        entries: count,
        bytes: size * count,
        elapsed: started.elapsed(),
        syncs: count as f64,
        latencies,
        new_files: 0,
    }
}

/// Appends `per_task` entries of `data` from each of `appenders` tasks (task `t` writes
/// region `t`); with `obsolete_every`, each task obsoletes its entries that many behind
/// after every that many appends. Returns every append's latency.
async fn append_from_tasks(
    store: &Arc<FileLogStore>,
    appenders: usize,
    per_task: usize,
    data: &Bytes,
    obsolete_every: Option<u64>,
) -> Vec<Duration> {
    let tasks: Vec<_> = (0..appenders)
        .map(|task| {
            let (store, data) = (store.clone(), data.clone());
            tokio::spawn(async move {
                let region_id = task as u64;
                let first = store.last_entry_id(region_id).unwrap_or(0) + 1;
                let mut latencies = Vec::with_capacity(per_task);
                for entry_id in first..first + per_task as u64 {
                    let entry = Entry {
                        region_id,
                        entry_id,
                        data: data.clone(),
                    };
                    let t = Instant::now();
                    store.append_batch(vec![entry]).await.unwrap();
                    latencies.push(t.elapsed());
                    if let Some(every) = obsolete_every
                        && entry_id % every == 0
                    {
                        store.obsolete(region_id, entry_id - every).await.unwrap();
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(appenders * per_task);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    latencies
}

async fn strata(
    dir: &Path,
    size: usize,
    count: usize,
    appenders: usize,
    sync: SyncPolicy,
    log: Log,
) -> Measured {
    let log_dir = dir.join("wal");
    let _ = std::fs::remove_dir_all(&log_dir);
    let registry = prometheus::Registry::new();
    let mut config = FileLogStoreConfig::default();
    config.sync = sync;
    config.max_record_size = 8 << 20;
    let mut obsolete_every = None;
    if log == Log::Steady {
        config.segment_size = STEADY_SEGMENT;
        config.recycle_segments = 2;
        obsolete_every = Some((STEADY_LAG / size).max(1) as u64);
    }
    let store = Arc::new(FileLogStore::open(&log_dir, config, Some(&registry)).unwrap());
    if log == Log::Steady {
        // Warm-up: one writer of 1 MiB entries, each obsoleted at once, through three
        // segments; from the third on, segments are reused files.
        let warm = Bytes::from(vec![0x3Cu8; 1 << 20]);
        let entries = 3 * (STEADY_SEGMENT >> 20) as usize;
        append_from_tasks(&store, 1, entries, &warm, Some(1)).await;
        store.obsolete(0, entries as u64).await.unwrap();
    }
    let syncs_so_far = || {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == "strata_wal_syncs_total")
            .map(|f| f.get_metric()[0].get_counter().get_value())
            .unwrap_or(0.0)
    };
    let syncs_before = syncs_so_far();
    let files_before = segment_files(&log_dir);
    let data = Bytes::from(vec![0x5Au8; size]);
    let per_task = count / appenders;
    let started = Instant::now();
    let latencies = append_from_tasks(&store, appenders, per_task, &data, obsolete_every).await;
    let elapsed = started.elapsed();
    let syncs = syncs_so_far() - syncs_before;
    let new_files = segment_files(&log_dir).difference(&files_before).count();
    store.stop().await.unwrap();
    drop(store);
    std::fs::remove_dir_all(&log_dir).unwrap();
    Measured {
        entries: per_task * appenders,
        bytes: per_task * appenders * size,
        elapsed,
        syncs,
        latencies,
        new_files,
    }
}

/// Inodes of the log's segment files (in use or kept for reuse).
fn segment_files(log_dir: &Path) -> std::collections::BTreeSet<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(log_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().contains(".wal"))
        .map(|e| e.metadata().unwrap().ino())
        .collect()
}

fn fmt_size(size: usize) -> String {
    if size >= 1024 * KIB {
        format!("{} MiB", size / (1024 * KIB))
    } else {
        format!("{} KiB", size / KIB)
    }
}

fn fmt_us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn row(case: &str, appenders: usize, size: usize, sync: &str, m: &mut Measured, raw_mb: f64) {
    // A fresh log creates its segment files; a steady-state one should reuse them all.
    let case = match m.new_files {
        n if n > 0 && case == Log::Steady.label() => format!("{case} ({n} new files)"),
        _ => case.to_string(),
    };
    println!(
        "| {case} | {appenders} | {} | {sync} | {:.0} | {:.1} | {:.0} | {} | {} | {:.2}× |",
        fmt_size(size),
        m.per_sec(m.entries as f64),
        m.mb_per_sec(),
        m.per_sec(m.syncs),
        fmt_us(m.percentile(0.5)),
        fmt_us(m.percentile(0.99)),
        m.mb_per_sec() / raw_mb,
    );
}

fn main() {
    let dir = scratch();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("## WAL append throughput (`strata-wal`, bench `append`)\n");
    println!(
        "Each row appends single-entry batches, one region per appender. \"vs raw\" divides MB/s by the raw baseline of the same entry size from this run (one writer, `write` + `fdatasync` per entry on a plain file).\n"
    );
    println!(
        "| case | appenders | entry | sync | entries/s | MB/s | syncs/s | p50 | p99 | vs raw |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // The 8 × 64 KiB `always` ratio: (fresh log, reused segments).
    let mut headline = (None, None);
    let mut ceilings = None;
    for (size, count) in SIZES {
        let mut raw = raw_baseline(&dir, size, count);
        let raw_mb = raw.mb_per_sec();
        row(
            "raw file + fdatasync",
            1,
            size,
            "per write",
            &mut raw,
            raw_mb,
        );
        if size == 64 * KIB {
            // The physical references for group commit at this size: one writer writing a
            // whole group of eight entries per fdatasync, appended (as the WAL does) and
            // into pre-written blocks.
            let group = 8 * size;
            let groups = count / 8;
            let mut appended = raw_baseline(&dir, group, groups);
            row(
                "reference: raw file, 8-entry group + fdatasync",
                1,
                group,
                "per write",
                &mut appended,
                raw_mb,
            );
            let mut prewritten = raw_prewritten(&dir, group, groups);
            row(
                "reference: pre-written file, 8-entry group + fdatasync",
                1,
                group,
                "per write",
                &mut prewritten,
                raw_mb,
            );
            ceilings = Some((
                appended.mb_per_sec() / raw_mb,
                prewritten.mb_per_sec() / raw_mb,
            ));
        }
        for log in [Log::Fresh, Log::Steady] {
            for sync in [SyncPolicy::Always, SyncPolicy::Never] {
                for appenders in APPENDERS {
                    let mut m = runtime.block_on(strata(&dir, size, count, appenders, sync, log));
                    row(
                        log.label(),
                        appenders,
                        size,
                        &sync.to_string(),
                        &mut m,
                        raw_mb,
                    );
                    if size == 64 * KIB && appenders == 8 && sync == SyncPolicy::Always {
                        let ratio = m.mb_per_sec() / raw_mb;
                        match log {
                            Log::Fresh => headline.0 = Some(ratio),
                            Log::Steady => headline.1 = Some(ratio),
                        }
                    }
                    eprintln!("done: {} appenders={appenders} sync={sync}", fmt_size(size));
                }
            }
        }
    }
    // This disk's speed drifts within seconds, and the two sides of the headline ratio are
    // measured at different moments of the table above. Measure it again in alternating
    // rounds, each ratio from back-to-back measurements, and report them all.
    let mut fresh_rounds = Vec::new();
    let mut steady_rounds = Vec::new();
    for _ in 0..HEADLINE_ROUNDS {
        let raw = raw_baseline(&dir, 64 * KIB, 1_000).mb_per_sec();
        for (log, rounds) in [
            (Log::Fresh, &mut fresh_rounds),
            (Log::Steady, &mut steady_rounds),
        ] {
            let wal = runtime
                .block_on(strata(&dir, 64 * KIB, 2_000, 8, SyncPolicy::Always, log))
                .mb_per_sec();
            rounds.push(wal / raw);
        }
    }
    let summary = |rounds: &mut Vec<f64>| {
        let listed: Vec<String> = rounds.iter().map(|r| format!("{r:.2}×")).collect();
        rounds.sort_by(f64::total_cmp);
        format!(
            "{}; median **{:.2}×**, min {:.2}×, max {:.2}×",
            listed.join(", "),
            rounds[rounds.len() / 2],
            rounds[0],
            rounds[rounds.len() - 1]
        )
    };
    if let ((Some(fresh), Some(steady)), Some((appended, prewritten))) = (headline, ceilings) {
        println!(
            "\nGroup commit: 8 appenders × 64 KiB with `sync = always` reach **{steady:.2}×** the raw single-writer fdatasync baseline in a log's steady state (reused segment files), and {fresh:.2}× on a fresh log whose segments are new files. In the same run, one writer writing whole 512 KiB groups (8 × 64 KiB, one fdatasync each) reaches {appended:.2}× appending to a file and {prewritten:.2}× into pre-written blocks: an fdatasync after an append must also commit the file system's journal (the file grew), one after overwriting written blocks need not — which is what reusing segment files buys.",
        );
        println!(
            "\nMeasured again in {HEADLINE_ROUNDS} alternating rounds (raw baseline, then the WAL on a fresh log, then in reused segments; 64 KiB, back to back): reused segments {}; fresh log {}.",
            summary(&mut steady_rounds),
            summary(&mut fresh_rounds),
        );
    }
}
