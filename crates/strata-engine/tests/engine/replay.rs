//! Opening a region whose WAL holds more than the memory budget: the replay flushes
//! midway and the open stays within the budget.

use std::sync::Arc;

use strata_buffer::testing::ForcedWriteBuffer;
use strata_engine::{RegionId, ReleaseNotifier, WriteBufferManagerImpl};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_larger_than_the_budget_replays_within_it_by_flushing_midway() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 30);
    // Written under a large budget, never flushed: everything stays in the WAL.
    let mut large = env.config();
    large.compaction.enabled = false;
    let engine = env.engine_with(large.clone()).await;
    create(&engine, region).await;
    let mut written = 0;
    for ts in 0..400 {
        put(&engine, region, 0..1_000, 1_000 * ts, ts as f64).await;
        written += 1_000;
    }
    let in_memtables = engine.memory_usage();
    assert!(in_memtables >= 4 << 20, "{in_memtables} bytes in memtables");
    engine.stop().await.unwrap();

    // Reopened with a budget a quarter of that.
    let budget = in_memtables / 4;
    let mut small = large.clone();
    small.global_write_buffer_size = bytesize::ByteSize(budget as u64);
    let tracking = Arc::new(ForcedWriteBuffer::new(
        WriteBufferManagerImpl::new(budget, budget * 2, ReleaseNotifier::new()).unwrap(),
    ));
    let engine = env
        .builder(small.clone())
        .write_buffer_manager(tracking.clone())
        .build()
        .await
        .unwrap();
    engine.open(region).await.unwrap();
    let peak = tracking.peak();
    assert!(
        peak <= budget,
        "replay charged {peak} bytes, the budget is {budget} (the WAL held {in_memtables})"
    );
    let stats = engine.region_stats(region).unwrap();
    assert!(stats.num_files > 0, "the replay flushed");
    assert!(stats.flushed_entry_id > 0);
    assert_eq!(scan(&engine, region).await.len(), written);
    engine.stop().await.unwrap();

    // The flushes obsoleted what they covered: the next open replays only the rest, and
    // still finds every row.
    let engine = env.engine_with(small).await;
    engine.open(region).await.unwrap();
    assert!(engine.memory_usage() <= budget);
    assert_eq!(scan(&engine, region).await.len(), written);
    engine.stop().await.unwrap();
}
