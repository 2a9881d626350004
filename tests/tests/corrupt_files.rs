//! Untrusted files: seeded mutations of manifest files and Parquet SSTs. A manifest opens
//! as exactly its original state or fails naming the damaged file; an SST reads back or
//! fails naming the file, and whenever a read returns other rows than the file holds, the
//! SST checksum catches it. Never a panic, never an allocation that takes the process
//! down. `SEED` replays a run; `STRATA_STRESS` multiplies the case count.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use futures::StreamExt;
use opendal::Operator;
use strata_engine::{CreateRequest, EngineBuilder, EngineConfig, RegionId, WriteRequest};
use strata_storage::{
    KeyCodec, ManifestConfig, ManifestError, ManifestManager, SstReadOptions, read_sst,
    region_data_dir, region_manifest_dir,
};

const REGION: RegionId = RegionId::new(3, 0);

fn seed() -> u64 {
    strata_tests::seed(0x05ee_d0ff_11e5)
}

fn stress() -> usize {
    strata_tests::stress() as usize
}

type Rng = rand_pcg::Pcg64Mcg;

/// A number in `0..n`.
fn below(rng: &mut Rng, n: usize) -> usize {
    strata_tests::below(rng, n as u64) as usize
}

/// One seeded mutation: bit flips, byte overwrites with edge values, truncation, a zeroed
/// span, or a duplicated span.
fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    match below(rng, 6) {
        0 => {
            for _ in 0..=below(rng, 4) {
                let at = below(rng, bytes.len());
                bytes[at] ^= 1 << below(rng, 8);
            }
        }
        1 => {
            let at = below(rng, bytes.len());
            bytes[at] = [0x00, 0xff, 0x7f, 0x80][below(rng, 4)];
        }
        2 => bytes.truncate(below(rng, bytes.len())),
        3 => {
            let start = below(rng, bytes.len());
            let end = (start + 1 + below(rng, 64)).min(bytes.len());
            bytes[start..end].fill(0);
        }
        4 => {
            // A length-like field set huge: four 0xff bytes.
            let at = below(rng, bytes.len().saturating_sub(4));
            bytes[at..at + 4].fill(0xff);
        }
        _ => {
            let start = below(rng, bytes.len());
            let end = (start + 1 + below(rng, 32)).min(bytes.len());
            let span = bytes[start..end].to_vec();
            let at = below(rng, bytes.len());
            bytes.splice(at..at, span);
        }
    }
    bytes
}

/// A region with three flushes on an in-memory store; returns the store.
async fn populated_store() -> Operator {
    let store = strata_engine::ObjectStoreConfig::Memory.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::default();
    config.data_home = dir.path().to_path_buf();
    config.num_workers = 1;
    let engine = EngineBuilder::new(config)
        .object_store(store.clone())
        .build()
        .await
        .unwrap();
    let metadata = strata_tests::host_ts_v(REGION);
    engine
        .create(CreateRequest::new(metadata.clone()))
        .await
        .unwrap();
    for round in 0..3_i64 {
        let n = 200;
        let batch = RecordBatch::try_new(
            metadata.arrow_schema().clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("h{}", i % 17)),
                )) as ArrayRef,
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    (0..n).map(|i| round * 1000 + i),
                )),
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * round))),
            ],
        )
        .unwrap();
        engine
            .write(WriteRequest::put(REGION, batch))
            .await
            .unwrap();
        engine.flush(REGION).await.unwrap();
    }
    engine.stop().await.unwrap();
    store
}

/// Every row of an SST as text (what a reader would get), or the read's error.
async fn read_rows(
    store: &Operator,
    path: &str,
    codec: Arc<KeyCodec>,
) -> Result<Vec<String>, strata_storage::StorageError> {
    let mut stream = read_sst(store, path, codec, SstReadOptions::default()).await?;
    let mut rows = Vec::new();
    let options = arrow_cast::display::FormatOptions::default();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(i).to_string()).collect();
            rows.push(format!(
                "{:?} {} {} {:?} {}",
                batch.key(i).data(),
                batch.timestamp(i),
                batch.sequence(i),
                batch.op_type(i),
                cells.join(",")
            ));
        }
    }
    Ok(rows)
}

