//! Scan options: checksum verification, decoding files ahead on other tasks.

use strata_engine::{ErrorKind, RegionId, ScanRequest};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_verifying_checksums_refuses_a_file_that_decodes_but_is_not_the_one_written() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.compaction.enabled = false;
    let engine = env.engine_with(config).await;
    let region = RegionId::new(1, 13);
    create(&engine, region).await;
    put(&engine, region, 0..10, 1_000, 1.0).await;
    engine.flush(region).await.unwrap();
    put(&engine, region, 0..10, 2_000, 2.0).await;
    engine.flush(region).await.unwrap();
    // Replace the first file with the second: valid Parquet, other rows.
    let mut files = engine.region_files(region).unwrap();
    files.sort_by_key(|f| f.time_range);
    let dir = env.dir.path().join(strata_storage::region_data_dir(region));
    std::fs::copy(
        dir.join(format!("{}.parquet", files[1].file_id)),
        dir.join(format!("{}.parquet", files[0].file_id)),
    )
    .unwrap();
    let plain = engine
        .scan_to_vec(region, ScanRequest::default())
        .await
        .unwrap();
    let rows: usize = plain.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 10, "without the check the damage goes unnoticed");
    let error = engine
        .scan_to_vec(
            region,
            ScanRequest {
                verify_checksums: true,
                ..ScanRequest::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Corruption, "{error}");
    assert!(
        error.to_string().contains(&files[0].file_id.to_string()),
        "{error}"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_decoding_files_ahead_returns_exactly_what_the_sequential_one_does() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.compaction.enabled = false;
    let engine = env.engine_with(config).await;
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
                ScanRequest {
                    batch_rows,
                    prefetch_batches,
                    ..ScanRequest::default()
                },
            )
        };
        let sequential = scan(0).await.unwrap();
        let ahead = scan(3).await.unwrap();
        // Every row, in output order.
        let rows_of = |batches: &[strata_engine::arrow_array::RecordBatch]| {
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
        };
        let sequential = rows_of(&sequential);
        assert_eq!(sequential, rows_of(&ahead), "batch_rows {batch_rows}");
        assert!(sequential.len() > 200);
    }
    engine.stop().await.unwrap();
}
