//! Model-based test of the engine: seeded random region schemas (1–3 tags; ms, µs or ns
//! time index; fields of every type, some not null) and sequences of puts and deletes
//! (duplicate keys within and across batches, null tags and fields), flushes, compactions
//! (also automatic ones racing the steps), alters (add a field — a name the region has
//! is refused — set or remove a TTL), a manual clock moving on, truncates, close/open,
//! engine restarts over a shared log and drop/create (operations on a dropped region are
//! refused) across three regions on two workers, checked after every step against the
//! test kit's reference model by scanning every region (rows past a region's TTL must not
//! be returned).
//!
//! The engine, the model and the operation strategies are `strata_engine::testing`'s (the
//! kit downstream projects use); this suite draws from them with its own seeded runner so
//! `SEED` replays a run and a failure prints the whole history. `STRATA_STRESS`
//! multiplies the cases.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::collections::BTreeMap;

use strata_engine::testing::proptest::strategy::{Strategy, ValueTree};
use strata_engine::testing::proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use strata_engine::testing::{Mix, Op, TableSchema, TestEngine, strategies};

const REGIONS: usize = 3;
const STEPS: usize = 25;

/// The case's schema and operations, drawn from the kit's strategies by a runner seeded
/// with `seed` (ChaCha: the same seed draws the same case on every machine).
fn draw(seed: u64) -> (TableSchema, Vec<Op>) {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let word = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    strategies::scenario(REGIONS, Mix::default(), STEPS)
        .new_tree(&mut runner)
        .expect("the kit's strategies always draw")
        .current()
}

/// The operation's kind, for the summary.
fn kind(op: &Op) -> &'static str {
    match op {
        Op::Put { .. } => "put",
        Op::Delete { .. } => "delete",
        Op::Flush { .. } => "flush",
        Op::Compact { .. } => "compact",
        Op::Truncate { .. } => "truncate",
        Op::AddField { .. } => "add field",
        Op::SetTtl { .. } => "set ttl",
        Op::AdvanceClock { .. } => "advance clock",
        Op::Reopen { .. } => "reopen",
        Op::Restart => "restart",
        Op::Drop { .. } => "drop",
        Op::Create { .. } => "create",
        _ => "other",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operation_sequences_match_the_reference_model() {
    let seed = strata_tests::seed(0x0de1_5eed);
    let cases = 500 * strata_tests::stress();
    eprintln!("engine model: SEED={seed}, {cases} cases");
    // Per kind: operations run, and how many met a region that did not exist.
    let mut tally: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for case in 0..cases {
        let (schema, ops) = draw(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut engine = TestEngine::builder()
            .schema(schema.clone())
            .regions(REGIONS)
            .table_id(41)
            .build()
            .await
            .unwrap();
        let mut model = engine.model();
        let mut shadow = engine.model();
        for op in &ops {
            let entry = tally.entry(kind(op)).or_default();
            entry.0 += 1;
            if op.region().is_some_and(|r| !shadow.exists(r)) {
                entry.1 += 1;
            }
            shadow.apply(op);
        }
        if let Err(failure) = engine.run(&mut model, &ops).await {
            panic!("case {case} (SEED={seed}), schema {schema:?}: {failure}");
        }
        engine.stop().await.unwrap();
    }
    eprintln!("engine model: {cases} cases, all matched; per kind (run, on a missing region):");
    for (kind, (run, missing)) in &tally {
        eprintln!("  {kind}: {run} ({missing})");
    }
}
