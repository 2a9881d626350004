//! One writer per data directory, and read-only engines beside it: the lock refuses a
//! second read-write engine and names the holder; a read-only engine sees a consistent
//! prefix, refuses every change, and leaves every byte of the directory as it was.
//! (Between processes: `strata-cli/tests/one_writer.rs`.)

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_engine::{
    AlterKind, AlterRequest, CreateRequest, EngineBuilder, ErrorKind, RegionId, WriteRequest,
};

use crate::common::*;

/// A read-only engine on the test directory.
async fn reader(env: &TestEnv) -> strata_engine::Engine {
    EngineBuilder::new(env.config())
        .read_only()
        .build()
        .await
        .unwrap()
}

/// Every file under `dir`: size, inode, modification time and content.
fn fingerprint(dir: &Path) -> BTreeMap<String, (u64, u64, i64, i64, Vec<u8>)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let name = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string();
            let content = if meta.is_dir() {
                pending.push(entry.path());
                Vec::new()
            } else {
                std::fs::read(entry.path()).unwrap()
            };
            files.insert(
                name,
                (
                    meta.len(),
                    meta.ino(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    content,
                ),
            );
        }
    }
    files
}

#[tokio::test]
async fn a_second_read_write_engine_fails_at_once_naming_the_holder_and_gets_the_lock_after_stop() {
    let env = TestEnv::new();
    let first = env.engine().await;
    let error = EngineBuilder::new(env.config()).build().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Locked);
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert!(message.contains("in use"), "{message}");
    first.stop().await.unwrap();
    // Stopped (though not dropped): the directory is free again.
    let second = EngineBuilder::new(env.config()).build().await.unwrap();
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_wal_directory_outside_the_data_directory_is_locked_too() {
    let env = TestEnv::new();
    let wal = tempfile::tempdir().unwrap();
    let mut config = env.config();
    config.wal.dir = Some(wal.path().to_path_buf());
    let first = EngineBuilder::new(config.clone()).build().await.unwrap();
    assert!(wal.path().join("LOCK").exists());
    // Another data directory sharing that WAL directory is refused.
    let other = tempfile::tempdir().unwrap();
    let mut sharing = config.clone();
    sharing.data_home = other.path().to_path_buf();
    let error = EngineBuilder::new(sharing).build().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Locked, "{error}");
    first.stop().await.unwrap();
}

#[tokio::test]
async fn a_read_only_engine_sees_flushed_and_unflushed_rows_refuses_every_change_and_changes_no_byte()
 {
    let env = TestEnv::new();
    let region = RegionId::new(1024, 0);
    let engine = env.engine().await;
    create(&engine, region).await;
    put(&engine, region, 0..10, 1, 1.0).await;
    engine.flush(region).await.unwrap();
    put(&engine, region, 0..5, 2, 2.0).await; // only in the WAL
    let expected = scan(&engine, region).await;
    engine.stop().await.unwrap();
    drop(engine);
    let before = fingerprint(env.dir.path());

    let reader = reader(&env).await;
    assert!(reader.is_read_only());
    reader.open(region).await.unwrap();
    assert_eq!(scan(&reader, region).await, expected);
    assert_eq!(expected.len(), 15);
    let stats = reader.region_stats(region).unwrap();
    assert_eq!(stats.state, strata_engine::RegionState::ReadOnly);

    let refused = [
        reader
            .write(WriteRequest::put(region, rows(0..1, 3, 3.0)))
            .await
            .unwrap_err(),
        reader
            .create(CreateRequest::new(metadata(RegionId::new(1024, 1))))
            .await
            .unwrap_err(),
        reader.flush(region).await.unwrap_err(),
        reader.truncate(region).await.unwrap_err(),
        reader.drop_region(region).await.unwrap_err(),
        reader.set_writable(region, true).await.unwrap_err(),
        reader
            .alter(AlterRequest::new(
                region,
                0,
                AlterKind::DropColumns {
                    names: vec!["cpu".into()],
                },
            ))
            .await
            .unwrap_err(),
    ];
    for error in refused {
        assert_eq!(error.kind(), ErrorKind::ReadOnly, "{error}");
        assert!(!error.is_retryable());
    }
    reader.close(region).await.unwrap();
    reader.open(region).await.unwrap();
    reader.stop().await.unwrap();
    drop(reader);
    assert!(
        fingerprint(env.dir.path()) == before,
        "a read-only engine changed the directory"
    );
}

#[tokio::test]
async fn read_only_engines_run_beside_the_writer_and_each_sees_what_was_committed_when_it_opened() {
    let env = TestEnv::new();
    let region = RegionId::new(1024, 0);
    let writer = env.engine().await;
    create(&writer, region).await;
    for round in 0..4_i64 {
        put(&writer, region, 0..20, round, round as f64).await;
        if round % 2 == 1 {
            writer.flush(region).await.unwrap();
        }
        let committed = scan(&writer, region).await;
        let reader = reader(&env).await;
        reader.open(region).await.unwrap();
        assert_eq!(scan(&reader, region).await, committed, "round {round}");
        // The reader's view is fixed; the writer goes on.
        put(&writer, region, 20..25, round, 9.0).await;
        assert_eq!(scan(&reader, region).await, committed, "round {round}");
        reader.stop().await.unwrap();
    }
    writer.stop().await.unwrap();
}

#[tokio::test]
async fn a_read_only_engine_needs_an_existing_directory_and_leaves_a_dropped_region_alone() {
    let env = TestEnv::new();
    let missing = env.dir.path().join("nothing-here");
    let mut config = env.config();
    config.data_home = missing.clone();
    let error = EngineBuilder::new(config)
        .read_only()
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no data directory"), "{error}");
    assert!(!missing.exists(), "a read-only build created the directory");

    // A region whose drop began (its marker is there) is not found, and its files stay.
    let region = RegionId::new(1024, 0);
    let engine = env.engine().await;
    create(&engine, region).await;
    put(&engine, region, 0..3, 1, 1.0).await;
    engine.flush(region).await.unwrap();
    engine.stop().await.unwrap();
    let marker = env
        .dir
        .path()
        .join(format!("{}/.dropping", strata_storage::region_dir(region)));
    std::fs::write(&marker, b"").unwrap();
    let before = fingerprint(env.dir.path());
    let reader = reader(&env).await;
    let error = reader.open(region).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RegionNotFound, "{error}");
    reader.stop().await.unwrap();
    assert!(fingerprint(env.dir.path()) == before);
}
