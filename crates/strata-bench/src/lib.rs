//! Strata's benchmark harness. The benchmarks live in `benches/` and are run by
//! `cargo xtask bench`, which writes their Markdown sections to `docs/benchmarks.md`:
//!
//! - `w1`: TSBS cpu-only, 4,000 hosts, batches of 3,000 rows, 2 writers, 4 regions, 10 M
//!   rows — Strata with WAL `always` and `never` next to fjall (sync / no sync), RocksDB's
//!   `db_bench` (`--sync=1/0`, same key and value sizes and batch size) and the physical
//!   limits (raw Parquet encode of the same rows, raw fdatasync at the same group size),
//!   all in one run. A peer that cannot be run is reported as missing.
//! - `w3`: overload — 2 writers into a 64 MiB budget while an OpenDAL layer slows every SST
//!   write, so ingest outruns flushing (per-second throughput, stalls, latency percentiles,
//!   rejects, peak memory against the reject limit) — and reopen: time to open ~1 GiB of
//!   WAL and the replay rate.
//! - `compaction`: compaction throughput against the raw Parquet read + write of the same
//!   rows, row write amplification of a backfill workload, and a scan after 300 small
//!   flushes against the same rows ingested in one run.
//! - `scan`: merge/dedup counts against DuckDB (one thread, same files), full scans against
//!   the raw parquet-rs reader, a 1 % time-range scan, and decoding ahead on two threads,
//!   on a 6-flush and a 300-flush layout.
//! - `handoff`: two engines on one store (local fs, and the loopback S3 server when one is
//!   named) hand a region back and forth 20 times under two writers; the write
//!   unavailability window of each hand-off (p50, max), the downgrade and upgrade times.

use std::path::{Path, PathBuf};

use strata_engine::{CreateRequest, Engine, RegionId};
use strata_workload::CpuWorkload;

/// The id of TSBS cpu region `r` (table 1) in every benchmark.
pub fn cpu_region(r: usize) -> RegionId {
    RegionId::new(1, r as u32)
}

/// Creates the `regions` TSBS cpu regions `cpu_region(0..regions)` with default options.
pub async fn create_cpu_regions(
    engine: &Engine,
    workload: &CpuWorkload,
    regions: usize,
) -> Result<(), strata_engine::Error> {
    for r in 0..regions {
        engine
            .create(CreateRequest::new(workload.region_metadata(cpu_region(r))))
            .await?;
    }
    Ok(())
}

/// A fresh scratch directory `target/bench-scratch/{bench}/{name}` (emptied first), on the
/// repository's disk so every benchmark writes where the others do.
pub fn scratch(bench: &str, name: &str) -> std::io::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/bench-scratch")
        .join(bench)
        .join(name);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A `kB` field of `/proc/self/status` (`VmRSS:`, `VmHWM:`), 0 where there is none.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
