//! Alter, truncate, drop and role changes do their manifest I/O off the worker: a change
//! held mid-way (the listener's gate, where the manifest lock and write would run) does
//! not hold up the other regions of its worker; the changing region's own writes and DDLs
//! wait and land after the change, in order; a change that fails answers its caller and
//! lets what waited go on.

use std::sync::Arc;

use strata_engine::{
    AlterKind, AlterRequest, ColumnDataType, ColumnSchema, Engine, ErrorKind, RegionId, RegionRole,
    Value,
};

use crate::common::{TestEnv, count, create, put, rows, scan, spawn_write, within};

const A: RegionId = RegionId::new(6, 1);
const B: RegionId = RegionId::new(6, 2);

/// An engine of one worker (both regions share it), A with two rows in memory.
async fn one_worker(env: &TestEnv) -> Arc<Engine> {
    let mut config = env.config();
    config.num_workers = 1;
    let engine = env.engine_with(config).await;
    create(&engine, A).await;
    create(&engine, B).await;
    put(&engine, A, 0..2, 1, 1.0).await;
    Arc::new(engine)
}

/// Runs `change` on a task and returns once it is held at the start of its background
/// work.
async fn held<F>(
    env: &TestEnv,
    engine: &Arc<Engine>,
    change: impl FnOnce(Arc<Engine>) -> F,
) -> tokio::task::JoinHandle<strata_engine::Result<()>>
where
    F: Future<Output = strata_engine::Result<()>> + Send + 'static,
{
    let begun = count(&env.listener.changes_begun);
    env.listener.hold_changes();
    let task = tokio::spawn(change(engine.clone()));
    env.listener
        .wait_for("the change to start", begun + 1, |l| {
            count(&l.changes_begun)
        })
        .await;
    task
}

fn write_a(engine: &Arc<Engine>) -> tokio::task::JoinHandle<strata_engine::Result<usize>> {
    spawn_write(engine, A, rows(10..13, 2, 2.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_in_flight_does_not_hold_up_its_workers_other_regions_and_later_writes_land_after_it()
 {
    let env = TestEnv::new();
    let engine = one_worker(&env).await;
    let truncate = held(&env, &engine, |e| async move { e.truncate(A).await }).await;
    // The worker serves B while A's truncate waits mid-way.
    within("a write to B", put(&engine, B, 0..2, 1, 1.0)).await;
    within("B's flush", engine.flush(B)).await.unwrap();
    // A's write and flush wait for the truncate, in order.
    let write = write_a(&engine);
    let flush = tokio::spawn({
        let engine = engine.clone();
        async move { engine.flush(A).await }
    });
    within("B again", put(&engine, B, 2..4, 1, 1.0)).await;
    assert!(!truncate.is_finished() && !write.is_finished() && !flush.is_finished());
    env.listener.release_changes();
    within("the truncate", truncate).await.unwrap().unwrap();
    assert_eq!(within("A's write", write).await.unwrap().unwrap(), 3);
    within("A's flush", flush).await.unwrap().unwrap();
    let a = scan(&engine, A).await;
    assert_eq!(
        a.keys().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        ["host10", "host11", "host12"],
        "the rows before the truncate are gone, the write that waited is kept"
    );
    assert_eq!(scan(&engine, B).await.len(), 4);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alter_and_a_drop_in_flight_leave_other_regions_alone_and_answer_what_waited() {
    let env = TestEnv::new();
    let engine = one_worker(&env).await;
    // A schema change (after a flush of A's rows): the write waiting for it lands after
    // it, checked against the new schema.
    let alter = held(&env, &engine, |e| async move {
        e.alter(AlterRequest::new(
            A,
            0,
            AlterKind::AddColumns {
                columns: vec![
                    ColumnSchema::field("mem", ColumnDataType::Int64)
                        .with_default(Value::Int64(42)),
                ],
            },
        ))
        .await
    })
    .await;
    within("a write to B", put(&engine, B, 0..2, 1, 1.0)).await;
    let write = write_a(&engine);
    within("B again", put(&engine, B, 2..3, 1, 1.0)).await;
    assert!(!alter.is_finished() && !write.is_finished());
    env.listener.release_changes();
    within("the alter", alter).await.unwrap().unwrap();
    assert_eq!(within("A's write", write).await.unwrap().unwrap(), 3);
    assert_eq!(engine.region_stats(A).unwrap().schema_version, 1);
    assert_eq!(scan(&engine, A).await.len(), 5);

    // A drop: the write waiting for it finds the region gone.
    let drop = held(&env, &engine, |e| async move { e.drop_region(A).await }).await;
    within("a write to B", put(&engine, B, 3..4, 1, 1.0)).await;
    let write = write_a(&engine);
    within("B again", put(&engine, B, 4..5, 1, 1.0)).await;
    assert!(!drop.is_finished() && !write.is_finished());
    env.listener.release_changes();
    within("the drop", drop).await.unwrap().unwrap();
    let error = within("A's write", write).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RegionNotFound, "{error}");
    assert_eq!(scan(&engine, B).await.len(), 5);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_fails_answers_its_caller_and_the_writes_that_waited_go_on() {
    let env = TestEnv::new();
    let engine = one_worker(&env).await;
    let truncate = held(&env, &engine, |e| async move { e.truncate(A).await }).await;
    let write = write_a(&engine);
    // A's manifest cannot be written: the truncate fails, nothing is truncated.
    env.faults
        .fail_at_ratio(11, 1.0, &strata_storage::region_manifest_dir(A));
    env.listener.release_changes();
    let error = within("the truncate", truncate).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Storage, "{error}");
    env.faults.clear();
    assert_eq!(within("A's write", write).await.unwrap().unwrap(), 3);
    assert_eq!(
        scan(&engine, A).await.len(),
        5,
        "the old rows and the write"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_in_flight_makes_the_writes_that_waited_fail_not_leader_and_a_stop_answers_a_held_change()
 {
    let env = TestEnv::new();
    let engine = one_worker(&env).await;
    let downgrade = held(&env, &engine, |e| async move {
        e.set_role(A, RegionRole::Downgrading).await
    })
    .await;
    within("a write to B", put(&engine, B, 0..2, 1, 1.0)).await;
    let write = write_a(&engine);
    within("B again", put(&engine, B, 2..3, 1, 1.0)).await;
    assert!(!downgrade.is_finished() && !write.is_finished());
    env.listener.release_changes();
    within("the downgrade", downgrade).await.unwrap().unwrap();
    let error = within("A's write", write).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotLeader, "{error}");
    // A change still held when the engine stops is answered.
    let upgrade = held(&env, &engine, |e| async move {
        e.set_role(A, RegionRole::Leader).await
    })
    .await;
    let write = write_a(&engine);
    engine.stop().await.unwrap();
    let error = within("the upgrade", upgrade).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Stopped, "{error}");
    let error = within("A's write", write).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Stopped, "{error}");
    env.listener.release_changes();
}
