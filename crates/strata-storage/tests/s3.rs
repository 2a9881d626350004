//! The S3 path against a real S3-compatible server on loopback (`cargo xtask ci` starts a
//! moto server, sets `STRATA_S3_ENDPOINT` / `STRATA_S3_BUCKET`, and requires them: without
//! a server the test fails there with the reason; under a plain `cargo test` it skips,
//! saying so).

// Test code: a failed unwrap is a failed test, and the skip reason is printed.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::{create_manifest, s3_server};
use std::sync::Arc;

use futures::TryStreamExt;
use strata_request::{OpType, RegionId, RegionOptions};
use strata_storage::{
    KeyCodec, ManifestConfig, ManifestManager, MergeOptions, ObjectStoreConfig, RegionEdit,
    RegionMetaAction, RegionMetaActionList, S3Config, Secret, SstReadOptions, SstWriteOptions,
    TimeSeriesMemtable, flush_memtable, read_sst, region_data_dir, verify_sst,
};
use strata_workload::CpuWorkload;

#[tokio::test]
async fn ssts_and_manifests_round_trip_through_s3_with_multipart_uploads() {
    let Some((endpoint, bucket)) = s3_server("the S3 storage test") else {
        return;
    };
    let store = store(endpoint, bucket);

    // ~12 MB of f64 TSBS rows in 5 MiB parts: a multipart upload.
    let workload = CpuWorkload::new(2_000, 100).with_float_fields(true);
    let region = RegionId::new(77, 1);
    let metadata = Arc::new(workload.region_metadata(region));
    let codec = Arc::new(KeyCodec::new(metadata.clone()).unwrap());
    let memtable = Arc::new(TimeSeriesMemtable::new(1, codec.clone(), None));
    let mut sequence = 1;
    for batch in workload.batches().unwrap() {
        memtable.write(&batch.batch, OpType::Put, sequence).unwrap();
        sequence += batch.batch.num_rows() as u64;
    }
    let mut options = SstWriteOptions::default();
    options.write_buffer_size = 5 << 20;
    let file = flush_memtable(&store, &memtable, &options, MergeOptions::flush())
        .await
        .unwrap()
        .unwrap();
    assert!(
        file.file_size > 10 << 20,
        "large enough for several parts: {}",
        file.file_size
    );
    let path = file.path(&region_data_dir(region));
    verify_sst(&store, &path, &file).await.unwrap();
    let batches: Vec<_> = read_sst(&store, &path, codec, SstReadOptions::default())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
        200_000
    );

    let mut manifest = ManifestManager::create(
        store.clone(),
        (*metadata).clone(),
        RegionOptions::default(),
        ManifestConfig::new(2),
    )
    .await
    .unwrap();
    for i in 0..3 {
        let mut edit = RegionEdit::default();
        edit.files_to_add = if i == 0 { vec![file.clone()] } else { vec![] };
        edit.flushed_entry_id = Some(i + 1);
        edit.flushed_sequence = Some(sequence - 1);
        manifest
            .update(RegionMetaActionList::one(RegionMetaAction::Edit(edit)))
            .await
            .unwrap();
    }
    let reopened = ManifestManager::open(store, region, ManifestConfig::new(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest(), manifest.manifest());
    assert_eq!(reopened.manifest().files().len(), 1);
}

/// The server enforces `If-None-Match: *` (412): two engines that both believe they lead
/// a region cannot both commit a manifest version on S3.
#[tokio::test]
async fn a_second_manifest_writer_is_fenced_by_the_s3_server() {
    let Some((endpoint, bucket)) = s3_server("the S3 fencing test") else {
        return;
    };
    let store = store(endpoint, bucket);
    // The server itself answers a conditional create of an existing key with 412.
    store.write("probe", vec![1u8]).await.unwrap();
    let error = store
        .write_with("probe", vec![2u8])
        .if_not_exists(true)
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        opendal::ErrorKind::ConditionNotMatch,
        "{error}"
    );

    let workload = CpuWorkload::new(4, 1);
    let region = RegionId::new(78, 1);
    let config = ManifestConfig::new(0);
    let mut zombie = create_manifest(&store, workload.region_metadata(region), &config).await;
    let mut successor = ManifestManager::open(store.clone(), region, config.clone())
        .await
        .unwrap()
        .unwrap();
    let takeover = RegionMetaActionList::one(RegionMetaAction::Leader {
        epoch: 1,
        last_entry_id: 0,
    });
    assert_eq!(successor.update(takeover).await.unwrap(), 1);
    let edit = RegionMetaActionList::one(RegionMetaAction::Edit({
        let mut cfg = RegionEdit::default();
        cfg.flushed_entry_id = Some(9);
        cfg
    }));
    let error = zombie.update(edit).await.unwrap_err();
    assert_eq!(error.kind(), strata_base::ErrorKind::Fenced, "{error}");
    let reader = ManifestManager::open(store, region, config)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.manifest().leader_epoch(), 1);
    assert_eq!(reader.manifest().flushed_entry_id(), 0);
}

/// The server's bucket under a prefix of its own.
fn store(endpoint: String, bucket: String) -> opendal::Operator {
    ObjectStoreConfig::S3(
        S3Config::new(bucket)
            .root(format!("it-{}", uuid_like()))
            .endpoint(endpoint)
            .region("us-east-1")
            .credentials("test", Secret::new("test")),
    )
    .build()
    .unwrap()
}

/// A unique-enough prefix per run, so reruns against one server do not collide.
fn uuid_like() -> String {
    strata_storage::FileId::random().to_string()
}
