//! Region roles in one process: two engines (their own data homes and WALs) on one
//! shared store directory, a manual clock. The hand-offs between processes are in
//! `tests/tests/handoff.rs`.

use std::time::Duration;

use strata_engine::{Clock, Engine, EngineBuilder, ErrorKind, RegionId, RegionRole};

use crate::common::{TestEnv, create, put, scan, within};

const REGION: RegionId = RegionId::new(3, 1);

/// A second engine on `env`'s store directory with its own data home and WAL.
async fn second_engine(env: &TestEnv) -> Engine {
    second_engine_at(env, "second").await
}

/// Another engine on `env`'s store directory, its data home and WAL under `home`.
async fn second_engine_at(env: &TestEnv, home: &str) -> Engine {
    let mut config = env.config();
    config.data_home = env.dir.path().join(home);
    let store = strata_engine::ObjectStoreConfig::Fs {
        root: env.dir.path().to_path_buf(),
    }
    .build()
    .unwrap();
    EngineBuilder::new(config)
        .object_store(store)
        .clock(env.clock.clone())
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_refuses_writes_until_renewed() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    create(&engine, REGION).await;
    let now = env.clock.now_millis();
    engine.renew_lease(REGION, now + 1_000).unwrap();
    put(&engine, REGION, 0..2, 1, 1.0).await;
    env.clock.advance(Duration::from_millis(1_000));
    let error = engine
        .write(strata_engine::WriteRequest::put(
            REGION,
            crate::common::rows(0..2, 2, 1.0),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotLeader, "{error}");
    assert!(error.kind().is_retryable());
    assert!(error.to_string().contains("lease"), "{error}");
    engine.renew_lease(REGION, now + 5_000).unwrap();
    put(&engine, REGION, 0..2, 2, 1.0).await;
    assert_eq!(scan(&engine, REGION).await.len(), 4);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrading_region_refuses_writes_and_a_rollback_takes_them_again_under_a_new_epoch() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    create(&engine, REGION).await;
    put(&engine, REGION, 0..3, 1, 1.0).await;
    let downgraded = engine.downgrade(REGION).await.unwrap();
    assert_eq!(engine.region_role(REGION).unwrap(), RegionRole::Downgrading);
    let stats = engine.region_stats(REGION).unwrap();
    assert_eq!(
        stats.flushed_entry_id, downgraded.last_entry_id,
        "all flushed"
    );
    assert_eq!(stats.memtable_bytes, 0);
    let error = engine
        .write(strata_engine::WriteRequest::put(
            REGION,
            crate::common::rows(0..1, 2, 1.0),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotLeader, "{error}");
    assert!(error.to_string().contains("region 3.1"), "{error}");
    assert_eq!(engine.leader_epoch(REGION).await.unwrap(), 0);
    engine.set_role(REGION, RegionRole::Leader).await.unwrap();
    assert_eq!(engine.leader_epoch(REGION).await.unwrap(), 1);
    put(&engine, REGION, 0..1, 2, 1.0).await;
    assert_eq!(scan(&engine, REGION).await.len(), 4);
    engine.stop().await.unwrap();
}

/// A leader paused by `set_role(Follower)` and resumed with nobody in between keeps its
/// unflushed rows — also across a restart, which replays them from its WAL (the new
/// epoch must not declare their entries void).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_and_resume_keeps_unflushed_rows_in_memory_and_in_the_wal() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    create(&engine, REGION).await;
    put(&engine, REGION, 0..3, 1, 1.0).await;
    engine.flush(REGION).await.unwrap();
    put(&engine, REGION, 0..3, 2, 2.0).await;
    engine.set_role(REGION, RegionRole::Follower).await.unwrap();
    engine.set_role(REGION, RegionRole::Leader).await.unwrap();
    put(&engine, REGION, 0..3, 3, 3.0).await;
    let before = scan(&engine, REGION).await;
    assert_eq!(before.len(), 9);
    engine.stop().await.unwrap();
    drop(engine);
    let engine = env.engine().await;
    engine.open(REGION).await.unwrap();
    assert_eq!(scan(&engine, REGION).await, before);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_installs_what_its_leader_commits_on_sync_and_on_the_poll() {
    let env = TestEnv::new();
    // Files the leader's compactions remove linger (as by default): the follower may
    // still read them until it syncs.
    let mut config = env.config();
    config.removed_file_lingering = Duration::from_secs(3600);
    let leader = env.engine_with(config).await;
    create(&leader, REGION).await;
    let follower = second_engine(&env).await;
    follower
        .open_as(REGION, RegionRole::Follower)
        .await
        .unwrap();
    assert_eq!(follower.region_role(REGION).unwrap(), RegionRole::Follower);
    // Unflushed rows are the leader's alone.
    put(&leader, REGION, 0..4, 1, 1.0).await;
    assert!(scan(&follower, REGION).await.is_empty());
    leader.flush(REGION).await.unwrap();
    let version = leader
        .downgrade(REGION)
        .await
        .map(|d| d.manifest_version)
        .unwrap();
    leader.set_role(REGION, RegionRole::Leader).await.unwrap();
    // A sync asked for a version nobody committed yet fails, retryably.
    let error = follower.sync(REGION, version + 10).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RegionState, "{error}");
    assert!(error.kind().is_retryable());
    assert!(follower.sync(REGION, version).await.unwrap() >= version);
    assert_eq!(scan(&follower, REGION).await, scan(&leader, REGION).await);
    // Writes to a follower are refused, naming the reason.
    let error = follower
        .write(strata_engine::WriteRequest::put(
            REGION,
            crate::common::rows(0..1, 9, 1.0),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotLeader, "{error}");
    // The background poll installs the next flush once the interval passes.
    put(&leader, REGION, 0..4, 2, 2.0).await;
    leader.flush(REGION).await.unwrap();
    let wanted = leader.region_stats(REGION).unwrap().file_rows;
    // One poll interval at a time, each given time to run (many steps would also age the
    // leader's lingering deletions past the follower's version: not what this tests).
    let synced = within("the follower poll", async {
        for _ in 0..30 {
            env.clock.advance(Duration::from_secs(1));
            for _ in 0..2_000 {
                if follower.region_stats(REGION).unwrap().file_rows == wanted {
                    return true;
                }
                tokio::task::yield_now().await;
            }
        }
        false
    })
    .await;
    assert!(
        synced,
        "the poll installed the leader's flush within 30 intervals"
    );
    assert_eq!(scan(&follower, REGION).await.len(), 8);
    follower.stop().await.unwrap();
    leader.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_short_of_the_old_leaders_last_entry_stays_a_follower() {
    let env = TestEnv::new();
    let leader = env.engine().await;
    create(&leader, REGION).await;
    put(&leader, REGION, 0..4, 1, 1.0).await;
    let last = leader.region_stats(REGION).unwrap().last_entry_id;
    let follower = second_engine(&env).await;
    follower
        .open_as(REGION, RegionRole::Follower)
        .await
        .unwrap();
    // The leader has not flushed: the follower cannot catch up to its last entry.
    let error = follower.upgrade(REGION, Some(last)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RegionState, "{error}");
    assert!(
        error.to_string().contains("downgrade the old leader"),
        "{error}"
    );
    assert_eq!(follower.region_role(REGION).unwrap(), RegionRole::Follower);
    // After the graceful downgrade it can.
    let downgraded = leader.downgrade(REGION).await.unwrap();
    follower
        .upgrade(REGION, Some(downgraded.last_entry_id))
        .await
        .unwrap();
    assert_eq!(follower.region_role(REGION).unwrap(), RegionRole::Leader);
    assert_eq!(follower.leader_epoch(REGION).await.unwrap(), 1);
    assert_eq!(scan(&follower, REGION).await.len(), 4);
    // The old leader takes the region back without a hand-off (an operator's mistake,
    // or a metadata service that gave up on the other): it reads the newest manifest and
    // commits epoch 2. The other engine still thinks it leads and acknowledges a write,
    // but its flush commit is fenced: it turns follower, and its late rows never show.
    leader.set_role(REGION, RegionRole::Leader).await.unwrap();
    assert_eq!(leader.leader_epoch(REGION).await.unwrap(), 2);
    put(&follower, REGION, 10..12, 3, 3.0).await;
    let error = follower.flush(REGION).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Fenced, "{error}");
    assert_eq!(follower.region_role(REGION).unwrap(), RegionRole::Follower);
    put(&leader, REGION, 0..4, 4, 4.0).await;
    leader.flush(REGION).await.unwrap();
    let rows = scan(&leader, REGION).await;
    assert_eq!(rows.len(), 8);
    assert!(
        rows.keys().all(|(_, ts)| *ts != 3),
        "the fenced rows stay invisible"
    );
    let files = leader.region_files(REGION).unwrap();
    let on_disk = std::fs::read_dir(env.dir.path().join("regions/3/3_0000000001/data"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count();
    assert_eq!(on_disk, files.len(), "the fenced flush's file was deleted");
    follower.stop().await.unwrap();
    leader.stop().await.unwrap();
}

/// An engine that led `REGION` and lost it to `second`'s forced take-over (no hand-off):
/// both engines open on one store, the first still believing it leads.
async fn a_zombie_leader(env: &TestEnv) -> (Engine, Engine) {
    let zombie = env.engine().await;
    create(&zombie, REGION).await;
    put(&zombie, REGION, 0..4, 1, 1.0).await;
    zombie.flush(REGION).await.unwrap();
    let usurper = second_engine(env).await;
    usurper.open_as(REGION, RegionRole::Follower).await.unwrap();
    usurper.upgrade(REGION, None).await.unwrap();
    assert_eq!(zombie.region_role(REGION).unwrap(), RegionRole::Leader);
    (zombie, usurper)
}

/// The fenced engine follows: it acknowledges no write, and its rows never reach the
/// new leader.
async fn assert_follows_and_acknowledges_nothing(zombie: &Engine, usurper: &Engine, what: &str) {
    assert_eq!(
        zombie.region_role(REGION).unwrap(),
        RegionRole::Follower,
        "a fenced {what} leaves the old engine a follower"
    );
    let error = zombie
        .write(strata_engine::WriteRequest::put(
            REGION,
            crate::common::rows(0..2, 9, 9.0),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotLeader, "{what}: {error}");
    usurper.flush(REGION).await.unwrap();
    assert!(
        scan(usurper, REGION).await.keys().all(|(_, ts)| *ts != 9),
        "{what}: nothing of the fenced engine's reaches the new leader"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alter_fenced_by_a_new_leader_leaves_the_old_engine_a_follower() {
    let env = TestEnv::new();
    let (zombie, usurper) = a_zombie_leader(&env).await;
    let schema_version = zombie.region_metadata(REGION).unwrap().schema_version();
    let error = zombie
        .alter(strata_engine::AlterRequest::new(
            REGION,
            schema_version,
            strata_engine::AlterKind::SetOptions {
                changes: vec![strata_engine::RegionOptionChange::Ttl(Some(
                    Duration::from_secs(3_600),
                ))],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Fenced, "{error}");
    assert_follows_and_acknowledges_nothing(&zombie, &usurper, "alter").await;
    assert_eq!(
        usurper.region_options(REGION).unwrap().ttl,
        None,
        "the fenced alter did not reach the manifest"
    );
    zombie.stop().await.unwrap();
    usurper.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_fenced_by_a_new_leader_leaves_the_old_engine_a_follower() {
    let env = TestEnv::new();
    let (zombie, usurper) = a_zombie_leader(&env).await;
    let error = zombie.truncate(REGION).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Fenced, "{error}");
    assert_follows_and_acknowledges_nothing(&zombie, &usurper, "truncate").await;
    assert_eq!(
        scan(&usurper, REGION).await.len(),
        4,
        "the fenced truncate removed nothing"
    );
    zombie.stop().await.unwrap();
    usurper.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_writable_cannot_make_a_follower_or_a_fenced_leader_lead() {
    let env = TestEnv::new();
    let (zombie, usurper) = a_zombie_leader(&env).await;
    // A follower by open: only an upgrade makes it lead.
    let follower = second_engine_at(&env, "third").await;
    follower
        .open_as(REGION, RegionRole::Follower)
        .await
        .unwrap();
    let error = follower.set_writable(REGION, true).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RegionState, "{error}");
    assert!(error.to_string().contains("upgrade"), "{error}");
    assert_eq!(follower.region_role(REGION).unwrap(), RegionRole::Follower);
    // A leader fenced out by a new one follows, and stays so.
    put(&zombie, REGION, 0..2, 5, 5.0).await;
    assert_eq!(
        zombie.flush(REGION).await.unwrap_err().kind(),
        ErrorKind::Fenced
    );
    let error = zombie.set_writable(REGION, true).await.unwrap_err();
    assert!(error.to_string().contains("upgrade"), "{error}");
    assert_eq!(zombie.region_role(REGION).unwrap(), RegionRole::Follower);
    // A region the embedder made read-only comes back.
    usurper.set_writable(REGION, false).await.unwrap();
    assert_eq!(usurper.region_role(REGION).unwrap(), RegionRole::Follower);
    usurper.set_writable(REGION, true).await.unwrap();
    assert_eq!(usurper.region_role(REGION).unwrap(), RegionRole::Leader);
    put(&usurper, REGION, 0..2, 6, 6.0).await;
    // ... but not once it was made a follower by request.
    usurper.set_writable(REGION, false).await.unwrap();
    usurper
        .set_role(REGION, RegionRole::Follower)
        .await
        .unwrap();
    assert!(usurper.set_writable(REGION, true).await.is_err());
    for engine in [zombie, usurper, follower] {
        engine.stop().await.unwrap();
    }
}
