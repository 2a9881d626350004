use std::sync::Arc;
use std::time::Duration;

use opendal::Operator;
use strata_request::{ColumnDataType, ColumnSchema, RegionMetadataBuilder};

use super::*;
use crate::manifest::RegionEdit;
use crate::sst::{FileId, FileMeta};

fn region() -> RegionId {
    RegionId::new(9, 2)
}

fn metadata() -> RegionMetadata {
    RegionMetadataBuilder::new(region())
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .build()
        .unwrap()
}

fn store() -> Operator {
    Operator::new(opendal::services::Memory::default()).unwrap()
}

fn file(rows: u64) -> FileMeta {
    FileMeta {
        region_id: region(),
        file_id: FileId::random(),
        level: 0,
        time_range: (0, 10),
        num_rows: rows,
        num_row_groups: 1,
        file_size: 100,
        max_sequence: rows,
        checksum: 7,
        num_deletes: None,
        time_slice: None,
    }
}

fn edit(
    files: Vec<FileMeta>,
    remove: Vec<FileId>,
    entry: u64,
    sequence: u64,
) -> RegionMetaActionList {
    RegionMetaActionList::one(RegionMetaAction::Edit(RegionEdit {
        files_to_add: files,
        files_to_remove: remove,
        flushed_entry_id: Some(entry),
        flushed_sequence: Some(sequence),
        committed_sequence: None,
        compaction_window_secs: None,
    }))
}

/// A new manifest of [`metadata`] on `store`, checkpointing every `distance` versions.
async fn create(store: &Operator, distance: u64) -> ManifestManager {
    ManifestManager::create(
        store.clone(),
        metadata(),
        RegionOptions::default(),
        config(distance),
    )
    .await
    .unwrap()
}

fn config(distance: u64) -> ManifestConfig {
    ManifestConfig {
        checkpoint_distance: distance,
    }
}

