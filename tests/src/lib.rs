//! Strata's cross-crate reliability suites live in this crate's `tests/` directory
//! (`bad_input`, `hostile_names`, `corrupt_files`, `crash`, `model`, `object_store_faults`,
//! `overload`; see `docs/reliability.md`). This library holds what they share: the seed and
//! stress knobs every randomized suite reads, the small `host` / `ts` / `v` schema most
//! of them write, and the crash suites' writer child and checker ([`crash`]).

pub mod crash;

use strata_engine::{
    ColumnDataType, ColumnSchema, Engine, RegionId, RegionMetadata, RegionMetadataBuilder,
    ScanRequest,
};

/// The run's seed: `SEED` from the environment (`cargo xtask ci` sets it and prints it),
/// else `default`. Every randomized suite prints the seed it used.
pub fn seed(default: u64) -> u64 {
    env_u64("SEED", default)
}

/// The seeded random generator of every randomized suite (PCG: small, fast, replayable
/// from its seed). Draw with [`RngExt`]`::random_range` and friends.
pub fn rng(seed: u64) -> rand_pcg::Pcg64Mcg {
    use rand::SeedableRng;
    rand_pcg::Pcg64Mcg::seed_from_u64(seed)
}

/// A number in `0..n` (`0` when `n` is 0).
pub fn below(rng: &mut impl rand::Rng, n: u64) -> u64 {
    use rand::RngExt;
    rng.random_range(0..n.max(1))
}

pub use rand::RngExt;

/// The case multiplier: `STRATA_STRESS` (20 under `cargo xtask stress`), else 1.
pub fn stress() -> u64 {
    env_u64("STRATA_STRESS", 1)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A region schema with a `host` tag, a millisecond `ts` and an `i64` field `v`.
pub fn host_ts_v(region: RegionId) -> RegionMetadata {
    RegionMetadataBuilder::new(region)
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("v", ColumnDataType::Int64))
        .build()
        .unwrap_or_else(|e| unreachable!("the fixed test schema is valid: {e}"))
}

/// Rows a full scan of `region` returns (after deduplication); panics if the scan fails.
pub async fn count_rows(engine: &Engine, region: RegionId) -> usize {
    engine
        .scan_to_vec(region, ScanRequest::default())
        .await
        .unwrap_or_else(|e| panic!("scan of {region}: {e}"))
        .iter()
        .map(|batch| batch.num_rows())
        .sum()
}
