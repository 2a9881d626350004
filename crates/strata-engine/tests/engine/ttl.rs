//! Region TTL: scans never return rows older than now − ttl on the engine's clock, in
//! memtables and files alike; the TTL is set at create, changed by alter, kept across a
//! reopen.

use std::time::Duration;

use strata_engine::{
    AlterKind, AlterRequest, Clock, CreateRequest, Engine, RegionId, RegionOptionChange,
    RegionOptions,
};

use crate::common::*;

const HOUR: i64 = 3_600_000;

async fn set_ttl(engine: &Engine, region: RegionId, ttl: Option<Duration>) {
    let schema_version = engine.region_metadata(region).unwrap().schema_version();
    engine
        .alter(AlterRequest::new(
            region,
            schema_version,
            AlterKind::SetOptions {
                changes: vec![RegionOptionChange::Ttl(ttl)],
            },
        ))
        .await
        .unwrap();
}

/// The timestamps a scan returns.
async fn timestamps(engine: &Engine, region: RegionId) -> Vec<i64> {
    scan(engine, region)
        .await
        .keys()
        .map(|(_, ts)| *ts)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_hide_rows_past_the_ttl_in_memtables_and_files_as_the_clock_moves() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    engine
        .create(
            CreateRequest::new(metadata(region))
                .options(RegionOptions::default().ttl(Duration::from_secs(3_600))),
        )
        .await
        .unwrap();
    let now = env.clock.now_millis();
    // Two hours old (expired), half an hour old, and now.
    let (old, recent) = (now - 2 * HOUR, now - HOUR / 2);
    for ts in [old, recent, now] {
        put(&engine, region, 0..1, ts, 1.0).await;
    }
    assert_eq!(timestamps(&engine, region).await, vec![recent, now]);

    // In files as in memory.
    engine.flush(region).await.unwrap();
    assert_eq!(timestamps(&engine, region).await, vec![recent, now]);

    // Time passes: the half-hour-old row expires too; exactly at the edge it is alive.
    env.clock.advance(Duration::from_millis((HOUR / 2) as u64));
    assert_eq!(timestamps(&engine, region).await, vec![recent, now]);
    env.clock.advance(Duration::from_millis(1));
    assert_eq!(timestamps(&engine, region).await, vec![now]);

    // Rows stay in the files until a compaction removes them: without a TTL they are back.
    set_ttl(&engine, region, None).await;
    assert_eq!(timestamps(&engine, region).await, vec![old, recent, now]);

    // A TTL set by alter is kept across a reopen.
    set_ttl(&engine, region, Some(Duration::from_secs(60))).await;
    let newest = env.clock.now_millis();
    put(&engine, region, 0..1, newest, 1.0).await;
    engine.close(region).await.unwrap();
    engine.open(region).await.unwrap();
    assert_eq!(timestamps(&engine, region).await, vec![newest]);
    env.clock.advance(Duration::from_secs(61));
    assert_eq!(timestamps(&engine, region).await, Vec::<i64>::new());
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_narrows_a_requested_time_range_and_never_widens_it() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 1);
    create(&engine, region).await;
    set_ttl(&engine, region, Some(Duration::from_secs(3_600))).await;
    let now = env.clock.now_millis();
    for ts in [now - 3 * HOUR, now - HOUR / 2, now - HOUR / 4, now] {
        put(&engine, region, 0..1, ts, 1.0).await;
    }
    let wanted = strata_engine::ScanRequest::new().time_range(strata_engine::TimeRange {
        start: now - 4 * HOUR,
        end: now - HOUR / 4,
    });
    let rows: usize = engine
        .scan_to_vec(region, wanted)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 2, "the two rows inside both the range and the TTL");
    engine.stop().await.unwrap();
}
