//! SST files and manifests on S3 (any S3-compatible server): the WAL stays on local disk
//! under `data_home`, everything else goes to the bucket. Credentials come from the config
//! or from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
//!
//! ```text
//! cargo run -p strata-engine --example s3 -- <bucket> [endpoint]
//! # e.g. against a local server:
//! #   python -m moto.server -p 5000 &   (then create the bucket)
//! #   AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
//! #   cargo run -p strata-engine --example s3 -- strata-test http://127.0.0.1:5000
//! ```
//!
//! The S3 store retries transient failures (503s, lost connections) with backoff; a
//! conditional create whose response was lost is read back, so a retry never mistakes its
//! own manifest version for another writer's.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_engine::{
    ColumnDataType, ColumnSchema, CreateRequest, EngineBuilder, EngineConfig, ObjectStoreConfig,
    RegionId, RegionMetadataBuilder, S3Config, ScanRequest, WriteRequest,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(bucket) = args.next() else {
        eprintln!("usage: s3 <bucket> [endpoint]");
        std::process::exit(2);
    };
    let endpoint = args.next();
    let dir = tempfile::tempdir()?;
    // A fresh prefix per run, so runs never see each other's regions.
    let root = format!("strata-example-{}", std::process::id());
    let mut config = EngineConfig::default();
    config.data_home = dir.path().into();
    let mut s3 = S3Config::new(bucket).root(root.clone()).region("us-east-1");
    s3.endpoint = endpoint;
    config.object_store = Some(ObjectStoreConfig::S3(s3));
    let region = RegionId::new(1024, 0);
    let metadata = RegionMetadataBuilder::new(region)
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("usage", ColumnDataType::Float64))
        .build()?;
    let engine = EngineBuilder::new(config).build().await?;
    engine.create(CreateRequest::new(metadata.clone())).await?;
    let batch = RecordBatch::try_new(
        metadata.arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(TimestampMillisecondArray::from(vec![1_000; 3])),
            Arc::new(Float64Array::from(vec![0.5; 3])),
        ],
    )?;
    engine.write(WriteRequest::put(region, batch)).await?;
    engine.flush(region).await?;
    for file in engine.region_files(region)? {
        println!(
            "{root}/…/{}.parquet ({} bytes)",
            file.file_id, file.file_size
        );
    }
    let rows: usize = engine
        .scan_to_vec(region, ScanRequest::default())
        .await?
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    println!("{rows} rows read back from the bucket");
    assert_eq!(rows, 3);
    engine.stop().await?;
    Ok(())
}
