//! A deterministic, seeded generator of the TSBS `cpu-only` data set as Arrow batches.
//!
//! [`CpuWorkload`] describes the data set (hosts, epochs, seed, batch size, regions, integer
//! or float fields); [`CpuWorkload::batches`] yields [`WorkloadBatch`]es already in the
//! region schema ([`CpuWorkload::region_metadata`]), so each one is a valid
//! [`WriteRequest`](strata_request::WriteRequest). The same description always yields the
//! same batches, which is what benchmarks, the CLI and the test suites rely on.
//!
//! # Layering
//!
//! Depends on `strata-request` only (for the region schema); it **must never depend on the
//! engine** or any storage crate, so every layer's tests can use it.

mod cpu;
mod tags;

pub use cpu::{
    CpuBatches, CpuWorkload, DEFAULT_START_MILLIS, FIELD_NAMES, TIMESTAMP_NAME, WorkloadBatch,
    WorkloadError,
};
pub use tags::TAG_NAMES;