async fn files(store: &Operator, dir: &str) -> Vec<String> {
    let mut paths: Vec<String> = store
        .list(&format!("{dir}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path().to_string())
        .filter(|p| !p.ends_with('/'))
        .collect();
    paths.sort();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_manifests_open_unchanged_or_fail_naming_the_damaged_file() {
    let seed = seed();
    eprintln!("corrupt manifests: SEED={seed}");
    let store = populated_store().await;
    let paths = files(&store, &region_manifest_dir(REGION)).await;
    assert!(paths.len() >= 4, "{paths:?}");
    let state = |manager: &ManifestManager| serde_json::to_string(manager.manifest()).unwrap();
    let pristine = ManifestManager::open(store.clone(), REGION, ManifestConfig::default())
        .await
        .unwrap()
        .map(|m| state(&m))
        .unwrap();
    let mut rng = strata_tests::rng(seed);
    let (mut opened, mut failed) = (0, 0);
    for case in 0..600 * stress() {
        let path = &paths[below(&mut rng, paths.len())];
        let original = store.read(path).await.unwrap().to_vec();
        let mutated = mutate(&mut rng, &original);
        store.write(path, mutated.clone()).await.unwrap();
        let what = format!("case {case} (SEED={seed}): {path} mutated");
        match ManifestManager::open(store.clone(), REGION, ManifestConfig::default()).await {
            Ok(Some(manager)) => {
                // Only a change nothing reads (or no change) may open: never another state.
                assert_eq!(state(&manager), pristine, "{what}: opened as another state");
                opened += 1;
            }
            Ok(None) => panic!("{what}: the region vanished"),
            Err(error) => {
                // A damaged pointer may name a checkpoint that is damaged or not there.
                let names_the_damage = match &error {
                    ManifestError::Corrupted { path: named, .. } => {
                        named == path
                            || (path.ends_with("_last_checkpoint")
                                && named.ends_with(".checkpoint"))
                    }
                    // A damaged format number (outside the checksum) reads as a newer
                    // format: refused, naming the file (and saying it may be damage).
                    ManifestError::NewerFormat { path: named, .. } => named == path,
                    ManifestError::ObjectStore { source, .. } => {
                        path.ends_with("_last_checkpoint")
                            && source.kind() == opendal::ErrorKind::NotFound
                    }
                    _ => false,
                };
                assert!(names_the_damage, "{what}: {error}");
                failed += 1;
            }
        }
        store.write(path, original).await.unwrap();
    }
    eprintln!("corrupt manifests: {opened} opened unchanged, {failed} refused naming the damage");
    assert!(failed > 0, "no mutation was ever noticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_sst_files_read_or_fail_naming_the_file_and_the_checksum_catches_other_rows() {
    let seed = seed();
    eprintln!("corrupt SSTs: SEED={seed}");
    let store = populated_store().await;
    let manifest = ManifestManager::open(store.clone(), REGION, ManifestConfig::default())
        .await
        .unwrap()
        .unwrap();
    let codec = Arc::new(KeyCodec::new(Arc::new(manifest.manifest().metadata().clone())).unwrap());
    let data_dir = region_data_dir(REGION);
    let metas: Vec<_> = manifest.manifest().files().values().cloned().collect();
    assert_eq!(metas.len(), 3);
    let mut pristine = std::collections::HashMap::new();
    for meta in &metas {
        let path = meta.path(&data_dir);
        let rows = read_rows(&store, &path, codec.clone()).await.unwrap();
        pristine.insert(path, rows);
    }
    let mut rng = strata_tests::rng(seed.rotate_left(17));
    let (mut read, mut failed, mut caught_by_checksum, mut silently_different) = (0, 0, 0, 0);
    for case in 0..600 * stress() {
        let meta = &metas[below(&mut rng, metas.len())];
        let path = meta.path(&data_dir);
        let original = store.read(&path).await.unwrap().to_vec();
        store
            .write(&path, mutate(&mut rng, &original))
            .await
            .unwrap();
        let result = read_rows(&store, &path, codec.clone()).await;
        let caught = strata_storage::verify_sst(&store, &path, meta)
            .await
            .is_err();
        caught_by_checksum += usize::from(caught);
        let what = format!("case {case} (SEED={seed}): {path} mutated");
        match result {
            Ok(rows) => {
                // A read that returns other rows than the file holds must be one the
                // checksum catches (Parquet pages carry none of their own).
                if rows != pristine[&path] {
                    assert!(caught, "{what}: read other rows and the checksum missed it");
                    silently_different += 1;
                }
                read += 1;
            }
            Err(error) => {
                assert!(
                    error.to_string().contains(&path),
                    "{what}: the error does not name the file: {error}"
                );
                failed += 1;
            }
        }
        store.write(&path, original).await.unwrap();
    }
    eprintln!(
        "corrupt SSTs: {read} read ({silently_different} with other rows, every one caught by the checksum), {failed} refused naming the file; the checksum caught {caught_by_checksum}"
    );
    assert!(failed > 0);
}
