//! Compares a memtable's estimated bytes with what the process really allocated for it.
//!
//! `cargo run --release -p strata-storage --example memtable_memory [hosts] [epochs]`
//! (default 4,000 hosts × 250 epochs = 1 M TSBS rows, integer and float fields).

// Measures wall time: that is the point of a benchmark or a measuring example.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::disallowed_methods)]

use std::alloc::System;
use std::sync::Arc;
use std::time::Instant;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use strata_request::{OpType, RegionId};
use strata_storage::{KeyCodec, ScanRequest, TimeSeriesMemtable};
use strata_workload::CpuWorkload;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let hosts = args.next().flatten().unwrap_or(4_000) as usize;
    let epochs = args.next().flatten().unwrap_or(250);
    println!(
        "| fields | rows | estimated bytes | allocated bytes | estimate / allocated | bytes/row | insert rows/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for float_fields in [false, true] {
        let workload = CpuWorkload::new(hosts, epochs).with_float_fields(float_fields);
        let metadata = Arc::new(workload.region_metadata(RegionId::new(1, 0)));
        let codec = Arc::new(KeyCodec::new(metadata).unwrap());
        // Count from before generation: the memtable keeps the batches' timestamp and field
        // buffers. Generation is excluded from the insert time.
        let region = Region::new(GLOBAL);
        let batches: Vec<_> = workload.batches().unwrap().map(|b| b.batch).collect();
        let memtable = TimeSeriesMemtable::new(1, codec, None);
        let started = Instant::now();
        let mut sequence = 1;
        for batch in &batches {
            memtable.write(batch, OpType::Put, sequence).unwrap();
            sequence += batch.num_rows() as u64;
        }
        let insert_secs = started.elapsed().as_secs_f64();
        // The tag columns go with the batches, as the write path drops them after inserting.
        drop(batches);
        let change = region.change();
        // Live bytes now minus live bytes before: what the memtable holds.
        // (stats_alloc folds reallocations into bytes_allocated / bytes_deallocated.)
        let allocated = change
            .bytes_allocated
            .saturating_sub(change.bytes_deallocated);
        let stats = memtable.stats();
        let rows = stats.num_rows;
        println!(
            "| {} | {rows} | {} | {} | {:.2} | {:.0} | {:.2} M |",
            if float_fields { "f64" } else { "i64" },
            stats.estimated_bytes,
            allocated,
            stats.estimated_bytes as f64 / allocated as f64,
            allocated as f64 / rows as f64,
            rows as f64 / insert_secs / 1e6,
        );
        // Sanity: everything comes back.
        let read: usize = memtable
            .iter(ScanRequest::default())
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert_eq!(read, rows);
        drop(memtable);
        let left = region.change();
        assert!(
            left.bytes_allocated.abs_diff(left.bytes_deallocated) < 1 << 20,
            "dropping the memtable returns its memory"
        );
    }
}
