//! The write slowdown: between the slowdown threshold and the budget, writes are paced on
//! the engine clock without holding up the worker — never without memory pressure — the
//! pace tightens as memory rises, and it ends when flushes bring memory down.

use std::sync::Arc;

use strata_engine::{Engine, RegionId, WriteBufferManagerImpl, WriteRequest};

use crate::common::*;

const BUDGET: usize = 4 << 20;
/// `write_slowdown_percent = 50` of the budget.
const SOFT: usize = BUDGET / 2;

async fn engine(env: &TestEnv) -> Arc<Engine> {
    let mut config = env.config();
    config.global_write_buffer_size = bytesize::ByteSize(BUDGET as u64);
    config.global_write_buffer_reject_size = Some(bytesize::ByteSize::mib(64));
    config.write_slowdown_percent = 50;
    config.delayed_write_rate = bytesize::ByteSize::mib(8);
    config.compaction.enabled = false;
    let buffer = WriteBufferManagerImpl::new(BUDGET, 64 << 20, env.notifier.clone()).unwrap();
    Arc::new(
        env.builder(config)
            .write_buffer_manager(Arc::new(buffer))
            .build()
            .await
            .unwrap(),
    )
}

/// Puts `hosts` rows at `ts` from another task (so a paced write can be watched waiting).
fn spawn_put(
    engine: &Arc<Engine>,
    region: RegionId,
    hosts: usize,
    ts: i64,
) -> tokio::task::JoinHandle<strata_engine::Result<usize>> {
    let engine = engine.clone();
    tokio::spawn(async move {
        engine
            .write(WriteRequest::put(region, rows(0..hosts, ts, 1.0)))
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_below_the_slowdown_threshold_are_never_delayed() {
    let env = TestEnv::new();
    let engine = engine(&env).await;
    let region = RegionId::new(1, 40);
    create(&engine, region).await;
    let mut ts = 0;
    while engine.memory_usage() < SOFT * 3 / 4 {
        put(&engine, region, 0..500, ts, 1.0).await;
        ts += 1;
    }
    assert!(ts > 3, "only {ts} writes");
    assert_eq!(count(&env.listener.delays), 0);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_the_threshold_wait_on_the_engine_clock_longer_as_memory_rises_until_flushes_land()
 {
    let env = TestEnv::new();
    let engine = engine(&env).await;
    let region = RegionId::new(1, 41);
    create(&engine, region).await;
    // Flushes wait, so memory only rises.
    env.listener.hold_flushes();
    let mut ts = 0;
    while engine.memory_usage() < SOFT {
        put(&engine, region, 0..500, ts, 1.0).await;
        ts += 1;
    }
    assert_eq!(
        count(&env.listener.delays),
        0,
        "no delay below the threshold"
    );
    // Over it: the first write goes at once and starts the pace; each later one waits
    // for the bytes before it at the pace, on the engine clock.
    let mut written = 500 * ts as usize;
    within("first paced write", spawn_put(&engine, region, 2_000, ts))
        .await
        .unwrap()
        .unwrap();
    ts += 1;
    written += 2_000;
    // Time each write's bytes took at the pace: its delay plus how far the clock went
    // past the previous write's release (it moves in whole milliseconds).
    let mut paces = Vec::new();
    let mut overshoot = std::time::Duration::ZERO;
    for _ in 0..6 {
        let before = count(&env.listener.delays);
        let write = spawn_put(&engine, region, 2_000, ts);
        ts += 1;
        written += 2_000;
        env.listener
            .wait_for("the write is paced", before + 1, |l| count(&l.delays))
            .await;
        let delay = std::time::Duration::from_micros(
            env.listener
                .longest_delay_micros
                .swap(0, std::sync::atomic::Ordering::SeqCst) as u64,
        );
        assert!(!delay.is_zero());
        assert!(
            !write.is_finished(),
            "a paced write waits for the engine clock"
        );
        paces.push(delay + overshoot);
        let step = std::time::Duration::from_millis(delay.as_millis() as u64 + 1);
        overshoot = step - delay;
        env.clock.advance(step);
        within("the paced write after the clock moved", write)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        paces.windows(2).skip(1).all(|w| w[1] > w[0]),
        "the pace tightens as memory rises: {paces:?}"
    );
    assert!(engine.memory_usage() < BUDGET, "still below the stall");
    // The flushes land: memory drops under the threshold and writes go at once again.
    // Memory is released when the last holder of a flushed memtable lets go (maybe the
    // flush job, after the worker applied its edit): watch the buffer's release signal.
    let mut released = env.notifier.subscribe();
    env.listener.release_flushes();
    within("memory below the threshold", async {
        while engine.memory_usage() >= SOFT {
            released.changed().await.unwrap();
        }
    })
    .await;
    let before = count(&env.listener.delays);
    for _ in 0..3 {
        within("an unpaced write", spawn_put(&engine, region, 500, ts))
            .await
            .unwrap()
            .unwrap();
        ts += 1;
        written += 500;
    }
    assert_eq!(
        count(&env.listener.delays),
        before,
        "no delay once memory is down"
    );
    assert_eq!(scan(&engine, region).await.len(), written);
    engine.stop().await.unwrap();
}

/// Regression #10 with the slowdown on: four writers overload a 1 MiB budget while the
/// engine clock moves on; memory stays under the reject limit, writes are paced, and
/// every write is acknowledged (and readable) or rejected with a retryable error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_overload_with_the_slowdown_every_write_is_answered_and_memory_stays_bounded() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.global_write_buffer_size = bytesize::ByteSize::mib(1);
    config.global_write_buffer_reject_size = Some(bytesize::ByteSize::mib(2));
    let engine = Arc::new(
        strata_engine::EngineBuilder::new(config)
            .clock(env.clock.clone())
            .listener(Arc::new(Installed(env.listener.clone())))
            .build()
            .await
            .unwrap(),
    );
    let region = RegionId::new(1, 42);
    create(&engine, region).await;
    let writers = spawn_overload_writers(&engine, region);
    // The engine clock moves on while anyone writes (paced writes wait on it).
    let driver = {
        let clock = env.clock.clone();
        let writing: Vec<_> = writers.iter().map(|w| w.abort_handle()).collect();
        tokio::spawn(async move {
            while writing.iter().any(|w| !w.is_finished()) {
                clock.advance(std::time::Duration::from_millis(1));
                tokio::task::yield_now().await;
            }
        })
    };
    let mut acked_rows = 0;
    for writer in writers {
        let (acked, peak) = within("writer", writer).await.unwrap();
        acked_rows += acked;
        assert!(peak < 3 << 20, "memtables reached {peak} bytes");
    }
    driver.await.unwrap();
    assert!(acked_rows > 0);
    assert!(count(&env.listener.delays) > 0, "some writes were paced");
    assert_eq!(scan(&engine, region).await.len(), acked_rows);
    engine.stop().await.unwrap();
}
