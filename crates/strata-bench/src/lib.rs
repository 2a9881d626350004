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
