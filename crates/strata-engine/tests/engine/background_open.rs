//! Opens and creates run off the worker: a region replaying its WAL does not hold up the
//! other regions of its worker; requests for the opening region wait for it, and an open
//! that fails answers every one of them.

use std::sync::Arc;

use strata_engine::{Engine, ErrorKind, RegionId, WriteRequest};

use crate::common::{TestEnv, count, create, put, rows, scan, within};

const A: RegionId = RegionId::new(5, 1);
const B: RegionId = RegionId::new(5, 2);

/// An engine of one worker (every region shares it) with rows of `A` left in the WAL.
async fn reopened_with_unflushed_a(env: &TestEnv) -> Engine {
    let mut config = env.config();
    config.num_workers = 1;
    let engine = env.engine_with(config.clone()).await;
    create(&engine, A).await;
    create(&engine, B).await;
    put(&engine, A, 0..4, 1, 1.0).await;
    engine.stop().await.unwrap();
    drop(engine);
    let engine = env.engine_with(config).await;
    engine.open(B).await.unwrap();
    engine
}

/// Starts an open of `A` and returns once it is held at its start (opens stay held until
/// `release_opens`).
async fn held_open_of_a(
    env: &TestEnv,
    engine: &Arc<Engine>,
) -> tokio::task::JoinHandle<strata_engine::Result<()>> {
    let begun = count(&env.listener.opens_begun);
    env.listener.hold_opens();
    let open = tokio::spawn({
        let engine = engine.clone();
        async move { engine.open(A).await }
    });
    env.listener
        .wait_for("A's open to start", begun + 1, |l| count(&l.opens_begun))
        .await;
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_region_does_not_hold_up_its_workers_other_regions_and_its_requests_wait() {
    let env = TestEnv::new();
    let engine = Arc::new(reopened_with_unflushed_a(&env).await);
    let open = held_open_of_a(&env, &engine).await;
    // The worker serves B while A's open is held mid-way.
    within("a write to B", put(&engine, B, 0..2, 1, 1.0)).await;
    assert_eq!(scan(&engine, B).await.len(), 2);
    // Requests for A wait for its open, in order.
    let write = tokio::spawn({
        let engine = engine.clone();
        async move { engine.write(WriteRequest::put(A, rows(0..4, 2, 2.0))).await }
    });
    let flush = tokio::spawn({
        let engine = engine.clone();
        async move { engine.flush(A).await }
    });
    let second_open = tokio::spawn({
        let engine = engine.clone();
        async move { engine.open(A).await }
    });
    within("B again", put(&engine, B, 2..4, 1, 1.0)).await;
    assert!(!open.is_finished() && !write.is_finished() && !flush.is_finished());
    env.listener.release_opens();
    within("A's open", open).await.unwrap().unwrap();
    within("the coalesced open", second_open)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(within("A's write", write).await.unwrap().unwrap(), 4);
    within("A's flush", flush).await.unwrap().unwrap();
    let a = scan(&engine, A).await;
    assert_eq!(a.len(), 8, "the replayed rows and the waiting write");
    assert_eq!(engine.region_stats(A).unwrap().memtable_bytes, 0, "flushed");
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_that_fails_answers_every_request_that_waited_for_it() {
    let env = TestEnv::new();
    let engine = Arc::new(reopened_with_unflushed_a(&env).await);
    let open = held_open_of_a(&env, &engine).await;
    let received = count(&env.listener.requests_received);
    let second_open = tokio::spawn({
        let engine = engine.clone();
        async move { engine.open(A).await }
    });
    let write = tokio::spawn({
        let engine = engine.clone();
        async move { engine.write(WriteRequest::put(A, rows(0..4, 2, 2.0))).await }
    });
    let flush = tokio::spawn({
        let engine = engine.clone();
        async move { engine.flush(A).await }
    });
    within("B meanwhile", put(&engine, B, 0..2, 1, 1.0)).await;
    // The open, write and flush of A wait in the worker (with B's write, four requests).
    env.listener
        .wait_for("A's requests to arrive", received + 4, |l| {
            count(&l.requests_received)
        })
        .await;
    // A's manifest cannot be read: the open fails.
    env.faults
        .fail_at_ratio(7, 1.0, &strata_storage::region_manifest_dir(A));
    env.listener.release_opens();
    let error = within("A's open", open).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Storage, "{error}");
    let error = within("the coalesced open", second_open)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Storage, "{error}");
    let error = within("A's write", write).await.unwrap().unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::Storage,
        "the open's error: {error}"
    );
    let error = within("A's flush", flush).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RegionNotFound, "{error}");
    // Once the store answers again, A opens with its rows.
    env.faults.clear();
    engine.open(A).await.unwrap();
    assert_eq!(scan(&engine, A).await.len(), 4);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_answers_an_open_still_running() {
    let env = TestEnv::new();
    let engine = Arc::new(reopened_with_unflushed_a(&env).await);
    let open = held_open_of_a(&env, &engine).await;
    engine.stop().await.unwrap();
    let error = within("A's open", open).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Stopped, "{error}");
    env.listener.release_opens();
}
