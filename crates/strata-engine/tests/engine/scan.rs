//! Scan options: checksum verification.

use strata_engine::{CreateRequest, ErrorKind, RegionId, RegionOptions, ScanRequest};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_verifying_checksums_refuses_a_file_that_decodes_but_is_not_the_one_written() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.compaction.enabled = false;
    let engine = env.engine_with(config).await;
    let region = RegionId::new(1, 13);
    engine
        .create(CreateRequest {
            metadata: metadata(region),
            options: RegionOptions::default(),
        })
        .await
        .unwrap();
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
