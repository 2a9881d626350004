//! Measures how fast the generator produces rows (it must never be a benchmark's bottleneck).
//!
//! `cargo run --release -p strata-workload --example throughput [hosts] [epochs]`

// Measures wall time: that is the point of a benchmark or a measuring example.
#![allow(clippy::print_stdout, clippy::disallowed_methods)]

use std::time::Instant;

use strata_workload::CpuWorkload;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let hosts = args.next().flatten().unwrap_or(4_000) as usize;
    let epochs = args.next().flatten().unwrap_or(500);
    for float_fields in [false, true] {
        let workload = CpuWorkload::new(hosts, epochs)
            .with_regions(4)
            .with_float_fields(float_fields);
        let started = Instant::now();
        let mut rows = 0usize;
        let mut bytes = 0usize;
        match workload.batches() {
            Ok(batches) => {
                for b in batches {
                    rows += b.batch.num_rows();
                    bytes += b.batch.get_array_memory_size();
                }
            }
            Err(e) => {
                println!("error: {e}");
                return;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{} fields: {rows} rows in {secs:.2}s = {:.2} M rows/s ({:.0} MB/s of Arrow data)",
            if float_fields { "f64" } else { "i64" },
            rows as f64 / secs / 1e6,
            bytes as f64 / secs / 1e6,
        );
    }
}