async fn names(store: &Operator) -> Vec<String> {
    let mut names: Vec<String> = store
        .list(&format!("{}/", region_manifest_dir(region())))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name().to_string())
        .filter(|n| !n.is_empty() && !n.ends_with('/'))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_created_manifest_reopens_with_the_same_state_and_a_missing_one_is_none() {
    let store = store();
    assert!(
        ManifestManager::open(store.clone(), region(), config(10))
            .await
            .unwrap()
            .is_none()
    );
    let mut m = create(&store, 10).await;
    assert_eq!(m.manifest().manifest_version, 0);
    let f = file(5);
    assert_eq!(
        m.update(edit(vec![f.clone()], vec![], 3, 30))
            .await
            .unwrap(),
        1
    );
    let reopened = ManifestManager::open(store.clone(), region(), config(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest(), m.manifest());
    assert_eq!(reopened.manifest().files.get(&f.file_id), Some(&f));
    assert_eq!(reopened.manifest().metadata, metadata());

    let err = ManifestManager::create(store, metadata(), RegionOptions::default(), config(10))
        .await
        .unwrap_err();
    assert!(matches!(err, ManifestError::AlreadyExists { .. }), "{err}");
}

#[tokio::test]
async fn progress_ids_only_grow_and_truncation_sets_them_and_removes_every_file() {
    let mut m = create(&store(), 0).await;
    let (a, b) = (file(1), file(2));
    m.update(edit(vec![a.clone(), b.clone()], vec![], 10, 100))
        .await
        .unwrap();
    m.update(edit(vec![], vec![a.file_id], 5, 50))
        .await
        .unwrap();
    let s = m.manifest();
    assert_eq!(
        (s.flushed_entry_id, s.flushed_sequence),
        (10, 100),
        "max semantics"
    );
    assert_eq!(s.files.len(), 1);
    assert_eq!(s.removed_files, [a]);

    m.update(RegionMetaActionList::one(RegionMetaAction::Truncate {
        truncated_entry_id: 4,
        truncated_sequence: 40,
    }))
    .await
    .unwrap();
    let s = m.manifest();
    assert_eq!(
        (s.flushed_entry_id, s.flushed_sequence, s.truncated_entry_id),
        (4, 40, Some(4))
    );
    assert!(s.files.is_empty());
    assert!(s.removed_files.contains(&b));
}

#[tokio::test]
async fn checkpoints_replace_old_deltas_and_open_from_checkpoint_plus_later_deltas() {
    let store = store();
    let mut m = create(&store, 3).await;
    for i in 1..=7 {
        m.update(edit(vec![file(i)], vec![], i, i * 10))
            .await
            .unwrap();
    }
    m.wait_for_cleanup().await;
    assert_eq!(
        names(&store).await,
        [
            "00000000000000000006.checkpoint",
            "00000000000000000007.json",
            "_last_checkpoint"
        ]
    );
    let reopened = ManifestManager::open(store.clone(), region(), config(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest(), m.manifest());
    assert_eq!(reopened.manifest().files.len(), 7);
    assert_eq!(reopened.manifest().manifest_version, 7);

    // The reopened manager continues the version sequence and checkpoints on schedule.
    let mut reopened = reopened;
    assert_eq!(
        reopened.update(edit(vec![], vec![], 8, 80)).await.unwrap(),
        8
    );
    assert_eq!(
        reopened.update(edit(vec![], vec![], 9, 90)).await.unwrap(),
        9
    );
    assert!(
        names(&store)
            .await
            .contains(&"00000000000000000009.checkpoint".to_string())
    );
}

#[tokio::test]
async fn a_damaged_delta_checkpoint_or_missing_version_is_an_error_naming_the_file() {
    let dir = region_manifest_dir(region());

    let store = store();
    let mut m = create(&store, 0).await;
    m.update(edit(vec![file(1)], vec![], 1, 1)).await.unwrap();
    store
        .write(
            &format!("{dir}/00000000000000000001.json"),
            b"{\"actions\": [tru".to_vec(),
        )
        .await
        .unwrap();
    let err = ManifestManager::open(store.clone(), region(), config(0))
        .await
        .unwrap_err();
    assert!(matches!(err, ManifestError::Corrupted { .. }), "{err}");
    assert!(
        err.to_string().contains("00000000000000000001.json"),
        "{err}"
    );

    let store2 = self::store();
    let mut m = create(&store2, 2).await;
    for i in 1..=3 {
        m.update(edit(vec![file(i)], vec![], i, i)).await.unwrap();
    }
    let checkpoint = format!("{dir}/00000000000000000002.checkpoint");
    let mut bytes = store2.read(&checkpoint).await.unwrap().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    store2.write(&checkpoint, bytes).await.unwrap();
    let err = ManifestManager::open(store2.clone(), region(), config(2))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("00000000000000000002.checkpoint"),
        "{err}"
    );
    assert!(err.to_string().contains("checksum"), "{err}");

    let store3 = self::store();
    let mut m = create(&store3, 0).await;
    for i in 1..=3 {
        m.update(edit(vec![], vec![], i, i)).await.unwrap();
    }
    store3
        .delete(&format!("{dir}/00000000000000000002.json"))
        .await
        .unwrap();
    let err = ManifestManager::open(store3, region(), config(0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("version 2 is missing"), "{err}");
}

#[tokio::test]
async fn manifests_live_on_the_fs_store_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::ObjectStoreConfig::Fs {
        root: dir.path().to_path_buf(),
    }
    .build()
    .unwrap();
    let mut m = create(&store, 2).await;
    for i in 1..=3 {
        m.update(edit(vec![file(i)], vec![], i, i)).await.unwrap();
    }
    let reopened = ManifestManager::open(store, region(), config(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest(), m.manifest());
    assert!(
        dir.path()
            .join("regions/9/9_0000000002/manifest/_last_checkpoint")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_beside_a_checkpointing_writer_always_succeeds_and_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    // The engine's fs store: objects are written to a temporary file and renamed.
    let store = crate::ObjectStoreConfig::Fs {
        root: dir.path().into(),
    }
    .build()
    .unwrap();
    let mut writer = create(&store, 2).await;
    let versions = 300;
    let reader = tokio::spawn({
        let store = store.clone();
        async move {
            let (mut opens, mut last) = (0, 0);
            while last < versions {
                let manager = ManifestManager::open(store.clone(), region(), config(2))
                    .await
                    .unwrap_or_else(|e| panic!("open {opens} beside the writer: {e}"))
                    .unwrap();
                let version = manager.manifest().manifest_version;
                assert!(version >= last, "went back from {last} to {version}");
                assert_eq!(manager.manifest().flushed_entry_id, version);
                last = version;
                opens += 1;
            }
            opens
        }
    });
    for version in 1..=versions {
        writer
            .update(edit(vec![], vec![], version, version))
            .await
            .unwrap();
    }
    let opens = reader.await.unwrap();
    assert!(opens > 1, "the reader opened while the writer wrote");
}

#[test]
fn deltas_carry_their_format_and_a_checksum_and_older_formats_still_read() {
    let actions = edit(vec![file(7)], vec![], 5, 9);
    let bytes = actions.encode("d").unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with(r#"{"format":3,"crc32c":"#), "{text}");
    assert!(text.contains(r#","changes":[{"type":"edit""#), "{text}");
    assert_eq!(RegionMetaActionList::decode("d", &bytes).unwrap(), actions);
    // A changed digit inside the actions: the checksum notices.
    let damaged = text.replacen("\"flushed_entry_id\":5", "\"flushed_entry_id\":6", 1);
    assert_ne!(damaged, text);
    let error = RegionMetaActionList::decode("d", damaged.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");
    // Format 2 (the same shape) and format 1 (a bare action list) read as they were.
    let format2 = text
        .replacen(r#"{"format":3"#, r#"{"format":2"#, 1)
        .replacen(r#""changes":"#, r#""actions":"#, 1);
    assert_eq!(
        RegionMetaActionList::decode("d", format2.as_bytes()).unwrap(),
        actions
    );
    let legacy = serde_json::to_vec(&actions).unwrap();
    assert_eq!(RegionMetaActionList::decode("d", &legacy).unwrap(), actions);
    // A damaged envelope never passes for a legacy delta.
    let renamed = text.replacen("\"crc32c\"", "\"crc32d\"", 1);
    assert!(RegionMetaActionList::decode("d", renamed.as_bytes()).is_err());
}

/// `text` with `from` replaced by `to` once (which must be there), and the delta's
/// checksum recomputed: a well-formed file a different build could have written.
fn rewritten_delta(text: &str, from: &str, to: &str) -> Vec<u8> {
    assert!(text.contains(from), "{from} not in {text}");
    let text = text.replacen(from, to, 1);
    let start = text.find(r#""changes":"#).unwrap() + r#""changes":"#.len();
    let actions = &text[start..text.len() - 1];
    let crc = serde_json::from_str::<serde_json::Value>(&text).unwrap()["crc32c"].clone();
    text.replacen(
        &format!(r#""crc32c":{crc}"#),
        &format!(r#""crc32c":{}"#, crc32c::crc32c(actions.as_bytes())),
        1,
    )
    .into_bytes()
}

#[tokio::test]
async fn a_manifest_file_of_a_newer_format_is_refused_naming_the_file_and_both_versions() {
    let store = store();
    let mut m = create(&store, 2).await;
    m.update(edit(vec![file(1)], vec![], 1, 1)).await.unwrap();
    m.update(edit(vec![file(2)], vec![], 2, 2)).await.unwrap();
    m.update(edit(vec![file(3)], vec![], 3, 3)).await.unwrap();
    m.wait_for_cleanup().await;
    assert_eq!(
        names(&store).await,
        [
            "00000000000000000002.checkpoint",
            "00000000000000000003.json",
            "_last_checkpoint"
        ]
    );
    let dir = region_manifest_dir(region());

    // A delta of format 4 after the checkpoint.
    let delta = format!("{dir}/00000000000000000003.json");
    let text = String::from_utf8(store.read(&delta).await.unwrap().to_vec()).unwrap();
    store
        .write(&delta, text.replacen(r#""format":3"#, r#""format":4"#, 1))
        .await
        .unwrap();
    let err = ManifestManager::open(store.clone(), region(), config(2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ManifestError::NewerFormat { path, what: "delta", found: 4, newest: 3 } if *path == delta),
        "{err:?}"
    );
    assert_eq!(err.kind(), strata_base::ErrorKind::NewerFormat);
    assert!(err.to_string().contains(&delta), "{err}");
    store.write(&delta, text).await.unwrap();

    // A checkpoint of format 3, its pointer updated to match.
    let checkpoint = format!("{dir}/00000000000000000002.checkpoint");
    let text = String::from_utf8(store.read(&checkpoint).await.unwrap().to_vec()).unwrap();
    assert!(
        text.starts_with(r#"{"format":2,"last_version":2,"state":"#),
        "{text}"
    );
    let newer = text.replacen(r#""format":2"#, r#""format":3"#, 1);
    write_checkpoint(&store, 2, newer.as_bytes()).await;
    let err = ManifestManager::open(store.clone(), region(), config(2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ManifestError::NewerFormat { path, what: "checkpoint", found: 3, newest: 2 } if *path == checkpoint),
        "{err:?}"
    );

    // A checkpoint of format 1 (before the gate) reads as it was.
    let legacy = text.replacen(
        r#"{"format":2,"last_version":2,"state":"#,
        r#"{"last_version":2,"manifest":"#,
        1,
    );
    write_checkpoint(&store, 2, legacy.as_bytes()).await;
    let reopened = ManifestManager::open(store.clone(), region(), config(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest(), m.manifest());
}

/// Writes checkpoint `version` with `bytes` and points `_last_checkpoint` at it.
async fn write_checkpoint(store: &Operator, version: u64, bytes: &[u8]) {
    let dir = region_manifest_dir(region());
    store
        .write(&checkpoint_path(&dir, version), bytes.to_vec())
        .await
        .unwrap();
    let pointer = LastCheckpoint {
        version,
        size: bytes.len() as u64,
        checksum: crc32c::crc32c(bytes),
    };
    store
        .write(
            &format!("{dir}/{LAST_CHECKPOINT}"),
            serde_json::to_vec(&pointer).unwrap(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_fields_in_manifest_entries_are_refused_not_dropped() {
    let actions = edit(vec![file(7)], vec![], 5, 9);
    let text = String::from_utf8(actions.encode("d").unwrap()).unwrap();
    // A field no build knows, with a valid checksum, at each level of an entry.
    for (from, to) in [
        (r#""type":"edit","#, r#""type":"edit","priority":1,"#),
        (r#""level":0,"#, r#""level":0,"bloom_filter":true,"#),
        (
            r#""flushed_entry_id":5"#,
            r#""flushed_entry_id":5,"hint":2"#,
        ),
    ] {
        let bytes = rewritten_delta(&text, from, to);
        let error = RegionMetaActionList::decode("d", &bytes).unwrap_err();
        assert!(
            matches!(&error, ManifestError::Corrupted { reason, .. } if reason.contains("unknown field")),
            "{to}: {error}"
        );
    }
    // The same rewrite without a new field reads: the refusal is the field's.
    let same = rewritten_delta(&text, r#""level":0,"#, r#""level":0,"#);
    assert_eq!(RegionMetaActionList::decode("d", &same).unwrap(), actions);

    // In a region schema (as a change action and a checkpoint carry it).
    let change = RegionMetaActionList::one(RegionMetaAction::Change {
        metadata: metadata(),
        options: RegionOptions::default(),
    });
    let text = String::from_utf8(change.encode("d").unwrap()).unwrap();
    for (from, to) in [
        (
            r#""schema_version":0"#,
            r#""schema_version":0,"partition":"a""#,
        ),
        (r#""nullable":"#, r#""codec":"lz4","nullable":"#),
    ] {
        let bytes = rewritten_delta(&text, from, to);
        let error = RegionMetaActionList::decode("d", &bytes).unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{to}: {error}");
    }
}

/// A new region's manifest (checkpoints every `first` versions) and a second manager of it
/// opened right after (every `second`): two writers that both believe they may write.
async fn two_writers(
    store: &Operator,
    first: u64,
    second: u64,
) -> (ManifestManager, ManifestManager) {
    let created = ManifestManager::create(
        store.clone(),
        metadata(),
        RegionOptions::default(),
        config(first),
    )
    .await
    .unwrap();
    let opened = ManifestManager::open(store.clone(), region(), config(second))
        .await
        .unwrap()
        .unwrap();
    (created, opened)
}

/// Two managers of one region that both believe they may write (a zombie leader and its
/// successor): exactly one commits each version, the other is fenced and writes nothing.
async fn two_writers_never_both_commit_a_version(store: Operator) {
    let (mut first, mut second) = two_writers(&store, 3, 3).await;
    // The successor takes over: version 1.
    let takeover = RegionMetaActionList::one(RegionMetaAction::Leader {
        epoch: 1,
        last_entry_id: 7,
    });
    assert_eq!(second.update(takeover).await.unwrap(), 1);
    // The zombie's flush commit wants version 1 too: fenced, state unchanged.
    let lost = file(5);
    let error = first
        .update(edit(vec![lost.clone()], vec![], 3, 3))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ManifestError::Fenced { version: 1, .. }),
        "{error}"
    );
    assert_eq!(error.kind(), strata_base::ErrorKind::Fenced);
    assert!(!error.may_have_persisted());
    assert_eq!(first.manifest().manifest_version(), 0);
    // The successor goes on, checkpointing on the way; a reader sees only its history.
    for i in 2..=7 {
        second
            .update(edit(vec![file(i)], vec![], 7 + i, i))
            .await
            .unwrap();
    }
    let reader = ManifestManager::open(store.clone(), region(), config(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.manifest(), second.manifest());
    assert_eq!(reader.manifest().leader_epoch(), 1);
    assert_eq!(reader.manifest().flushed_entry_id(), 14);
    assert!(!reader.manifest().files().contains_key(&lost.file_id));
    // The zombie syncs and catches up to the successor's state.
    assert!(first.sync().await.unwrap());
    assert_eq!(first.manifest(), second.manifest());
    assert!(!first.sync().await.unwrap(), "nothing new: no change");
}

#[tokio::test]
async fn a_second_writer_is_fenced_on_the_memory_store() {
    two_writers_never_both_commit_a_version(store()).await;
}

#[tokio::test]
async fn a_second_writer_is_fenced_on_the_fs_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::ObjectStoreConfig::Fs {
        root: dir.path().to_path_buf(),
    }
    .build()
    .unwrap();
    two_writers_never_both_commit_a_version(store).await;
}

#[tokio::test]
async fn a_create_answered_exists_with_our_own_bytes_is_our_earlier_attempt() {
    let store = store();
    let actions = edit(vec![file(1)], vec![], 1, 1);
    let path = delta_path("d", 1);
    let created = |result: Result<Created, ManifestError>| result.unwrap();
    assert_eq!(
        created(create_delta(&store, &path, &actions).await),
        Created::Ours
    );
    // A retry of the same request (its first try landed) is not a rival's commit ...
    assert_eq!(
        created(create_delta(&store, &path, &actions).await),
        Created::Ours
    );
    // ... different bytes are.
    let other = edit(vec![file(1)], vec![], 1, 1);
    assert_eq!(
        created(create_delta(&store, &path, &other).await),
        Created::Theirs
    );
}

#[tokio::test]
async fn a_taken_version_whose_delta_vanished_before_the_read_back_is_superseded_not_lost() {
    // A rival commits version 1 and checkpoints past it; its clean-up deletes delta 1
    // between our create (answered "exists") and our read-back.
    let plan = Arc::new(crate::testing::FaultPlan::default());
    let store = store().layer(crate::testing::FaultLayer::new(plan.clone()));
    let mut ours = ManifestManager::create(
        store.clone(),
        metadata(),
        RegionOptions::default(),
        ManifestConfig::default(),
    )
    .await
    .unwrap();
    let mut rival = ManifestManager::open(store.clone(), region(), ManifestConfig::default())
        .await
        .unwrap()
        .unwrap();
    rival
        .update(edit(vec![file(7)], vec![], 1, 1))
        .await
        .unwrap();
    plan.hide_reads_containing(&delta_path("", 1));
    let error = ours
        .update(edit(vec![file(1)], vec![], 1, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ManifestError::Superseded { version: 1, .. }),
        "{error}"
    );
    assert!(error.is_fenced(), "this engine must not write again");
    assert!(
        error.may_have_persisted(),
        "whose the version was cannot be told: the caller keeps its files"
    );
    assert_eq!(error.kind(), strata_base::ErrorKind::Fenced);
}

#[tokio::test]
async fn a_checkpoint_never_moves_the_pointer_behind_a_newer_writer() {
    let store = store();
    let mut first = create(&store, 0).await;
    first
        .update(edit(vec![file(1)], vec![], 1, 1))
        .await
        .unwrap();
    // Another writer commits past version 1 (and checkpoints there) ...
    let mut second = ManifestManager::open(store.clone(), region(), config(2))
        .await
        .unwrap()
        .unwrap();
    second
        .update(edit(vec![file(2)], vec![], 2, 2))
        .await
        .unwrap();
    second
        .update(edit(vec![file(3)], vec![], 3, 3))
        .await
        .unwrap();
    // ... while the first, stalled, now writes its checkpoint of version 1.
    first.checkpoint(1).await.unwrap();
    let reader = ManifestManager::open(store, region(), config(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.manifest(), second.manifest());
}

/// Deleting the files a checkpoint covers is not part of the commit: on a store where
/// every delete takes a second, a checkpointing update returns at once and the deletion
/// finishes in the background.
#[tokio::test(start_paused = true)]
// The paused runtime's clock: virtual time that only the injected delays advance.
#[allow(clippy::disallowed_methods)]
async fn a_checkpoint_deletes_the_files_it_covers_in_the_background() {
    let plan = Arc::new(crate::testing::FaultPlan::default());
    let store = store().layer(crate::testing::FaultLayer::new(plan.clone()));
    let mut m = create(&store, 3).await;
    // Deletes (of any path) wait a second each; nothing else does.
    plan.delay_containing("no such path", Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    for i in 1..=3 {
        m.update(edit(vec![file(i)], vec![], i, i)).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the commit waited for deletes: {:?}",
        started.elapsed()
    );
    assert!(
        names(&store).await.iter().any(|n| n.ends_with("1.json")),
        "nothing is deleted yet"
    );
    m.wait_for_cleanup().await;
    assert_eq!(
        names(&store).await,
        ["00000000000000000003.checkpoint", "_last_checkpoint"]
    );
    let reopened = ManifestManager::open(store, region(), config(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest(), m.manifest());
}

/// SlateDB's subtlety: a checkpoint deletes the deltas it covers, freeing their names; a
/// stalled writer's create of such a version succeeds but is invisible — it must be fenced.
#[tokio::test]
async fn a_stalled_writer_whose_version_a_checkpoint_covered_is_fenced() {
    let store = store();
    let (mut zombie, mut successor) = two_writers(&store, 0, 2).await;
    for i in 1..=2 {
        successor
            .update(edit(vec![file(i)], vec![], i, i))
            .await
            .unwrap();
    }
    successor.wait_for_cleanup().await;
    // Version 1's delta is gone (covered by the checkpoint at 2): its name is free again.
    assert!(!names(&store).await.iter().any(|n| n.ends_with("1.json")));
    let error = zombie
        .update(edit(vec![file(9)], vec![], 9, 9))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ManifestError::Fenced { version: 1, .. }),
        "{error}"
    );
    assert!(
        !names(&store).await.iter().any(|n| n.ends_with("1.json")),
        "the invisible delta is deleted"
    );
    let reader = ManifestManager::open(store, region(), config(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.manifest(), successor.manifest());
}

/// A delta whose write was reported failed but landed is taken back by the next update
/// (its caller acted as if it failed); a rival's delta in its place fences.
#[tokio::test]
async fn a_delta_reported_failed_that_landed_is_taken_back_by_the_next_update() {
    let store = store();
    let mut m = create(&store, 0).await;
    // The write of version 1 "failed" (as far as the caller knows) but landed.
    let lost = edit(vec![file(1)], vec![], 1, 1);
    let bytes = lost.encode("d").unwrap();
    store
        .write(&delta_path(&m.dir, 1), bytes.clone())
        .await
        .unwrap();
    m.uncertain = Some((1, bytes, lost));
    let next = edit(vec![file(2)], vec![], 2, 2);
    assert_eq!(m.update(next.clone()).await.unwrap(), 1);
    let reader = ManifestManager::open(store.clone(), region(), config(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.manifest(), m.manifest());
    assert_eq!(
        reader.manifest().files().len(),
        1,
        "only the second edit's file"
    );
    // Had a rival's delta been there instead, the update would be fenced.
    let rival = edit(vec![file(3)], vec![], 3, 3);
    store
        .write(&delta_path(&m.dir, 2), rival.encode("d").unwrap())
        .await
        .unwrap();
    let mine = edit(vec![file(4)], vec![], 4, 4);
    m.uncertain = Some((2, mine.encode("d").unwrap(), mine.clone()));
    let error = m.update(mine).await.unwrap_err();
    assert!(
        matches!(error, ManifestError::Fenced { version: 2, .. }),
        "{error}"
    );
}
