//! Property tests of the embedding, written with Strata's test kit alone
//! (`strata_engine::testing`, feature `testing`; proptest comes re-exported from it): random
//! schemas and operation sequences — puts and deletes with repeated keys, flushes,
//! compactions, alters, TTLs on a manual clock, truncates, reopens, restarts, drops —
//! applied to a test engine and to the reference model, every region compared after every
//! step. Once with the kit's memory log, once with our own `CountingLog`.
//!
//! `PROPTEST_RNG_SEED` replays a run (`cargo xtask ci` sets it to its printed seed);
//! `STRATA_STRESS` multiplies the case counts.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use strata_engine::testing::proptest::prelude::*;
use strata_engine::testing::{Mix, TableSchema, TestEngine, strategies};
use strata_example_downstream::CountingLog;

/// `base` cases, times `STRATA_STRESS` (20 under `cargo xtask stress`).
fn cases(base: u32) -> u32 {
    let stress: u32 = std::env::var("STRATA_STRESS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    base * stress
}

/// Proptest bodies are synchronous: each case runs the engine on a runtime of its own.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(32), ..ProptestConfig::default() })]

    #[test]
    fn the_engine_matches_the_reference_model(
        (schema, ops) in strategies::scenario(3, Mix::default(), 1..40)
    ) {
        runtime().block_on(async {
            let mut engine = TestEngine::builder().schema(schema).regions(3).build().await?;
            let mut model = engine.model();
            engine.run(&mut model, &ops).await?;
            engine.stop().await
        })?;
    }

    #[test]
    fn our_log_store_loses_nothing_across_reopens_and_restarts(
        ops in strategies::ops(&TableSchema::host_ts_v(), 2, &Mix::default(), 1..30)
    ) {
        let log = Arc::new(CountingLog::default());
        runtime().block_on(async {
            let mut engine = TestEngine::builder()
                .regions(2)
                .log_store(log.clone())
                .build()
                .await?;
            let mut model = engine.model();
            engine.run(&mut model, &ops).await?;
            engine.stop().await
        })?;
    }
}
