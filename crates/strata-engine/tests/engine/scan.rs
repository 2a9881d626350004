//! Scan options: checksum verification, decoding files ahead on other tasks; counts.

use strata_engine::{ErrorKind, RegionId, ScanOrder, ScanRequest, TimeRange};

use crate::common::*;

/// An engine without compaction and `region` with two flushed files (10 rows each); the
/// caller then damages them.
async fn two_files(env: &TestEnv, region: RegionId) -> strata_engine::Engine {
    let engine = env.engine_without_compaction().await;
    create(&engine, region).await;
    put(&engine, region, 0..10, 1_000, 1.0).await;
    engine.flush(region).await.unwrap();
    put(&engine, region, 0..10, 2_000, 2.0).await;
    engine.flush(region).await.unwrap();
    engine
}

/// Replaces the region's older file with its newer one (valid Parquet, other rows) and
/// returns the files, oldest first.
fn copy_newer_over_older(
    env: &TestEnv,
    engine: &strata_engine::Engine,
    region: RegionId,
) -> Vec<strata_engine::FileMeta> {
    let mut files = engine.region_files(region).unwrap();
    files.sort_by_key(|f| f.time_range);
    let dir = env.dir.path().join(strata_storage::region_data_dir(region));
    std::fs::copy(
        dir.join(format!("{}.parquet", files[1].file_id)),
        dir.join(format!("{}.parquet", files[0].file_id)),
    )
    .unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_verifying_checksums_refuses_a_file_that_decodes_but_is_not_the_one_written() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 13);
    let engine = two_files(&env, region).await;
    // Replace the first file with the second: valid Parquet, other rows.
    let files = copy_newer_over_older(&env, &engine, region);
    let plain = engine
        .scan_to_vec(region, ScanRequest::default())
        .await
        .unwrap();
    let rows: usize = plain.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 10, "without the check the damage goes unnoticed");
    let error = engine
        .scan_to_vec(region, ScanRequest::new().verify_checksums(true))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Corruption, "{error}");
    assert!(
        error.to_string().contains(&files[0].file_id.to_string()),
        "{error}"
    );
    engine.stop().await.unwrap();
}

/// Rows of a scan, with `?` on the call and on every batch: the stream's errors are the
/// engine's own.
async fn rows_of(
    engine: &strata_engine::Engine,
    region: RegionId,
    request: ScanRequest,
) -> strata_engine::Result<usize> {
    use futures::TryStreamExt;
    let mut stream = engine.scan(region, request).await?;
    let mut rows = 0;
    while let Some(batch) = stream.try_next().await? {
        rows += batch.num_rows();
    }
    Ok(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_streams_engine_errors_naming_the_region_and_the_file() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 17);
    let engine = two_files(&env, region).await;
    let verify = ScanRequest::new().verify_checksums(true);
    assert_eq!(rows_of(&engine, region, verify.clone()).await.unwrap(), 20);
    // The first file replaced by the second: the checksum check fails while streaming.
    let files = copy_newer_over_older(&env, &engine, region);
    let error = rows_of(&engine, region, verify).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Corruption, "{error}");
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(message.contains(&region.to_string()), "{message}");
    assert!(message.contains(&files[0].file_id.to_string()), "{message}");
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_decoding_files_ahead_returns_exactly_what_the_sequential_one_does() {
    let env = TestEnv::new();
    let engine = env.engine_without_compaction().await;
    let region = RegionId::new(1, 14);
    create(&engine, region).await;
    // Overlapping files with overwrites and deletes, and rows still in the memtable.
    for round in 0..6 {
        put(&engine, region, 0..200, 1_000 + (round % 3), round as f64).await;
        put(
            &engine,
            region,
            (round as usize * 7)..(round as usize * 7 + 50),
            5_000,
            10.0 * round as f64,
        )
        .await;
        if round == 3 {
            engine
                .write(strata_engine::WriteRequest::delete(
                    region,
                    rows(0..20, 1_000, 0.0),
                ))
                .await
                .unwrap();
        }
        if round < 5 {
            engine.flush(region).await.unwrap();
        }
    }
    for batch_rows in [1, 7, 4096] {
        let scan = |prefetch_batches| {
            engine.scan_to_vec(
                region,
                ScanRequest::new()
                    .batch_rows(batch_rows)
                    .prefetch_batches(prefetch_batches),
            )
        };
        let sequential = rows_in_order(&scan(0).await.unwrap());
        let ahead = rows_in_order(&scan(3).await.unwrap());
        assert_eq!(sequential, ahead, "batch_rows {batch_rows}");
        assert!(sequential.len() > 200);
    }
    engine.stop().await.unwrap();
}

/// `(host, ts, cpu)` of every row, in output order.
fn rows_in_order(batches: &[strata_engine::arrow_array::RecordBatch]) -> Vec<(String, i64, f64)> {
    use strata_engine::arrow_array::cast::AsArray;
    use strata_engine::arrow_array::types::{Float64Type, TimestampMillisecondType};
    let mut out = Vec::new();
    for b in batches {
        let host = b.column(0).as_string::<i32>();
        let ts = b.column(1).as_primitive::<TimestampMillisecondType>();
        let cpu = b.column(2).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((host.value(i).to_string(), ts.value(i), cpu.value(i)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_group_scan_returns_the_key_order_rows_group_by_group_oldest_first() {
    let env = TestEnv::new();
    let engine = env.engine_without_compaction().await;
    let region = RegionId::new(1, 16);
    create(&engine, region).await;
    // Group 0: one file (ts 1000 and 1500).
    put(&engine, region, 0..50, 1_000, 1.0).await;
    put(&engine, region, 0..50, 1_500, 1.5).await;
    engine.flush(region).await.unwrap();
    // Group 1: two files at ts 2000, the second overwriting and deleting some hosts.
    put(&engine, region, 0..50, 2_000, 2.0).await;
    engine.flush(region).await.unwrap();
    put(&engine, region, 20..40, 2_000, 20.0).await;
    engine
        .write(strata_engine::WriteRequest::delete(
            region,
            rows(45..50, 2_000, 0.0),
        ))
        .await
        .unwrap();
    engine.flush(region).await.unwrap();
    // Group 2: a file at ts 3000 and the memtable (3000 and 4000) overlapping it.
    put(&engine, region, 0..30, 3_000, 3.0).await;
    engine.flush(region).await.unwrap();
    put(&engine, region, 10..20, 3_000, 30.0).await;
    put(&engine, region, 0..5, 4_000, 4.0).await;
    let group_of = |ts: i64| match ts {
        ..2_000 => 0,
        2_000..3_000 => 1,
        _ => 2,
    };
    let scan = |order, batch_rows, prefetch_batches| {
        engine.scan_to_vec(
            region,
            ScanRequest::new()
                .order(order)
                .batch_rows(batch_rows)
                .prefetch_batches(prefetch_batches),
        )
    };
    let by_key = rows_in_order(&scan(ScanOrder::Key, 4096, 0).await.unwrap());
    assert_eq!(by_key.len(), 100 + 45 + 30 + 5, "rows: {by_key:?}");
    // Key order sorted (stably) by group: (group, host, ts).
    let mut expected = by_key.clone();
    expected.sort_by_key(|row| group_of(row.1));
    assert_ne!(expected, by_key, "the layout must tell the orders apart");
    for batch_rows in [1, 7, 4096] {
        for prefetch_batches in [0, 3] {
            let by_group = rows_in_order(
                &scan(ScanOrder::TimeGroups, batch_rows, prefetch_batches)
                    .await
                    .unwrap(),
            );
            assert_eq!(
                by_group, expected,
                "batch_rows {batch_rows}, prefetch {prefetch_batches}"
            );
        }
    }
    // A time range cutting into the groups: the same rows as in key order.
    let range = ScanRequest::new()
        .time_range(TimeRange {
            start: 1_500,
            end: 3_000,
        })
        .order(ScanOrder::TimeGroups);
    let mut in_range = by_key.clone();
    in_range.retain(|row| (1_500..=3_000).contains(&row.1));
    in_range.sort_by_key(|row| group_of(row.1));
    assert_eq!(
        rows_in_order(&engine.scan_to_vec(region, range).await.unwrap()),
        in_range
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_time_group_scan_reads_a_large_file_in_pieces_in_order() {
    let env = TestEnv::new();
    let engine = env.engine_without_compaction().await;
    let region = RegionId::new(1, 17);
    create(&engine, region).await;
    // One file of 120,000 rows (two row groups of at most 102,400 rows: two pieces), then
    // a small file after it in time.
    for ts in 0..100 {
        put(&engine, region, 0..1_200, 1_000 + ts, ts as f64).await;
    }
    engine.flush(region).await.unwrap();
    put(&engine, region, 0..10, 5_000, 5.0).await;
    engine.flush(region).await.unwrap();
    let files = engine.region_files(region).unwrap();
    assert!(files.iter().any(|f| f.num_rows == 120_000), "{files:?}");
    let scan = |order, prefetch_batches| {
        engine.scan_to_vec(
            region,
            ScanRequest::new()
                .order(order)
                .batch_rows(4096)
                .prefetch_batches(prefetch_batches),
        )
    };
    let sequential = rows_in_order(&scan(ScanOrder::TimeGroups, 0).await.unwrap());
    assert_eq!(sequential.len(), 120_010);
    // The big file first (its rows in key order), then the small one.
    assert_eq!(sequential[119_999].1, 1_099);
    assert_eq!(sequential[120_000].1, 5_000);
    for prefetch_batches in [1, 2] {
        let parallel = rows_in_order(&scan(ScanOrder::TimeGroups, prefetch_batches).await.unwrap());
        assert!(
            parallel == sequential,
            "prefetch {prefetch_batches}: rows differ"
        );
    }
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_takes_files_no_other_source_overlaps_from_the_manifest_and_equals_the_scan() {
    let env = TestEnv::new();
    let engine = env.engine_without_compaction().await;
    let region = RegionId::new(1, 15);
    create(&engine, region).await;
    // Three flushes of disjoint time slices, each with overwrites and delete markers.
    for slice in 0..3i64 {
        let ts = 10_000 * (slice + 1);
        put(&engine, region, 0..50, ts, 1.0).await;
        put(&engine, region, 0..10, ts, 2.0).await;
        put(&engine, region, 0..50, ts + 1, 1.0).await;
        engine
            .write(strata_engine::WriteRequest::delete(
                region,
                rows(40..45, ts + 1, 0.0),
            ))
            .await
            .unwrap();
        engine.flush(region).await.unwrap();
    }
    // Rows still in the memtable, in a slice of their own.
    put(&engine, region, 0..7, 90_000, 3.0).await;
    let scanned = |request: ScanRequest| async {
        let batches = engine.scan_to_vec(region, request).await.unwrap();
        batches.iter().map(|b| b.num_rows() as u64).sum::<u64>()
    };
    let all = engine.count(region, ScanRequest::default()).await.unwrap();
    assert_eq!(all.rows, scanned(ScanRequest::default()).await);
    assert_eq!(all.rows, 3 * (50 + 45) + 7);
    assert_eq!((all.files_from_metadata, all.sources_read), (3, 1));
    // A range cutting into the second file reads it; the third lies wholly inside.
    let partial = ScanRequest::new().time_range(TimeRange {
        start: 20_001,
        end: 30_001,
    });
    let counted = engine.count(region, partial.clone()).await.unwrap();
    assert_eq!(counted.rows, scanned(partial).await);
    assert_eq!(counted.rows, 45 + 95);
    assert_eq!((counted.files_from_metadata, counted.sources_read), (1, 1));
    // Counted from metadata means not read, but each such file is confirmed (one stat):
    // with the files gone the count fails, as a scan would, instead of the manifest's
    // number.
    let dir = env.dir.path().join(strata_storage::region_data_dir(region));
    for file in engine.region_files(region).unwrap() {
        std::fs::remove_file(dir.join(format!("{}.parquet", file.file_id))).unwrap();
    }
    let error = engine
        .count(region, ScanRequest::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("parquet"), "{error}");
    // An overwrite overlapping the first file joins it into a group that must be read.
    put(&engine, region, 0..3, 10_000, 5.0).await;
    engine.flush(region).await.unwrap();
    let error = engine
        .count(region, ScanRequest::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("parquet"), "{error}");
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_from_the_manifest_fails_naming_a_file_that_is_missing_or_truncated() {
    let env = TestEnv::new();
    let engine = env.engine_without_compaction().await;
    let region = RegionId::new(1, 16);
    create(&engine, region).await;
    put(&engine, region, 0..20, 10_000, 1.0).await;
    engine.flush(region).await.unwrap();
    let counted = engine.count(region, ScanRequest::default()).await.unwrap();
    assert_eq!((counted.rows, counted.files_from_metadata), (20, 1));
    let [file] = <[std::path::PathBuf; 1]>::try_from(sst_files(&env, region)).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();

    // Truncated: the manifest's count would be wrong rows; the count fails like a scan.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let error = engine
        .count(region, ScanRequest::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&name), "names the file: {error}");
    assert!(error.to_string().contains("inspect"), "{error}");
    assert!(
        engine
            .scan_to_vec(region, ScanRequest::default())
            .await
            .is_err()
    );

    // Missing.
    std::fs::remove_file(&file).unwrap();
    let error = engine
        .count(region, ScanRequest::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&name), "names the file: {error}");
    assert!(
        engine
            .scan_to_vec(region, ScanRequest::default())
            .await
            .is_err()
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_projects_columns_by_name_in_region_order_and_names_an_unknown_one() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 18);
    create(&engine, region).await;
    put(&engine, region, 0..4, 1_000, 1.0).await;
    engine.flush(region).await.unwrap();
    put(&engine, region, 0..4, 2_000, 2.0).await;
    let metadata = engine.region_metadata(region).unwrap();
    let names: Vec<&str> = metadata.columns().iter().map(|c| c.name.as_str()).collect();
    let (first, last) = (names[0], names[names.len() - 1]);

    // By name, given in any order (and twice): the region's order, each column once —
    // the same batches as by index.
    let by_name = engine
        .scan_to_vec(
            region,
            ScanRequest::new()
                .columns([last, first, last])
                .between(0, 1_500),
        )
        .await
        .unwrap();
    let by_index = engine
        .scan_to_vec(
            region,
            ScanRequest::new()
                .column_indices([0, names.len() - 1])
                .between(0, 1_500),
        )
        .await
        .unwrap();
    assert_eq!(by_name, by_index);
    let schema = by_name[0].schema();
    let got: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(got, [first, last]);
    assert_eq!(by_name.iter().map(|b| b.num_rows()).sum::<usize>(), 4);

    // An unknown name is the caller's mistake, named; so is giving names and indices.
    let error = engine
        .scan_to_vec(region, ScanRequest::new().columns([first, "disk"]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    assert!(error.to_string().contains("\"disk\""), "{error}");
    // (The builder keeps them exclusive; the fields can still be set both.)
    let mut both = ScanRequest::new().columns([first]);
    both.projection = Some(vec![0]);
    let error = engine.scan_to_vec(region, both).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    engine.stop().await.unwrap();
}
